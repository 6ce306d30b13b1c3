package kvraft

import (
	"encoding/binary"
	"fmt"
	"maps"
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
	mu sync.RWMutex // guards data and clients: Apply writes, reads from handler goroutines
	// data holds each key's value as a byte slice so that Append is
	// amortised O(len(value)) instead of copying the whole value; readers
	// copy it out under mu.
	data    map[string][]byte
	clients map[uint64]*clientRecord
}

// clientRecord is one client's entry in the duplicate table.
type clientRecord struct {
	// floor: every sequence number below it is finished for the client.
	floor uint64
	// done maps the sequence numbers at or above floor that were applied to
	// their result (for a Delete, whether the key existed).
	done map[uint64]bool
}

// writeResult is what applying a write returns to the waiting handler.
type writeResult struct {
	existed bool
	// stale is true when the write was below the client's floor and was not
	// applied.
	stale bool
}

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
	if o.id.ClientID == 0 {
		return writeResult{existed: s.applyWriteLocked(o)}
	}
	rec := s.clients[o.id.ClientID]
	if rec == nil {
		rec = &clientRecord{done: make(map[uint64]bool)}
		s.clients[o.id.ClientID] = rec
	}
	var res writeResult
	if o.id.Seq < rec.floor {
		res.stale = true
	} else if existed, ok := rec.done[o.id.Seq]; ok {
		res.existed = existed
	} else {
		res.existed = s.applyWriteLocked(o)
		rec.done[o.id.Seq] = res.existed
	}
	if o.id.Ack > rec.floor {
		rec.floor = o.id.Ack
		for seq := range rec.done {
			if seq < rec.floor {
				delete(rec.done, seq)
			}
		}
	}
	return res
}

// applyWriteLocked applies a Put, Append or Delete and reports whether the
// key existed before.
func (s *state) applyWriteLocked(o op) bool {
	old, existed := s.data[o.key]
	switch o.kind {
	case opPut:
		s.data[o.key] = []byte(o.value)
	case opAppend:
		s.data[o.key] = append(old, o.value...)
	case opDelete:
		delete(s.data, o.key)
	}
	return existed
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
		return writeResult{stale: true}, true
	}
	existed, ok := rec.done[id.Seq]
	return writeResult{existed: existed}, ok
}

// snapshotVersion is the first byte of a snapshot.
const snapshotVersion = 1

// Snapshot implements rsm.StateMachine. Layout: version byte; uvarint count
// of keys, then (key, value) strings; uvarint count of clients, then per
// client uvarint id, floor, count of results, and per result uvarint seq and
// one byte existed. Keys, client ids and sequence numbers are in increasing
// order, so equal states encode to equal bytes on every replica (a follower
// receiving a snapshot from a new leader gets the same bytes as from the old
// one).
func (s *state) Snapshot() []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	size := 1 + 10
	for k, v := range s.data {
		size += len(k) + len(v) + 4
	}
	b := make([]byte, 0, size+len(s.clients)*24)
	b = append(b, snapshotVersion)
	b = binary.AppendUvarint(b, uint64(len(s.data)))
	for _, k := range slices.Sorted(maps.Keys(s.data)) {
		v := s.data[k]
		b = appendString(b, k)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	b = binary.AppendUvarint(b, uint64(len(s.clients)))
	for _, id := range slices.Sorted(maps.Keys(s.clients)) {
		rec := s.clients[id]
		b = binary.AppendUvarint(b, id)
		b = binary.AppendUvarint(b, rec.floor)
		b = binary.AppendUvarint(b, uint64(len(rec.done)))
		for _, seq := range slices.Sorted(maps.Keys(rec.done)) {
			existed := rec.done[seq]
			b = binary.AppendUvarint(b, seq)
			if existed {
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
	data, clients, err := decodeSnapshot(b)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data, s.clients = data, clients
	return nil
}

// ValidateSnapshot implements rsm.SnapshotValidator: it decodes b as
// Restore would, and keeps nothing.
func (s *state) ValidateSnapshot(b []byte) error {
	_, _, err := decodeSnapshot(b)
	return err
}

// decodeSnapshot decodes what Snapshot encodes; an empty snapshot is the
// initial state.
func decodeSnapshot(b []byte) (map[string][]byte, map[uint64]*clientRecord, error) {
	data := make(map[string][]byte)
	clients := make(map[uint64]*clientRecord)
	if len(b) > 0 {
		d := decoder{b: b}
		if v := d.byte(); d.err == nil && v != snapshotVersion {
			return nil, nil, fmt.Errorf("%w: snapshot version %d", errCorrupt, v)
		}
		for n := d.uvarint(); n > 0 && d.err == nil; n-- {
			k := d.string()
			data[k] = []byte(d.string())
		}
		for n := d.uvarint(); n > 0 && d.err == nil; n-- {
			id := d.uvarint()
			rec := &clientRecord{floor: d.uvarint(), done: make(map[uint64]bool)}
			for m := d.uvarint(); m > 0 && d.err == nil; m-- {
				seq := d.uvarint()
				rec.done[seq] = d.byte() != 0
			}
			clients[id] = rec
		}
		if d.err == nil && len(d.b) != 0 {
			d.err = fmt.Errorf("%w: %d trailing snapshot bytes", errCorrupt, len(d.b))
		}
		if d.err != nil {
			return nil, nil, d.err
		}
	}
	return data, clients, nil
}
