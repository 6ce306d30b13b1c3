// Package chunked holds Seq, a sequence that grows at its end without ever
// copying what it holds: the in-memory form of a Raft log.
//
// A log kept in one slice is copied whole each time append outgrows its
// capacity. At a million entries that copy takes milliseconds, and a node
// does it under its lock (the core's log) or on its replication loop (the
// stores' bookkeeping): every commit in flight waits, and the copies are
// most of the garbage a commit makes. A Seq keeps its elements in chunks of
// at most ChunkLen, so growing costs one new chunk and touching the end
// copies at most one chunk.
package chunked

// ChunkLen is the number of elements per chunk (the first chunk may hold any
// number: it can be a whole slice handed to From, or what a DropFront kept).
const ChunkLen = 4096

// Seq is a sequence of T. The zero Seq is empty and ready to use.
//
// Slices returned by Slice may share the Seq's memory; the Seq never writes
// where such a slice can read: Append writes only past the last element,
// and Truncate and DropFront copy the chunk they cut into. Callers only read
// the returned slices.
type Seq[T any] struct {
	// chunks[0] holds any number of elements; chunks[1:len-1] hold exactly
	// ChunkLen; the last, if it is not chunks[0], holds at most ChunkLen
	// and has capacity ChunkLen.
	chunks [][]T
	n      int
}

// From returns a Seq holding s, which it keeps (no copy): the caller must
// not modify s afterwards.
func From[T any](s []T) Seq[T] {
	if len(s) == 0 {
		return Seq[T]{}
	}
	return Seq[T]{chunks: [][]T{s[:len(s):len(s)]}, n: len(s)}
}

// Len is the number of elements.
func (q *Seq[T]) Len() int { return q.n }

// locate returns the chunk and the offset in it of element i, which must be
// in [0, Len()].
func (q *Seq[T]) locate(i int) (c, o int) {
	if len(q.chunks) == 0 {
		return 0, 0
	}
	if first := len(q.chunks[0]); i < first || len(q.chunks) == 1 {
		return 0, i
	} else {
		i -= first
	}
	return 1 + i/ChunkLen, i % ChunkLen
}

// At returns element i, which must be in [0, Len()).
func (q *Seq[T]) At(i int) T {
	if i < 0 || i >= q.n {
		panic("chunked: index out of range")
	}
	c, o := q.locate(i)
	return q.chunks[c][o]
}

// Append adds vs at the end.
func (q *Seq[T]) Append(vs ...T) {
	for len(vs) > 0 {
		last := len(q.chunks) - 1
		switch {
		case last < 0:
			q.chunks = append(q.chunks, make([]T, 0, min(max(len(vs), 8), ChunkLen)))
			continue
		case last == 0 && len(q.chunks[0]) < ChunkLen:
			// The first chunk grows like a slice until it is a chunk's
			// length, so a short sequence costs little memory; its copies
			// are bounded by ChunkLen.
			k := min(len(vs), ChunkLen-len(q.chunks[0]))
			q.chunks[0] = append(q.chunks[0], vs[:k]...)
			vs = vs[k:]
		case len(q.chunks[last]) >= ChunkLen:
			q.chunks = append(q.chunks, make([]T, 0, ChunkLen))
			continue
		default:
			k := min(len(vs), ChunkLen-len(q.chunks[last]))
			q.chunks[last] = append(q.chunks[last], vs[:k]...)
			vs = vs[k:]
		}
	}
	q.recount()
}

func (q *Seq[T]) recount() {
	q.n = 0
	switch k := len(q.chunks); k {
	case 0:
	case 1:
		q.n = len(q.chunks[0])
	default:
		q.n = len(q.chunks[0]) + (k-2)*ChunkLen + len(q.chunks[k-1])
	}
}

// Truncate keeps the first n elements (n in [0, Len()]). The chunk it cuts
// into is copied, so slices handed out before keep their contents when
// elements are appended afterwards.
func (q *Seq[T]) Truncate(n int) {
	if n < 0 || n > q.n {
		panic("chunked: truncate out of range")
	}
	if n == q.n {
		return
	}
	c, o := q.locate(n)
	if o == 0 {
		q.chunks = q.chunks[:c:c]
		q.recount()
		return
	}
	capacity := ChunkLen
	if c == 0 {
		capacity = max(o, min(ChunkLen, 2*o))
	}
	kept := append(make([]T, 0, capacity), q.chunks[c][:o]...)
	q.chunks = append(q.chunks[:c:c], kept)
	q.recount()
}

// DropFront removes the first k elements (k in [0, Len()]). What stays of
// the chunk it cuts into is copied, so the dropped elements can be freed.
func (q *Seq[T]) DropFront(k int) {
	if k < 0 || k > q.n {
		panic("chunked: drop out of range")
	}
	if k == 0 {
		return
	}
	if k == q.n {
		*q = Seq[T]{}
		return
	}
	c, o := q.locate(k)
	rest := q.chunks[c][o:]
	capacity := len(rest)
	if c == len(q.chunks)-1 {
		capacity = max(capacity, min(ChunkLen, 2*capacity)) // it is the end: room to grow
	}
	first := append(make([]T, 0, capacity), rest...)
	chunks := make([][]T, 0, len(q.chunks)-c)
	q.chunks = append(append(chunks, first), q.chunks[c+1:]...)
	q.recount()
}

// Contiguous returns the largest hi' in (lo, hi] such that [lo, hi') lies in
// one chunk: Slice(lo, hi') then shares the Seq's memory without copying.
// lo < hi must hold.
func (q *Seq[T]) Contiguous(lo, hi int) int {
	c, o := q.locate(lo)
	return min(hi, lo+len(q.chunks[c])-o)
}

// Slice returns the elements [lo, hi) (0 <= lo <= hi <= Len()), with no
// room to append into. If they lie in one chunk the result shares the
// Seq's memory; otherwise it is a copy.
func (q *Seq[T]) Slice(lo, hi int) []T {
	if lo < 0 || lo > hi || hi > q.n {
		panic("chunked: slice out of range")
	}
	if lo == hi {
		return nil
	}
	c, o := q.locate(lo)
	if o+(hi-lo) <= len(q.chunks[c]) {
		return q.chunks[c][o : o+hi-lo : o+hi-lo]
	}
	out := make([]T, 0, hi-lo)
	for len(out) < hi-lo {
		k := min(hi-lo-len(out), len(q.chunks[c])-o)
		out = append(out, q.chunks[c][o:o+k]...)
		c, o = c+1, 0
	}
	return out
}

// All returns a copy of every element.
func (q *Seq[T]) All() []T {
	out := make([]T, 0, q.n)
	for _, c := range q.chunks {
		out = append(out, c...)
	}
	return out
}
