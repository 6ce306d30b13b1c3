package persist

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// Memory is a Store that keeps everything in memory. It is meant for tests:
// Clone copies what was stored so a test can "crash" a replica and restart it
// from the copy, as the MIT lab's persister does.
type Memory struct {
	mu     sync.Mutex // guards every field below
	state  State
	size   int64
	closed bool
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty memory store.
func NewMemory() *Memory {
	return &Memory{state: State{HardState: EmptyHardState}, size: HardStateBytes}
}

// Clone returns an open store holding a deep copy of what m holds, whether m
// is open or closed.
func (m *Memory) Clone() *Memory {
	m.mu.Lock()
	defer m.mu.Unlock()
	return &Memory{state: cloneState(m.state), size: m.size}
}

// Load implements Store.
func (m *Memory) Load(context.Context) (State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return State{}, ErrClosed
	}
	return cloneState(m.state), nil
}

// Append implements Store.
func (m *Memory) Append(_ context.Context, hs HardState, entries []Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if err := CheckAppend(m.state, entries); err != nil {
		return err
	}
	if len(entries) > 0 {
		keep := int(entries[0].Index - m.state.Snapshot.Index - 1)
		for _, e := range m.state.Entries[keep:] {
			m.size -= e.Size()
		}
		// Reuse the backing array: nothing else refers to it (Load and Clone
		// copy), and capping it would copy the whole log on every Append.
		clear(m.state.Entries[keep:])
		m.state.Entries = m.state.Entries[:keep]
		for _, e := range entries {
			e.Data = slices.Clone(e.Data)
			m.state.Entries = append(m.state.Entries, e)
			m.size += e.Size()
		}
	}
	m.state.HardState = hs
	return nil
}

// SaveSnapshot implements Store.
func (m *Memory) SaveSnapshot(_ context.Context, snap Snapshot) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if snap.Index <= m.state.Snapshot.Index {
		return fmt.Errorf("%w: stored %d, new %d", ErrStaleSnapshot, m.state.Snapshot.Index, snap.Index)
	}
	m.state.Entries = EntriesAfterSnapshot(m.state, snap)
	m.size = LogSize(m.state.Entries)
	snap.Data = slices.Clone(snap.Data)
	snap.Config = slices.Clone(snap.Config)
	m.state.Snapshot = snap
	return nil
}

// Size implements Store.
func (m *Memory) Size() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.size
}

// Close implements Store.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

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
