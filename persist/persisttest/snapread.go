package persisttest

// Reading the snapshot back (persist.SnapshotLoader) while the other methods run.

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
)

// waitBound bounds each wait of these tests for something that must happen
// without the read finishing; generous, since it only ends a test that
// would otherwise hang.
const waitBound = 10 * time.Second

// snapOf is the snapshot at index i that these tests store: data and
// configuration derived from i, of a size that varies with i (up to two
// badger chunks with the default options), so that a mix of two snapshots
// shows.
func snapOf(i uint64) persist.Snapshot {
	data := bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 1+int(i%4)*(48<<10))
	return persist.Snapshot{Index: i, Term: 1, Data: data, Config: []byte{'c', byte(i)}}
}

// sameSnapshot reports how got differs from snapOf(got.Index), or "".
func sameSnapshot(got persist.Snapshot) string {
	if got.Index == 0 {
		if len(got.Data) != 0 || len(got.Config) != 0 {
			return "no snapshot, but data or a configuration"
		}
		return ""
	}
	want := snapOf(got.Index)
	return DiffState(persist.State{Snapshot: got}, persist.State{Snapshot: want})
}

// loader returns h's store as a SnapshotLoader, or skips the test for a
// store that keeps nothing.
func (h *harness) loader() persist.SnapshotLoader {
	h.t.Helper()
	if !h.f.Keeps {
		h.t.Skip("store kind keeps nothing to read back")
	}
	l, ok := h.st.(persist.SnapshotLoader)
	if !ok || !l.CanLoadSnapshot() {
		h.t.Fatal("store keeps data but cannot load its snapshot")
	}
	return l
}

// heldRead calls LoadSnapshot with during run where the read is held in
// progress (persist.WithSnapshotReadHook: the snapshot pinned, the store's
// lock released, the data not read yet), and returns what the read
// returned. during runs in its own goroutine; if it does not finish within
// waitBound (it waits for the read: the store holds its lock across it),
// the test fails and the read goes on.
func (h *harness) heldRead(l persist.SnapshotLoader, during func() error) persist.Snapshot {
	h.t.Helper()
	held := false
	hctx := persist.WithSnapshotReadHook(ctx, func() {
		held = true
		h.runHeld("a snapshot read is in progress", during)
	})
	got, err := l.LoadSnapshot(hctx)
	if !held {
		h.t.Fatal("LoadSnapshot did not call the read hook")
	}
	if err != nil {
		h.t.Fatalf("LoadSnapshot: %v", err)
	}
	if h.t.Failed() {
		h.t.FailNow()
	}
	return got
}

// runHeld runs during in its own goroutine while the store holds a call at
// a hook (what says which), and fails the test if during fails or does not
// finish within waitBound (it waits for the held call: the store holds a
// lock across it); the held call then goes on.
func (h *harness) runHeld(what string, during func() error) {
	done := make(chan error, 1)
	go func() { done <- during() }()
	select {
	case err := <-done:
		if err != nil {
			h.t.Errorf("while %s: %v", what, err)
		}
	case <-time.After(waitBound):
		h.t.Errorf("still waiting after %v for calls made while %s", waitBound, what)
	}
}

// testWritesDuringSnapshotRead: Append and SaveSnapshot (which replaces the
// snapshot being read and compacts the log) complete while a snapshot read
// is in progress, and the read still returns the snapshot stored when it
// began, whole.
func testWritesDuringSnapshotRead(t *testing.T, h *harness) {
	l := h.loader()
	h.mustAppend(hs(1, 0, 0), Entries(1, 10, 1))
	h.mustSnapshot(snapOf(6))
	got := h.heldRead(l, func() error {
		if err := h.st.Append(ctx, hs(1, 0, 10), Entries(11, 14, 1)); err != nil {
			return err
		}
		if err := h.st.SaveSnapshot(ctx, snapOf(12)); err != nil {
			return err
		}
		return h.st.Append(ctx, hs(1, 0, 12), Entries(15, 16, 1))
	})
	if got.Index != 6 {
		t.Fatalf("read snapshot %d, want 6 (stored when the read began)", got.Index)
	}
	if d := sameSnapshot(got); d != "" {
		t.Fatalf("read snapshot 6 differs from what was stored: %s", d)
	}
	// The model learns of the writes now; the store must hold them.
	if err := h.model.Append(ctx, hs(1, 0, 10), Entries(11, 14, 1)); err != nil {
		t.Fatal(err)
	}
	if err := h.model.SaveSnapshot(ctx, snapOf(12)); err != nil {
		t.Fatal(err)
	}
	if err := h.model.Append(ctx, hs(1, 0, 12), Entries(15, 16, 1)); err != nil {
		t.Fatal(err)
	}
	h.check()
}

