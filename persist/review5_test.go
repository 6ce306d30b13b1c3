package persist_test

import (
	"context"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/ruaft/ruaft/internal/chunked"
	"github.com/ruaft/ruaft/persist"
)

// TestReview5MemoryChunkBoundaries drives a Memory store (whose log and
// Tracker keep entries in chunks) with random appends that replace the
// log's tail, snapshots that keep or drop it, and reloads, cutting at and
// around chunk boundaries, and compares Load and Size with a plain slice
// after every operation.
func TestReview5MemoryChunkBoundaries(t *testing.T) {
	ctx := context.Background()
	const C = chunked.ChunkLen
	for seed := range uint64(3) {
		r := rand.New(rand.NewPCG(seed, 55))
		m := persist.NewMemory()
		var snap persist.Snapshot
		var log []persist.Entry // after snap
		term := uint64(1)
		near := func(n int) int { // a count near a multiple of the chunk length, at most n
			return min(n, max(0, C*r.IntN(n/C+1)+r.IntN(3)-1))
		}
		for step := range 40 {
			last := snap.Index + uint64(len(log))
			switch op := r.IntN(10); {
			case op < 6: // append, maybe replacing a tail
				keep := len(log)
				if r.IntN(2) == 0 {
					keep = near(len(log))
				}
				term++
				n := r.IntN(2*C) + 1
				if r.IntN(2) == 0 {
					n = C - keep%C + r.IntN(3) - 1
					n = max(n, 1)
				}
				first := snap.Index + uint64(keep) + 1
				es := make([]persist.Entry, n)
				for i := range es {
					es[i] = persist.Entry{Index: first + uint64(i), Term: term, Type: persist.EntryCommand, Data: []byte{byte(i), byte(step)}}
				}
				if err := m.Append(ctx, persist.HardState{Term: term, VotedFor: persist.NoVote}, es); err != nil {
					t.Fatalf("seed %d step %d: append at %d (last %d): %v", seed, step, first, last, err)
				}
				log = append(log[:keep:keep], es...)
			case op < 9: // snapshot
				if last == snap.Index {
					continue
				}
				k := near(len(log))
				if k == 0 {
					k = 1
				}
				s := persist.Snapshot{Index: snap.Index + uint64(k), Term: log[k-1].Term, Data: []byte{byte(step)}}
				if r.IntN(4) == 0 { // a snapshot whose term does not match: the log goes
					s.Term = term + 100
				}
				if err := m.SaveSnapshot(ctx, s); err != nil {
					t.Fatalf("seed %d step %d: snapshot at %d: %v", seed, step, s.Index, err)
				}
				if s.Term == log[k-1].Term {
					log = log[k:]
				} else {
					log = nil
				}
				snap = s
			default: // a stale snapshot changes nothing
				if err := m.SaveSnapshot(ctx, persist.Snapshot{Index: snap.Index, Term: snap.Term}); err == nil && snap.Index > 0 {
					t.Fatalf("seed %d step %d: a stale snapshot was taken", seed, step)
				}
			}
			st, err := m.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Snapshot.Index != snap.Index || st.Snapshot.Term != snap.Term {
				t.Fatalf("seed %d step %d: snapshot %d/%d, want %d/%d", seed, step, st.Snapshot.Index, st.Snapshot.Term, snap.Index, snap.Term)
			}
			if len(st.Entries) != len(log) || (len(log) > 0 && !reflect.DeepEqual(st.Entries, log)) {
				t.Fatalf("seed %d step %d: %d entries, want %d", seed, step, len(st.Entries), len(log))
			}
			if got, want := m.Size(), persist.LogSize(log); got != want {
				t.Fatalf("seed %d step %d: Size %d, want %d", seed, step, got, want)
			}
			if r.IntN(8) == 0 { // a clone holds the same
				c := m.Clone()
				cst, err := c.Load(ctx)
				if err != nil || !reflect.DeepEqual(cst.Entries, st.Entries) || c.Size() != m.Size() {
					t.Fatalf("seed %d step %d: clone differs (%v)", seed, step, err)
				}
			}
		}
	}
}
