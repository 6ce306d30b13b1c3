package filestore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/ruaft/ruaft/persist"
)

// The snapshot file holds the latest snapshot and says from which segment on
// the log is valid:
//
//	magic [8]byte "RUAFTSN1" | index uint64 | term uint64 | firstSegment uint64 |
//	dataLen uint64 | data | crc uint32 (CRC-32C of everything before it)
//
// It is replaced atomically: written to snapshotTemp, synced, renamed over
// snapshotFile, and the folder synced.
const (
	snapshotFile    = "snapshot"
	snapshotTemp    = "snapshot.tmp"
	snapMagic       = "RUAFTSN1"
	snapHeaderBytes = 8 + 8 + 8 + 8 + 8
)

// snapMeta is the snapshot file's metadata.
type snapMeta struct {
	index, term uint64
	// firstSeg is the first segment whose records count; earlier segments
	// are leftovers of a compaction and are deleted on open.
	firstSeg uint64
}

func encodeSnapshot(m snapMeta, data []byte) []byte {
	buf := make([]byte, 0, snapHeaderBytes+len(data)+4)
	buf = append(buf, snapMagic...)
	buf = binary.LittleEndian.AppendUint64(buf, m.index)
	buf = binary.LittleEndian.AppendUint64(buf, m.term)
	buf = binary.LittleEndian.AppendUint64(buf, m.firstSeg)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(data)))
	buf = append(buf, data...)
	return binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf, crcTable))
}

// decodeSnapshot decodes a snapshot file; data aliases buf.
func decodeSnapshot(name string, buf []byte) (snapMeta, []byte, error) {
	if len(buf) < snapHeaderBytes+4 || string(buf[:8]) != snapMagic {
		return snapMeta{}, nil, fmt.Errorf("%w: %s at offset 0: not a snapshot file", persist.ErrCorrupt, name)
	}
	body := buf[:len(buf)-4]
	if crc32.Checksum(body, crcTable) != binary.LittleEndian.Uint32(buf[len(buf)-4:]) {
		return snapMeta{}, nil, fmt.Errorf("%w: %s at offset 0: checksum mismatch", persist.ErrCorrupt, name)
	}
	m := snapMeta{
		index:    binary.LittleEndian.Uint64(body[8:]),
		term:     binary.LittleEndian.Uint64(body[16:]),
		firstSeg: binary.LittleEndian.Uint64(body[24:]),
	}
	if n := binary.LittleEndian.Uint64(body[32:]); n != uint64(len(body)-snapHeaderBytes) {
		return snapMeta{}, nil, fmt.Errorf("%w: %s at offset 32: data length %d, file holds %d",
			persist.ErrCorrupt, name, n, len(body)-snapHeaderBytes)
	}
	return m, body[snapHeaderBytes:], nil
}
