package raft

// The core's ReadIndex reads: confirmation rounds on the leader and reads forwarded by followers.

import (
	"cmp"
	"slices"
)

// readState answers a read request: the index to wait for, or an error.
type readState struct {
	id    uint64
	index uint64
	// term is the leader's term in which index was confirmed (the term of
	// the leader that answered, for a forwarded read).
	term uint64
	err  error
}

// pendingRead is a read request waiting for its round to be acknowledged.
type pendingRead struct {
	id, index, round uint64
	// acker is the follower that asked for this read with a ReadIndex
	// request of the leader's term, or NoLeader. The request was sent after
	// the reads it stands for began, in the leader's term: it is that
	// follower's acknowledgement, as of a time after the reads began, that
	// it has not moved to a later term (see addRead).
	acker int
}

// roundWidenTicks is how long a read round waits for the peers it asked
// before it asks all of them.
const roundWidenTicks = 2

// roundFree reports whether a new read round may start: none is in flight,
// or the one in flight is presumed lost.
func (c *core) roundFree() bool {
	return c.round <= c.confirmed || c.roundElapsed >= c.cfg.heartbeatTicks
}

// askRound sends the current round to just enough peers to confirm it with
// a majority, preferring those that acknowledged the latest rounds (the
// responsive ones); peers that already got a message of this round count.
// If they do not confirm it in time, tickLeader asks the rest. With three
// replicas a round costs one RPC.
func (c *core) askRound() {
	need := quorum(len(c.voters))
	if c.isVoter() {
		need-- // the leader
	}
	var rest []int
	for _, p := range c.voters {
		if p == c.id {
			continue
		}
		if c.prs[p].sentRound == c.round {
			need--
		} else {
			rest = append(rest, p)
		}
	}
	// Highest ackRound first; ties by id, for determinism.
	slices.SortStableFunc(rest, func(a, b int) int { return cmp.Compare(c.prs[b].ackRound, c.prs[a].ackRound) })
	for _, p := range rest {
		if need <= 0 {
			return
		}
		c.heartbeat(p)
		if c.prs[p].sentRound == c.round {
			need--
		}
	}
}

// handleReadIndexResponse answers the forwarded reads of m's batch. The
// answer is valid whatever happened to this follower meanwhile: the leader
// confirmed its leadership after it received the request, so its read index
// covers every write acknowledged before the reads began. A batch that was
// re-addressed or failed meanwhile (fwdBatch moved on) is ignored.
func (c *core) handleReadIndexResponse(m message, resp *ReadIndexResponse) {
	if m.batch == 0 || m.batch != c.fwdBatch {
		return
	}
	ids := c.fwdInflight
	c.fwdInflight, c.fwdBatch = nil, 0
	for _, id := range ids {
		if resp.OK {
			c.readStates = append(c.readStates, readState{id: id, index: resp.ReadIndex, term: resp.Term})
		} else {
			c.readStates = append(c.readStates, readState{id: id, err: ErrNotLeader})
		}
	}
}

// readIndex registers read request id; its answer comes in a later ready.
// A leader confirms it with a round; a follower that knows its leader asks
// the leader (follower read); any other node refuses it.
func (c *core) readIndex(id uint64) {
	switch {
	case c.role == Leader && c.log.commit < c.noopIndex:
		c.readsAwaitNoop = append(c.readsAwaitNoop, id)
	case c.role == Leader:
		c.addRead(id, NoLeader)
	case c.role == Follower && c.lead != NoLeader:
		c.syncForwarded()
		if c.fwdBatch != 0 {
			c.readBacklog = true
		}
		c.fwdPending = append(c.fwdPending, id)
	default:
		c.readStates = append(c.readStates, readState{id: id, err: ErrNotLeader})
	}
}

// syncForwarded keeps the forwarded reads addressed to the current leader.
// When the leader or term changed, the reads queued or in flight are
// re-addressed to the new leader (the answer to the old request, if it
// comes, is ignored: fwdBatch moves on); when no leader is known, or this
// node is no longer a follower, they fail with ErrNotLeader so that their
// callers can go elsewhere.
func (c *core) syncForwarded() {
	if c.role == Follower && c.lead == c.fwdLead && c.term == c.fwdTerm {
		return
	}
	ids := append(c.fwdInflight, c.fwdPending...)
	c.fwdInflight, c.fwdPending, c.fwdBatch = nil, nil, 0
	if c.role != Leader {
		// Nothing is in flight to the new leader (or none is known): the
		// backlog behind the old request is no reason to hold the next.
		// (A leader comes here at every flush; its own backlog stays.)
		c.readBacklog = false
	}
	if c.role == Follower && c.lead != NoLeader {
		c.fwdLead, c.fwdTerm = c.lead, c.term
		c.fwdPending = ids
		return
	}
	c.fwdLead, c.fwdTerm = NoLeader, 0
	c.failForwarded(ids, ErrNotLeader)
}

