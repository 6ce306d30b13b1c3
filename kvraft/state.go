package kvraft

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"

	"github.com/ruaft/ruaft/kvraft/rsm"
)

// state is the replicated key-value state machine: the data and the
// per-client table that makes writes exactly-once.
//
// Duplicate detection with several writes in flight per client: for each
// client the table keeps a floor (every sequence number below it is
// finished, from the client's WriteID.Ack) and the results of the writes at
// or above the floor that have been applied. A write is applied only if its
// sequence number is at or above the floor and not in the table; a retry of
// an applied write gets the remembered result. When a write raises the
// floor, the results below it are dropped. So a client with at most W writes
// in flight costs at most about W remembered results (one for a sequential
// client), the table's size does not depend on how long the client has
// lived, and the whole table travels in snapshots.
type state struct {
	mu sync.RWMutex // guards every field: Apply writes, reads from handler goroutines
	// data holds each key's value as a byte slice so that Append is
	// amortised O(len(value)) instead of copying the whole value; readers
	// copy it out under mu.
	data    map[string][]byte
	clients map[uint64]*clientRecord
	// oldest and newest end the list of clients by last use (the order in
	// which the log touched them, so the same on every replica): eviction
	// takes from the oldest end, expiry walks from it.
	oldest, newest *clientRecord
	// clock is the log's time: the largest leader stamp applied, in Unix
	// milliseconds. Sessions expire by it, never by a replica's own clock.
	clock int64
}

// clientRecord is one client's entry in the duplicate table: a session.
type clientRecord struct {
	id uint64
	// floor: every sequence number below it is finished for the client.
	floor uint64
	// done maps the sequence numbers at or above floor that were applied to
	// their result (for a Delete, whether the key existed).
	done map[uint64]bool
	// lastUsed is the log clock when the session was opened or last wrote.
	lastUsed int64
	// older and newer link the use order (see state.oldest).
	older, newer *clientRecord
}

// maxPendingResults bounds the results one session keeps: the writes of a
// client at or above its ack. A client with more writes in flight gets
// ErrTooManyPending (the Clerk opens another session first).
const maxPendingResults = 256

// writeResult is what applying a write returns to the waiting handler.
type writeResult struct {
	existed bool
	// refused is why the write was not applied, nil if it was: ErrStale (it
	// was below the client's floor), ErrNoSession, ErrTooManyPending or
	// ErrTooLarge.
	refused error
}

// sessionResult is what applying an opOpenSession returns: false if the id
// was taken (the leader picks another).
type sessionResult struct{ opened bool }

// readResult is what applying an opGet returns.
type readResult struct {
	value string
	found bool
}

var (
	_ rsm.StateMachine      = (*state)(nil)
	_ rsm.SnapshotValidator = (*state)(nil)
)

func newState() *state {
	return &state{data: make(map[string][]byte), clients: make(map[uint64]*clientRecord)}
}

