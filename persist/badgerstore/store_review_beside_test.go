package badgerstore_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/badgerstore"
	"github.com/ruaft/ruaft/persist/persisttest"
)

// TestReviewBesideAbandonedStagedChunks: a staged snapshot whose caller gave
// up during the write (or whose index was replaced meanwhile) leaves its
// chunks, of generation gen+1, in the database; the store stays usable, and
// the next SaveSnapshot writes generation gen+1 again. If it has fewer
// chunks, the abandoned attempt's higher-numbered chunks are still there
// and count as part of the stored snapshot: LoadSnapshot and every later
// Open fail with ErrCorrupt (the replica cannot restart).
func TestReviewBesideAbandonedStagedChunks(t *testing.T) {
	for _, how := range []string{"cancelled", "replaced"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			st, err := badgerstore.Open(dir, badgerstore.DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = st.Close() }()
			if err := st.Append(ctx, persist.HardState{Term: 1}, persisttest.Entries(1, 20, 1)); err != nil {
				t.Fatal(err)
			}
			big := persist.Snapshot{Index: 10, Term: 1, Data: bytes.Repeat([]byte("big!"), 1<<18)} // 1 MiB: several chunks
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			var want error
			hctx := persist.WithSnapshotWriteHook(cctx, func() {
				if how == "cancelled" {
					cancel()
					return
				}
				// Breaks the rule: replaces the entry at the snapshot's index.
				if err := st.Append(ctx, persist.HardState{Term: 2}, persisttest.Entries(8, 20, 2)); err != nil {
					t.Errorf("Append during the write: %v", err)
				}
			})
			if how == "cancelled" {
				want = context.Canceled
			} else {
				want = persist.ErrNonContiguous
			}
			if err := st.SaveSnapshot(hctx, big); !errors.Is(err, want) {
				t.Fatalf("abandoned SaveSnapshot = %v, want %v", err, want)
			}
			term := uint64(1)
			if how == "replaced" {
				term = 2
			}
			small := persist.Snapshot{Index: 12, Term: term, Data: []byte("small")}
			if err := st.SaveSnapshot(ctx, small); err != nil {
				t.Fatalf("next SaveSnapshot: %v", err)
			}
			got, err := st.LoadSnapshot(ctx)
			if err != nil {
				t.Errorf("LoadSnapshot after an abandoned larger snapshot: %v", err)
			} else if got.Index != 12 || string(got.Data) != "small" {
				t.Errorf("LoadSnapshot = %d, %d bytes; want 12, %q", got.Index, len(got.Data), "small")
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			st2, err := badgerstore.Open(dir, badgerstore.DefaultOptions())
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer func() { _ = st2.Close() }()
			s, err := st2.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if s.Snapshot.Index != 12 || string(s.Snapshot.Data) != "small" {
				t.Fatalf("after reopen: snapshot %d, %d bytes", s.Snapshot.Index, len(s.Snapshot.Data))
			}
		})
	}
}