func (c *core) failForwarded(ids []uint64, err error) {
	for _, id := range ids {
		c.readStates = append(c.readStates, readState{id: id, err: err})
	}
}

// flushForwardedReads sends the queued forwarded reads to the leader in one
// request, unless one is in flight.
func (c *core) flushForwardedReads() {
	if c.fwdBatch != 0 || len(c.fwdPending) == 0 {
		return
	}
	if c.holdReads && c.readBacklog {
		c.readsHeld = true
		return
	}
	c.readBacklog = false
	c.fwdSeq++
	c.fwdBatch = c.fwdSeq
	c.fwdInflight, c.fwdPending = c.fwdPending, nil
	c.fwdRequests++
	c.send(message{to: c.fwdLead, batch: c.fwdBatch, ri: &ReadIndexRequest{Term: c.term, FollowerID: c.id}})
}

// handleReadIndex is a leader's side of a follower read: it refuses at once
// unless it leads (and the follower is not ahead of it: then it may be
// deposed), and otherwise registers the request as read id, answered as its
// own reads are. A request of the leader's own term counts as the
// follower's acknowledgement (see addRead).
func (c *core) handleReadIndex(id uint64, req *ReadIndexRequest) bool {
	if c.role != Leader || req.Term > c.term {
		return false
	}
	if c.log.commit < c.noopIndex {
		c.readsAwaitNoop = append(c.readsAwaitNoop, id)
		return true
	}
	acker := NoLeader
	if req.Term == c.term && req.FollowerID != c.id && c.conf().IsVoter(req.FollowerID) {
		acker = req.FollowerID
	}
	c.addRead(id, acker)
	return true
}

// addRead registers a read at the leader's commit index, to be answered
// once a majority is known to have been in the leader's term at some time
// after the read began: then no leader of a later term was elected before
// it began (that takes a majority in a later term, and terms never go
// back), so every write acknowledged before it began is at or below the
// index. The leader counts itself (it still leads); a round started after
// the read arrived (at the next flush) gets the others' acknowledgements.
// The follower of a forwarded read (acker) already acknowledged: its
// request, sent after its reads began, carried the leader's term. With three
// replicas that makes a majority, and the read needs no round at all.
func (c *core) addRead(id uint64, acker int) {
	r := pendingRead{id: id, index: c.log.commit, round: c.round + 1, acker: acker}
	if c.readAcks(r) >= quorum(len(c.voters)) {
		c.readStates = append(c.readStates, readState{id: id, index: r.index, term: c.term})
		return
	}
	c.reads = append(c.reads, r)
	c.needRound = true
	if c.round > c.confirmed {
		c.readBacklog = true // arrived while a round is in flight
	}
}

// readAcks counts the voters known to have been in the leader's term at
// some time after read r began: the leader, r's acker, and the peers that
// acknowledged r's round or a later one. Learners do not count.
func (c *core) readAcks(r pendingRead) int {
	n := 0
	for _, p := range c.voters {
		switch {
		case p == c.id:
			n++
		case p == r.acker:
			n++
		case c.prs[p] != nil && c.prs[p].ackRound >= r.round:
			n++
		}
	}
	return n
}

// checkReads notes the highest round a majority acknowledged and answers the
// reads that are confirmed.
func (c *core) checkReads() {
	var buf [16]uint64
	rounds := buf[:0]
	for _, p := range c.voters {
		switch {
		case p == c.id:
			rounds = append(rounds, c.round)
		case c.prs[p] != nil:
			rounds = append(rounds, c.prs[p].ackRound)
		default:
			rounds = append(rounds, 0)
		}
	}
	if len(rounds) > 0 {
		c.confirmed = max(c.confirmed, quorumMin(rounds))
	}
	q := quorum(len(c.voters))
	kept := c.reads[:0]
	for _, r := range c.reads {
		if r.round <= c.confirmed || c.readAcks(r) >= q {
			c.readStates = append(c.readStates, readState{id: r.id, index: r.index, term: c.term})
		} else {
			kept = append(kept, r)
		}
	}
	c.reads = kept
}

func (c *core) failReads(err error) {
	for _, r := range c.reads {
		c.readStates = append(c.readStates, readState{id: r.id, err: err})
	}
	for _, id := range c.readsAwaitNoop {
		c.readStates = append(c.readStates, readState{id: id, err: err})
	}
	c.reads, c.readsAwaitNoop = nil, nil
	c.needRound, c.readBacklog = false, false
}
