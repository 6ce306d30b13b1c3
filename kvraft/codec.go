package kvraft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"github.com/ruaft/ruaft/kvraft/kvclient"
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
	// opLeaseGrant creates lease o.lease with TTL o.ttl milliseconds unless
	// o.limit leases exist; opLeaseRevoke ends lease o.lease and deletes
	// its keys; opLeaseExpire is the same, proposed by a leader whose
	// deadline for the lease passed (without a session).
	opLeaseGrant  opKind = 7
	opLeaseRevoke opKind = 8
	opLeaseExpire opKind = 9
	// opTxn writes several keys if every condition of o.txn holds; it is
	// always opChecked and opRevisioned.
	opTxn opKind = 10
	// opLevel raises the state's apply level to limit (see ApplyLevel); a
	// leader proposes it once every member reports that it supports the
	// level.
	opLevel opKind = 11

	// opRevisioned marks a Put, Append or Delete written by a leader that
	// keeps revisions: it takes a revision and an event, and a Put
	// carries a lease and a condition, a Delete a condition. Writes
	// without it (logs from before revisions) apply as they did, leave the
	// revision alone and give the key create and mod revision 0 and
	// version 1, the same as decoding a version-2 snapshot does, so a
	// replica replaying an old log and one restoring an old snapshot agree.
	opRevisioned opKind = 0x40

	// opChecked marks a Put, Append or Delete written by a leader that
	// enforces sessions and value caps: such a write applies only within an
	// open session, and an Append carries its cap in limit. Writes without
	// it come from logs written before sessions existed and keep their old
	// meaning, so replaying an old log gives the same state as before.
	opChecked opKind = 0x80

	// opQuota marks a revisioned Put or Append, or a Txn, written by a
	// leader at apply level 2 or above with a quota on the state's size:
	// its encoding ends with the quota in bytes (op.quota), and the write
	// is refused with ErrNoSpace if it would grow the state past it.
	opQuota opKind = 0x20
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
	// (opAppend|opChecked; 0 means none), or the most leases
	// (opLeaseGrant).
	limit uint64
	// lease is the lease of a revisioned Put (0: none), or the lease an
	// opLeaseGrant, opLeaseRevoke or opLeaseExpire is about.
	lease uint64
	// ttl is an opLeaseGrant's TTL in milliseconds.
	ttl uint64
	// cond is a revisioned Put's or Delete's condition.
	cond condition
	// txn is an opTxn's conditions and writes.
	txn *txn
	// quota is the proposing leader's quota on the state's size, in bytes,
	// for a write marked opQuota.
	quota uint64
}

// txn is the body of an opTxn.
type txn struct {
	conds  []txnCond
	writes []txnWrite
}

// txnCond is one condition of a txn: cond must hold for key.
type txnCond struct {
	key  string
	cond condition
}

// txnWrite is one write of a txn: a Put of key, or a Delete if del.
type txnWrite struct {
	del   bool
	key   string
	value string
	lease uint64
}

// Write kinds in an encoded txn.
const (
	txnWritePut    = 1
	txnWriteDelete = 2
)

// base is the operation without the opChecked, opRevisioned and opQuota
// flags.
func (k opKind) base() opKind { return k &^ (opChecked | opRevisioned | opQuota) }

// condKind is what a condition compares (the kvclient.ConditionKind
// values, which the log records as a byte).
type condKind byte

const (
	condNone condKind = iota
	condAbsent
	condModRevision
	condVersion
	condValue
	condKinds // the number of kinds
)

// condition is a Put's or Delete's condition, evaluated at apply time.
type condition struct {
	kind    condKind
	modRev  uint64
	version uint64
	value   string
}

// errCorrupt is returned when a command or snapshot does not decode.
var errCorrupt = errors.New("kvraft: corrupt encoding")

