package persist

// Noop is a Store that keeps nothing: Load always returns an empty state, so a
// restarted replica starts fresh (the original durio's behaviour). A cluster
// on Noop stores loses its data when a majority restarts, and a restarted
// replica may vote twice in one term; use it only where that is acceptable.
//
// Noop still checks its arguments like every store (ErrNonContiguous,
// ErrStaleSnapshot) and keeps the size figure a real store would have, so a
// replica that snapshots when Size passes a threshold still compacts its
// in-memory log: it is a Base without a Backend, whose Tracker remembers the
// term and size of each entry after the last snapshot (16 bytes an entry),
// never the data.
type Noop struct {
	Base // the zero Base, with no Backend: Load, Append, SaveSnapshot, Size and Close
}

var _ Store = (*Noop)(nil)

// NewNoop returns a Noop store. The zero Noop is ready to use too.
func NewNoop() *Noop { return &Noop{} }
