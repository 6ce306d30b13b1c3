package badgerstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/ruaft/ruaft/persist"
)

func entries(first, last, term uint64, size int) []persist.Entry {
	var es []persist.Entry
	for i := first; i <= last; i++ {
		es = append(es, persist.Entry{Index: i, Term: term, Type: persist.EntryCommand,
			Data: bytes.Repeat([]byte{byte(i), byte(term)}, size/2)})
	}
	return es
}

func copyFiles(t *testing.T, src, dst string) {
	t.Helper()
	es, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func sameEntries(a, b []persist.Entry) bool {
	return slices.EqualFunc(a, b, func(x, y persist.Entry) bool {
		return x.Index == y.Index && x.Term == y.Term && x.Type == y.Type && bytes.Equal(x.Data, y.Data)
	})
}

func isPrefix(got, of []persist.Entry) bool {
	return len(got) <= len(of) && sameEntries(got, of[:len(got)])
}

// diffState describes how got differs from want, or is "".
func diffState(got, want persist.State) string {
	switch {
	case got.HardState != want.HardState:
		return fmt.Sprintf("hard state %+v, want %+v", got.HardState, want.HardState)
	case got.Snapshot.Index != want.Snapshot.Index || got.Snapshot.Term != want.Snapshot.Term ||
		!bytes.Equal(got.Snapshot.Data, want.Snapshot.Data) || !bytes.Equal(got.Snapshot.Config, want.Snapshot.Config):
		return fmt.Sprintf("snapshot %d/%d (%d bytes), want %d/%d (%d bytes)", got.Snapshot.Index, got.Snapshot.Term,
			len(got.Snapshot.Data), want.Snapshot.Index, want.Snapshot.Term, len(want.Snapshot.Data))
	case !sameEntries(got.Entries, want.Entries):
		return fmt.Sprintf("%d entries, want %d (or their contents differ)", len(got.Entries), len(want.Entries))
	}
	return ""
}

// TestCrashAtEveryCommit runs each kind of write (Appends that replace a
// suffix starting inside a run, in one transaction and in several;
// snapshots that keep the log and that drop it) with the store's k-th
// commit failing, for every k until the write goes through, as a crash
// after k-1 commits leaves it, then reopens: the store must load either
// its state before the write or after it, or for an Append in steps a log
// that is a prefix of the old log or of the new one, never a log that
// mixes them or fails its checks.
func TestCrashAtEveryCommit(t *testing.T) {
	ctx := context.Background()
	o := DefaultOptions()
	base := t.TempDir()
	st, err := Open(base, o)
	if err != nil {
		t.Fatal(err)
	}
	model := persist.NewMemory()
	// 400 entries of 8 KiB: runs of 3 entries (maxRunBytes), several
	// transactions.
	for _, s := range []persist.Store{st, model} {
		if err := s.Append(ctx, persist.HardState{Term: 1, Commit: 50}, entries(1, 400, 1, 8<<10)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	old, _ := model.Load(ctx)

	ops := []struct {
		name   string
		op     func(persist.Store) error
		append bool
	}{
		{"append in steps, from inside a run", func(s persist.Store) error {
			return s.Append(ctx, persist.HardState{Term: 2, Commit: 60}, entries(101, 300, 2, 8<<10))
		}, true},
		{"append in one transaction, from inside a run", func(s persist.Store) error {
			return s.Append(ctx, persist.HardState{Term: 2, Commit: 60}, entries(395, 396, 2, 100))
		}, true},
		{"snapshot that keeps the log", func(s persist.Store) error {
			return s.SaveSnapshot(ctx, persist.Snapshot{Index: 200, Term: 1, Data: bytes.Repeat([]byte("k"), 1<<20)})
		}, false},
		{"snapshot that drops the log", func(s persist.Store) error {
			return s.SaveSnapshot(ctx, persist.Snapshot{Index: 200, Term: 9, Data: bytes.Repeat([]byte("d"), 1<<20)})
		}, false},
	}
	for _, tc := range ops {
		t.Run(tc.name, func(t *testing.T) {
			m := persist.NewMemory()
			_ = m.Append(ctx, old.HardState, old.Entries)
			if err := tc.op(m); err != nil {
				t.Fatal(err)
			}
			want, _ := m.Load(ctx)
			for k := 1; ; k++ {
				dir := t.TempDir()
				copyFiles(t, base, dir)
				s, b, err := open(dir, o)
				if err != nil {
					t.Fatal(err)
				}
				b.failCommit = k
				opErr := tc.op(s)
				_ = s.Close()
				s2, err := Open(dir, o)
				if err != nil {
					t.Fatalf("commit %d failing: reopen: %v", k, err)
				}
				got, err := s2.Load(ctx)
				_ = s2.Close()
				if err != nil {
					t.Fatalf("commit %d failing: Load: %v", k, err)
				}
				switch {
				case opErr == nil:
					if d := diffState(got, want); d != "" {
						t.Fatalf("after the write: %s", d)
					}
					if k < 2 {
						t.Fatal("the write took no commit")
					}
					t.Logf("%d commits", k-1)
					return
				case !errors.Is(opErr, errInjected):
					t.Fatalf("commit %d failing: %v", k, opErr)
				case got.Snapshot.Index == want.Snapshot.Index && got.Snapshot.Index != old.Snapshot.Index:
					if d := diffState(got, want); d != "" {
						t.Fatalf("commit %d failing: new snapshot, but: %s", k, d)
					}
				case got.Snapshot.Index != old.Snapshot.Index:
					t.Fatalf("commit %d failing: snapshot %d", k, got.Snapshot.Index)
				case isPrefix(got.Entries, old.Entries):
				case tc.append && isPrefix(got.Entries, want.Entries):
				default:
					t.Fatalf("commit %d failing: a log of %d entries that is neither the old one nor the new one, nor a prefix of either", k, len(got.Entries))
				}
			}
		})
	}
}

// writeFormat1 writes a store as the earlier layout did (one key per
// entry, "e" + index), with badger's default options (seven levels), and
// pushes its tables down to the last level, as a long-running store of
// that version has them.
func writeFormat1(t *testing.T, dir string, hs persist.HardState, es []persist.Entry) {
	t.Helper()
	opts := badger.DefaultOptions(dir).WithLogger(nil)
	// Two sessions, each closed with its memtable flushed: two L0 tables.
	for _, part := range [][]persist.Entry{es[:len(es)/2], es[len(es)/2:]} {
		db, err := badger.Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		wb := db.NewWriteBatch()
		for _, e := range part {
			v := binary.LittleEndian.AppendUint64(nil, e.Term)
			v = append(v, byte(e.Type))
			if err := wb.Set(binary.BigEndian.AppendUint64([]byte{'e'}, e.Index), append(v, e.Data...)); err != nil {
				t.Fatal(err)
			}
		}
		if err := wb.Set(keyHardState, encodeHardState(hs)); err != nil {
			t.Fatal(err)
		}
		if err := wb.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Two L0 tables over a limit of one: Flatten compacts them into the
	// base level, the last one in an otherwise empty tree.
	db, err := badger.Open(opts.WithNumLevelZeroTables(1).WithNumCompactors(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Flatten(1); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOpensFormat1Store opens a store written in the earlier layout (one
// key per entry, tables at badger's seventh level): it loads what was
// stored, keeps working through Appends that replace part of the old
// entries, snapshots and reopens, and has no format-1 key left once the
// log has moved past them.
func TestOpensFormat1Store(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	hs := persist.HardState{Term: 3, VotedFor: 1, Commit: 20}
	writeFormat1(t, dir, hs, entries(1, 300, 3, 256))
	model := persist.NewMemory()
	_ = model.Append(ctx, hs, entries(1, 300, 3, 256))

	st, b, err := open(dir, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if b.levels <= minLevels {
		t.Fatalf("opened with %d levels; the format-1 store has tables deeper than that", b.levels)
	}
	steps := []func(persist.Store) error{
		func(s persist.Store) error { return nil },
		func(s persist.Store) error {
			return s.Append(ctx, persist.HardState{Term: 4, Commit: 40}, entries(250, 320, 4, 256))
		},
		func(s persist.Store) error {
			return s.SaveSnapshot(ctx, persist.Snapshot{Index: 100, Term: 3, Data: []byte("at 100")})
		},
		func(s persist.Store) error {
			return s.Append(ctx, persist.HardState{Term: 5, Commit: 120}, entries(150, 160, 5, 256))
		},
		func(s persist.Store) error {
			return s.SaveSnapshot(ctx, persist.Snapshot{Index: 155, Term: 5, Data: []byte("at 155")})
		},
	}
	for i, step := range steps {
		if err := step(st); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		_ = step(model)
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		if st, b, err = open(dir, DefaultOptions()); err != nil {
			t.Fatalf("step %d: reopen: %v", i, err)
		}
		got, err := st.Load(ctx)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		want, _ := model.Load(ctx)
		if d := diffState(got, want); d != "" {
			t.Fatalf("step %d: %s", i, d)
		}
		legacy := slices.ContainsFunc(b.runs, func(r run) bool { return r.legacy })
		if i == len(steps)-1 && legacy {
			t.Fatalf("step %d: format-1 keys left after a snapshot past them: %v", i, b.runs)
		}
	}
	_ = st.Close()
}

// TestRunKeysRefusedByFormat1Reader checks the downgrade story: a run key
// is not a key the earlier reader accepts (9 bytes), so an older binary
// refuses the store instead of loading it without its log.
func TestRunKeysRefusedByFormat1Reader(t *testing.T) {
	if k := (run{first: 7}).key(); len(k) == 9 || k[0] != 'e' {
		t.Fatalf("run key %x: the earlier reader takes 9-byte \"e\" keys for entries", k)
	}
	if _, _, err := decodeKey([]byte("e12345678x")); !errors.Is(err, persist.ErrCorrupt) {
		t.Fatalf("decodeKey of a bad key = %v", err)
	}
}

// TestRunsSplit checks how a batch is cut into runs: below maxRunBytes
// each, an oversized entry alone, order kept.
func TestRunsSplit(t *testing.T) {
	maxRun := maxRunBytes(DefaultOptions().ValueThresholdBytes)
	es := entries(1, 200, 1, 256)
	es = append(es, entries(201, 201, 1, 3*maxRun)...)
	es = append(es, entries(202, 210, 1, 256)...)
	var got []persist.Entry
	for _, r := range splitRuns(es, maxRun) {
		v := encodeRun(r)
		if len(r) > 1 && len(v) > maxRun {
			t.Fatalf("a run of %d entries in %d bytes, above %d", len(r), len(v), maxRun)
		}
		dec, err := decodeRun(nil, r[0].Index, v, nil)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, dec...)
	}
	if d := diffState(persist.State{Entries: got}, persist.State{Entries: es}); d != "" {
		t.Fatal(d)
	}
	if _, err := decodeRun(nil, 1, []byte{runVersion, 1, 2, 3}, nil); !errors.Is(err, persist.ErrCorrupt) {
		t.Fatalf("decodeRun of a cut entry = %v", err)
	}
	if _, err := decodeRun(nil, 1, []byte{9}, nil); !errors.Is(err, persist.ErrCorrupt) {
		t.Fatalf("decodeRun of an unknown version = %v", err)
	}
}
