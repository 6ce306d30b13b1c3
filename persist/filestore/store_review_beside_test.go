package filestore_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/filestore"
	"github.com/ruaft/ruaft/persist/persisttest"
)

// bigEntries are entries of 1 KiB, so that a few fill a 4 KiB segment.
func bigEntries(first, last, term uint64) []persist.Entry {
	es := persisttest.Entries(first, last, term)
	for i := range es {
		es[i].Data = bytes.Repeat([]byte{byte(es[i].Index)}, 1<<10)
	}
	return es
}

// TestReviewBesideCrashDuringStagedSnapshot: Appends that rotate segments
// while a compaction's snapshot is written (firstSeg was chosen when the
// write was planned), a power loss before the write, after it and after an
// abandoned larger write followed by a smaller snapshot: every reopen
// holds the old snapshot and the whole log, or the new snapshot and the log
// after it.
func TestReviewBesideCrashDuringStagedSnapshot(t *testing.T) {
	for seed := range uint64(8) {
		fs := filestore.NewMemFS()
		s := openMem(t, fs, 4<<10)
		model := persist.NewMemory()
		both := func(f func(persist.Store) error) {
			t.Helper()
			if err := f(s); err != nil {
				t.Fatal(err)
			}
			if err := f(model); err != nil {
				t.Fatal(err)
			}
		}
		both(func(st persist.Store) error { return st.Append(ctx, persist.HardState{Term: 1}, bigEntries(1, 10, 1)) })
		var crashes []*filestore.MemFS
		var models []persist.State
		snapState := func() persist.State {
			st, err := model.Clone().Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
		rng := rand.New(rand.NewPCG(seed, 7))
		hctx := persist.WithSnapshotWriteHook(ctx, func() {
			for i := uint64(11); i <= 30; i++ {
				e := bigEntries(i, i, 1)
				if err := s.Append(ctx, persist.HardState{Term: 1, Commit: i - 1}, e); err != nil {
					t.Errorf("Append %d: %v", i, err)
					return
				}
				_ = model.Append(ctx, persist.HardState{Term: 1, Commit: i - 1}, e)
			}
			// Replace the tail after the snapshot's index (allowed).
			e := bigEntries(25, 27, 2)
			if err := s.Append(ctx, persist.HardState{Term: 2, Commit: 24}, e); err != nil {
				t.Errorf("Append: %v", err)
			}
			_ = model.Append(ctx, persist.HardState{Term: 2, Commit: 24}, e)
			crashes = append(crashes, fs.Crash(rng))
			models = append(models, snapState())
		})
		snap := persist.Snapshot{Index: 8, Term: 1, Data: bytes.Repeat([]byte("s"), 10<<10)}
		if err := s.SaveSnapshot(hctx, snap); err != nil {
			t.Fatal(err)
		}
		_ = model.SaveSnapshot(ctx, snap)
		crashes = append(crashes, fs.Crash(rng))
		models = append(models, snapState())

		// An abandoned larger write, then a smaller snapshot.
		cctx, cancel := context.WithCancel(ctx)
		big := persist.Snapshot{Index: 20, Term: 1, Data: bytes.Repeat([]byte("B"), 64<<10)}
		if err := s.SaveSnapshot(persist.WithSnapshotWriteHook(cctx, cancel), big); err == nil {
			t.Fatal("abandoned SaveSnapshot succeeded")
		}
		small := persist.Snapshot{Index: 15, Term: 1, Data: []byte("small")}
		both(func(st persist.Store) error { return st.SaveSnapshot(ctx, small) })
		crashes = append(crashes, fs.Crash(rng))
		models = append(models, snapState())
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		for i, c := range crashes {
			r := openMem(t, c, 4<<10)
			got, err := r.Load(ctx)
			if err != nil {
				t.Fatalf("seed %d crash %d: Load: %v", seed, i, err)
			}
			want := models[i]
			// Before the switch the store may still hold the old snapshot
			// and whole log (crash 0 is before the write).
			if d := persisttest.DiffState(got, want); d != "" {
				t.Errorf("seed %d crash %d: %s", seed, i, d)
			}
			_ = r.Close()
		}
	}
}
