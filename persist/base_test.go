package persist_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

// scripted is a Backend whose writes fail on demand and that counts calls.
type scripted struct {
	failWrites error
	reloads    int
	releases   int
	appends    int
}

func (b *scripted) Reload(context.Context) (persist.State, error) {
	b.reloads++
	return persist.State{HardState: persist.EmptyHardState}, nil
}

func (b *scripted) WriteAppend(*persist.Tracker, persist.HardState, []persist.Entry) error {
	b.appends++
	return b.failWrites
}

func (b *scripted) WriteSnapshot(*persist.Tracker, persist.Snapshot) error { return b.failWrites }
func (b *scripted) Release() error                                         { b.releases++; return nil }

func entries(first, last, term uint64) []persist.Entry {
	var es []persist.Entry
	for i := first; i <= last; i++ {
		es = append(es, persist.Entry{Index: i, Term: term, Type: persist.EntryCommand, Data: make([]byte, 10)})
	}
	return es
}

// TestBaseRecoveredThenReload checks that the first Load returns the
// recovered state without asking the Backend and later ones reload, and that
// a write in between drops the recovered copy.
func TestBaseRecoveredThenReload(t *testing.T) {
	ctx := context.Background()
	b := &scripted{}
	rec := persist.State{HardState: persist.HardState{Term: 3, VotedFor: 1}, Entries: entries(1, 2, 3)}
	s := persist.NewBase(b, &rec)
	if got := s.Size(); got != persist.LogSize(rec.Entries) {
		t.Fatalf("Size after Recovered = %d, want %d", got, persist.LogSize(rec.Entries))
	}
	st, err := s.Load(ctx)
	if err != nil || st.HardState.Term != 3 || len(st.Entries) != 2 || b.reloads != 0 {
		t.Fatalf("first Load = %+v, %v after %d reloads; want the recovered state, no reload", st, err, b.reloads)
	}
	if _, err := s.Load(ctx); err != nil || b.reloads != 1 {
		t.Fatalf("second Load: %v, %d reloads; want 1", err, b.reloads)
	}
	s = persist.NewBase(b, &rec)
	if err := s.Append(ctx, persist.HardState{Term: 4, VotedFor: persist.NoVote}, entries(2, 4, 4)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx); err != nil || b.reloads != 2 {
		t.Fatalf("Load after Append: %v, %d reloads; want a reload (the recovered state is stale)", err, b.reloads)
	}
	if got, want := s.Size(), persist.LogSize(append(entries(1, 1, 3), entries(2, 4, 4)...)); got != want {
		t.Fatalf("Size after replacing the tail = %d, want %d", got, want)
	}
}

// TestBaseRefusesWithoutWriting checks the contract's refusals: they change
// nothing, do not reach the Backend, and leave the store usable.
func TestBaseRefusesWithoutWriting(t *testing.T) {
	ctx := context.Background()
	b := &scripted{}
	s := persist.NewBase(b, nil)
	if err := s.Append(ctx, persist.EmptyHardState, entries(2, 3, 1)); !errors.Is(err, persist.ErrNonContiguous) {
		t.Fatalf("Append leaving a gap = %v, want ErrNonContiguous", err)
	}
	if err := s.Append(ctx, persist.EmptyHardState, entries(1, 5, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSnapshot(ctx, persist.Snapshot{Index: 3, Term: 1}); err != nil {
		t.Fatal(err)
	}
	if got, want := s.Size(), persist.LogSize(entries(4, 5, 1)); got != want {
		t.Fatalf("Size after a snapshot keeping 4..5 = %d, want %d", got, want)
	}
	if err := s.SaveSnapshot(ctx, persist.Snapshot{Index: 3, Term: 1}); !errors.Is(err, persist.ErrStaleSnapshot) {
		t.Fatalf("SaveSnapshot at the stored index = %v, want ErrStaleSnapshot", err)
	}
	if err := s.Append(ctx, persist.EmptyHardState, entries(3, 3, 1)); !errors.Is(err, persist.ErrNonContiguous) {
		t.Fatalf("Append at the snapshot index = %v, want ErrNonContiguous", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Append(cancelled, persist.EmptyHardState, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled context = %v, want context.Canceled", err)
	}
	// The in-memory stores finish every call at once and ignore the context.
	if err := persist.NewMemory().Append(cancelled, persist.EmptyHardState, entries(1, 1, 1)); err != nil {
		t.Fatalf("Memory.Append with a cancelled context = %v, want nil", err)
	}
	if err := persist.NewNoop().Append(cancelled, persist.EmptyHardState, entries(1, 1, 1)); err != nil {
		t.Fatalf("Noop.Append with a cancelled context = %v, want nil", err)
	}
	if b.appends != 1 {
		t.Fatalf("the Backend saw %d Appends, want 1 (refusals must not reach it)", b.appends)
	}
	// A snapshot whose term does not match the entry at its index drops the log.
	if err := s.SaveSnapshot(ctx, persist.Snapshot{Index: 4, Term: 9}); err != nil {
		t.Fatal(err)
	}
	if got := s.Size(); got != persist.HardStateBytes {
		t.Fatalf("Size after a snapshot that drops the log = %d, want %d", got, persist.HardStateBytes)
	}
}

// TestBaseFailsAfterWriteError checks that a failed write fails the store:
// every later call returns ErrFailed wrapping the cause, and Close still
// releases the Backend, once.
func TestBaseFailsAfterWriteError(t *testing.T) {
	ctx := context.Background()
	cause := errors.New("disk on fire")
	b := &scripted{failWrites: cause}
	s := persist.NewBase(b, nil)
	if err := s.Append(ctx, persist.EmptyHardState, entries(1, 1, 1)); !errors.Is(err, cause) {
		t.Fatalf("Append = %v, want the Backend's error", err)
	}
	if got := s.Size(); got != persist.HardStateBytes {
		t.Fatalf("Size after a failed Append = %d, want it unchanged (%d)", got, persist.HardStateBytes)
	}
	b.failWrites = nil
	for name, err := range map[string]error{
		"Load":         func() error { _, err := s.Load(ctx); return err }(),
		"Append":       s.Append(ctx, persist.EmptyHardState, nil),
		"SaveSnapshot": s.SaveSnapshot(ctx, persist.Snapshot{Index: 1, Term: 1}),
	} {
		if !errors.Is(err, persist.ErrFailed) || !errors.Is(err, cause) {
			t.Errorf("%s after a failed write = %v, want ErrFailed wrapping the cause", name, err)
		}
	}
	for range 2 {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if b.releases != 1 {
		t.Fatalf("Release called %d times, want once", b.releases)
	}
	if err := s.Append(ctx, persist.EmptyHardState, nil); !errors.Is(err, persist.ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
}