// encodeOp encodes o as: kind, uvarint client id, uvarint seq, uvarint ack,
// uvarint key length, key, uvarint value length, value; then, for
// opOpenSession and opTick, varint stamp and uvarint limit, and for a
// checked Append and opLevel, uvarint limit; a revisioned Put adds uvarint lease and
// the condition, a revisioned Delete the condition (kind byte, then for
// mod revision or version a uvarint, for a value a string); a lease op
// adds uvarint lease, and a grant uvarint ttl and limit; a write marked
// opQuota ends with uvarint quota. A Put of a 10-byte key and value by a
// sequential client costs about 26 bytes.
func encodeOp(o op) []byte {
	b := make([]byte, 0, 1+5*binary.MaxVarintLen64+2*binary.MaxVarintLen32+len(o.key)+len(o.value))
	b = append(b, byte(o.kind))
	b = binary.AppendUvarint(b, o.id.ClientID)
	b = binary.AppendUvarint(b, o.id.Seq)
	b = binary.AppendUvarint(b, o.id.Ack)
	b = appendString(b, o.key)
	b = appendString(b, o.value)
	switch o.kind &^ opQuota {
	case opOpenSession, opTick:
		b = binary.AppendVarint(b, o.stamp)
		b = binary.AppendUvarint(b, o.limit)
	case opAppend | opChecked, opAppend | opChecked | opRevisioned, opLevel:
		b = binary.AppendUvarint(b, o.limit)
	case opPut | opChecked | opRevisioned:
		b = binary.AppendUvarint(b, o.lease)
		b = appendCondition(b, o.cond)
	case opDelete | opChecked | opRevisioned:
		b = appendCondition(b, o.cond)
	case opLeaseGrant:
		b = binary.AppendUvarint(b, o.lease)
		b = binary.AppendUvarint(b, o.ttl)
		b = binary.AppendUvarint(b, o.limit)
	case opLeaseRevoke, opLeaseExpire:
		b = binary.AppendUvarint(b, o.lease)
	case opTxn | opChecked | opRevisioned:
		b = appendTxn(b, o.txn)
	}
	if o.kind&opQuota != 0 {
		b = binary.AppendUvarint(b, o.quota)
	}
	return b
}

// appendTxn encodes t as: uvarint count of conditions, each its key and
// condition; uvarint count of writes, each a kind byte and its key, and
// for a put its value and uvarint lease.
func appendTxn(b []byte, t *txn) []byte {
	if t == nil {
		t = &txn{}
	}
	b = binary.AppendUvarint(b, uint64(len(t.conds)))
	for _, c := range t.conds {
		b = appendString(b, c.key)
		b = appendCondition(b, c.cond)
	}
	b = binary.AppendUvarint(b, uint64(len(t.writes)))
	for _, w := range t.writes {
		if w.del {
			b = append(b, txnWriteDelete)
			b = appendString(b, w.key)
			continue
		}
		b = append(b, txnWritePut)
		b = appendString(b, w.key)
		b = appendString(b, w.value)
		b = binary.AppendUvarint(b, w.lease)
	}
	return b
}

// txn decodes appendTxn's encoding. A put's value aliases d's bytes (see
// decodeOp). Counts are checked against the bytes left (every item takes
// at least two), and slots are reserved for at most MaxTxnOps items, so a
// corrupt count cannot make it allocate much.
func (d *decoder) txn() *txn {
	t := &txn{}
	n := d.count()
	// At most MaxTxnOps slots ahead: a slot takes far more memory than the
	// two bytes an item takes at least, and a longer txn (never written by
	// this version) grows as it decodes.
	t.conds = make([]txnCond, 0, min(n, kvclient.MaxTxnOps))
	for range n {
		key := d.string()
		cond := d.condition()
		if d.err != nil {
			return t
		}
		t.conds = append(t.conds, txnCond{key: key, cond: cond})
	}
	n = d.count()
	t.writes = make([]txnWrite, 0, min(n, kvclient.MaxTxnOps))
	for range n {
		if d.err != nil {
			return t
		}
		switch kind := d.byte(); kind {
		case txnWriteDelete:
			t.writes = append(t.writes, txnWrite{del: true, key: d.string()})
		case txnWritePut:
			key := d.string()
			value := d.view()
			t.writes = append(t.writes, txnWrite{key: key, value: value, lease: d.uvarint()})
		default:
			if d.err == nil {
				d.err = fmt.Errorf("%w: txn write kind %d", errCorrupt, kind)
			}
			return t
		}
	}
	return t
}

