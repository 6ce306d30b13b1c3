package persist

import (
	"context"
	"sync/atomic"
)

// Noop is a Store that keeps nothing: Load always returns an empty state, so a
// restarted replica starts fresh (the original durio's behaviour). A cluster
// on Noop stores loses its data when a majority restarts, and a restarted
// replica may vote twice in one term; use it only where that is acceptable.
type Noop struct {
	closed atomic.Bool
}

var _ Store = (*Noop)(nil)

// Load implements Store.
func (n *Noop) Load(context.Context) (State, error) {
	if n.closed.Load() {
		return State{}, ErrClosed
	}
	return State{HardState: EmptyHardState}, nil
}

// Append implements Store.
func (n *Noop) Append(context.Context, HardState, []Entry) error {
	if n.closed.Load() {
		return ErrClosed
	}
	return nil
}

// SaveSnapshot implements Store.
func (n *Noop) SaveSnapshot(context.Context, Snapshot) error {
	if n.closed.Load() {
		return ErrClosed
	}
	return nil
}

// Size implements Store; a Noop store holds nothing.
func (n *Noop) Size() int64 { return 0 }

// Close implements Store.
func (n *Noop) Close() error {
	n.closed.Store(true)
	return nil
}
