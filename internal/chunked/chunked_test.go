package chunked

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSeqMatchesSlice applies random operations to a Seq and to a plain
// slice and compares them after each one, across chunk boundaries and
// with a first chunk of every kind (grown, handed over by From, cut by
// DropFront).
func TestSeqMatchesSlice(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 1))
		var want []int
		var q Seq[int]
		if seed%2 == 1 {
			want = make([]int, r.IntN(3*ChunkLen))
			for i := range want {
				want[i] = -i
			}
			q = From(slices.Clone(want))
		}
		next := 0
		for step := range 400 {
			switch op := r.IntN(10); {
			case op < 5:
				vs := make([]int, r.IntN(ChunkLen/2)+1)
				for i := range vs {
					next++
					vs[i] = next
				}
				q.Append(vs...)
				want = append(want, vs...)
			case op < 7:
				n := len(want) - r.IntN(min(len(want), ChunkLen)+1)
				q.Truncate(n)
				want = want[:n]
			case op < 8:
				k := r.IntN(min(len(want), ChunkLen) + 1)
				q.DropFront(k)
				want = want[k:]
			default:
				if len(want) == 0 {
					continue
				}
				lo := r.IntN(len(want))
				hi := lo + 1 + r.IntN(len(want)-lo)
				if got := q.Slice(lo, hi); !slices.Equal(got, want[lo:hi]) {
					t.Fatalf("seed %d step %d: Slice(%d, %d) differs", seed, step, lo, hi)
				}
				c := q.Contiguous(lo, hi)
				if c <= lo || c > hi {
					t.Fatalf("seed %d step %d: Contiguous(%d, %d) = %d", seed, step, lo, hi, c)
				}
				if s := q.Slice(lo, c); cap(s) != len(s) {
					t.Fatalf("seed %d step %d: Slice(%d, %d) has room to append", seed, step, lo, c)
				}
			}
			if q.Len() != len(want) {
				t.Fatalf("seed %d step %d: Len %d, want %d", seed, step, q.Len(), len(want))
			}
			if !slices.Equal(q.All(), want) {
				t.Fatalf("seed %d step %d: contents differ", seed, step)
			}
			for _, i := range []int{0, len(want) / 2, len(want) - 1} {
				if i >= 0 && i < len(want) && q.At(i) != want[i] {
					t.Fatalf("seed %d step %d: At(%d) = %d, want %d", seed, step, i, q.At(i), want[i])
				}
			}
		}
	}
}

// TestSeqHandedOutSlicesStayIntact checks that a slice taken with Slice
// keeps its contents whatever the Seq does afterwards: the raft log hands
// such slices to messages and batches that are read after the log
// truncated or compacted.
func TestSeqHandedOutSlicesStayIntact(t *testing.T) {
	var q Seq[int]
	for i := range 3*ChunkLen + 10 {
		q.Append(i)
	}
	type taken struct {
		s    []int
		want []int
	}
	var all []taken
	take := func(lo, hi int) {
		s := q.Slice(lo, hi)
		all = append(all, taken{s, slices.Clone(s)})
	}
	take(5, 20)                      // in the first chunk
	take(ChunkLen-3, ChunkLen+3)     // across a boundary (a copy)
	take(2*ChunkLen+1, 2*ChunkLen+9) // in a later chunk
	take(3*ChunkLen, 3*ChunkLen+10)  // at the end
	q.Truncate(2*ChunkLen + 4)
	q.Append(-1, -2, -3, -4, -5, -6, -7, -8, -9)
	take(2*ChunkLen+2, 2*ChunkLen+8)
	q.Truncate(10)
	q.Append(-10, -11, -12, -13)
	q.DropFront(12)
	q.Append(-20, -21)
	for i, tk := range all {
		if !slices.Equal(tk.s, tk.want) {
			t.Errorf("slice %d changed: %v, was %v", i, tk.s, tk.want)
		}
	}
	if got, want := q.All(), []int{-12, -13, -20, -21}; !slices.Equal(got, want) {
		t.Errorf("contents %v, want %v", got, want)
	}
}

// TestSeqOutOfRangePanics checks that every method refuses an index
// outside the sequence.
func TestSeqOutOfRangePanics(t *testing.T) {
	var q Seq[int]
	q.Append(1, 2, 3)
	for name, f := range map[string]func(){
		"At(3)":         func() { q.At(3) },
		"At(-1)":        func() { q.At(-1) },
		"Slice(2, 4)":   func() { q.Slice(2, 4) },
		"Slice(2, 1)":   func() { q.Slice(2, 1) },
		"Truncate(4)":   func() { q.Truncate(4) },
		"DropFront(4)":  func() { q.DropFront(4) },
		"DropFront(-1)": func() { q.DropFront(-1) },
		"Truncate(-1)":  func() { q.Truncate(-1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			f()
		}()
	}
}

// TestSeqAppendCopiesAtMostAChunk checks the point of the package: an
// append to a long sequence allocates at most a chunk, never the whole.
func TestSeqAppendCopiesAtMostAChunk(t *testing.T) {
	var q Seq[[6]uint64] // 48 bytes, like a raft Entry
	var v [6]uint64
	for range 20 * ChunkLen {
		q.Append(v)
	}
	allocs := testing.AllocsPerRun(ChunkLen, func() { q.Append(v) })
	// One chunk per ChunkLen appends, plus the chunk list growing now and
	// then.
	if allocs > 0.01 {
		t.Errorf("%.4f allocations per append, want at most one per chunk", allocs)
	}
}