// Apply implements rsm.StateMachine.
func (s *state) Apply(_ uint64, cmd []byte) any {
	o, err := decodeOp(cmd)
	if err != nil {
		// Every replica decodes the same bytes the same way, so skipping a
		// bad command keeps them in agreement.
		return err
	}
	if o.kind == opGet {
		s.mu.RLock()
		defer s.mu.RUnlock()
		v, ok := s.data[o.key]
		return readResult{value: string(v), found: ok}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch o.kind {
	case opOpenSession:
		return s.openLocked(o)
	case opTick:
		s.clock = max(s.clock, o.stamp)
		s.expireLocked(int64(min(o.limit, math.MaxInt64/2)))
		return nil
	}
	if o.id.ClientID == 0 {
		return s.applyWriteLocked(o)
	}
	rec := s.clients[o.id.ClientID]
	if rec == nil {
		if o.kind&opChecked != 0 {
			return writeResult{refused: ErrNoSession}
		}
		// A write from a log older than sessions: its client id opened
		// its own record, as it did then.
		rec = s.addLocked(o.id.ClientID)
	}
	s.touchLocked(rec)
	if o.id.Seq < rec.floor {
		return writeResult{refused: ErrStale}
	}
	// Raising the floor first frees the results the client no longer
	// needs before the cap below is checked; it cannot change the answer
	// for this write, as Ack <= Seq.
	if o.id.Ack > rec.floor {
		rec.floor = o.id.Ack
		for seq := range rec.done {
			if seq < rec.floor {
				delete(rec.done, seq)
			}
		}
	}
	if existed, ok := rec.done[o.id.Seq]; ok {
		return writeResult{existed: existed}
	}
	if o.kind&opChecked != 0 && len(rec.done) >= maxPendingResults {
		return writeResult{refused: ErrTooManyPending}
	}
	res := s.applyWriteLocked(o)
	if res.refused == nil {
		rec.done[o.id.Seq] = res.existed
	}
	return res
}

// openLocked applies an opOpenSession: the new session is the most recently
// used, and the least recently used ones go if there are more than
// o.limit.
func (s *state) openLocked(o op) sessionResult {
	s.clock = max(s.clock, o.stamp)
	if _, taken := s.clients[o.id.ClientID]; taken || o.id.ClientID == 0 {
		return sessionResult{}
	}
	limit := max(o.limit, 1)
	for uint64(len(s.clients)) >= limit && s.oldest != nil {
		s.removeLocked(s.oldest)
	}
	s.addLocked(o.id.ClientID)
	return sessionResult{opened: true}
}

// expireLocked drops the sessions idle for more than idle milliseconds of
// log time.
func (s *state) expireLocked(idle int64) {
	for s.oldest != nil && s.clock-s.oldest.lastUsed > idle {
		s.removeLocked(s.oldest)
	}
}

// addLocked creates a record, most recently used.
func (s *state) addLocked(id uint64) *clientRecord {
	rec := &clientRecord{id: id, done: make(map[uint64]bool), lastUsed: s.clock}
	s.clients[id] = rec
	s.linkNewestLocked(rec)
	return rec
}

func (s *state) linkNewestLocked(rec *clientRecord) {
	rec.older, rec.newer = s.newest, nil
	if s.newest != nil {
		s.newest.newer = rec
	} else {
		s.oldest = rec
	}
	s.newest = rec
}

func (s *state) unlinkLocked(rec *clientRecord) {
	if rec.older != nil {
		rec.older.newer = rec.newer
	} else {
		s.oldest = rec.newer
	}
	if rec.newer != nil {
		rec.newer.older = rec.older
	} else {
		s.newest = rec.older
	}
	rec.older, rec.newer = nil, nil
}

// touchLocked marks rec used now.
func (s *state) touchLocked(rec *clientRecord) {
	rec.lastUsed = s.clock
	if s.newest != rec {
		s.unlinkLocked(rec)
		s.linkNewestLocked(rec)
	}
}

func (s *state) removeLocked(rec *clientRecord) {
	s.unlinkLocked(rec)
	delete(s.clients, rec.id)
}

// sessions returns the number of open sessions.
func (s *state) sessions() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.clients)
}

// applyWriteLocked applies a Put, Append or Delete and reports whether the
// key existed before. A checked Append that would leave a value longer than
// its limit is refused with ErrTooLarge.
func (s *state) applyWriteLocked(o op) writeResult {
	old, existed := s.data[o.key]
	switch o.kind.base() {
	case opPut:
		s.data[o.key] = []byte(o.value)
	case opAppend:
		if o.limit > 0 && uint64(len(old))+uint64(len(o.value)) > o.limit {
			return writeResult{existed: existed, refused: ErrTooLarge}
		}
		s.data[o.key] = append(old, o.value...)
	case opDelete:
		delete(s.data, o.key)
	}
	return writeResult{existed: existed}
}

// get reads a key from the local state.
func (s *state) get(key string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.data[key]
	return string(v), ok
}

// lookup returns the remembered outcome of a client's write, if the table
// still knows it: applied (with its result) or below the floor (stale).
func (s *state) lookup(id WriteID) (writeResult, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec := s.clients[id.ClientID]
	if rec == nil {
		return writeResult{}, false
	}
	if id.Seq < rec.floor {
		return writeResult{refused: ErrStale}, true
	}
	existed, ok := rec.done[id.Seq]
	return writeResult{existed: existed}, ok
}

