package filestore_test

import (
	"bytes"
	"testing"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/filestore"
)

// TestSnapshotReadAcrossCloseAndReopen: a snapshot read pinned before the
// store is closed (and the folder reopened by another store, which
// recovers it and stores newer snapshots) still returns the snapshot it
// pinned, whole: it reads through its own handle, which nothing closes,
// truncates or writes into.
func TestSnapshotReadAcrossCloseAndReopen(t *testing.T) {
	for _, kind := range []string{"os", "memfs"} {
		t.Run(kind, func(t *testing.T) {
			o := filestore.DefaultOptions()
			d := t.TempDir()
			if kind == "memfs" {
				o.FS, d = filestore.NewMemFS(), dir
			}
			s, err := filestore.Open(d, o)
			if err != nil {
				t.Fatal(err)
			}
			ents := make([]persist.Entry, 6)
			for i := range ents {
				ents[i] = persist.Entry{Index: uint64(i + 1), Term: 1, Type: persist.EntryCommand, Data: []byte("e")}
			}
			if err := s.Append(ctx, persist.HardState{Term: 1, VotedFor: 0, Commit: 6}, ents); err != nil {
				t.Fatal(err)
			}
			snapAt := func(i uint64) persist.Snapshot {
				return persist.Snapshot{Index: i, Term: 1, Data: bytes.Repeat([]byte{byte(i)}, 64<<10+int(i))}
			}
			if err := s.SaveSnapshot(ctx, snapAt(2)); err != nil {
				t.Fatal(err)
			}
			got, err := s.LoadSnapshot(persist.WithSnapshotReadHook(ctx, func() {
				if err := s.SaveSnapshot(ctx, snapAt(3)); err != nil {
					t.Errorf("SaveSnapshot: %v", err)
				}
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
				s2, err := filestore.Open(d, o)
				if err != nil {
					t.Errorf("reopen: %v", err)
					return
				}
				defer s2.Close()
				if _, err := s2.Load(ctx); err != nil {
					t.Errorf("Load: %v", err)
				}
				for i := uint64(4); i <= 6; i++ {
					if err := s2.SaveSnapshot(ctx, snapAt(i)); err != nil {
						t.Errorf("SaveSnapshot %d after reopen: %v", i, err)
					}
				}
			}))
			if err != nil {
				t.Fatal(err)
			}
			if want := snapAt(2); got.Index != 2 || !bytes.Equal(got.Data, want.Data) {
				t.Fatalf("read snapshot %d (%d bytes), want 2 (%d bytes) whole", got.Index, len(got.Data), len(want.Data))
			}
		})
	}
}
