package kvraft

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// opKind is the first byte of an encoded command.
type opKind byte

const (
	opPut    opKind = 1
	opAppend opKind = 2
	opDelete opKind = 3
	// opGet is a read through the log, used only with Config.LogReads.
	opGet opKind = 4
	// opOpenSession opens a session: id.ClientID is the new session's id,
	// stamp the leader's clock, limit the most sessions kept.
	opOpenSession opKind = 5
	// opTick advances the log's clock to stamp and expires the sessions
	// idle for more than limit milliseconds.
	opTick opKind = 6

	// opChecked marks a Put, Append or Delete written by a leader that
	// enforces sessions and value caps: such a write applies only within an
	// open session, and an Append carries its cap in limit. Writes without
	// it come from logs written before sessions existed and keep their old
	// meaning, so replaying an old log gives the same state as before.
	opChecked opKind = 0x80
)

// op is one command in the raft log.
type op struct {
	kind  opKind
	id    WriteID // Ack already resolved (never 0 when ClientID != 0)
	key   string
	value string
	// stamp (opOpenSession, opTick) is the proposing leader's clock, in
	// Unix milliseconds.
	stamp int64
	// limit is the session cap (opOpenSession), the idle timeout in
	// milliseconds (opTick), or the largest value an Append may leave
	// (opAppend|opChecked; 0 means none).
	limit uint64
}

// base is the operation without the opChecked flag.
func (k opKind) base() opKind { return k &^ opChecked }

// errCorrupt is returned when a command or snapshot does not decode.
var errCorrupt = errors.New("kvraft: corrupt encoding")

// encodeOp encodes o as: kind, uvarint client id, uvarint seq, uvarint ack,
// uvarint key length, key, uvarint value length, value; then, for
// opOpenSession and opTick, varint stamp and uvarint limit, and for a
// checked Append, uvarint limit. A Put of a 10-byte key and value by a
// sequential client costs about 26 bytes.
func encodeOp(o op) []byte {
	b := make([]byte, 0, 1+5*binary.MaxVarintLen64+2*binary.MaxVarintLen32+len(o.key)+len(o.value))
	b = append(b, byte(o.kind))
	b = binary.AppendUvarint(b, o.id.ClientID)
	b = binary.AppendUvarint(b, o.id.Seq)
	b = binary.AppendUvarint(b, o.id.Ack)
	b = appendString(b, o.key)
	b = appendString(b, o.value)
	switch o.kind {
	case opOpenSession, opTick:
		b = binary.AppendVarint(b, o.stamp)
		b = binary.AppendUvarint(b, o.limit)
	case opAppend | opChecked:
		b = binary.AppendUvarint(b, o.limit)
	}
	return b
}

func decodeOp(b []byte) (op, error) {
	d := decoder{b: b}
	var o op
	o.kind = opKind(d.byte())
	o.id.ClientID = d.uvarint()
	o.id.Seq = d.uvarint()
	o.id.Ack = d.uvarint()
	o.key = d.string()
	o.value = d.string()
	switch o.kind {
	case opOpenSession, opTick:
		o.stamp = d.varint()
		o.limit = d.uvarint()
	case opAppend | opChecked:
		o.limit = d.uvarint()
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(d.b))
	}
	if d.err == nil && !validKind(o.kind) {
		d.err = fmt.Errorf("%w: op kind %d", errCorrupt, o.kind)
	}
	return o, d.err
}

func validKind(k opKind) bool {
	switch k {
	case opPut, opAppend, opDelete, opGet, opOpenSession, opTick,
		opPut | opChecked, opAppend | opChecked, opDelete | opChecked:
		return true
	}
	return false
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads the encodings above; the first error sticks and later reads
// return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated %s", errCorrupt, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail("string")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
