package persisttest

// A compaction's snapshot stored while Appends go on (persist.BackgroundSnapshots).

import (
	"context"
	"errors"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

// beside returns whether h's store takes snapshots beside its Appends. Every
// built-in store that keeps data does, so the suite requires it of them
// (wantBeside) rather than skip.
func (h *harness) beside() bool {
	b, ok := h.st.(persist.BackgroundSnapshots)
	return ok && b.SnapshotsBesideAppends()
}

// heldWrite calls SaveSnapshot(snap) with during run while the snapshot's
// data is being written (persist.WithSnapshotWriteHook: the write planned,
// the store's lock released) and returns SaveSnapshot's error. during runs
// in its own goroutine and must finish within waitBound: the Appends it
// makes must not wait for the snapshot.
func (h *harness) heldWrite(ctx context.Context, snap persist.Snapshot, during func() error) error {
	h.t.Helper()
	held := false
	hctx := persist.WithSnapshotWriteHook(ctx, func() {
		held = true
		h.runHeld("a snapshot is written", during)
	})
	err := h.st.SaveSnapshot(hctx, snap)
	if !held {
		h.t.Fatal("SaveSnapshot of a compaction did not call the write hook (it did not stage the snapshot)")
	}
	if h.t.Failed() {
		h.t.FailNow()
	}
	return err
}

// checkReopened compares the store with the model (check), and for a
// durable store does so again after a reopen.
func (h *harness) checkReopened() {
	h.t.Helper()
	h.check()
	if h.f.Durable {
		h.reopen()
		h.check()
	}
}

// requireBeside skips a store that keeps nothing and fails one that keeps
// data but does not take snapshots beside its Appends.
func (h *harness) requireBeside() {
	h.t.Helper()
	if !h.f.Keeps {
		h.t.Skip("store kind keeps nothing")
	}
	if !h.beside() {
		h.t.Fatal("store keeps data but does not take a compaction's snapshot beside its Appends (persist.BackgroundSnapshots)")
	}
}

// testAppendsDuringSnapshotWrite: Appends (new entries, entries replaced
// after the snapshot's index, a hard state alone) complete while a
// compaction's snapshot is written; a snapshot read meanwhile returns the
// snapshot stored before; and afterwards, and after a reopen, the store
// holds the new snapshot and every entry appended.
func testAppendsDuringSnapshotWrite(t *testing.T, h *harness) {
	h.requireBeside()
	l := h.loader()
	h.mustAppend(hs(1, 0, 0), Entries(1, 20, 1))
	h.mustSnapshot(snapOf(5))
	ops := func(st persist.Store) error {
		if err := st.Append(ctx, hs(1, 0, 20), Entries(21, 30, 1)); err != nil {
			return err
		}
		if err := st.Append(ctx, hs(2, 1, 20), Entries(25, 27, 2)); err != nil { // replaces 25..30
			return err
		}
		return st.Append(ctx, hs(2, 1, 24), nil)
	}
	err := h.heldWrite(ctx, snapOf(12), func() error {
		if err := ops(h.st); err != nil {
			return err
		}
		got, err := l.LoadSnapshot(ctx)
		if err != nil {
			return err
		}
		if got.Index != 5 {
			return errors.New("a snapshot read during the write did not return the snapshot stored before it")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("SaveSnapshot beside Appends: %v", err)
	}
	if err := ops(h.model); err != nil {
		t.Fatal(err)
	}
	if err := h.model.SaveSnapshot(ctx, snapOf(12)); err != nil {
		t.Fatal(err)
	}
	h.checkReopened()
}

// testLogReplacedDuringSnapshotWrite: an Append that breaks the rule (it
// replaces the entry at the snapshot's index while the snapshot is written)
// makes SaveSnapshot fail with ErrNonContiguous and change nothing, and a
// caller that gives up during the write (its context ends) gets the
// context's error with nothing changed; the store stays usable, what the
// abandoned writes left is never read, and a later snapshot is stored.
func testLogReplacedDuringSnapshotWrite(t *testing.T, h *harness) {
	h.requireBeside()
	h.mustAppend(hs(1, 0, 0), Entries(1, 20, 1))
	err := h.heldWrite(ctx, snapOf(10), func() error {
		return h.st.Append(ctx, hs(2, 1, 0), Entries(8, 12, 2))
	})
	if !errors.Is(err, persist.ErrNonContiguous) {
		t.Fatalf("SaveSnapshot whose entry was replaced during the write: %v, want ErrNonContiguous", err)
	}
	if err := h.model.Append(ctx, hs(2, 1, 0), Entries(8, 12, 2)); err != nil {
		t.Fatal(err)
	}
	h.check()

	cctx, cancel := context.WithCancel(ctx)
	snap := snapOf(11)
	snap.Term = 2
	err = h.heldWrite(cctx, snap, func() error { cancel(); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("SaveSnapshot whose caller gave up during the write: %v, want context.Canceled", err)
	}
	h.checkReopened()
	snap = snapOf(9)
	snap.Term = 2
	h.mustSnapshot(snap)
	h.mustAppend(hs(2, 1, 9), Entries(13, 14, 2))
	h.checkReopened()
}

// testSnapshotsBesideAppendsRace: compactions stored in one goroutine while
// another appends, many times over, through the store's own API (so a
// plugin's too); the store ends up as the model says, then after a reopen
// too. Run with -race.
func testSnapshotsBesideAppendsRace(t *testing.T, h *harness) {
	h.requireBeside()
	const rounds = 12
	var last uint64
	for r := range rounds {
		next := last + 20
		h.mustAppend(hs(1, 0, last), Entries(last+1, next, 1))
		snap := snapOf(next - 10)
		done := make(chan error, 1)
		go func() { done <- h.st.SaveSnapshot(ctx, snap) }()
		// Appends after the snapshot's index only, as the contract asks.
		for i := next + 1; i <= next+10; i++ {
			if err := h.st.Append(ctx, hs(1, 0, i-1), Entries(i, i, 1)); err != nil {
				t.Fatalf("round %d: Append %d beside SaveSnapshot: %v", r, i, err)
			}
		}
		if err := <-done; err != nil {
			t.Fatalf("round %d: SaveSnapshot beside Appends: %v", r, err)
		}
		if err := h.model.Append(ctx, hs(1, 0, next+9), Entries(next+1, next+10, 1)); err != nil {
			t.Fatal(err)
		}
		if err := h.model.SaveSnapshot(ctx, snap); err != nil {
			t.Fatal(err)
		}
		last = next + 10
	}
	h.checkReopened()
}