// testCloseDuringSnapshotRead: a store closed while a snapshot read is in
// progress still completes the read with the snapshot it began with (a
// Close may wait for it), and can be reopened afterwards.
func testCloseDuringSnapshotRead(t *testing.T, h *harness) {
	l := h.loader()
	h.mustAppend(hs(1, 0, 0), Entries(1, 5, 1))
	h.mustSnapshot(snapOf(3))
	closed := make(chan error, 1)
	got := h.heldRead(l, func() error {
		go func() { closed <- h.st.Close() }()
		return nil
	})
	if d := sameSnapshot(got); got.Index != 3 || d != "" {
		t.Fatalf("read snapshot %d across Close, want 3 whole: %s", got.Index, d)
	}
	h.awaitClose(closed, "after the read ended")
	if _, err := l.LoadSnapshot(ctx); !errors.Is(err, persist.ErrClosed) {
		t.Fatalf("LoadSnapshot after Close: %v, want ErrClosed", err)
	}
	h.reopen()
	h.check()
}

// testSnapshotReadRace: reads running concurrently with a stream of
// Appends and SaveSnapshots each return a snapshot that was stored, whole
// (never parts of two), and never an older one than a read before them
// returned or than the last SaveSnapshot that returned before they began.
func testSnapshotReadRace(t *testing.T, h *harness) {
	l := h.loader()
	const n = 12
	h.mustAppend(hs(1, 0, 0), Entries(1, 1, 1))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var saved atomic.Uint64 // the last snapshot a SaveSnapshot stored and returned
	readerDone := make(chan error, 1)
	go func() {
		var last uint64
		for reads := 0; ; reads++ {
			floor := saved.Load()
			got, err := l.LoadSnapshot(ctx)
			switch {
			case ctx.Err() != nil:
				readerDone <- nil
				return
			case err != nil:
				readerDone <- err
				return
			case sameSnapshot(got) != "":
				readerDone <- errors.New("read " + sameSnapshot(got))
				return
			case got.Index < last || got.Index < floor:
				readerDone <- errors.New("a read went back to an older snapshot")
				return
			}
			last = got.Index
		}
	}()
	for i := uint64(2); i <= n; i++ {
		h.mustAppend(hs(1, 0, i-1), Entries(i, i, 1))
		h.mustSnapshot(snapOf(i))
		saved.Store(i)
		select {
		case err := <-readerDone:
			t.Fatalf("after snapshot %d: %v", i, err)
		default:
		}
	}
	cancel()
	select {
	case err := <-readerDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitBound):
		t.Fatalf("the reader still runs %v after the last snapshot", waitBound)
	}
	h.check()
}

// testCanceledSnapshotRead: a read whose context ends while it is in
// progress (the snapshot pinned, nothing read yet) stops with the
// context's error, frees what it pinned (Close does not wait for it), and
// leaves the store usable: writes go on and the next read returns the
// snapshot stored since, whole.
func testCanceledSnapshotRead(t *testing.T, h *harness) {
	l := h.loader()
	h.mustAppend(hs(1, 0, 0), Entries(1, 8, 1))
	h.mustSnapshot(snapOf(5))
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	held := false
	got, err := l.LoadSnapshot(persist.WithSnapshotReadHook(rctx, func() {
		held = true
		cancel()
	}))
	if !held {
		t.Fatal("LoadSnapshot did not call the read hook")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("LoadSnapshot canceled during the read: %v (snapshot %d), want context.Canceled", err, got.Index)
	}
	h.mustAppend(hs(1, 0, 8), Entries(9, 10, 1))
	h.mustSnapshot(snapOf(9))
	got, err = l.LoadSnapshot(ctx)
	if err != nil {
		t.Fatalf("LoadSnapshot after a canceled read: %v", err)
	}
	if d := sameSnapshot(got); got.Index != 9 || d != "" {
		t.Fatalf("read snapshot %d after a canceled read, want 9 whole: %s", got.Index, d)
	}
	closed := make(chan error, 1)
	go func() { closed <- h.st.Close() }()
	h.awaitClose(closed, "after a canceled read: the read kept its pin")
	h.reopen()
	h.check()
}

// testSnapshotReadContextEnded: a read asked with a context that has
// already ended returns an error and no snapshot, in this process or
// through a plugin, and the store goes on serving reads and writes.
func testSnapshotReadContextEnded(t *testing.T, h *harness) {
	l := h.loader()
	h.mustAppend(hs(1, 0, 0), Entries(1, 4, 1))
	h.mustSnapshot(snapOf(3))
	dead, cancel := context.WithCancel(ctx)
	cancel()
	if got, err := l.LoadSnapshot(dead); err == nil {
		t.Fatalf("LoadSnapshot with an ended context returned snapshot %d and no error", got.Index)
	}
	h.mustAppend(hs(1, 0, 4), Entries(5, 6, 1))
	got, err := l.LoadSnapshot(ctx)
	if err != nil {
		t.Fatalf("LoadSnapshot after one with an ended context: %v", err)
	}
	if d := sameSnapshot(got); got.Index != 3 || d != "" {
		t.Fatalf("read snapshot %d, want 3 whole: %s", got.Index, d)
	}
	h.check()
}

// awaitClose waits for the result of a Close running in another goroutine
// (closed), failing the test if it fails or is still waiting after
// waitBound; when says what it should not have waited for.
func (h *harness) awaitClose(closed <-chan error, when string) {
	h.t.Helper()
	select {
	case err := <-closed:
		if err != nil {
			h.t.Fatalf("Close: %v", err)
		}
	case <-time.After(waitBound):
		h.t.Fatalf("Close still waiting %v %s", waitBound, when)
	}
}
