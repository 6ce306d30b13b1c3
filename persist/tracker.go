package persist

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/ruaft/ruaft/internal/chunked"
)

// Tracker is the bookkeeping every built-in store keeps beside its data, so
// that the stores agree on the Store contract by sharing one implementation
// of it: whether the store is closed or failed, the last hard state written,
// the snapshot's index, the term and size of each entry after it, the Size
// figure, and the state recovered at open that the first Load returns.
//
// From that it answers the questions every method asks before it touches
// the disk (Begin, CheckAppend, CheckSnapshot, SnapshotKeeps) and records
// what a successful write changed (Appended, Snapshotted). A store writes
// its own data; it calls Fail when a write or sync fails, after which every
// method refuses with ErrFailed.
//
// Base keeps one for every built-in store; a Backend reads it (never
// changes it) to plan a write. A Tracker costs 16 bytes an entry after the
// snapshot and never holds entry data. It has no lock of its own: its owner
// calls its methods under its own mutex (the Store contract has no
// concurrent calls), except Size, which reads an atomic and may be called at
// any time. The zero Tracker is an open, empty store.
type Tracker struct {
	closed    bool
	failed    error // the write or sync error that failed the store, or nil
	hs        HardState
	snapIndex uint64
	snapTerm  uint64
	// entries is the log after snapIndex, from snapIndex+1; in chunks, so
	// that a long log grows without being copied (on the replica's
	// replication loop, which every commit waits for).
	entries  chunked.Seq[trackedEntry]
	logBytes int64        // sum of entries' sizes
	loaded   *State       // what Recovered was given, for the first Load; nil after it or any write
	size     atomic.Int64 // logBytes, published for Size
}

type trackedEntry struct {
	term uint64
	size int64 // Entry.Size
}

// Recovered resets the bookkeeping to st, the state a store found when it
// opened, and keeps st for the first Load (see Loaded) so that a replica's
// startup does not read everything twice.
func (t *Tracker) Recovered(st State) {
	t.Reset(st)
	t.loaded = &st
}

// Reset sets the bookkeeping to describe st, without keeping st itself.
func (t *Tracker) Reset(st State) {
	t.hs = st.HardState
	t.snapIndex, t.snapTerm = st.Snapshot.Index, st.Snapshot.Term
	t.entries = chunked.Seq[trackedEntry]{}
	t.logBytes = 0
	for _, e := range st.Entries {
		t.entries.Append(trackedEntry{term: e.Term, size: e.Size()})
		t.logBytes += e.Size()
	}
	t.loaded = nil
	t.size.Store(t.logBytes)
}

// Usable returns ErrClosed after Close, an error matching ErrFailed after
// Fail, and nil otherwise.
func (t *Tracker) Usable() error {
	if t.closed {
		return ErrClosed
	}
	if t.failed != nil {
		return fmt.Errorf("%w: %w", ErrFailed, t.failed)
	}
	return nil
}

// Begin is what a durable store's method checks first: Usable, then whether
// ctx is already done (a store does not start a write for a caller that has
// given up).
func (t *Tracker) Begin(ctx context.Context) error {
	if err := t.Usable(); err != nil {
		return err
	}
	return ctx.Err()
}

// Loaded returns the state given to Recovered if nothing was written since,
// once; later calls report false and the store reads its data again.
func (t *Tracker) Loaded() (State, bool) {
	if t.loaded == nil {
		return State{}, false
	}
	st := *t.loaded
	t.loaded = nil
	return st, true
}

// HardState is the hard state of the last successful Append (or the
// recovered one).
func (t *Tracker) HardState() HardState { return t.hs }

// SnapshotIndex is the index of the stored snapshot, 0 if there is none.
func (t *Tracker) SnapshotIndex() uint64 { return t.snapIndex }

// LastIndex is the index of the last stored entry, or the snapshot index if
// the log is empty.
func (t *Tracker) LastIndex() uint64 { return t.snapIndex + uint64(t.entries.Len()) }

// CheckAppend reports whether entries may be appended under the Store.Append
// contract (ErrNonContiguous if not).
func (t *Tracker) CheckAppend(entries []Entry) error {
	return CheckAppendRange(t.snapIndex, t.LastIndex(), entries)
}

// Appended records a successful Append of hs and entries (which passed
// CheckAppend): the entries from entries[0].Index on are replaced.
func (t *Tracker) Appended(hs HardState, entries []Entry) {
	t.loaded = nil
	t.hs = hs
	if len(entries) > 0 {
		keep := int(entries[0].Index - t.snapIndex - 1)
		for i := keep; i < t.entries.Len(); i++ {
			t.logBytes -= t.entries.At(i).size
		}
		t.entries.Truncate(keep)
		for _, e := range entries {
			t.entries.Append(trackedEntry{term: e.Term, size: e.Size()})
			t.logBytes += e.Size()
		}
	}
	t.size.Store(t.logBytes)
}

// CheckSnapshot returns ErrStaleSnapshot for a snapshot that does not cover
// more than the stored one.
func (t *Tracker) CheckSnapshot(snap Snapshot) error {
	if snap.Index <= t.snapIndex {
		return fmt.Errorf("%w: stored %d, new %d", ErrStaleSnapshot, t.snapIndex, snap.Index)
	}
	return nil
}

// SnapshotKeeps reports whether saving snap keeps the entries after
// snap.Index: the store holds an entry at snap.Index with snap.Term. If not,
// SaveSnapshot drops the whole log.
func (t *Tracker) SnapshotKeeps(snap Snapshot) bool {
	i := snap.Index - t.snapIndex - 1
	return snap.Index > t.snapIndex && i < uint64(t.entries.Len()) && t.entries.At(int(i)).term == snap.Term
}

// Snapshotted records a successful SaveSnapshot of snap (which passed
// CheckSnapshot): the entries it covers are gone, and so is the rest of the
// log unless SnapshotKeeps(snap).
func (t *Tracker) Snapshotted(snap Snapshot) {
	if t.SnapshotKeeps(snap) {
		drop := int(snap.Index - t.snapIndex)
		for i := range drop {
			t.logBytes -= t.entries.At(i).size
		}
		t.entries.DropFront(drop)
	} else {
		t.entries = chunked.Seq[trackedEntry]{}
		t.logBytes = 0
	}
	t.loaded = nil
	t.snapIndex, t.snapTerm = snap.Index, snap.Term
	t.size.Store(t.logBytes)
}

// Fail records that a write or sync failed with err: from now on Usable
// (and Begin) return an error matching ErrFailed that wraps err. It returns
// err.
func (t *Tracker) Fail(err error) error {
	t.loaded = nil
	t.failed = err
	return err
}

// Close marks the store closed and reports whether it was open, so that a
// store releases its resources once.
func (t *Tracker) Close() bool {
	was := !t.closed
	t.closed = true
	t.loaded = nil
	return was
}

// Size is the Store.Size figure: LogSize of the entries after the snapshot.
// It may be called at any time from any goroutine.
func (t *Tracker) Size() int64 { return HardStateBytes + t.size.Load() }
