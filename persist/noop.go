package persist

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// Noop is a Store that keeps nothing: Load always returns an empty state, so a
// restarted replica starts fresh (the original durio's behaviour). A cluster
// on Noop stores loses its data when a majority restarts, and a restarted
// replica may vote twice in one term; use it only where that is acceptable.
//
// Noop still checks its arguments like every store (ErrNonContiguous,
// ErrStaleSnapshot) and keeps the size figure a real store would have, so a
// replica that snapshots when Size passes a threshold still compacts its
// in-memory log: it remembers the term and size of each entry after the last
// snapshot (16 bytes an entry), never the data.
type Noop struct {
	mu       sync.Mutex // guards the fields below
	closed   bool
	snapshot uint64      // index of the last snapshot
	terms    []noopEntry // entries after snapshot, from index snapshot+1
	size     atomic.Int64
}

type noopEntry struct {
	term uint64
	size int64
}

var _ Store = (*Noop)(nil)

// NewNoop returns a Noop store. The zero Noop is ready to use too.
func NewNoop() *Noop { return &Noop{} }

// Load implements Store.
func (n *Noop) Load(context.Context) (State, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return State{}, ErrClosed
	}
	return State{HardState: EmptyHardState}, nil
}

// Append implements Store.
func (n *Noop) Append(_ context.Context, _ HardState, entries []Entry) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	if err := CheckAppendRange(n.snapshot, n.snapshot+uint64(len(n.terms)), entries); err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	keep := int(entries[0].Index - n.snapshot - 1)
	delta := int64(0)
	for _, e := range n.terms[keep:] {
		delta -= e.size
	}
	n.terms = n.terms[:keep]
	for _, e := range entries {
		n.terms = append(n.terms, noopEntry{term: e.Term, size: e.Size()})
		delta += e.Size()
	}
	n.size.Add(delta)
	return nil
}

// SaveSnapshot implements Store.
func (n *Noop) SaveSnapshot(_ context.Context, snap Snapshot) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	if snap.Index <= n.snapshot {
		return fmt.Errorf("%w: stored %d, new %d", ErrStaleSnapshot, n.snapshot, snap.Index)
	}
	var kept []noopEntry
	if i := snap.Index - n.snapshot - 1; i < uint64(len(n.terms)) && n.terms[i].term == snap.Term {
		kept = n.terms[i+1:]
	}
	// Copy so the dropped prefix's backing array can be freed.
	n.terms = append([]noopEntry(nil), kept...)
	size := int64(0)
	for _, e := range n.terms {
		size += e.size
	}
	n.size.Store(size)
	n.snapshot = snap.Index
	return nil
}

// Size implements Store: the size a store that kept the entries would report
// (LogSize of the entries after the last snapshot), although nothing is kept.
func (n *Noop) Size() int64 { return HardStateBytes + n.size.Load() }

// Close implements Store.
func (n *Noop) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	return nil
}