// count reads a count of items of at least two bytes each.
func (d *decoder) count() int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b))/2 {
		d.err = fmt.Errorf("%w: count %d with %d bytes left", errCorrupt, n, len(d.b))
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}

func appendCondition(b []byte, c condition) []byte {
	b = append(b, byte(c.kind))
	switch c.kind {
	case condModRevision:
		b = binary.AppendUvarint(b, c.modRev)
	case condVersion:
		b = binary.AppendUvarint(b, c.version)
	case condValue:
		b = appendString(b, c.value)
	}
	return b
}

func (d *decoder) condition() condition {
	c := condition{kind: condKind(d.byte())}
	switch c.kind {
	case condModRevision:
		c.modRev = d.uvarint()
	case condVersion:
		c.version = d.uvarint()
	case condValue:
		c.value = d.string()
	}
	if d.err == nil && c.kind >= condKinds {
		d.err = fmt.Errorf("%w: condition kind %d", errCorrupt, c.kind)
	}
	return c
}

// decodeOp decodes an op encoded by encodeOp. o.value aliases b: the
// caller copies what it keeps of it, and leaves b unchanged while it uses
// o (the state copies a value into its record in any case, so a copy here
// would be a second one per write on every replica).
func decodeOp(b []byte) (op, error) {
	d := decoder{b: b}
	var o op
	o.kind = opKind(d.byte())
	o.id.ClientID = d.uvarint()
	o.id.Seq = d.uvarint()
	o.id.Ack = d.uvarint()
	o.key = d.string()
	o.value = d.view()
	switch o.kind &^ opQuota {
	case opOpenSession, opTick:
		o.stamp = d.varint()
		o.limit = d.uvarint()
	case opAppend | opChecked, opAppend | opChecked | opRevisioned, opLevel:
		o.limit = d.uvarint()
	case opPut | opChecked | opRevisioned:
		o.lease = d.uvarint()
		o.cond = d.condition()
	case opDelete | opChecked | opRevisioned:
		o.cond = d.condition()
	case opLeaseGrant:
		o.lease = d.uvarint()
		o.ttl = d.uvarint()
		o.limit = d.uvarint()
	case opLeaseRevoke, opLeaseExpire:
		o.lease = d.uvarint()
	case opTxn | opChecked | opRevisioned:
		o.txn = d.txn()
	}
	if o.kind&opQuota != 0 {
		o.quota = d.uvarint()
	}
	if len(b) > 0 && !validKind(o.kind) {
		return op{}, fmt.Errorf("%w %d", errUnknownKind, o.kind)
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(d.b))
	}
	return o, d.err
}

// errUnknownKind is decodeOp's error for a command whose kind this version
// does not know: one written by a newer version (or damage to the log that
// the store's checksums missed). Unlike a command of a known kind that does
// not decode, which every replica skips alike, such a command may be one
// that newer replicas apply: skipping it here would make this replica's
// state differ from theirs, so the state machine stops instead (see
// state.Apply).
var errUnknownKind = fmt.Errorf("%w: unknown command kind", errCorrupt)

func validKind(k opKind) bool {
	switch k {
	case opPut, opAppend, opDelete, opGet, opOpenSession, opTick,
		opPut | opChecked, opAppend | opChecked, opDelete | opChecked,
		opPut | opChecked | opRevisioned, opAppend | opChecked | opRevisioned, opDelete | opChecked | opRevisioned,
		opLeaseGrant, opLeaseRevoke, opLeaseExpire, opTxn | opChecked | opRevisioned, opLevel,
		opPut | opChecked | opRevisioned | opQuota, opAppend | opChecked | opRevisioned | opQuota,
		opTxn | opChecked | opRevisioned | opQuota:
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

// view is string without the copy: the result aliases d's bytes.
func (d *decoder) view() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail("string")
		return ""
	}
	if n == 0 {
		return ""
	}
	s := unsafe.String(unsafe.SliceData(d.b), n)
	d.b = d.b[n:]
	return s
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
