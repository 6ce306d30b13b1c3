package raft

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ruaft/ruaft/internal/chunked"
	"github.com/ruaft/ruaft/persist"
)

// TestReview5LogModel drives the chunked raft log with random leader
// appends, conflicting suffixes from a new leader, compactions and
// snapshot installs, cut at and around chunk boundaries, and compares it
// with a plain slice after every step. Every slice it handed out (to an
// AppendEntries sender through limitedSlice, to the applier or the store
// through slice) must still read what it read then.
func TestReview5LogModel(t *testing.T) {
	const C = chunked.ChunkLen
	type held struct {
		es   []Entry
		want []Entry
	}
	for seed := range uint64(6) {
		r := rand.New(rand.NewPCG(seed, 555))
		l := newLog(persist.State{})
		var snapIdx uint64
		var model []Entry // after snapIdx
		term := uint64(1)
		var hs []held
		mk := func(i uint64) Entry {
			return Entry{Index: i, Term: term, Type: persist.EntryCommand, Data: []byte{byte(i), byte(term)}}
		}
		// near returns an offset in [0, n] near a chunk boundary.
		near := func(n int) int { return min(n, max(0, C*r.IntN(n/C+1)+r.IntN(3)-1)) }
		for step := range 120 {
			last := snapIdx + uint64(len(model))
			switch op := r.IntN(10); {
			case op < 3: // leader appends
				n := 1 + r.IntN(C+2)
				var es []Entry
				for i := range uint64(n) {
					es = append(es, mk(last+1+i))
				}
				l.append(es...)
				model = append(model, es...)
			case op < 5: // a new leader's entries replace a suffix
				term++
				keep := near(len(model))
				first := snapIdx + uint64(keep) + 1
				var es []Entry
				for i := range uint64(1 + r.IntN(C+2)) {
					es = append(es, mk(first+i))
				}
				l.truncateAndAppend(es)
				model = append(model[:keep:keep], es...)
			case op < 6: // compaction
				if len(model) == 0 {
					continue
				}
				k := max(1, near(len(model)))
				l.applied, l.durable, l.commit = last, last, last
				snap := persist.Snapshot{Index: snapIdx + uint64(k), Term: model[k-1].Term}
				if err := l.compact(snap); err != nil {
					t.Fatalf("seed %d step %d: %v", seed, step, err)
				}
				snapIdx, model = snap.Index, slices.Clone(model[k:])
			case op < 7: // a snapshot installed from a leader
				snap := persist.Snapshot{Index: last + uint64(r.IntN(3)), Term: term}
				l.restore(snap, 0)
				snapIdx, model = snap.Index, nil
			default: // hand out entries
				if len(model) == 0 {
					continue
				}
				lo := snapIdx + 1 + uint64(min(near(len(model)), len(model)-1))
				var es []Entry
				if r.IntN(2) == 0 {
					es, _ = l.limitedSlice(lo, 1+r.IntN(2*C), int64(1+r.IntN(4*C)))
					if len(es) == 0 {
						t.Fatalf("seed %d step %d: limitedSlice(%d) gave nothing", seed, step, lo)
					}
				} else {
					es = l.slice(lo, lo+1+uint64(r.IntN(int(last-lo+1))))
				}
				off := int(lo - snapIdx - 1)
				if !slices.EqualFunc(es, model[off:off+len(es)], entryEqual) {
					t.Fatalf("seed %d step %d: entries from %d differ", seed, step, lo)
				}
				hs = append(hs, held{es, slices.Clone(es)})
			}
			if l.firstIndex() != snapIdx+1 || l.lastIndex() != snapIdx+uint64(len(model)) {
				t.Fatalf("seed %d step %d: log [%d, %d], want [%d, %d]", seed, step, l.firstIndex(), l.lastIndex(), snapIdx+1, snapIdx+uint64(len(model)))
			}
			if len(model) > 0 && !slices.EqualFunc(l.slice(snapIdx+1, snapIdx+1+uint64(len(model))), model, entryEqual) {
				t.Fatalf("seed %d step %d: contents differ", seed, step)
			}
			for _, i := range []int{0, len(model) / 2, len(model) - 1} {
				if i >= 0 && i < len(model) {
					if e := l.entry(model[i].Index); !entryEqual(e, model[i]) {
						t.Fatalf("seed %d step %d: entry(%d) = %+v", seed, step, model[i].Index, e)
					}
				}
			}
			for i, h := range hs {
				if !slices.EqualFunc(h.es, h.want, entryEqual) {
					t.Fatalf("seed %d step %d: handed-out slice %d was overwritten", seed, step, i)
				}
			}
		}
	}
}

func entryEqual(a, b Entry) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type && slices.Equal(a.Data, b.Data)
}
