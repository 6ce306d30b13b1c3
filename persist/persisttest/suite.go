// Package persisttest is the conformance suite every persist.Store passes,
// and helpers that let other packages' tests run on any store kind, including
// crash-and-restart of a durable store.
package persisttest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

// Factory opens stores of one kind, each kept in a folder.
type Factory struct {
	// Name names the kind in test names and messages.
	Name string
	// Open opens the store kept in dir, an existing empty folder the first
	// time. Open of the same dir after Close must see what was stored if
	// Durable.
	Open func(t testing.TB, dir string) (persist.Store, error)
	// Durable says that a store reopened on the same dir after Close holds
	// what was stored.
	Durable bool
	// Keeps says that Load returns what was stored; false for noop.
	Keeps bool
	// PowerLoss, if set, simulates a machine crash for the closed store in
	// dir: whatever was not synced is lost. Only for stores on a fake FS.
	PowerLoss func(t testing.TB, dir string)
	// Large runs the 64 MiB snapshot case (slow; where it matters).
	Large bool
	// Proxy says that the store forwards its calls to a store in another
	// process or behind gRPC (a plugin): persist.WithSnapshotReadHook does
	// not reach that store's reads, and the tests that need it skip.
	Proxy bool
}

// Run runs the conformance suite against stores from f.
func Run(t *testing.T, f Factory) {
	t.Helper()
	cases := []struct {
		name string
		run  func(*testing.T, *harness)
		// local: the case holds a read or write in progress with
		// persist.WithSnapshotReadHook or WithSnapshotWriteHook, which needs a store that keeps
		// data and is not a Proxy (checked before opening a store: a
		// plugin's costs a process).
		local bool
	}{
		{name: "Empty", run: testEmpty},
		{name: "AppendLoad", run: testAppendLoad},
		{name: "HardStateOnly", run: testHardStateOnly},
		{name: "Overwrite", run: testOverwrite},
		{name: "NonContiguous", run: testNonContiguous},
		{name: "SnapshotKeepsMatchingSuffix", run: testSnapshotMatching},
		{name: "SnapshotDropsMismatchedLog", run: testSnapshotMismatch},
		{name: "SnapshotBeyondLog", run: testSnapshotBeyond},
		{name: "StaleSnapshot", run: testStaleSnapshot},
		{name: "AppendAfterSnapshot", run: testAppendAfterSnapshot},
		{name: "Ownership", run: testOwnership},
		{name: "Closed", run: testClosed},
		{name: "ReopenAfterClose", run: testReopen},
		{name: "Random", run: testRandom},
		{name: "PowerLoss", run: testPowerLoss},
		{name: "LargeSnapshot", run: testLargeSnapshot},
		{name: "SnapshotConfig", run: testSnapshotConfig},
		{name: "WritesDuringSnapshotRead", run: testWritesDuringSnapshotRead, local: true},
		{name: "CloseDuringSnapshotRead", run: testCloseDuringSnapshotRead, local: true},
		{name: "SnapshotReadRace", run: testSnapshotReadRace},
		{name: "CanceledSnapshotRead", run: testCanceledSnapshotRead, local: true},
		{name: "SnapshotReadContextEnded", run: testSnapshotReadContextEnded},
		{name: "AppendsDuringSnapshotWrite", run: testAppendsDuringSnapshotWrite, local: true},
		{name: "LogReplacedDuringSnapshotWrite", run: testLogReplacedDuringSnapshotWrite, local: true},
		{name: "SnapshotsBesideAppendsRace", run: testSnapshotsBesideAppendsRace},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.local && (f.Proxy || !f.Keeps) {
				t.Skip("needs a store in this process that keeps data: the read hook does not reach a plugin's")
			}
			h := &harness{t: t, f: f, dir: t.TempDir(), model: persist.NewMemory()}
			h.st = h.open()
			t.Cleanup(func() { _ = h.st.Close() })
			c.run(t, h)
		})
	}
}

// harness drives one store and a persist.Memory model side by side.
type harness struct {
	t     *testing.T
	f     Factory
	dir   string
	st    persist.Store
	model *persist.Memory
}

var ctx = context.Background()

func (h *harness) open() persist.Store {
	h.t.Helper()
	st, err := h.f.Open(h.t, h.dir)
	if err != nil {
		h.t.Fatalf("%s: open %s: %v", h.f.Name, h.dir, err)
	}
	return st
}

