package persist

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/ruaft/ruaft/internal/chunked"
)

// Memory is a Store that keeps everything in memory. It is meant for tests:
// Clone copies what was stored so a test can "crash" a replica and restart it
// from the copy, as the MIT lab's persister does.
type Memory struct {
	*Base // Load, Append, SaveSnapshot, Size and Close, over mem
	mem   *memBackend
}

var (
	_ Store               = (*Memory)(nil)
	_ SnapshotLoader      = (*Memory)(nil)
	_ BackgroundSnapshots = (*Memory)(nil)
	_ SnapshotStager      = (*memBackend)(nil)
)

// memBackend is Memory's Backend: the stored state itself.
type memBackend struct {
	mu sync.Mutex // guards state and entries: Clone reads them while a replica's calls run
	// state is the stored state but for its entries, which are in entries
	// (in chunks, so that a long log grows without being copied: the
	// replica's loop waits for every Append).
	state   State
	entries chunked.Seq[Entry]
}

// NewMemory returns an empty memory store.
func NewMemory() *Memory { return newMemory(State{HardState: EmptyHardState}, nil) }

// newMemory returns a Memory holding st; recovered is the first Load's
// answer (nil: a copy of st).
func newMemory(st State, recovered *State) *Memory {
	mem := &memBackend{state: st, entries: chunked.From(st.Entries)}
	mem.state.Entries = nil
	return &Memory{Base: NewBase(mem, recovered), mem: mem}
}

// Clone returns an open store holding a deep copy of what m holds, whether m
// is open or closed.
func (m *Memory) Clone() *Memory {
	st := m.mem.copyState()
	first := cloneState(st) // the first Load's copy: the caller owns it
	return newMemory(st, &first)
}

// Reload implements Backend: a copy of the state.
func (b *memBackend) Reload(context.Context) (State, error) {
	return b.copyState(), nil
}

// OpenSnapshot implements SnapshotReader: the stored snapshot's slices,
// copied by read outside the locks (WriteSnapshot stores copies of its own
// and never writes into them).
func (b *memBackend) OpenSnapshot() (func(context.Context) (Snapshot, error), error) {
	b.mu.Lock()
	snap := b.state.Snapshot
	b.mu.Unlock()
	return func(ctx context.Context) (Snapshot, error) {
		if err := ctx.Err(); err != nil {
			return Snapshot{}, err
		}
		snap.Data = slices.Clone(snap.Data)
		snap.Config = slices.Clone(snap.Config)
		return snap, nil
	}, nil
}

// copyState returns a deep copy of the stored state.
func (b *memBackend) copyState() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.state
	st.Entries = b.entries.All() // a copy of the list; cloneState copies the data
	return cloneState(st)
}

// WriteAppend implements Backend.
func (b *memBackend) WriteAppend(_ *Tracker, hs HardState, entries []Entry) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(entries) > 0 {
		b.entries.Truncate(int(entries[0].Index - b.state.Snapshot.Index - 1))
		for _, e := range entries {
			e.Data = slices.Clone(e.Data)
			b.entries.Append(e)
		}
	}
	b.state.HardState = hs
	return nil
}

// WriteSnapshot implements Backend.
func (b *memBackend) WriteSnapshot(_ *Tracker, snap Snapshot) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	// The entries after snap are kept if the log holds snap's own entry
	// (as EntriesAfterSnapshot decides for a State).
	if i := snap.Index - b.state.Snapshot.Index; snap.Index > b.state.Snapshot.Index &&
		i <= uint64(b.entries.Len()) && b.entries.At(int(i-1)).Term == snap.Term {
		b.entries.DropFront(int(i))
	} else {
		b.entries = chunked.Seq[Entry]{}
	}
	snap.Data = slices.Clone(snap.Data)
	snap.Config = slices.Clone(snap.Config)
	b.state.Snapshot = snap
	return nil
}

// StageSnapshot implements SnapshotStager: the data is copied without the
// store's locks, so that a replica's tests compact beside their appends as
// they do on disk; a Clone taken meanwhile (a crash) has the old snapshot
// and the whole log.
func (b *memBackend) StageSnapshot(_ *Tracker, snap Snapshot) (func() error, func(*Tracker) error, error) {
	write := func() error {
		snap.Data = slices.Clone(snap.Data)
		snap.Config = slices.Clone(snap.Config)
		return nil
	}
	commit := func(*Tracker) error {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.entries.DropFront(int(snap.Index - b.state.Snapshot.Index))
		b.state.Snapshot = snap
		return nil
	}
	return write, commit, nil
}

// Release implements Backend: the state stays, for Clone.
func (b *memBackend) Release() error { return nil }

// CheckAppend reports whether entries may be appended to a store holding st,
// under the Store.Append contract. Stores share it so they agree on the rules.
func CheckAppend(st State, entries []Entry) error {
	return CheckAppendRange(st.Snapshot.Index, st.LastIndex(), entries)
}

// CheckAppendRange is CheckAppend for a store whose snapshot index is snap
// and whose last stored index is last, for stores that do not keep a State.
func CheckAppendRange(snap, last uint64, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	first := entries[0].Index
	if first <= snap || first > last+1 {
		return fmt.Errorf("%w: first index %d, snapshot %d, last %d",
			ErrNonContiguous, first, snap, last)
	}
	for i := 1; i < len(entries); i++ {
		if entries[i].Index != entries[i-1].Index+1 {
			return fmt.Errorf("%w: index %d follows %d", ErrNonContiguous, entries[i].Index, entries[i-1].Index)
		}
	}
	return nil
}

// EntriesAfterSnapshot returns the entries of st that a store keeps when it
// saves snap: those after snap.Index if st holds an entry at snap.Index with
// snap.Term, and none otherwise. The result shares st's backing array.
func EntriesAfterSnapshot(st State, snap Snapshot) []Entry {
	for i, e := range st.Entries {
		if e.Index == snap.Index {
			if e.Term == snap.Term {
				return st.Entries[i+1:]
			}
			return nil
		}
	}
	return nil
}

func cloneState(st State) State {
	out := State{HardState: st.HardState, Snapshot: st.Snapshot}
	out.Snapshot.Data = slices.Clone(st.Snapshot.Data)
	out.Snapshot.Config = slices.Clone(st.Snapshot.Config)
	out.Entries = make([]Entry, len(st.Entries))
	for i, e := range st.Entries {
		e.Data = slices.Clone(e.Data)
		out.Entries[i] = e
	}
	return out
}
