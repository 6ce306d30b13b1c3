package persist

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Backend is the part of a store that reads and writes its data. Base calls
// it, one call at a time, after checking the arguments against the Store
// contract; t describes what the store holds before the call and must not
// be changed by the Backend (Base records the call's effect once it
// succeeds).
//
// A Backend returns its errors wrapped with its own context; an error from
// WriteAppend or WriteSnapshot fails the store (ErrFailed) until it is
// reopened.
type Backend interface {
	// Reload reads what is stored, for every Load but the first after
	// Base.Recovered.
	Reload(ctx context.Context) (State, error)
	// WriteAppend durably stores hs and entries; entries passed
	// Tracker.CheckAppend.
	WriteAppend(t *Tracker, hs HardState, entries []Entry) error
	// WriteSnapshot durably stores snap, dropping the entries it covers and,
	// unless t.SnapshotKeeps(snap), the rest of the log; snap passed
	// Tracker.CheckSnapshot.
	WriteSnapshot(t *Tracker, snap Snapshot) error
	// Release frees the Backend's files; Base calls it once, on the first
	// Close.
	Release() error
}

// SnapshotReader is a Backend that can read back its stored snapshot: Base
// then implements SnapshotLoader, reading the snapshot without holding the
// mutex its other methods wait for (a leader's log appends must not wait
// behind a large snapshot's read).
type SnapshotReader interface {
	// OpenSnapshot pins the stored snapshot. Base calls it under its mutex,
	// like the other methods, then releases the mutex and calls read once.
	// read returns the pinned snapshot, which the caller owns, and frees
	// what OpenSnapshot pinned. WriteAppend, WriteSnapshot and Release may
	// run before or during read: it must still return the pinned snapshot
	// whole, never a later one or a mix of two. read stops early with ctx's
	// error once ctx ends (checked before each piece it reads, the first
	// included), and frees the pin all the same. A failed OpenSnapshot pins
	// nothing.
	OpenSnapshot() (read func(ctx context.Context) (Snapshot, error), err error)
}

// SnapshotStager is a Backend that writes a compaction's snapshot data
// without holding Base's mutex, so that WriteAppend goes on meanwhile: Base
// then implements BackgroundSnapshots.
type SnapshotStager interface {
	// StageSnapshot plans the storing of snap, which passed
	// Tracker.CheckSnapshot and which t.SnapshotKeeps. Base calls it under
	// its mutex; then write without the mutex, while WriteAppend and
	// OpenSnapshot's reads may run (write must leave what they use alone,
	// and nothing it writes may count before commit, even after a crash);
	// then, if write succeeded, commit under the mutex. commit switches to
	// the written snapshot and drops the entries it covers, as WriteSnapshot
	// does for a snapshot that keeps the log; its t is what the store holds
	// then (it still SnapshotKeeps(snap); entries after snap.Index may have
	// been written meanwhile). If write or commit fails the store fails, as
	// after a failed WriteSnapshot; if Base does not call commit (the log
	// was replaced below snap.Index meanwhile, or the caller gave up),
	// what write wrote must stay ignored, and a later StageSnapshot or
	// WriteSnapshot may write over it.
	StageSnapshot(t *Tracker, snap Snapshot) (write func() error, commit func(t *Tracker) error, err error)
}

// Base implements the Store methods over a Backend, with the bookkeeping
// every built-in store shares (a Tracker): it serializes the methods,
// refuses them after Close or a failed write, checks Append's entries and
// SaveSnapshot's index against the contract, hands the first Load the state
// the store recovered at open, and keeps the Size figure. A store embeds
// the *Base that NewBase returns for its Backend, and so gets the same
// answer as every other store to every question the contract settles; only
// the writing differs. The zero Base has no Backend and keeps nothing: that
// is Noop.
type Base struct {
	// snapMu serializes SaveSnapshot and Close: a staged snapshot's write
	// runs without mu (SnapshotStager), and nothing may replace or release
	// what it writes beside meanwhile.
	snapMu sync.Mutex
	// mu serializes the methods and guards t and b's state. It is held
	// across the Backend's writes and fsyncs: the Store contract has no
	// concurrent calls except Size, which reads an atomic without it,
	// LoadSnapshot, which holds it only to pin the snapshot it then reads,
	// and a staged SaveSnapshot, which holds it only to plan and commit.
	mu sync.Mutex
	t  Tracker
	b  Backend
}

// NewBase returns the Store methods over b. recovered, if not nil, is the
// state the store found when it opened: it sets the bookkeeping, and the
// first Load returns it without asking b.
func NewBase(b Backend, recovered *State) *Base {
	s := &Base{b: b}
	if recovered != nil {
		s.t.Recovered(*recovered)
	}
	return s
}

func (s *Base) backend() Backend {
	if s.b == nil {
		return discard{}
	}
	return s.b
}

// discard is the Backend of a Base that keeps nothing.
type discard struct{}

// inMemory marks the Backends of this package's in-memory stores (Memory,
// Noop): their calls finish at once, so Base does not refuse them for a
// done context, as it does for a Backend that writes to disk.
type inMemory interface{ inMemory() }

func (discard) inMemory()     {}
func (*memBackend) inMemory() {}

// begin is what every method checks first: Usable, and for a Backend that
// writes to disk, whether ctx is already done (a store does not start a
// write for a caller that has given up).
func (s *Base) begin(ctx context.Context) error {
	if _, ok := s.backend().(inMemory); ok {
		return s.t.Usable()
	}
	return s.t.Begin(ctx)
}