// reopen closes the store and opens it again on the same folder; for a
// store that is not durable, the model starts over too.
func (h *harness) reopen() {
	h.t.Helper()
	if err := h.st.Close(); err != nil {
		h.t.Fatalf("%s: close: %v", h.f.Name, err)
	}
	if !h.f.Durable {
		h.dir = h.t.TempDir()
		h.model = persist.NewMemory()
	}
	h.st = h.open()
}

// append applies the batch to both and requires the same outcome.
func (h *harness) append(hs persist.HardState, entries []persist.Entry) error {
	h.t.Helper()
	want := h.model.Append(ctx, hs, entries)
	got := h.st.Append(ctx, hs, entries)
	sameErr(h.t, "Append", got, want)
	return got
}

func (h *harness) snapshot(s persist.Snapshot) error {
	h.t.Helper()
	want := h.model.SaveSnapshot(ctx, s)
	got := h.st.SaveSnapshot(ctx, s)
	sameErr(h.t, "SaveSnapshot", got, want)
	return got
}

func (h *harness) mustAppend(hs persist.HardState, entries []persist.Entry) {
	h.t.Helper()
	if err := h.append(hs, entries); err != nil {
		h.t.Fatalf("Append: %v", err)
	}
}

func (h *harness) mustSnapshot(s persist.Snapshot) {
	h.t.Helper()
	if err := h.snapshot(s); err != nil {
		h.t.Fatalf("SaveSnapshot: %v", err)
	}
}

func sameErr(t testing.TB, op string, got, want error) {
	t.Helper()
	if want == nil {
		if got != nil {
			t.Fatalf("%s: got error %v, want none", op, got)
		}
		return
	}
	for _, s := range []error{persist.ErrNonContiguous, persist.ErrStaleSnapshot, persist.ErrClosed} {
		if errors.Is(want, s) && !errors.Is(got, s) {
			t.Fatalf("%s: got error %v, want one matching %v", op, got, s)
		}
	}
}

// check compares the store with the model: Size always, Load if the store
// keeps data (else Load must be empty).
func (h *harness) check() {
	h.t.Helper()
	if got, want := h.st.Size(), h.model.Size(); got != want {
		h.t.Fatalf("Size = %d, want %d", got, want)
	}
	got, err := h.st.Load(ctx)
	if err != nil {
		h.t.Fatalf("Load: %v", err)
	}
	want, _ := h.model.Load(ctx)
	if !h.f.Keeps {
		want = persist.State{HardState: persist.EmptyHardState}
	}
	if d := DiffState(got, want); d != "" {
		h.t.Fatalf("Load differs from the model: %s", d)
	}
	h.checkLoadSnapshot(want.Snapshot)
}

// checkLoadSnapshot requires every store that keeps data to load its
// snapshot back on its own (persist.SnapshotLoader), and one that keeps
// nothing to say it cannot.
func (h *harness) checkLoadSnapshot(want persist.Snapshot) {
	h.t.Helper()
	l, ok := h.st.(persist.SnapshotLoader)
	if can := ok && l.CanLoadSnapshot(); can != h.f.Keeps {
		h.t.Fatalf("CanLoadSnapshot = %v, want %v (whether the store keeps data)", can, h.f.Keeps)
	}
	if !ok {
		return
	}
	got, err := l.LoadSnapshot(ctx)
	if !h.f.Keeps {
		if !errors.Is(err, errors.ErrUnsupported) {
			h.t.Fatalf("LoadSnapshot of a store that keeps nothing: %v, want errors.ErrUnsupported", err)
		}
		return
	}
	if err != nil {
		h.t.Fatalf("LoadSnapshot: %v", err)
	}
	if d := DiffState(persist.State{Snapshot: got}, persist.State{Snapshot: want}); d != "" {
		h.t.Fatalf("LoadSnapshot differs from Load's snapshot: %s", d)
	}
}

// DiffState describes the first difference between two states, or returns ""
// if they are equal (nil and empty data count as equal).
func DiffState(got, want persist.State) string {
	if got.HardState != want.HardState {
		return fmt.Sprintf("hard state %+v, want %+v", got.HardState, want.HardState)
	}
	gs, ws := got.Snapshot, want.Snapshot
	if !bytes.Equal(gs.Config, ws.Config) {
		return fmt.Sprintf("snapshot config %q, want %q", gs.Config, ws.Config)
	}
	if gs.Index != ws.Index || gs.Term != ws.Term || !bytes.Equal(gs.Data, ws.Data) {
		return fmt.Sprintf("snapshot (%d, %d, %d bytes %x), want (%d, %d, %d bytes %x)",
			gs.Index, gs.Term, len(gs.Data), sum(gs.Data), ws.Index, ws.Term, len(ws.Data), sum(ws.Data))
	}
	if len(got.Entries) != len(want.Entries) {
		return fmt.Sprintf("%d entries (last %d), want %d (last %d)",
			len(got.Entries), got.LastIndex(), len(want.Entries), want.LastIndex())
	}
	for i, g := range got.Entries {
		w := want.Entries[i]
		if g.Index != w.Index || g.Term != w.Term || g.Type != w.Type || !bytes.Equal(g.Data, w.Data) {
			return fmt.Sprintf("entry %d: (%d, %d, %v, %q), want (%d, %d, %v, %q)", i,
				g.Index, g.Term, g.Type, trim(g.Data), w.Index, w.Term, w.Type, trim(w.Data))
		}
	}
	return ""
}

