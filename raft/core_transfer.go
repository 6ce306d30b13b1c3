package raft

// The core's leadership transfer: TimeoutNow and the transfer's end.

import (
	"fmt"

	"github.com/ruaft/ruaft/persist"
)

func (c *core) sendTimeoutNow(p int) {
	c.send(message{to: p, tn: &TimeoutNowRequest{Term: c.term, LeaderID: c.id, LastLogIndex: c.log.lastIndex()}})
}

func (c *core) handleTimeoutNow(req *TimeoutNowRequest) *TimeoutNowResponse {
	if !c.observeLeader(req.Term, req.LeaderID) {
		return &TimeoutNowResponse{Term: c.term}
	}
	// The leader appends nothing while a transfer runs and an entry when it
	// ends one without stepping down: an entry of its term past the index
	// it sent means this request outlived its transfer.
	if last := c.log.lastIndex(); last > req.LastLogIndex && c.log.lastTerm() == req.Term {
		c.note("ignored a stale TimeoutNow from leader %d (sent at index %d, log at %d)", req.LeaderID, req.LastLogIndex, last)
		return &TimeoutNowResponse{Term: c.term}
	}
	if !c.isVoter() || !c.mayCampaign() {
		// A node a voter told of its removal keeps its stale configuration
		// (it may still name it a voter) but must not campaign.
		c.note("ignored a TimeoutNow from leader %d: not a voter, or removed", req.LeaderID)
		return &TimeoutNowResponse{Term: c.term}
	}
	c.note("TimeoutNow from leader %d", req.LeaderID)
	c.becomeCandidate(true)
	return &TimeoutNowResponse{Term: req.Term, Accepted: true}
}

func (c *core) handleTimeoutNowResponse(m message, resp *TimeoutNowResponse) {
	c.stepDownIfNewer(resp.Term)
}

// transferLeadership starts handing leadership to replica to.
func (c *core) transferLeadership(to int) error {
	if c.role != Leader {
		return ErrNotLeader
	}
	if !c.conf().IsVoter(to) {
		return fmt.Errorf("%w: %d is not a voter", ErrBadPeer, to)
	}
	if to == c.id {
		return nil
	}
	if c.transferee != NoLeader && c.transferee != to {
		c.note("leadership transfer to %d replaced by one to %d", c.transferee, to)
		c.endTransfer()
	}
	c.transferee = to
	// The transfer is abandoned after a while (tickLeader).
	c.transferElapsed = 0
	pr := c.prs[to]
	pr.backoff = false
	if pr.match == c.log.lastIndex() {
		c.sendTimeoutNow(to)
	} else if pr.state == stateProbe {
		pr.paused = false
	}
	return nil
}

// endTransfer ends the running leadership transfer without stepping down.
// It appends a no-op so that a TimeoutNow sent for the transfer, which
// carries the last index at the time, is recognisably stale wherever it
// arrives late (handleTimeoutNow).
func (c *core) endTransfer() {
	c.transferee = NoLeader
	last := c.log.lastIndex()
	c.log.append(Entry{Index: last + 1, Term: c.term, Type: persist.EntryNoop})
	if c.soleVoter() {
		c.maybeCommit()
	}
}
