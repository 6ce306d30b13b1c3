package badgerstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/fb"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/badger/v4/y"
	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/proto"

	"github.com/ruaft/ruaft/persist"
)

// verifyDir checks every badger file in dir before badger opens it, because
// badger does not refuse damage reliably: with checksum verification on, a
// table whose block fails its checksum crashes the process (a nil pointer
// in table.VerifyChecksum) and a damaged table footer exits it (log.Fatal);
// a damaged KEYREGISTRY is reported as a wrong encryption key;
// a write-ahead (.mem) or value log (.vlog) record that fails its checksum
// is taken for the end of the log and everything after it is truncated
// away; a MANIFEST record whose length is damaged is taken for a torn tail,
// and the tables it lists are then deleted. Each of those is an
// acknowledged write lost without a word. verifyDir instead returns an
// error matching persist.ErrCorrupt that names the file and what is wrong.
//
// What it accepts as a crash's leftovers (not damage): a log or MANIFEST
// that ends inside a record or in zeros, with no valid record after the
// damaged one.
//
// It also returns how many LSM levels the MANIFEST's tables use (the
// deepest level plus one; 0 without tables).
func verifyDir(dir string) (levels int, err error) {
	defer func() {
		// The checks below parse damaged data; a bug in them must not
		// take the process down.
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s: verifying the badger files panicked: %v", persist.ErrCorrupt, dir, r)
		}
	}()
	names, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("badgerstore: verify %s: %w", dir, err)
	}
	var manifest *badger.Manifest
	for _, e := range names {
		switch e.Name() {
		case badger.ManifestFilename:
			m, err := verifyManifest(filepath.Join(dir, e.Name()))
			if err != nil {
				return 0, err
			}
			manifest = &m
		case badger.KeyRegistryFileName:
			// Its sanity text and data keys; badger's own error for a
			// damaged one is "Encryption key mismatch".
			kr, err := badger.OpenKeyRegistry(badger.KeyRegistryOptions{Dir: dir, ReadOnly: true})
			if err != nil {
				return 0, corrupt(filepath.Join(dir, e.Name()), 0, "%v", err)
			}
			_ = kr.Close()
		}
	}
	for _, e := range names {
		name := filepath.Join(dir, e.Name())
		switch filepath.Ext(e.Name()) {
		case ".sst":
			compression := options.Snappy // badger's default; the MANIFEST says
			if manifest != nil {
				id, ok := tableID(e.Name())
				if tm, listed := manifest.Tables[id]; ok && listed {
					compression = tm.Compression
				} else {
					continue // not in the MANIFEST: badger deletes it on open
				}
			}
			if err := verifyTable(name, compression); err != nil {
				return 0, err
			}
		case ".mem", ".vlog":
			if err := verifyLog(name); err != nil {
				return 0, err
			}
		}
	}
	if manifest != nil {
		for _, tm := range manifest.Tables {
			levels = max(levels, int(tm.Level)+1)
		}
	}
	return levels, nil
}

func corrupt(name string, off int64, format string, a ...any) error {
	return fmt.Errorf("%w: %s at offset %d: %s", persist.ErrCorrupt, name, off, fmt.Sprintf(format, a...))
}

func tableID(base string) (uint64, bool) {
	var id uint64
	_, err := fmt.Sscanf(strings.TrimSuffix(base, ".sst"), "%d", &id)
	return id, err == nil
}

// verifyManifest replays the MANIFEST as badger will and refuses it if
// badger would drop anything but a torn tail.
func verifyManifest(name string) (badger.Manifest, error) {
	f, err := os.Open(name)
	if err != nil {
		return badger.Manifest{}, fmt.Errorf("badgerstore: verify: %w", err)
	}
	defer f.Close()
	m, end, err := badger.ReplayManifestFile(f, 0, badger.DefaultOptions(""))
	if err != nil {
		return m, corrupt(name, 0, "%v", err)
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return m, fmt.Errorf("badgerstore: verify: %w", err)
	}
	// Badger stops at the first record that is cut short and truncates the
	// rest. A crash leaves that only at the very end; a valid record after
	// it means a damaged length made badger stop early.
	for p := end + 1; p+8 <= int64(len(data)); p++ {
		n := int64(binary.BigEndian.Uint32(data[p:]))
		if n == 0 || p+8+n > int64(len(data)) {
			continue
		}
		if crc32.Checksum(data[p+8:p+8+n], y.CastagnoliCrcTable) == binary.BigEndian.Uint32(data[p+4:]) {
			return m, corrupt(name, end, "a damaged record, with valid records after it")
		}
	}
	return m, nil
}

