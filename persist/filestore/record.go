package filestore

import (
	"encoding/binary"
	"errors"
	"hash/crc32"

	"github.com/ruaft/ruaft/persist"
)

// A log record is one Append batch, framed so that a reader can tell a whole
// record from a torn or damaged one:
//
//	frame:   length uint32 | crc uint32 | headerCRC uint32 | payload (length bytes)
//	payload: kind uint8 (=1) | term uint64 | votedFor int64 | commit uint64 |
//	         first uint64 | count uint32 | count × entry
//	entry:   term uint64 | type uint8 | dataLen uint32 | data
//
// Integers are little-endian; crc is CRC-32C (Castagnoli) of the payload and
// headerCRC the CRC-32C of the first 8 bytes, so a damaged length is told
// apart from a record cut short by a crash;
// the entries have indexes first, first+1, ...; first is 0 when count is 0.
// A record carries the batch's hard state, so hard state and entries become
// durable together or not at all.
const (
	frameHeaderBytes  = 12
	recordKindBatch   = 1
	payloadFixedBytes = 1 + 8 + 8 + 8 + 8 + 4
	entryHeaderBytes  = 8 + 1 + 4
	// maxRecordBytes bounds a record's payload so a damaged length cannot
	// make the reader allocate or skip gigabytes.
	maxRecordBytes = 1 << 30
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Decoding errors. errTruncated means the buffer ends inside the record (a
// torn tail if it is the end of the file); errBadHeader means the frame
// header fails its check; errBadRecord means the record is complete but
// fails its checksum or format checks.
var (
	errTruncated = errors.New("record cut short")
	errBadHeader = errors.New("record header fails its checksum")
	errBadRecord = errors.New("record fails its checksum or format checks")
)

// record is a decoded log record.
type record struct {
	hs      persist.HardState
	entries []persist.Entry // Data aliases the decoded buffer
}

// appendRecord appends the framed record for hs and entries to buf.
func appendRecord(buf []byte, hs persist.HardState, entries []persist.Entry) []byte {
	start := len(buf)
	buf = append(buf, make([]byte, frameHeaderBytes)...)
	buf = append(buf, recordKindBatch)
	buf = binary.LittleEndian.AppendUint64(buf, hs.Term)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(int64(hs.VotedFor)))
	buf = binary.LittleEndian.AppendUint64(buf, hs.Commit)
	first := uint64(0)
	if len(entries) > 0 {
		first = entries[0].Index
	}
	buf = binary.LittleEndian.AppendUint64(buf, first)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(entries)))
	for _, e := range entries {
		buf = binary.LittleEndian.AppendUint64(buf, e.Term)
		buf = append(buf, byte(e.Type))
		buf = binary.LittleEndian.AppendUint32(buf, uint32(len(e.Data)))
		buf = append(buf, e.Data...)
	}
	payload := buf[start+frameHeaderBytes:]
	binary.LittleEndian.PutUint32(buf[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(payload, crcTable))
	binary.LittleEndian.PutUint32(buf[start+8:], crc32.Checksum(buf[start:start+8], crcTable))
	return buf
}

// recordBytes is the framed size of a record for entries.
func recordBytes(entries []persist.Entry) int {
	n := frameHeaderBytes + payloadFixedBytes
	for _, e := range entries {
		n += entryHeaderBytes + len(e.Data)
	}
	return n
}

// decodeRecord decodes the record at the start of buf and returns it with its
// framed length. Entry data aliases buf. It never panics and allocates at most
// in proportion to len(buf).
func decodeRecord(buf []byte) (record, int, error) {
	if len(buf) < frameHeaderBytes {
		return record{}, 0, errTruncated
	}
	n := binary.LittleEndian.Uint32(buf)
	sum := binary.LittleEndian.Uint32(buf[4:])
	if crc32.Checksum(buf[:8], crcTable) != binary.LittleEndian.Uint32(buf[8:]) {
		return record{}, 0, errBadHeader
	}
	if n < payloadFixedBytes || n > maxRecordBytes {
		return record{}, 0, errBadRecord
	}
	if uint64(len(buf)-frameHeaderBytes) < uint64(n) {
		return record{}, 0, errTruncated
	}
	p := buf[frameHeaderBytes : frameHeaderBytes+int(n)]
	if crc32.Checksum(p, crcTable) != sum {
		return record{}, 0, errBadRecord
	}
	if p[0] != recordKindBatch {
		return record{}, 0, errBadRecord
	}
	var r record
	r.hs.Term = binary.LittleEndian.Uint64(p[1:])
	vote := int64(binary.LittleEndian.Uint64(p[9:]))
	if vote < persist.NoVote || vote > int64(^uint32(0)) {
		return record{}, 0, errBadRecord
	}
	r.hs.VotedFor = int(vote)
	r.hs.Commit = binary.LittleEndian.Uint64(p[17:])
	first := binary.LittleEndian.Uint64(p[25:])
	count := binary.LittleEndian.Uint32(p[33:])
	p = p[payloadFixedBytes:]
	if uint64(count) > uint64(len(p))/entryHeaderBytes || (count == 0) != (first == 0) {
		return record{}, 0, errBadRecord
	}
	if count > 0 && first+uint64(count)-1 < first {
		return record{}, 0, errBadRecord // index overflow
	}
	r.entries = make([]persist.Entry, count)
	for i := range r.entries {
		if len(p) < entryHeaderBytes {
			return record{}, 0, errBadRecord
		}
		e := persist.Entry{
			Index: first + uint64(i),
			Term:  binary.LittleEndian.Uint64(p),
			Type:  persist.EntryType(p[8]),
		}
		dl := binary.LittleEndian.Uint32(p[9:])
		p = p[entryHeaderBytes:]
		if uint64(dl) > uint64(len(p)) {
			return record{}, 0, errBadRecord
		}
		e.Data = p[:dl:dl]
		p = p[dl:]
		r.entries[i] = e
	}
	if len(p) != 0 {
		return record{}, 0, errBadRecord
	}
	return r, frameHeaderBytes + int(n), nil
}
