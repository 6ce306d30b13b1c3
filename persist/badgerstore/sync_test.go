package badgerstore

import (
	"bytes"
	"context"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

func batch(first uint64, n, size int) []persist.Entry {
	es := make([]persist.Entry, n)
	for i := range es {
		es[i] = persist.Entry{Index: first + uint64(i), Term: 1, Type: persist.EntryCommand, Data: make([]byte, size)}
	}
	return es
}

// TestOneSyncPerAppend checks that an Append of entries below the value
// threshold costs one fsync (of the write-ahead log, none of the value log),
// that the syncer follows badger to new write-ahead logs as memtables fill,
// and that what was written survives a reopen.
func TestOneSyncPerAppend(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	o := DefaultOptions()
	o.MemTableBytes = 1 << 20 // rotate often
	st, b, err := open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	first := b.syncer.fid
	const appends, perAppend = 300, 16
	before := b.syncer.walSyncs
	for i := range appends {
		if err := st.Append(ctx, persist.HardState{Term: 1, VotedFor: 0}, batch(uint64(i*perAppend+1), perAppend, 512)); err != nil {
			t.Fatal(err)
		}
	}
	rotations := b.syncer.fid - first
	if rotations < 2 {
		t.Fatalf("the write-ahead log rotated %d times over %d KiB; the test wants at least 2", rotations, appends*perAppend/2)
	}
	if fids, err := fileNumbers(dir, walExt); err != nil || fids[len(fids)-1] != b.syncer.fid {
		t.Fatalf("syncer follows %05d.mem, newest on disk %v (%v)", b.syncer.fid, fids, err)
	}
	// One sync per Append, plus one of the old file at each rotation.
	if got, want := b.syncer.walSyncs-before, appends+rotations; got != want {
		t.Errorf("%d write-ahead log syncs for %d Appends and %d rotations, want %d", got, appends, rotations, want)
	}
	if b.syncer.vlogSyncs != 0 {
		t.Errorf("%d value-log syncs for entries below the threshold, want 0", b.syncer.vlogSyncs)
	}
	got := closeAndLoad(t, st, dir, o)
	if len(got.Entries) != appends*perAppend {
		t.Fatalf("reopened: %d entries, want %d", len(got.Entries), appends*perAppend)
	}
}

// TestValueLogSynced writes entries above the value threshold: they go to
// badger's value log, which the commit syncs too. Snapshots then cover them
// and the store is reopened (running the value-log GC at Open, whose effect
// depends on badger's compaction statistics, so only logged here): the
// state survives.
func TestValueLogSynced(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	o := DefaultOptions()
	o.ValueLogFileBytes = 1 << 20
	st, b, err := open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	big := int(o.ValueThresholdBytes)
	const n = 40 // 40 × 64 KiB: a few value-log files
	for i := range n {
		if err := st.Append(ctx, persist.HardState{Term: 1, VotedFor: 0}, batch(uint64(i+1), 1, big)); err != nil {
			t.Fatal(err)
		}
	}
	if b.syncer.vlogSyncs == 0 {
		t.Fatal("entries above the value threshold were committed without a value-log sync")
	}
	if err := st.SaveSnapshot(ctx, persist.Snapshot{Index: n, Term: 1, Data: make([]byte, 3<<20)}); err != nil {
		t.Fatal(err)
	}
	// Fill more files so that the ones holding dead values are not the one
	// badger writes to, then reopen (which collects).
	for i := range n {
		if err := st.Append(ctx, persist.HardState{Term: 1, VotedFor: 0}, batch(uint64(n+i+1), 1, big)); err != nil {
			t.Fatal(err)
		}
	}
	// A snapshot large enough to pass the collection mark: the store
	// closes badger, collects in a synchronous handle, reopens, and goes on.
	big3 := make([]byte, (gcReopenFiles+1)*o.ValueLogFileBytes)
	if err := st.SaveSnapshot(ctx, persist.Snapshot{Index: 2*n - 1, Term: 1, Data: big3}); err != nil {
		t.Fatal(err)
	}
	if b.gcReopens == 0 {
		t.Fatalf("no reopen for value-log GC with %d MiB in the value log", valueLogBytes(dir)>>20)
	}
	if err := st.Append(ctx, persist.HardState{Term: 1, VotedFor: 0}, batch(2*n, 1, 10)); err != nil {
		t.Fatalf("Append after the reopen: %v", err)
	}
	if st, err := st.Load(ctx); err != nil || st.Snapshot.Index != 2*n-1 || len(st.Snapshot.Data) != len(big3) || len(st.Entries) != 1 {
		t.Fatalf("Load after the reopen: snapshot %d (%d bytes), %d entries, %v", st.Snapshot.Index, len(st.Snapshot.Data), len(st.Entries), err)
	}
	if err := st.SaveSnapshot(ctx, persist.Snapshot{Index: 2 * n, Term: 1, Data: []byte("s")}); err != nil {
		t.Fatal(err)
	}
	before, err := fileNumbers(dir, vlogExt)
	if err != nil {
		t.Fatal(err)
	}
	got := closeAndLoad(t, st, dir, o)
	after, err := fileNumbers(dir, vlogExt)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("value-log files before reopen %v, after %v", before, after)
	if got.Snapshot.Index != 2*n || string(got.Snapshot.Data) != "s" || len(got.Entries) != 0 {
		t.Fatalf("reopened: snapshot %d %q, %d entries", got.Snapshot.Index, got.Snapshot.Data, len(got.Entries))
	}
}

// closeAndLoad closes st, reopens the store in dir and returns what it loads.
func closeAndLoad(t *testing.T, st *Store, dir string, o Options) persist.State {
	t.Helper()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st2, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st2.Close() })
	got, err := st2.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestGCWaitsForSnapshotRead: a SaveSnapshot that passes the value-log
// collection mark while a snapshot read is in progress does not close the
// database under the read (nor wait for it): the collection is left to the
// next SaveSnapshot, and the read returns the snapshot it began with.
func TestGCWaitsForSnapshotRead(t *testing.T) {
	ctx := context.Background()
	o := DefaultOptions()
	o.ValueLogFileBytes = 1 << 20
	st, b, err := open(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Append(ctx, persist.HardState{Term: 1, VotedFor: 0}, batch(1, 3, 10)); err != nil {
		t.Fatal(err)
	}
	old := persist.Snapshot{Index: 1, Term: 1, Data: bytes.Repeat([]byte("old"), 1<<20)}
	if err := st.SaveSnapshot(ctx, old); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, (gcReopenFiles+1)*o.ValueLogFileBytes)
	got, err := st.LoadSnapshot(persist.WithSnapshotReadHook(ctx, func() {
		if err := st.SaveSnapshot(ctx, persist.Snapshot{Index: 2, Term: 1, Data: big}); err != nil {
			t.Errorf("SaveSnapshot during the read: %v", err)
		}
		if b.gcReopens != 0 {
			t.Errorf("the store reopened badger for value-log GC under a snapshot read")
		}
	}))
	if err != nil || got.Index != 1 || !bytes.Equal(got.Data, old.Data) {
		t.Fatalf("read snapshot %d (%d bytes), %v; want the old one", got.Index, len(got.Data), err)
	}
	if err := st.SaveSnapshot(ctx, persist.Snapshot{Index: 3, Term: 1, Data: []byte("s")}); err != nil {
		t.Fatal(err)
	}
	if b.gcReopens != 1 {
		t.Fatalf("%d reopens for value-log GC after the read, want 1", b.gcReopens)
	}
}
