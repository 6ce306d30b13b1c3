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
//	magic [8]byte "RUAFTSN2" | index uint64 | term uint64 | firstSegment uint64 |
//	dataLen uint64 | data | configLen uint64 | config | crc uint32 (CRC-32C of
//	everything before it)
//
// A file of the first version ("RUAFTSN1") has no config fields; it still
// loads, with an empty configuration.
//
// It is replaced atomically: written to snapshotTemp, synced, renamed over
// snapshotFile, and the folder synced.
const (
	snapshotFile    = "snapshot"
	snapshotTemp    = "snapshot.tmp"
	snapMagic       = "RUAFTSN2"
	snapMagicV1     = "RUAFTSN1"
	snapHeaderBytes = 8 + 8 + 8 + 8 + 8
)

// snapMeta is the snapshot file's metadata.
type snapMeta struct {
	index, term uint64
	// firstSeg is the first segment whose records count; earlier segments
	// are leftovers of a compaction and are deleted on open.
	firstSeg uint64
	// config is the raft configuration stored with the snapshot.
	config []byte
}

func encodeSnapshot(m snapMeta, data []byte) []byte {
	buf := make([]byte, 0, snapHeaderBytes+len(data)+8+len(m.config)+4)
	buf = append(buf, snapMagic...)
	buf = binary.LittleEndian.AppendUint64(buf, m.index)
	buf = binary.LittleEndian.AppendUint64(buf, m.term)
	buf = binary.LittleEndian.AppendUint64(buf, m.firstSeg)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(data)))
	buf = append(buf, data...)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(m.config)))
	buf = append(buf, m.config...)
	return binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf, crcTable))
}

// decodeSnapshot decodes a snapshot file; data aliases buf.
func decodeSnapshot(name string, buf []byte) (snapMeta, []byte, error) {
	if len(buf) < snapHeaderBytes+4 || (string(buf[:8]) != snapMagic && string(buf[:8]) != snapMagicV1) {
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
	rest := uint64(len(body) - snapHeaderBytes)
	n := binary.LittleEndian.Uint64(body[32:])
	if string(buf[:8]) == snapMagicV1 {
		if n != rest {
			return snapMeta{}, nil, fmt.Errorf("%w: %s at offset 32: data length %d, file holds %d",
				persist.ErrCorrupt, name, n, rest)
		}
		return m, body[snapHeaderBytes:], nil
	}
	if n > rest || rest-n < 8 {
		return snapMeta{}, nil, fmt.Errorf("%w: %s at offset 32: data length %d, file holds %d",
			persist.ErrCorrupt, name, n, rest)
	}
	data := body[snapHeaderBytes : snapHeaderBytes+n]
	cfg := body[snapHeaderBytes+n:]
	if cn := binary.LittleEndian.Uint64(cfg); cn != uint64(len(cfg)-8) {
		return snapMeta{}, nil, fmt.Errorf("%w: %s at offset %d: config length %d, file holds %d",
			persist.ErrCorrupt, name, snapHeaderBytes+n, cn, len(cfg)-8)
	}
	if len(cfg) > 8 {
		m.config = cfg[8:]
	}
	return m, data, nil
}