func sum(b []byte) []byte { s := sha256.Sum256(b); return s[:4] }

func trim(b []byte) []byte {
	if len(b) > 16 {
		return b[:16]
	}
	return b
}

// Entries returns entries first..last with term term and data "e<index>".
func Entries(first, last, term uint64) []persist.Entry {
	var out []persist.Entry
	for i := first; i <= last; i++ {
		out = append(out, persist.Entry{Index: i, Term: term, Type: persist.EntryCommand, Data: fmt.Appendf(nil, "e%d", i)})
	}
	return out
}

func hs(term uint64, vote int, commit uint64) persist.HardState {
	return persist.HardState{Term: term, VotedFor: vote, Commit: commit}
}

func testEmpty(t *testing.T, h *harness) {
	h.check()
	if got := h.st.Size(); got != persist.HardStateBytes {
		t.Fatalf("empty Size = %d, want %d", got, persist.HardStateBytes)
	}
}

func testAppendLoad(t *testing.T, h *harness) {
	h.mustAppend(hs(1, 0, 0), Entries(1, 3, 1))
	h.check()
	h.mustAppend(hs(1, 0, 2), Entries(4, 10, 1))
	h.check()
	noop := []persist.Entry{{Index: 11, Term: 2, Type: persist.EntryNoop}}
	h.mustAppend(hs(2, persist.NoVote, 10), noop)
	h.check()
}

func testHardStateOnly(t *testing.T, h *harness) {
	h.mustAppend(hs(3, 2, 0), nil)
	h.check()
	h.mustAppend(hs(3, 2, 0), Entries(1, 2, 3))
	h.mustAppend(hs(4, persist.NoVote, 2), nil)
	h.check()
}

func testOverwrite(t *testing.T, h *harness) {
	h.mustAppend(hs(1, 0, 0), Entries(1, 10, 1))
	h.mustAppend(hs(2, 1, 0), Entries(6, 7, 2)) // replaces 6..10 with 6..7
	h.check()
	h.mustAppend(hs(3, 1, 0), Entries(8, 8, 3)) // exactly last+1
	h.check()
	h.mustAppend(hs(4, 1, 0), Entries(1, 1, 4)) // replaces everything
	h.check()
	h.mustAppend(hs(4, 1, 1), Entries(2, 20, 4))
	h.mustAppend(hs(5, 1, 1), Entries(20, 20, 5)) // replaces only the last
	h.check()
}

func testNonContiguous(t *testing.T, h *harness) {
	h.mustAppend(hs(1, 0, 0), Entries(1, 5, 1))
	for _, bad := range [][]persist.Entry{
		Entries(7, 8, 1), // gap
		Entries(0, 1, 1), // index 0
		append(Entries(6, 6, 1), Entries(8, 8, 1)...), // a gap inside the batch
		append(Entries(3, 3, 1), Entries(3, 3, 1)...), // an index twice
	} {
		if err := h.st.Append(ctx, hs(9, 9, 9), bad); !errors.Is(err, persist.ErrNonContiguous) {
			t.Fatalf("Append %v: err = %v, want ErrNonContiguous", bad, err)
		}
	}
	h.check() // nothing changed, the hard state included
	h.mustSnapshot(persist.Snapshot{Index: 3, Term: 1, Data: []byte("s3")})
	if err := h.st.Append(ctx, hs(9, 9, 9), Entries(3, 4, 2)); !errors.Is(err, persist.ErrNonContiguous) {
		t.Fatalf("Append at the snapshot index: err = %v, want ErrNonContiguous", err)
	}
	h.mustAppend(hs(2, 0, 3), Entries(4, 6, 2)) // still usable
	h.check()
}

