package raft

// Proposals: Start, and the queue that keeps proposers from lining up on the
// node's lock.
//
// Every goroutine that drives the core takes n.mu: the loop, the ticker, the
// senders stepping answers, the RPC handlers. With many proposers also taking
// it once per Start, a contended n.mu switched to Go's starvation mode (a
// waiter that waited more than 1 ms gets the lock handed over in FIFO order)
// and the loop queued behind hundreds of proposers for every batch: a
// convoy that made a few percent of commits wait milliseconds. A proposer
// therefore never waits for n.mu: it proposes at once if the lock is free
// (TryLock), and otherwise queues its command for whoever holds the lock,
// which proposes every queued command in one go, in arrival order, before
// and after its own work (locked) and again after releasing the lock
// (serveQueued). A proposer waits only for that, not for a turn on the lock.

import (
	"sync"
	"sync/atomic"
)

// proposal is a Start call waiting in the queue for its answer.
type proposal struct {
	cmd []byte
	// done receives the answer, once (capacity one).
	done chan proposed
}

// proposed is Start's answer.
type proposed struct {
	index, term uint64
	ok          bool
}

// proposalPool recycles proposals with their channels: a queued Start then
// allocates nothing.
var proposalPool = sync.Pool{New: func() any { return &proposal{done: make(chan proposed, 1)} }}

// proposalQueue is the Start calls waiting for the holder of n.mu.
type proposalQueue struct {
	mu sync.Mutex // guards q
	q  []*proposal
	// n is len(q), read by lock holders without mu to see whether there is
	// work.
	n atomic.Int32
	// spare is the slice the previous drain emptied, reused by the next
	// push (guarded by n.mu: only drains swap it).
	spare []*proposal
}

func (q *proposalQueue) push(p *proposal) {
	q.mu.Lock()
	q.q = append(q.q, p)
	q.n.Store(int32(len(q.q)))
	q.mu.Unlock()
}

// Start proposes cmd. If this node is the leader it appends cmd to its log
// and returns the index the command will have if it commits, the current
// term and true. Otherwise it returns isLeader false. Start does not wait
// for the command to commit; it may wait for the node's lock holder of the
// moment to append cmd for it (microseconds, or a store call of a follower
// that is not the leader anyway), never for the application.
//
// The node takes cmd over without copying it: it keeps the slice in its log,
// sends it to followers and hands it to Apply as ApplyMsg.Command. The
// caller must not modify cmd after the call, whatever Start returned; a
// caller that reuses a buffer passes a copy.
func (n *Node) Start(cmd []byte) (index, term uint64, isLeader bool) {
	var r proposed
	if n.mu.TryLock() {
		func() {
			defer n.mu.Unlock()
			n.proposeQueuedLocked() // the ones that came first
			r = n.proposeLocked(cmd)
			n.publishLocked()
		}()
		n.serveQueued()
	} else {
		if n.ctx.Err() != nil {
			// Killed: refuse at once. A queued proposal would go unanswered
			// (see below), so callers retrying in a loop would grow the
			// queue without bound, and every goroutine that takes n.mu —
			// the daemons Kill waits for among them — would serve it.
			r.term, _ = n.State()
			return 0, r.term, false
		}
		p := proposalPool.Get().(*proposal)
		p.cmd = cmd
		n.props.push(p)
		// The holder may have released n.mu before it could see p, or hold
		// it outside locked (Status, say): the loop serves p then.
		n.serveQueued()
		n.kick()
		select {
		case r = <-p.done:
			p.cmd = nil
			proposalPool.Put(p)
		case <-n.ctx.Done():
			// Kill refuses the queued proposals before it cancels n.ctx,
			// so p is answered already unless Kill came before the push;
			// p is not reused either way.
			select {
			case r = <-p.done:
			default:
				r.term, _ = n.State()
			}
		}
	}
	if r.ok {
		n.kick()
	}
	return r.index, r.term, r.ok
}

// proposeLocked proposes cmd to the core. n.mu must be held.
func (n *Node) proposeLocked(cmd []byte) proposed {
	if n.usable() != nil {
		return proposed{term: n.core.view().term}
	}
	i, t, ok := n.core.propose(cmd)
	return proposed{index: i, term: t, ok: ok}
}

// proposeQueuedLocked proposes the queued Start calls, in the order they
// came, and answers them. n.mu must be held.
func (n *Node) proposeQueuedLocked() {
	if n.props.n.Load() == 0 {
		return
	}
	n.props.mu.Lock()
	q := n.props.q
	n.props.q = n.props.spare
	n.props.n.Store(0)
	n.props.mu.Unlock()
	ok := false
	for _, p := range q {
		r := n.proposeLocked(p.cmd)
		ok = ok || r.ok
		p.done <- r
	}
	clear(q)
	n.props.spare = q[:0]
	if ok {
		n.kick()
	}
}

// serveQueued proposes the Start calls queued while n.mu was held, unless
// another goroutine holds it now (and will serve them as it leaves locked).
// n.mu must not be held.
//
// It serves one round only: the calls queued meanwhile are served by the
// next holder, at the latest the loop, which every queued Start kicks; a
// goroutine that served round after round could be kept from its own work
// (the loop from its batches) by proposers that never stop.
func (n *Node) serveQueued() {
	if n.props.n.Load() > 0 && n.mu.TryLock() {
		defer n.mu.Unlock()
		n.proposeQueuedLocked()
		n.publishLocked()
	}
}