func (discard) Reload(context.Context) (State, error)          { return State{HardState: EmptyHardState}, nil }
func (discard) WriteAppend(*Tracker, HardState, []Entry) error { return nil }
func (discard) WriteSnapshot(*Tracker, Snapshot) error         { return nil }
func (discard) Release() error                                 { return nil }

// Load implements Store.
func (s *Base) Load(ctx context.Context) (State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin(ctx); err != nil {
		return State{}, err
	}
	if st, ok := s.t.Loaded(); ok {
		return st, nil
	}
	return s.backend().Reload(ctx)
}

// Append implements Store.
func (s *Base) Append(ctx context.Context, hs HardState, entries []Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin(ctx); err != nil {
		return err
	}
	if err := s.t.CheckAppend(entries); err != nil {
		return err
	}
	if err := s.backend().WriteAppend(&s.t, hs, entries); err != nil {
		return s.t.Fail(err)
	}
	s.t.Appended(hs, entries)
	return nil
}

// SaveSnapshot implements Store. With a SnapshotStager Backend, a
// compaction's data is written without the mutex the other methods wait
// for (see BackgroundSnapshots).
func (s *Base) SaveSnapshot(ctx context.Context, snap Snapshot) error {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	write, commit, err := s.planSnapshot(ctx, snap)
	if write == nil {
		return err
	}
	if hook, ok := ctx.Value(snapshotWriteHookKey{}).(func()); ok {
		hook()
	}
	werr := write()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.t.Usable(); err != nil {
		return err // an Append failed the store meanwhile
	}
	if werr != nil {
		return s.t.Fail(werr)
	}
	if err := ctx.Err(); err != nil {
		return err // nothing written counts yet
	}
	if !s.t.SnapshotKeeps(snap) {
		return fmt.Errorf("%w: the log at the snapshot's index %d was replaced while the snapshot was written",
			ErrNonContiguous, snap.Index)
	}
	if err := commit(&s.t); err != nil {
		return s.t.Fail(err)
	}
	s.t.Snapshotted(snap)
	return nil
}

// planSnapshot checks snap under the mutex and stores it there, unless the
// Backend stages it: then it returns the write to run without the mutex and
// the commit to run under it afterwards.
func (s *Base) planSnapshot(ctx context.Context, snap Snapshot) (write func() error, commit func(*Tracker) error, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin(ctx); err != nil {
		return nil, nil, err
	}
	if err := s.t.CheckSnapshot(snap); err != nil {
		return nil, nil, err
	}
	if st, ok := s.backend().(SnapshotStager); ok && s.t.SnapshotKeeps(snap) {
		write, commit, err := st.StageSnapshot(&s.t, snap)
		if err != nil {
			return nil, nil, s.t.Fail(err)
		}
		return write, commit, nil
	}
	if err := s.backend().WriteSnapshot(&s.t, snap); err != nil {
		return nil, nil, s.t.Fail(err)
	}
	s.t.Snapshotted(snap)
	return nil, nil, nil
}

// SnapshotsBesideAppends implements BackgroundSnapshots: whether the
// Backend is a SnapshotStager.
func (s *Base) SnapshotsBesideAppends() bool {
	_, ok := s.backend().(SnapshotStager)
	return ok
}

// CanLoadSnapshot implements SnapshotLoader: whether the Backend is a
// SnapshotReader (Noop's is not).
func (s *Base) CanLoadSnapshot() bool {
	_, ok := s.backend().(SnapshotReader)
	return ok
}

// LoadSnapshot implements SnapshotLoader. It holds mu only to pin the
// stored snapshot (SnapshotReader.OpenSnapshot), and reads it after
// releasing mu; a failed read does not fail the store (nothing was
// written). A ctx that ends during the read stops it, with ctx's error.
func (s *Base) LoadSnapshot(ctx context.Context) (Snapshot, error) {
	read, err := s.openSnapshot(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	if hook, ok := ctx.Value(snapshotReadHookKey{}).(func()); ok {
		hook()
	}
	return read(ctx)
}

func (s *Base) openSnapshot(ctx context.Context) (func(context.Context) (Snapshot, error), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	r, ok := s.backend().(SnapshotReader)
	if !ok {
		return nil, fmt.Errorf("persist: load snapshot: %w", errors.ErrUnsupported)
	}
	return r.OpenSnapshot()
}

type snapshotReadHookKey struct{}

type snapshotWriteHookKey struct{}

// WithSnapshotWriteHook returns a context that makes a Base's SaveSnapshot
// of a staged snapshot (SnapshotStager) call hook after it planned the write
// and released its mutex, before the data is written: a test appends there
// while the snapshot is under way. Stores in another process (plugins) do
// not see it.
func WithSnapshotWriteHook(ctx context.Context, hook func()) context.Context {
	return context.WithValue(ctx, snapshotWriteHookKey{}, hook)
}

// WithSnapshotReadHook returns a context that makes a Base's LoadSnapshot
// call hook after it has pinned the stored snapshot and released its mutex,
// before it reads the data: a test holds a read in progress there while it
// calls the store's other methods. Stores in another process (plugins) do
// not see it.
func WithSnapshotReadHook(ctx context.Context, hook func()) context.Context {
	return context.WithValue(ctx, snapshotReadHookKey{}, hook)
}

// Size implements Store.
func (s *Base) Size() int64 { return s.t.Size() }

// Close implements Store: the first call releases the Backend, once a
// SaveSnapshot under way has returned.
func (s *Base) Close() error {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.t.Close() {
		return nil
	}
	return s.backend().Release()
}