func testSnapshotMatching(t *testing.T, h *harness) {
	h.mustAppend(hs(2, 0, 5), append(Entries(1, 5, 1), Entries(6, 10, 2)...))
	h.mustSnapshot(persist.Snapshot{Index: 7, Term: 2, Data: []byte("state@7")})
	h.check()
	h.mustSnapshot(persist.Snapshot{Index: 10, Term: 2, Data: []byte("state@10")}) // the last entry
	h.check()
}

// testSnapshotConfig: the configuration stored with a snapshot comes back
// with it, across reopen, and a later snapshot replaces it (also with none).
func testSnapshotConfig(t *testing.T, h *harness) {
	h.mustAppend(hs(2, 0, 5), Entries(1, 10, 2))
	h.mustSnapshot(persist.Snapshot{Index: 4, Term: 2, Data: []byte("s4"), Config: []byte("config@4")})
	h.check()
	h.reopen()
	h.check()
	h.mustSnapshot(persist.Snapshot{Index: 8, Term: 2, Data: []byte("s8"), Config: []byte("config@8, longer")})
	h.reopen()
	h.check()
	h.mustSnapshot(persist.Snapshot{Index: 9, Term: 2, Data: []byte("s9")})
	h.reopen()
	h.check()
}

func testSnapshotMismatch(t *testing.T, h *harness) {
	h.mustAppend(hs(2, 0, 5), Entries(1, 10, 2))
	h.mustSnapshot(persist.Snapshot{Index: 7, Term: 3, Data: []byte("other history")})
	h.check()
	h.mustAppend(hs(3, 0, 7), Entries(8, 9, 3))
	h.check()
}

func testSnapshotBeyond(t *testing.T, h *harness) {
	h.mustAppend(hs(2, 0, 5), Entries(1, 5, 2))
	h.mustSnapshot(persist.Snapshot{Index: 50, Term: 4, Data: []byte("ahead")})
	h.check()
	h.mustAppend(hs(4, 0, 50), Entries(51, 52, 4))
	h.check()
}

func testStaleSnapshot(t *testing.T, h *harness) {
	h.mustAppend(hs(1, 0, 5), Entries(1, 10, 1))
	h.mustSnapshot(persist.Snapshot{Index: 6, Term: 1, Data: []byte("six")})
	for _, idx := range []uint64{6, 3} {
		if err := h.snapshot(persist.Snapshot{Index: idx, Term: 1, Data: []byte("stale")}); !errors.Is(err, persist.ErrStaleSnapshot) {
			t.Fatalf("SaveSnapshot(%d) after 6: err = %v, want ErrStaleSnapshot", idx, err)
		}
	}
	h.check()
	h.mustAppend(hs(1, 0, 6), Entries(11, 11, 1)) // still usable
	h.check()
}

func testAppendAfterSnapshot(t *testing.T, h *harness) {
	h.mustAppend(hs(1, 0, 0), Entries(1, 4, 1))
	h.mustSnapshot(persist.Snapshot{Index: 4, Term: 1, Data: []byte("four")})
	h.mustAppend(hs(1, 0, 4), Entries(5, 8, 1))
	h.mustAppend(hs(2, 0, 4), Entries(5, 6, 2)) // overwrite right after the snapshot
	h.check()
	h.mustSnapshot(persist.Snapshot{Index: 6, Term: 2})
	h.check()
}

func testOwnership(t *testing.T, h *harness) {
	es := Entries(1, 3, 1)
	h.mustAppend(hs(1, 0, 0), es)
	for i := range es {
		es[i].Data[0] = 'X'
		es[i].Term = 99
	}
	data := []byte("snap")
	h.mustSnapshot(persist.Snapshot{Index: 1, Term: 1, Data: data})
	data[0] = 'X'
	if h.f.Keeps {
		st, err := h.st.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range st.Entries {
			st.Entries[i].Data[0] = 'Y'
		}
		if len(st.Snapshot.Data) > 0 {
			st.Snapshot.Data[0] = 'Y'
		}
	}
	h.check()
}

