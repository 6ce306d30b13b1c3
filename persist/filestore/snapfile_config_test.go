package filestore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

// A snapshot file of the first version (no configuration) still decodes,
// with an empty configuration; the current version round-trips one.
func TestSnapshotFileVersions(t *testing.T) {
	v1 := []byte(snapMagicV1)
	for _, v := range []uint64{7, 2, 1, 4} {
		v1 = binary.LittleEndian.AppendUint64(v1, v)
	}
	v1 = append(v1, "data"...)
	v1 = binary.LittleEndian.AppendUint32(v1, crc32.Checksum(v1, crcTable))
	m, data, err := decodeSnapshot("v1", v1)
	if err != nil || m.index != 7 || m.term != 2 || string(data) != "data" || m.config != nil {
		t.Fatalf("v1: %+v %q %v", m, data, err)
	}

	buf := encodeSnapshot(snapMeta{index: 9, term: 3, firstSeg: 2, config: []byte("cfg")}, []byte("state"))
	m, data, err = decodeSnapshot("v2", buf)
	if err != nil || m.index != 9 || string(data) != "state" || !bytes.Equal(m.config, []byte("cfg")) {
		t.Fatalf("v2: %+v %q %v", m, data, err)
	}
	// A config length that runs past the file is corrupt, not a panic.
	bad := bytes.Clone(buf[:len(buf)-4])
	binary.LittleEndian.PutUint64(bad[snapHeaderBytes+5:], 1<<40)
	bad = binary.LittleEndian.AppendUint32(bad, crc32.Checksum(bad, crcTable))
	if _, _, err := decodeSnapshot("bad", bad); !errors.Is(err, persist.ErrCorrupt) {
		t.Fatalf("bad config length: %v, want ErrCorrupt", err)
	}
}