// verifyTable checks an SSTable's footer, index checksum and every block's
// checksum, with bounds checks badger's own reader does not make.
func verifyTable(name string, compression options.CompressionType) error {
	data, err := os.ReadFile(name)
	if err != nil {
		return fmt.Errorf("badgerstore: verify: %w", err)
	}
	// Footer, from the end: index | index length (4) | checksum | checksum length (4).
	pos := int64(len(data)) - 4
	if pos < 0 {
		return corrupt(name, 0, "table of %d bytes", len(data))
	}
	chkLen := int64(binary.BigEndian.Uint32(data[pos:]))
	if pos -= chkLen; pos < 4 {
		return corrupt(name, int64(len(data))-4, "table checksum length %d out of range", chkLen)
	}
	var indexSum pb.Checksum
	if err := proto.Unmarshal(data[pos:pos+chkLen], &indexSum); err != nil {
		return corrupt(name, pos, "table index checksum: %v", err)
	}
	pos -= 4
	indexLen := int64(binary.BigEndian.Uint32(data[pos:]))
	if indexLen > pos {
		return corrupt(name, pos, "table index length %d out of range", indexLen)
	}
	indexStart := pos - indexLen
	if err := verifySum(data[indexStart:pos], &indexSum); err != nil {
		return corrupt(name, indexStart, "table index: %v", err)
	}
	index := fb.GetRootAsTableIndex(data[indexStart:pos], 0)
	var ko fb.BlockOffset
	for i := range index.OffsetsLength() {
		if !index.Offsets(&ko, i) {
			return corrupt(name, indexStart, "table index: block %d missing", i)
		}
		off, n := int64(ko.Offset()), int64(ko.Len())
		if off+n > indexStart {
			return corrupt(name, indexStart, "table index: block %d at %d+%d out of range", i, off, n)
		}
		if err := verifyBlock(data[off:off+n], compression); err != nil {
			return corrupt(name, off, "table block %d: %v", i, err)
		}
	}
	return nil
}

// verifyBlock checks one (possibly compressed) table block: after
// decompression, data | checksum | checksum length (4), the checksum over
// data.
func verifyBlock(b []byte, compression options.CompressionType) error {
	switch compression {
	case options.None:
	case options.Snappy:
		d, err := snappy.Decode(nil, b)
		if err != nil {
			return fmt.Errorf("decompress: %w", err)
		}
		b = d
	case options.ZSTD:
		d, err := y.ZSTDDecompress(nil, b)
		if err != nil {
			return fmt.Errorf("decompress: %w", err)
		}
		b = d
	default:
		return fmt.Errorf("unknown compression %d", compression)
	}
	pos := len(b) - 4
	if pos < 0 {
		return fmt.Errorf("block of %d bytes", len(b))
	}
	chkLen := int(binary.BigEndian.Uint32(b[pos:]))
	if chkLen > pos {
		return fmt.Errorf("checksum length %d out of range", chkLen)
	}
	var sum pb.Checksum
	if err := proto.Unmarshal(b[pos-chkLen:pos], &sum); err != nil {
		return fmt.Errorf("checksum: %w", err)
	}
	return verifySum(b[:pos-chkLen], &sum)
}

func verifySum(data []byte, sum *pb.Checksum) error {
	if sum.Algo != pb.Checksum_CRC32C && sum.Algo != pb.Checksum_XXHash64 {
		return fmt.Errorf("unknown checksum algorithm %d", sum.Algo)
	}
	if got := y.CalculateChecksum(data, sum.Algo); got != sum.Sum {
		return fmt.Errorf("checksum mismatch (%x, want %x)", got, sum.Sum)
	}
	return nil
}

// logHeaderBytes is the header of a .mem or .vlog file (a key id and an
// IV for encryption).
const logHeaderBytes = 20

// maxLogScanBytes bounds how far past a bad log record verifyLog looks for
// a valid one.
const maxLogScanBytes = 4 << 20

// verifyLog reads a write-ahead or value log as badger replays it, record
// by record, and refuses it if a record fails its checksum and a valid
// record follows (damage, not a crash's torn tail).
func verifyLog(name string) error {
	data, err := os.ReadFile(name)
	if err != nil {
		return fmt.Errorf("badgerstore: verify: %w", err)
	}
	if len(data) < logHeaderBytes {
		if allZero(data) {
			return nil
		}
		return corrupt(name, 0, "log of %d bytes", len(data))
	}
	if !allZero(data[:8]) {
		// The key id: this store never turns on encryption.
		return corrupt(name, 0, "log header names encryption key %x", data[:8])
	}
	off := logHeaderBytes
	for {
		n, ok := logRecord(data[off:])
		if !ok {
			break
		}
		off += n
	}
	if allZero(data[off:]) {
		return nil
	}
	for p := off + 1; p < len(data) && p <= off+maxLogScanBytes; p++ {
		if _, ok := logRecord(data[p:]); ok {
			return corrupt(name, int64(off), "a log record fails its checksum, with valid records after it")
		}
	}
	return nil
}

// logRecord returns the length of the valid, non-empty record at the start
// of b: header (meta, user meta, uvarint key length, value length, expiry),
// key, value, CRC-32C (big-endian) of all that.
func logRecord(b []byte) (int, bool) {
	if len(b) < 3 {
		return 0, false
	}
	p := 2
	klen, n := binary.Uvarint(b[p:])
	if n <= 0 || klen == 0 || klen > 1<<16 {
		return 0, false
	}
	p += n
	vlen, n := binary.Uvarint(b[p:])
	if n <= 0 || vlen > 1<<32 {
		return 0, false
	}
	p += n
	if _, n = binary.Uvarint(b[p:]); n <= 0 {
		return 0, false
	}
	p += n
	end := uint64(p) + klen + vlen
	if end+4 > uint64(len(b)) {
		return 0, false
	}
	if crc32.Checksum(b[:end], y.CastagnoliCrcTable) != binary.BigEndian.Uint32(b[end:]) {
		return 0, false
	}
	return int(end) + 4, true
}

func allZero(b []byte) bool {
	return len(bytes.TrimLeft(b, "\x00")) == 0
}