func testClosed(t *testing.T, h *harness) {
	h.mustAppend(hs(1, 0, 0), Entries(1, 2, 1))
	size := h.st.Size()
	for range 2 {
		if err := h.st.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if _, err := h.st.Load(ctx); !errors.Is(err, persist.ErrClosed) {
		t.Fatalf("Load after Close: %v, want ErrClosed", err)
	}
	if err := h.st.Append(ctx, hs(1, 0, 0), Entries(3, 3, 1)); !errors.Is(err, persist.ErrClosed) {
		t.Fatalf("Append after Close: %v, want ErrClosed", err)
	}
	if err := h.st.SaveSnapshot(ctx, persist.Snapshot{Index: 2, Term: 1}); !errors.Is(err, persist.ErrClosed) {
		t.Fatalf("SaveSnapshot after Close: %v, want ErrClosed", err)
	}
	if got := h.st.Size(); got != size {
		t.Fatalf("Size after Close = %d, want the last figure %d", got, size)
	}
	h.st = h.open() // for Cleanup
}

func testReopen(t *testing.T, h *harness) {
	if !h.f.Durable {
		t.Skip("store kind is not durable")
	}
	h.mustAppend(hs(1, 0, 0), Entries(1, 10, 1))
	h.mustAppend(hs(2, 1, 3), Entries(8, 12, 2))
	h.reopen()
	h.check()
	h.mustSnapshot(persist.Snapshot{Index: 9, Term: 2, Data: []byte("nine")})
	h.reopen()
	h.check()
	h.mustAppend(hs(3, 2, 9), Entries(11, 15, 3))
	h.reopen()
	h.check()
	h.mustSnapshot(persist.Snapshot{Index: 14, Term: 1, Data: []byte("mismatch")})
	h.reopen()
	h.check()
	h.mustAppend(hs(3, 2, 14), Entries(15, 16, 3))
	h.reopen()
	h.check()
}

// testRandom runs random operations against the store and the model,
// reopening now and then.
func testRandom(t *testing.T, h *harness) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	term := uint64(1)
	ops := 300
	if testing.Short() {
		ops = 100
	}
	for i := range ops {
		st, _ := h.model.Load(ctx)
		switch r := rng.IntN(100); {
		case r < 60:
			if rng.IntN(4) == 0 {
				term++
			}
			lo, hi := st.Snapshot.Index+1, st.LastIndex()+1
			if rng.IntN(50) == 0 {
				lo = st.Snapshot.Index // an invalid start now and then
			}
			first := hi
			if rng.IntN(3) == 0 && hi > lo {
				first = lo + rng.Uint64N(hi-lo+1)
			}
			n := uint64(rng.IntN(6))
			var es []persist.Entry
			for j := range n {
				es = append(es, persist.Entry{Index: first + j, Term: term, Type: persist.EntryCommand,
					Data: fmt.Appendf(nil, "op%d-%d-%s", i, j, bytes.Repeat([]byte{'x'}, rng.IntN(300)))})
			}
			_ = h.append(hs(term, rng.IntN(3)-1, st.Snapshot.Index), es)
		case r < 75:
			idx := st.Snapshot.Index + uint64(rng.IntN(int(st.LastIndex()-st.Snapshot.Index)+3))
			snapTerm := term
			if j := int(idx - st.Snapshot.Index - 1); j >= 0 && j < len(st.Entries) && rng.IntN(4) != 0 {
				snapTerm = st.Entries[j].Term
			}
			_ = h.snapshot(persist.Snapshot{Index: idx, Term: snapTerm, Data: fmt.Appendf(nil, "snap%d", i)})
		case r < 80:
			h.reopen()
		default:
			h.check()
		}
	}
	h.check()
}

// testPowerLoss checks that everything acknowledged survives a machine crash
// that drops what was not synced.
func testPowerLoss(t *testing.T, h *harness) {
	if h.f.PowerLoss == nil {
		t.Skip("store kind has no simulated power loss")
	}
	for round := range 5 {
		last := func() uint64 { st, _ := h.model.Load(ctx); return st.LastIndex() }
		h.mustAppend(hs(uint64(round+1), round%3, 0), Entries(last()+1, last()+20, uint64(round+1)))
		if round%2 == 1 {
			h.mustSnapshot(persist.Snapshot{Index: last() - 5, Term: uint64(round + 1), Data: fmt.Appendf(nil, "p%d", round)})
		}
		if err := h.st.Close(); err != nil {
			t.Fatal(err)
		}
		h.f.PowerLoss(t, h.dir)
		h.st = h.open()
		h.check()
	}
}

func testLargeSnapshot(t *testing.T, h *harness) {
	if !h.f.Large || testing.Short() {
		t.Skip("large snapshots only where they matter (Factory.Large), not in -short")
	}
	h.mustAppend(hs(1, 0, 0), Entries(1, 10, 1))
	data := make([]byte, 64<<20+123)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < len(data); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < len(data); j++ {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	h.mustSnapshot(persist.Snapshot{Index: 5, Term: 1, Data: data})
	h.check()
	h.reopen()
	h.check()
}
