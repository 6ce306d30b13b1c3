package raft

// The node's ReadIndex reads and the wait for an index to be applied.

import (
	"context"
	"sync"
)

// ReadIndex returns an index at which a read of the application's state is
// linearizable, on the leader or on a follower (a follower read).
//
// On the leader the index is its commit index, issued only once its no-op of
// the current term has committed and a majority answered a heartbeat round
// started after the call. Concurrent calls coalesce: at most one round is in
// flight, and every call that arrives meanwhile shares the next one.
//
// On a follower that knows its leader, the follower asks the leader for the
// index, with one request for every read waiting on it (at most one request
// in flight); the leader answers under the same rules as for its own reads.
//
// When ReadIndex returns, this node's application has applied at least that
// index (its Apply call returned), so the caller can read its state at once.
// It returns ErrNotLeader on a node that knows no leader, is a candidate, or
// could not get an answer from the leader (the leader changed, was
// unreachable, or refused); the caller may retry, here or at the leader.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	rs, err := n.readIndex(ctx, (*core).startRead)
	if err != nil {
		return 0, err
	}
	return rs.index, n.waitApplied(ctx, rs.index)
}

// readChans recycles the channels of ReadIndex calls. Only a call that
// received its answer returns its channel: whoever answers removes it from
// readWaiters as it sends, under n.mu, so nothing else holds it. A call
// given up keeps its channel, which an answer may already have reached.
var readChans = sync.Pool{New: func() any { return make(chan readState, 1) }}

// readIndex registers a read with the core through register, which reports
// false if the node cannot take it (ErrNotLeader), and waits for its
// answer.
func (n *Node) readIndex(ctx context.Context, register func(c *core, id uint64) bool) (readState, error) {
	ch := readChans.Get().(chan readState)
	var (
		id  uint64
		err error
	)
	n.locked(func() {
		if err = n.usable(); err != nil {
			return
		}
		n.readID++
		id = n.readID
		if !register(n.core, id) {
			err = ErrNotLeader
			return
		}
		n.readWaiters[id] = ch
	})
	if err != nil {
		readChans.Put(ch)
		return readState{}, err
	}
	n.kick()

	var rs readState
	select {
	case rs = <-ch:
		readChans.Put(ch)
	case <-ctx.Done():
		n.mu.Lock()
		delete(n.readWaiters, id)
		n.mu.Unlock()
		return readState{}, ctx.Err()
	}
	return rs, rs.err
}

// waitApplied waits until the application applied index.
func (n *Node) waitApplied(ctx context.Context, index uint64) error {
	for n.appliedDone.Load() < index {
		n.mu.Lock()
		if err := n.usable(); err != nil {
			n.mu.Unlock()
			return err
		}
		n.appliedWaiting.Store(true)
		ch := n.appliedCh
		// Checked again after announcing the wait (see appliedWaiting).
		done := n.appliedDone.Load() >= index
		n.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.ctx.Done():
			return ErrKilled
		}
	}
	return nil
}
