package badgerstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/ruaft/ruaft/persist"
)

// review6Seeds are the seeds the randomized tests run: two fixed ones (an
// empty store and a format-1 one), and one new one per run (REVIEW6_SEED
// replays a failure).
func review6Seeds(t *testing.T) []uint64 {
	if s := os.Getenv("REVIEW6_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return []uint64{seed}
	}
	return []uint64{1, 2, uint64(time.Now().UnixNano())}
}

// review6Options keep runs short (maxRunBytes 1023), send entries of 1 KiB
// or more to the value log and make batches of a few hundred entries go in
// several transactions.
func review6Options() Options {
	o := DefaultOptions()
	o.MemTableBytes = 1 << 20
	o.ValueThresholdBytes = 1 << 10
	o.ValueLogFileBytes = 1 << 20
	return o
}

// storedKey is one log key found in the database.
type storedKey struct {
	first, n uint64
	legacy   bool
}

// logKeys decodes every log key in b's database, in key order.
func logKeys(t *testing.T, b *backend) []storedKey {
	t.Helper()
	var out []storedKey
	err := b.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixEntry})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			first, legacy, err := decodeKey(k)
			if err != nil {
				return err
			}
			n := uint64(1)
			if !legacy {
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				es, err := decodeRun(k, first, v, nil)
				if err != nil {
					return err
				}
				n = uint64(len(es))
			}
			out = append(out, storedKey{first, n, legacy})
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading the log keys: %v", err)
	}
	return out
}

// checkRuns checks the layout's invariants against the database: stored
// runs never overlap (runs.go: deleting one must never bring back entries
// another replaced), and the runs the backend plans its writes with are
// the keys stored after the snapshot.
func checkRuns(t *testing.T, b *backend, step int) {
	t.Helper()
	keys := logKeys(t, b)
	for i := 1; i < len(keys); i++ {
		if p := keys[i-1]; p.first+p.n-1 >= keys[i].first {
			t.Fatalf("step %d: stored runs overlap: %+v and %+v", step, p, keys[i])
		}
	}
	var live []storedKey
	for _, k := range keys {
		if k.first+k.n-1 > b.snap.index {
			live = append(live, k)
		}
	}
	var planned []storedKey
	for _, r := range b.runs {
		if r.last() > b.snap.index {
			planned = append(planned, storedKey{r.first, r.n, r.legacy})
		}
	}
	if len(live) != len(planned) {
		t.Fatalf("step %d: %d runs stored after the snapshot, the backend knows %d: %+v / %+v", step, len(live), len(planned), live, planned)
	}
	for i := range live {
		if live[i] != planned[i] {
			t.Fatalf("step %d: stored run %+v, the backend knows %+v", step, live[i], planned[i])
		}
	}
}

// review6Model is the random walk's view of the store: a persist.Memory
// with the same history.
type review6Model struct {
	rng   *rand.Rand
	model *persist.Memory
	term  uint64
	// valueLog lets entries reach the value threshold, so that runs of
	// one entry go to badger's value log (see TestReview6ValueLogRuns).
	valueLog bool
}

