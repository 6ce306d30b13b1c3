package badgerstore_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/badgerstore"
	"github.com/ruaft/ruaft/persist/persisttest"
)

var ctx = context.Background()

func TestOptions(t *testing.T) {
	o := badgerstore.DefaultOptions()
	if err := o.Set("memtable_bytes", "1000"); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); !errors.Is(err, badgerstore.ErrInvalidOptions) || !strings.Contains(err.Error(), "MemTableBytes") {
		t.Fatalf("Validate = %v, want an error naming MemTableBytes", err)
	}
	if err := o.Set("nope", "1"); !errors.Is(err, badgerstore.ErrInvalidOptions) {
		t.Fatalf("Set(nope) = %v", err)
	}
	if err := o.Set("block_cache_bytes", "x"); !errors.Is(err, badgerstore.ErrInvalidOptions) {
		t.Fatalf("Set(block_cache_bytes, x) = %v", err)
	}
}

// TestLargeBatchesAndSnapshot writes batches and a snapshot far larger than
// one badger transaction may hold, overwrites a large suffix, and reopens.
func TestLargeBatchesAndSnapshot(t *testing.T) {
	dir := t.TempDir()
	s, err := badgerstore.Open(dir, badgerstore.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	model := persist.NewMemory()
	big := func(first, last, term uint64) []persist.Entry {
		es := persisttest.Entries(first, last, term)
		for i := range es {
			es[i].Data = bytes.Repeat([]byte{byte(i)}, 8<<10)
		}
		return es
	}
	steps := []func(persist.Store) error{
		func(st persist.Store) error { return st.Append(ctx, persist.HardState{Term: 1}, big(1, 400, 1)) },
		func(st persist.Store) error {
			return st.Append(ctx, persist.HardState{Term: 2, Commit: 50}, big(100, 300, 2))
		},
		func(st persist.Store) error {
			return st.SaveSnapshot(ctx, persist.Snapshot{Index: 150, Term: 2, Data: bytes.Repeat([]byte("snap"), 3<<20)})
		},
		func(st persist.Store) error {
			return st.SaveSnapshot(ctx, persist.Snapshot{Index: 200, Term: 7, Data: bytes.Repeat([]byte("other"), 1<<20)})
		},
		func(st persist.Store) error {
			return st.Append(ctx, persist.HardState{Term: 7, Commit: 200}, big(201, 260, 7))
		},
	}
	for i, step := range steps {
		if err := step(s); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		_ = step(model)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if s, err = badgerstore.Open(dir, badgerstore.DefaultOptions()); err != nil {
			t.Fatal(err)
		}
		got, err := s.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := model.Load(ctx)
		if d := persisttest.DiffState(got, want); d != "" {
			t.Fatalf("step %d, after reopen: %s", i, d)
		}
		if s.Size() != model.Size() {
			t.Fatalf("step %d: Size %d, want %d", i, s.Size(), model.Size())
		}
	}
	s.Close()
}
