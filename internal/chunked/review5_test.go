package chunked

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// boundaryNear returns a position in [0, q.Len()] near a chunk boundary of
// q (a boundary itself, or one off either side), so that the random
// operations below hit the edges the chunk arithmetic must get right.
func boundaryNear(r *rand.Rand, q *Seq[int]) int {
	bounds := []int{0, q.Len()}
	at := 0
	for _, c := range q.chunks {
		at += len(c)
		bounds = append(bounds, at)
	}
	b := bounds[r.IntN(len(bounds))] + r.IntN(3) - 1
	return min(max(b, 0), q.Len())
}

// checkShape checks Seq's documented invariant: the first chunk holds any
// positive number of elements, the middle ones exactly ChunkLen, the last
// (if not the first) at most ChunkLen with capacity ChunkLen; n is the sum.
func checkShape(t *testing.T, q *Seq[int]) {
	t.Helper()
	sum := 0
	for i, c := range q.chunks {
		sum += len(c)
		switch {
		case len(c) == 0:
			t.Fatalf("chunk %d of %d is empty", i, len(q.chunks))
		case i == 0:
		case i < len(q.chunks)-1 && len(c) != ChunkLen:
			t.Fatalf("middle chunk %d holds %d", i, len(c))
		case i == len(q.chunks)-1 && (len(c) > ChunkLen || cap(c) != ChunkLen):
			t.Fatalf("last chunk %d holds %d, capacity %d", i, len(c), cap(c))
		}
	}
	if sum != q.n {
		t.Fatalf("n = %d, chunks hold %d", q.n, sum)
	}
}

// TestReview5SeqBoundaryModel applies random operations biased to chunk
// boundaries to a Seq and to a slice, and after every operation checks
// the contents, the shape, and that every slice handed out so far still
// reads what it read when it was taken (a sender may still hold it while
// the log is truncated, rewritten, compacted or replaced).
func TestReview5SeqBoundaryModel(t *testing.T) {
	type taken struct {
		s, want []int
	}
	for seed := range uint64(8) {
		r := rand.New(rand.NewPCG(seed, 5))
		var want []int
		var q Seq[int]
		switch seed % 3 {
		case 1: // a first chunk of exactly a chunk's length or a multiple
			want = make([]int, ChunkLen*(1+r.IntN(2))+r.IntN(3)-1)
		case 2: // a short first chunk with spare capacity (From keeps none)
			src := make([]int, 10, 100)
			want = src
		}
		for i := range want {
			want[i] = -i - 1
		}
		q = From(want)
		want = slices.Clone(want)
		var held []taken
		next := 0
		for step := range 150 {
			switch op := r.IntN(12); {
			case op < 4:
				var k int
				switch r.IntN(3) {
				case 0:
					k = 1
				case 1: // exactly up to the next boundary, or one past
					k = ChunkLen - len(want)%ChunkLen + r.IntN(2)
				default:
					k = r.IntN(2*ChunkLen) + 1
				}
				vs := make([]int, k)
				for i := range vs {
					next++
					vs[i] = next
				}
				q.Append(vs...)
				want = append(want, vs...)
			case op < 6:
				n := boundaryNear(r, &q)
				q.Truncate(n)
				want = want[:n]
			case op < 8:
				k := boundaryNear(r, &q)
				q.DropFront(k)
				want = slices.Clone(want[k:])
			case op < 9: // what restore does
				q = Seq[int]{}
				want = nil
			default:
				if len(want) == 0 {
					continue
				}
				lo := boundaryNear(r, &q)
				if lo == len(want) {
					lo--
				}
				hi := lo + 1 + r.IntN(len(want)-lo)
				if r.IntN(2) == 0 {
					hi = q.Contiguous(lo, hi)
				}
				s := q.Slice(lo, hi)
				if !slices.Equal(s, want[lo:hi]) {
					t.Fatalf("seed %d step %d: Slice(%d, %d) differs", seed, step, lo, hi)
				}
				if cap(s) != len(s) {
					t.Fatalf("seed %d step %d: Slice(%d, %d) has room to append", seed, step, lo, hi)
				}
				held = append(held, taken{s, slices.Clone(s)})
			}
			checkShape(t, &q)
			if q.Len() != len(want) || !slices.Equal(q.All(), want) {
				t.Fatalf("seed %d step %d: contents differ (len %d, want %d)", seed, step, q.Len(), len(want))
			}
			for range 8 {
				if len(want) == 0 {
					break
				}
				i := min(boundaryNear(r, &q), len(want)-1)
				if q.At(i) != want[i] {
					t.Fatalf("seed %d step %d: At(%d) = %d, want %d", seed, step, i, q.At(i), want[i])
				}
			}
			for i, h := range held {
				if !slices.Equal(h.s, h.want) {
					t.Fatalf("seed %d step %d: handed-out slice %d was overwritten", seed, step, i)
				}
			}
		}
	}
}

// TestReview5SeqFromIsNotWritten checks that a Seq made by From never
// writes into the caller's array, even where it has spare capacity (the
// raft log is made from the State a store loaded, which the store may
// still hold).
func TestReview5SeqFromIsNotWritten(t *testing.T) {
	src := make([]int, 5, 64)
	for i := range src {
		src[i] = i
	}
	q := From(src[:3])
	q.Append(100, 101, 102)
	q.Truncate(1)
	q.Append(200)
	if !slices.Equal(src[:5], []int{0, 1, 2, 3, 4}) {
		t.Fatalf("the array given to From was written: %v", src[:5])
	}
	if got := q.All(); !slices.Equal(got, []int{0, 200}) {
		t.Fatalf("contents %v", got)
	}
}

// TestReview5SeqDropFrontReleasesChunks checks that compaction lets the
// dropped chunks go: after dropping all but the tail of a long sequence,
// the Seq refers to no more chunks than it needs.
func TestReview5SeqDropFrontReleasesChunks(t *testing.T) {
	var q Seq[int]
	for i := range 10*ChunkLen + 7 {
		q.Append(i)
	}
	q.DropFront(10*ChunkLen + 2)
	if len(q.chunks) != 1 || cap(q.chunks) > 1 {
		t.Fatalf("after compaction: %d chunks, chunk list capacity %d", len(q.chunks), cap(q.chunks))
	}
	if cap(q.chunks[0]) > ChunkLen {
		t.Fatalf("kept chunk capacity %d", cap(q.chunks[0]))
	}
	q.DropFront(q.Len())
	if q.chunks != nil || q.Len() != 0 {
		t.Fatalf("dropping everything kept %d chunks", len(q.chunks))
	}
}