func (m *review6Model) state(t *testing.T) persist.State {
	t.Helper()
	st, err := m.model.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// near picks an index near a run boundary of b (first or last of a run,
// ±1), or anywhere in [lo, hi], clamped to [lo, hi].
func (m *review6Model) near(b *backend, lo, hi uint64) uint64 {
	if hi < lo {
		return lo
	}
	var i uint64
	if len(b.runs) > 0 && m.rng.IntN(4) != 0 {
		r := b.runs[m.rng.IntN(len(b.runs))]
		i = r.first
		if m.rng.IntN(2) == 0 {
			i = r.last()
		}
		i += uint64(m.rng.IntN(3)) - 1
	} else {
		i = lo + m.rng.Uint64N(hi-lo+1)
	}
	return min(max(i, lo), hi)
}

// data returns entry data of a random size: mostly small, some alone in
// a run, and with m.valueLog some at or above the value threshold (a run
// in the value log).
func (m *review6Model) data(i uint64) []byte {
	var n int
	switch m.rng.IntN(10) {
	case 0:
		n = 0
	case 1:
		n = 900 + m.rng.IntN(110) // alone in a run, below the threshold
	case 2:
		if m.valueLog {
			n = 1000 + m.rng.IntN(3000)
		}
	default:
		n = m.rng.IntN(300)
	}
	d := make([]byte, n)
	for j := range d {
		d[j] = byte(i) ^ byte(j) ^ byte(m.term)
	}
	return d
}

// op is one random write: an Append at an index near a run boundary, or a
// snapshot (keeping the log, dropping it, beyond it). It returns the op
// and whether it is an Append.
func (m *review6Model) op(b *backend) (func(persist.Store) error, bool, string) {
	ctx := context.Background()
	st, _ := m.model.Load(ctx)
	snap, last, commit := st.Snapshot.Index, st.LastIndex(), st.HardState.Commit
	if m.rng.IntN(10) < 7 || last == snap {
		// Raft never replaces a committed entry.
		lo := max(snap, commit) + 1
		first := last + 1
		if m.rng.IntN(2) == 0 {
			first = m.near(b, lo, last+1)
		}
		var n int
		switch m.rng.IntN(10) {
		case 0:
			n = 0 // the hard state only
		case 1:
			n = 200 + m.rng.IntN(500) // several transactions
		default:
			n = 1 + m.rng.IntN(70)
		}
		if m.rng.IntN(5) == 0 {
			m.term++
		}
		es := make([]persist.Entry, n)
		for j := range es {
			i := first + uint64(j)
			es[j] = persist.Entry{Index: i, Term: m.term, Type: persist.EntryType(1 + m.rng.IntN(3)), Data: m.data(i)}
		}
		newLast := last
		if n > 0 {
			newLast = first + uint64(n) - 1
		}
		hs := persist.HardState{Term: m.term, VotedFor: m.rng.IntN(3) - 1, Commit: commit}
		if newLast > commit && m.rng.IntN(2) == 0 {
			hs.Commit = commit + m.rng.Uint64N((newLast-commit)/3+1)
		}
		return func(s persist.Store) error { return s.Append(ctx, hs, es) }, true,
			"append " + strconv.FormatUint(first, 10) + "+" + strconv.Itoa(n)
	}
	var sn persist.Snapshot
	switch {
	case m.rng.IntN(8) == 0:
		sn.Index = last + 1 + m.rng.Uint64N(20) // beyond the log
		sn.Term = m.term + 1
	default:
		sn.Index = m.near(b, snap+1, last)
		sn.Term = st.Entries[sn.Index-snap-1].Term
		if sn.Index > commit && m.rng.IntN(3) == 0 {
			sn.Term += 100 // not the stored entry: drops the log
		}
	}
	m.term = max(m.term, sn.Term)
	sn.Data = make([]byte, m.rng.IntN(3000))
	if m.rng.IntN(6) == 0 {
		sn.Data = make([]byte, 100<<10+m.rng.IntN(200<<10)) // several chunks and transactions
	}
	for j := range sn.Data {
		sn.Data[j] = byte(sn.Index) + byte(j)
	}
	if m.rng.IntN(2) == 0 {
		sn.Config = []byte("config@" + strconv.FormatUint(sn.Index, 10))
	}
	return func(s persist.Store) error { return s.SaveSnapshot(ctx, sn) }, false,
		"snapshot " + strconv.FormatUint(sn.Index, 10) + "/" + strconv.FormatUint(sn.Term, 10)
}

// modelOf returns a Memory holding st.
func modelOf(t *testing.T, st persist.State) *persist.Memory {
	t.Helper()
	ctx := context.Background()
	m := persist.NewMemory()
	if st.Snapshot.Index > 0 {
		if err := m.SaveSnapshot(ctx, st.Snapshot); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Append(ctx, st.HardState, st.Entries); err != nil {
		t.Fatal(err)
	}
	return m
}

// crashLeftOK reports whether got is a state a crash in the middle of a
// write from old to want may leave: old, want, or for an Append a prefix
// of the old or new log with the old snapshot and a hard state no older
// than old's; for a snapshot, the old snapshot with a prefix of the old
// log (all of it if the snapshot keeps the log).
func crashLeftOK(got, old, want persist.State, isAppend bool) string {
	if diffState(got, old) == "" || diffState(got, want) == "" {
		return ""
	}
	sameSnap := func(a, b persist.State) bool {
		return a.Snapshot.Index == b.Snapshot.Index && a.Snapshot.Term == b.Snapshot.Term &&
			bytes.Equal(a.Snapshot.Data, b.Snapshot.Data) && bytes.Equal(a.Snapshot.Config, b.Snapshot.Config)
	}
	if !sameSnap(got, old) {
		if sameSnap(got, want) {
			return "the new snapshot with another log or hard state: " + diffState(got, want)
		}
		return "a snapshot that is neither the old one nor the new one"
	}
	if !isPrefix(got.Entries, old.Entries) && !(isAppend && isPrefix(got.Entries, want.Entries)) {
		return "a log that is a prefix of neither the old nor the new one"
	}
	// A snapshot that keeps the log drops nothing before it is current.
	i := want.Snapshot.Index - old.Snapshot.Index - 1
	keeps := i < uint64(len(old.Entries)) && old.Entries[i].Term == want.Snapshot.Term
	if !isAppend && keeps && len(got.Entries) != len(old.Entries) {
		return "the old snapshot with part of the log it was to keep"
	}
	hs, oh, nh := got.HardState, old.HardState, want.HardState
	switch {
	case hs == oh, hs == nh:
	case isAppend && hs.Term == nh.Term && hs.VotedFor == nh.VotedFor && hs.Commit == min(oh.Commit, nh.Commit):
	default:
		return "hard state " + strconv.FormatUint(hs.Term, 10) + "/" + strconv.Itoa(hs.VotedFor) + "/" +
			strconv.FormatUint(hs.Commit, 10) + " is neither the old one nor the new one"
	}
	return ""
}

// TestReview6RandomModel drives the store with random Appends that start
// at run boundaries ±1 (cutting runs in the middle, replacing whole runs,
// in one transaction and in several), snapshots that end at or inside runs
// (keeping the log or dropping it) or beyond the log, reopens, and writes
// whose k-th commit fails as a crash after k-1 commits leaves the store.
// After each step the store must load what a persist.Memory with the same
// history holds (or, after a crash, a state the contract allows, which
// then becomes the model), have the same Size, and keep the layout's
// invariants (checkRuns). Half of the seeds start from a store written in
// the earlier layout (one key per entry, a snapshot, stale entry keys
// below it).
func TestReview6RandomModel(t *testing.T) {
	steps := 150
	if testing.Short() {
		steps = 60
	}
	for _, seed := range review6Seeds(t) {
		t.Run("seed="+strconv.FormatUint(seed, 10), func(t *testing.T) {
			dir := t.TempDir()
			var st *persist.State
			if seed%2 == 0 {
				f1 := writeFormat1WithSnapshot(t, dir, rand.New(rand.NewPCG(seed, 1)))
				st = &f1
			}
			review6Random(t, seed, steps, dir, st, false)
		})
	}
}

// TestReview6ValueLogRuns is TestReview6RandomModel with entries at and
// above the value threshold, so that runs of one entry live in badger's
// value log, whose GC runs at every Open once it holds a file's worth.
//
// It fails now and then (5 of about 15 seed-runs at load 15-25, most
// under -race; 6 in a row passed later, so it is timing): a reopen refuses
// the store with "entry N where M belongs", because runs deleted long ago
// are back. In one failure's dump (dumpVersions) some 80 runs of one
// entry, all at version 56 (one large Append), were live beside the runs
// at versions 70-74 that had replaced them, with no tombstone left. That
// is badger's value-log GC (reclaimValueLog) writing back a superseded
// value: rewrite asks db.get for the key at the value's own version, which
// finds that version though a newer tombstone exists, and writes it back
// above the tombstone; a compaction that then drops the tombstone and the
// original without that copy (one running at Open beside the GC, or a
// last-level compaction later) leaves the old value live. With one key per
// entry the same resurrection could only bring back an entry the snapshot
// covers, or one past a truncation; with runs, any replaced run comes back
// overlapping the log, and the store no longer opens. Fixed by the
// reader: along the log versions never decrease, so a run older than the
// one before it is such a copy and is dropped as stale (store.go, read).
func TestReview6ValueLogRuns(t *testing.T) {
	for _, seed := range review6Seeds(t) {
		t.Run("seed="+strconv.FormatUint(seed, 10), func(t *testing.T) {
			review6Random(t, seed, 250, t.TempDir(), nil, true)
		})
	}
}

// review6Random runs steps random steps from seed on the store in dir,
// which holds initial (nil: nothing).
func review6Random(t *testing.T, seed uint64, steps int, dir string, initial *persist.State, valueLog bool) {
	ctx := context.Background()
	o := review6Options()
	m := &review6Model{rng: rand.New(rand.NewPCG(seed, 6)), model: persist.NewMemory(), term: 1, valueLog: valueLog}
	if initial != nil {
		m.model = modelOf(t, *initial)
		m.term = initial.HardState.Term
		for _, e := range initial.Entries {
			m.term = max(m.term, e.Term)
		}
	}
	s, b, err := open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if s != nil {
			_ = s.Close()
		}
	}()
	check := func(step int, what string) {
		t.Helper()
		got, err := s.Load(ctx)
		if err != nil {
			t.Fatalf("step %d (%s): Load: %v", step, what, err)
		}
		want := m.state(t)
		if d := diffState(got, want); d != "" {
			t.Fatalf("step %d (%s): %s", step, what, d)
		}
		if s.Size() != m.model.Size() {
			t.Fatalf("step %d (%s): Size %d, want %d", step, what, s.Size(), m.model.Size())
		}
		checkRuns(t, b, step)
	}
	reopen := func(step int, what string) {
		t.Helper()
		if err := s.Close(); err != nil {
			t.Fatalf("step %d (%s): Close: %v", step, what, err)
		}
		if s, b, err = open(dir, o); err != nil {
			dumpVersions(t, dir)
			t.Fatalf("step %d (%s): reopen: %v", step, what, err)
		}
	}
	check(0, "opened")
	for step := 1; step <= steps; step++ {
		op, isAppend, what := m.op(b)
		switch r := m.rng.IntN(10); {
		case r < 2:
			// The k-th commit from now fails: a crash after k-1.
			old := m.state(t)
			_ = op(m.model)
			want := m.state(t)
			b.failCommit = 1 + m.rng.IntN(6)
			what += " failing at commit " + strconv.Itoa(b.failCommit)
			opErr := op(s)
			if opErr != nil && !errors.Is(opErr, errInjected) {
				t.Fatalf("step %d (%s): %v", step, what, opErr)
			}
			b.failCommit = 0
			if m.rng.IntN(2) == 0 {
				// As a process crash leaves the files: recent commits in
				// the write-ahead log only, replayed at Open.
				crashed := copyOpen(t, dir)
				_ = s.Close()
				dir = crashed
				what += ", files copied while open"
			}
			reopen(step, what)
			got, err := s.Load(ctx)
			if err != nil {
				t.Fatalf("step %d (%s): Load after the crash: %v", step, what, err)
			}
			if opErr == nil {
				if d := diffState(got, want); d != "" {
					t.Fatalf("step %d (%s): went through, but: %s", step, what, d)
				}
			} else if d := crashLeftOK(got, old, want, isAppend); d != "" {
				t.Fatalf("step %d (%s): the crash left %s", step, what, d)
			}
			m.model = modelOf(t, got)
			check(step, what)
		default:
			_ = op(m.model)
			if err := op(s); err != nil {
				t.Fatalf("step %d (%s): %v", step, what, err)
			}
			check(step, what)
			if r < 4 {
				reopen(step, what)
				check(step, what+", reopened")
			}
		}
	}
	reopen(steps, "end")
	check(steps, "end")
}

// TestReview6PreviousCommitStores opens stores written by the previous
// commit's code (4c17a3e, one key per entry: a history of appends,
// truncations and two snapshots, tables at its seven levels, closed
// cleanly, and the files of an open store as a crash leaves them), checks
// that they load what that code loaded, then drives them with
// review6Random. The stores are not in the repository (4 MiB); write them
// with the previous commit's badgerstore as
// /work/wt/_notes/review6a.md says, and point REVIEW6_FORMAT1_STORES at
// their folder (each store dir with dir.gob, its gob-encoded
// persist.State as the earlier code loaded it).
func TestReview6PreviousCommitStores(t *testing.T) {
	src := os.Getenv("REVIEW6_FORMAT1_STORES")
	if src == "" {
		t.Skip("REVIEW6_FORMAT1_STORES not set")
	}
	for _, name := range []string{"closed", "crashed"} {
		for _, seed := range review6Seeds(t) {
			t.Run(name+"/seed="+strconv.FormatUint(seed, 10), func(t *testing.T) {
				f, err := os.Open(filepath.Join(src, name+".gob"))
				if err != nil {
					t.Fatal(err)
				}
				var want persist.State
				err = gob.NewDecoder(f).Decode(&want)
				_ = f.Close()
				if err != nil {
					t.Fatal(err)
				}
				dir := t.TempDir()
				copyFiles(t, filepath.Join(src, name), dir)
				s, b, err := open(dir, review6Options())
				if err != nil {
					t.Fatal(err)
				}
				got, err := s.Load(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if d := diffState(got, want); d != "" {
					t.Fatalf("loads %s", d)
				}
				if len(b.runs) == 0 || !b.runs[0].legacy {
					t.Fatalf("runs %+v: the store was not in the earlier layout", b.runs[:min(len(b.runs), 3)])
				}
				t.Logf("%d levels, %d format-1 keys", b.levels, len(b.runs))
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				review6Random(t, seed, 120, dir, &want, false)
			})
		}
	}
}

// writeFormat1WithSnapshot writes a store in the earlier layout (writeFormat1:
// one key per entry, tables at badger's last level) with a snapshot, its
// chunks, and entry keys at and below the snapshot index that the earlier
// version left for its Open to clean up (a crash before its step 4). It
// returns the state the store holds.
func writeFormat1WithSnapshot(t *testing.T, dir string, rng *rand.Rand) persist.State {
	t.Helper()
	last := uint64(80 + rng.IntN(200))
	si := uint64(10 + rng.IntN(40))
	hs := persist.HardState{Term: 3, VotedFor: 1, Commit: si + 5}
	es := entries(1, last, 3, 64+rng.IntN(200))
	writeFormat1(t, dir, hs, es)
	sn := persist.Snapshot{Index: si, Term: 3, Data: bytes.Repeat([]byte("f1"), 5000), Config: []byte("c")}
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	meta := snapMeta{index: sn.Index, term: sn.Term, gen: 4, size: uint64(len(sn.Data)), chunks: 2, config: sn.Config}
	err = db.Update(func(txn *badger.Txn) error {
		half := len(sn.Data) / 2
		if err := txn.Set(chunkKey(4, 0), sn.Data[:half]); err != nil {
			return err
		}
		if err := txn.Set(chunkKey(4, 1), sn.Data[half:]); err != nil {
			return err
		}
		// A chunk of an earlier generation, left by a crash.
		if err := txn.Set(chunkKey(3, 0), []byte("old")); err != nil {
			return err
		}
		// Part of the covered entries already deleted, as the earlier
		// step 4 does from the first on.
		for i := uint64(1); i < si/2; i++ {
			if err := txn.Delete(binary.BigEndian.AppendUint64([]byte{'e'}, i)); err != nil {
				return err
			}
		}
		return txn.Set(keySnapMeta, meta.encode())
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return persist.State{HardState: hs, Snapshot: sn, Entries: es[si:]}
}

// rawStore writes keys and values into a badger database in dir as a
// damaged disk or a buggy writer could leave them (a nil value deletes).
func rawStore(t *testing.T, dir string, kv map[string][]byte) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(txn *badger.Txn) error {
		for k, v := range kv {
			if err := txn.Set([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func runKey(first uint64) string         { return string(run{first: first}.key()) }
func legacyKey(i uint64) string          { return string(run{first: i, legacy: true}.key()) }
func runValue(first, last uint64) []byte { return encodeRun(entries(first, last, 1, 10)) }

func legacyValue(i uint64) []byte {
	return append(binary.LittleEndian.AppendUint64(nil, 1), byte(persist.EntryCommand), byte(i))
}

// TestReview6HostileLog opens stores whose log keys a damaged disk or a
// buggy writer left wrong: runs cut short, lying about their lengths, of an
// unknown version, empty; runs that overlap, a format-1 key inside or at a
// run, gaps, keys of a wrong shape. Open must refuse each with
// persist.ErrCorrupt (never panic, never load other entries than stored).
func TestReview6HostileLog(t *testing.T) {
	v3 := runValue(1, 3) // entries of 10 bytes: 1 + 3×23 bytes
	lenPast := bytes.Clone(v3)
	binary.LittleEndian.PutUint32(lenPast[1+9:], 0xFFFFFFFF)
	lenShort := bytes.Clone(v3)
	binary.LittleEndian.PutUint32(lenShort[1+9:], 3) // the rest is read as entries
	hsCommit := func(c uint64) []byte { return encodeHardState(persist.HardState{Term: 1, VotedFor: -1, Commit: c}) }
	snapAt := func(i uint64) []byte { return snapMeta{index: i, term: 1, gen: 1}.encode() }
	cases := []struct {
		name string
		kv   map[string][]byte
	}{
		{"run cut inside an entry header", map[string][]byte{runKey(1): v3[:1+23+5]}},
		{"run cut inside an entry's data", map[string][]byte{runKey(1): v3[:len(v3)-3]}},
		{"entry length past the value", map[string][]byte{runKey(1): lenPast}},
		{"entry length short of its data", map[string][]byte{runKey(1): lenShort}},
		{"unknown run version", map[string][]byte{runKey(1): append([]byte{runVersion + 1}, v3[1:]...)}},
		{"empty run", map[string][]byte{runKey(1): {runVersion}}},
		{"empty value", map[string][]byte{runKey(1): {}}},
		{"overlapping runs", map[string][]byte{runKey(1): runValue(1, 10), runKey(5): runValue(5, 15)}},
		{"run inside a run", map[string][]byte{runKey(1): runValue(1, 10), runKey(3): runValue(3, 4)}},
		{"format-1 key inside a run", map[string][]byte{runKey(1): runValue(1, 10), legacyKey(5): legacyValue(5)}},
		{"format-1 key and run at one index", map[string][]byte{runKey(1): runValue(1, 4), legacyKey(5): legacyValue(5), runKey(5): runValue(5, 8)}},
		{"gap between runs", map[string][]byte{runKey(1): runValue(1, 3), runKey(5): runValue(5, 6)}},
		{"gap after a format-1 key", map[string][]byte{legacyKey(1): legacyValue(1), runKey(3): runValue(3, 6)}},
		{"log not starting after the snapshot", map[string][]byte{"m": snapAt(10), runKey(12): runValue(12, 15)}},
		{"run straddling the snapshot, then a gap", map[string][]byte{"m": snapAt(10), runKey(8): runValue(8, 12), runKey(14): runValue(14, 15)}},
		{"short key", map[string][]byte{"e\x00\x00\x00\x01": v3}},
		{"run key with another tag", map[string][]byte{string(binary.BigEndian.AppendUint64([]byte{'e'}, 1)) + "x": v3}},
		{"run key too long", map[string][]byte{runKey(1) + "r": v3}},
		{"format-1 value too short", map[string][]byte{legacyKey(1): {1, 0, 0}}},
		{"run cut at an entry boundary below the commit index", map[string][]byte{runKey(1): runValue(1, 2), "h": hsCommit(3)}},
		{"run under the key of another index", map[string][]byte{runKey(1): runValue(1, 3), runKey(3): runValue(4, 6)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			rawStore(t, dir, tc.kv)
			before := logKeysRaw(t, dir)
			st, err := Open(dir, review6Options())
			if err == nil {
				got, _ := st.Load(context.Background())
				_ = st.Close()
				t.Fatalf("Open succeeded, loading %d entries (last %d)", len(got.Entries), got.LastIndex())
			}
			if !errors.Is(err, persist.ErrCorrupt) {
				t.Fatalf("Open = %v, want persist.ErrCorrupt", err)
			}
			if after := logKeysRaw(t, dir); after != before {
				t.Fatalf("the refused Open changed the log keys: %s, then %s", before, after)
			}
			t.Log(err)
		})
	}
}

// logKeysRaw lists the log keys in dir's database with their value sizes
// (for comparison).
func logKeysRaw(t *testing.T, dir string) string {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	return dumpLog(t, db, func(v []byte) string { return strconv.Itoa(len(v)) })
}

// TestReview6HostileRunOnAppend damages a stored run behind the store's
// back (cut short, deleted) and then Appends from inside it, which makes
// the store rewrite that run's head: the Append must fail (the store then
// refuses further writes) without panicking, and must not have written
// anything, such as a head made of what was left.
func TestReview6HostileRunOnAppend(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		damage func(txn *badger.Txn, k []byte, v []byte) error
	}{
		{"cut inside an entry", func(txn *badger.Txn, k, v []byte) error { return txn.Set(k, v[:len(v)-4]) }},
		{"cut to fewer entries than the head", func(txn *badger.Txn, k, v []byte) error { return txn.Set(k, v[:1+23]) }},
		{"deleted", func(txn *badger.Txn, k, v []byte) error { return txn.Delete(k) }},
		{"unknown version", func(txn *badger.Txn, k, v []byte) error { return txn.Set(k, append([]byte{9}, v[1:]...)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, b, err := open(t.TempDir(), review6Options())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// One run of entries 1..10 (10 bytes each).
			if err := s.Append(ctx, persist.HardState{Term: 1, VotedFor: -1}, entries(1, 10, 1, 10)); err != nil {
				t.Fatal(err)
			}
			if len(b.runs) != 1 || b.runs[0].n != 10 {
				t.Fatalf("runs %+v, want one of 10 entries", b.runs)
			}
			err = b.db.Update(func(txn *badger.Txn) error {
				k := run{first: 1}.key()
				item, err := txn.Get(k)
				if err != nil {
					return err
				}
				v, err := item.ValueCopy(nil)
				if err != nil {
					return err
				}
				return tc.damage(txn, k, v)
			})
			if err != nil {
				t.Fatal(err)
			}
			before := rawLog(t, b)
			err = s.Append(ctx, persist.HardState{Term: 2, VotedFor: -1}, entries(6, 8, 2, 10))
			if err == nil {
				t.Fatal("an Append cutting a damaged run succeeded")
			}
			t.Log(err)
			if err := s.Append(ctx, persist.HardState{Term: 2, VotedFor: -1}, nil); !errors.Is(err, persist.ErrFailed) {
				t.Fatalf("the next Append = %v, want persist.ErrFailed", err)
			}
			if after := rawLog(t, b); after != before {
				t.Fatalf("the failed Append wrote to the log: %s, then %s", before, after)
			}
		})
	}
}

// rawLog lists b's log keys with their values, as stored.
func rawLog(t *testing.T, b *backend) string {
	t.Helper()
	return dumpLog(t, b.db, func(v []byte) string { return strconv.Quote(string(v)) })
}

// dumpLog lists db's log keys, each with show(value).
func dumpLog(t *testing.T, db *badger.DB, show func([]byte) string) string {
	t.Helper()
	var out bytes.Buffer
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixEntry})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out.WriteString(strconv.Quote(string(it.Item().Key())) + "=" + show(v) + " ")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// copyOpen copies the files of the open store in dir to a new folder, as
// a process crash would leave them: again if badger's compaction changed
// the files meanwhile.
func copyOpen(t *testing.T, dir string) string {
	t.Helper()
	list := func() string {
		es, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		for _, e := range es {
			b.WriteString(e.Name() + " ")
		}
		m, _ := os.ReadFile(filepath.Join(dir, "MANIFEST"))
		return b.String() + string(m)
	}
	for range 20 {
		before := list()
		dst := t.TempDir()
		ok := true
		es, _ := os.ReadDir(dir)
		for _, e := range es {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if os.IsNotExist(err) {
				ok = false
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if ok && list() == before {
			return dst
		}
	}
	t.Fatal("the store's files kept changing while copied")
	return ""
}

// dumpVersions logs every version of every log key in dir (for a failure).
func dumpVersions(t *testing.T, dir string) {
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithMaxLevels(7))
	if err != nil {
		t.Logf("dump: %v", err)
		return
	}
	defer db.Close()
	_ = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixEntry, AllVersions: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			it := it.Item()
			first, _, _ := decodeKey(it.Key())
			n := -1
			if v, err := it.ValueCopy(nil); err == nil && !it.IsDeletedOrExpired() {
				es, _ := decodeRun(it.Key(), first, v, nil)
				n = len(es)
			}
			t.Logf("key %x first %d version %d deleted %v entries %d", it.Key(), first, it.Version(), it.IsDeletedOrExpired(), n)
		}
		return nil
	})
}