// Snapshot versions (the first byte). Version 1 had no session clock or
// use order; Restore still reads it.
const (
	snapshotVersion1 = 1
	snapshotVersion  = 2
)

// Snapshot implements rsm.StateMachine. Layout: version byte; varint log
// clock; uvarint count of keys, then (key, value) strings in increasing key
// order; uvarint count of clients, then per client, least recently used
// first, uvarint id, floor, varint lastUsed, count of results, and per
// result (in increasing order) uvarint seq and one byte existed. Equal
// states encode to equal bytes on every replica.
func (s *state) Snapshot() []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	size := 1 + 20
	for k, v := range s.data {
		size += len(k) + len(v) + 4
	}
	b := make([]byte, 0, size+len(s.clients)*32)
	b = append(b, snapshotVersion)
	b = binary.AppendVarint(b, s.clock)
	b = binary.AppendUvarint(b, uint64(len(s.data)))
	for _, k := range slices.Sorted(maps.Keys(s.data)) {
		v := s.data[k]
		b = appendString(b, k)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	b = binary.AppendUvarint(b, uint64(len(s.clients)))
	for rec := s.oldest; rec != nil; rec = rec.newer {
		b = binary.AppendUvarint(b, rec.id)
		b = binary.AppendUvarint(b, rec.floor)
		b = binary.AppendVarint(b, rec.lastUsed)
		b = binary.AppendUvarint(b, uint64(len(rec.done)))
		for _, seq := range slices.Sorted(maps.Keys(rec.done)) {
			b = binary.AppendUvarint(b, seq)
			if rec.done[seq] {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		}
	}
	return b
}

// Restore implements rsm.StateMachine.
func (s *state) Restore(b []byte) error {
	restored, err := decodeSnapshot(b)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data, s.clients, s.oldest, s.newest, s.clock = restored.data, restored.clients, restored.oldest, restored.newest, restored.clock
	return nil
}

// ValidateSnapshot implements rsm.SnapshotValidator: it decodes b as
// Restore would, and keeps nothing.
func (s *state) ValidateSnapshot(b []byte) error {
	_, err := decodeSnapshot(b)
	return err
}

// decodeSnapshot decodes what Snapshot encodes (either version) into a new
// state; an empty snapshot is the initial state.
func decodeSnapshot(b []byte) (*state, error) {
	st := newState()
	if len(b) == 0 {
		return st, nil
	}
	d := decoder{b: b}
	version := d.byte()
	if d.err == nil && version != snapshotVersion && version != snapshotVersion1 {
		return nil, fmt.Errorf("%w: snapshot version %d", errCorrupt, version)
	}
	if version == snapshotVersion {
		st.clock = d.varint()
	}
	for n := d.uvarint(); n > 0 && d.err == nil; n-- {
		k := d.string()
		st.data[k] = []byte(d.string())
	}
	var v1 []*clientRecord
	for n := d.uvarint(); n > 0 && d.err == nil; n-- {
		rec := &clientRecord{id: d.uvarint(), floor: d.uvarint(), done: make(map[uint64]bool)}
		if version == snapshotVersion {
			rec.lastUsed = d.varint()
		}
		for m := d.uvarint(); m > 0 && d.err == nil; m-- {
			seq := d.uvarint()
			rec.done[seq] = d.byte() != 0
		}
		if _, dup := st.clients[rec.id]; dup && d.err == nil {
			d.err = fmt.Errorf("%w: client %d twice in the snapshot", errCorrupt, rec.id)
		}
		st.clients[rec.id] = rec
		if version == snapshotVersion {
			st.linkNewestLocked(rec)
		} else {
			v1 = append(v1, rec)
		}
	}
	// Version 1 had no use order: take the ids', the same on every replica.
	slices.SortFunc(v1, func(a, b *clientRecord) int { return cmp.Compare(a.id, b.id) })
	for _, rec := range v1 {
		st.linkNewestLocked(rec)
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing snapshot bytes", errCorrupt, len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return st, nil
}
