package raft

// The core's elections: role changes, pre-vote and vote requests, and their answers.

import (
	"github.com/ruaft/ruaft/persist"
)

func (c *core) becomeFollower(term uint64, lead int) {
	if term > c.term {
		c.term = term
		c.vote = persist.NoVote
		c.recv = nil // sent in an older term: never continued
	}
	if c.role == Leader {
		c.failReads(ErrNotLeader)
	}
	c.role = Follower
	c.lead = lead
	c.votes = nil
	c.transferee = NoLeader
	c.electionElapsed = 0
	c.resetTimeout()
}

func (c *core) campaign() {
	if !c.mayCampaign() {
		// A learner, a removed node or one waiting to join never
		// campaigns (but see mayCampaign's exception). It has not heard
		// from its leader for an election timeout, though: it stops
		// naming it (as a pre-candidate does), so that clients and
		// forwarding replicas do not follow a stale hint; the leader's
		// next message names it again.
		c.electionElapsed = c.timeout
		c.lead = NoLeader
		return
	}
	if c.term >= MaxTerm {
		c.note("term %d is MaxTerm: not campaigning", c.term)
		c.electionElapsed = 0
		return
	}
	if c.cfg.preVote {
		c.becomePreCandidate()
	} else {
		c.becomeCandidate(false)
	}
}

// mayCampaign reports whether c may stand for election: it votes in the
// configuration in force, or it voted in the one before and the one in
// force, which removes it, is not known to be committed. That is a leader
// that removed itself and lost leadership (a crash, a partition) before the
// removal committed; it may hold the only copy of the longest log, so the
// remaining voters cannot win without its vote, and it must lead (by the
// configuration in force, not counting itself) until the removal commits,
// then step down (stepDownIfRemoved), as the leader it was would have.
// Otherwise a live majority of both configurations could stay leaderless
// forever.
func (c *core) mayCampaign() bool {
	if c.removedAt > c.confIndex() {
		return false // told by a voter: a newer committed configuration removed it
	}
	if c.isVoter() {
		return true
	}
	// removedAt == confIndex: a voter told it the configuration in force,
	// which removes it, committed (its leader may not replicate to it).
	k := len(c.confs)
	return k >= 2 && c.confIndex() > c.log.commit && c.removedAt < c.confIndex() && c.confs[k-2].m.IsVoter(c.id)
}

func (c *core) becomePreCandidate() {
	c.role = PreCandidate
	c.lead = NoLeader
	c.startVotes()
	c.electionElapsed = 0
	c.resetTimeout()
	if tally(c.voters, c.votes) == voteWon {
		c.becomeCandidate(false)
		return
	}
	c.requestVotes(c.term+1, true, false)
}

func (c *core) becomeCandidate(transfer bool) {
	if c.term >= MaxTerm {
		c.note("term %d is MaxTerm: not campaigning", c.term)
		c.becomeFollower(c.term, NoLeader)
		return
	}
	c.role = Candidate
	c.term++
	c.recv = nil
	c.vote = c.id
	c.lead = NoLeader
	c.startVotes()
	c.electionElapsed = 0
	c.resetTimeout()
	if tally(c.voters, c.votes) == voteWon {
		c.becomeLeader()
		return
	}
	c.requestVotes(c.term, false, transfer)
}

func (c *core) startVotes() {
	c.votes = map[int]int8{c.id: 1}
}

func (c *core) requestVotes(term uint64, pre, transfer bool) {
	for _, p := range c.voters {
		if p == c.id {
			continue
		}
		c.send(message{to: p, rv: &RequestVoteRequest{
			Term:               term,
			CandidateID:        c.id,
			LastLogIndex:       c.log.lastIndex(),
			LastLogTerm:        c.log.lastTerm(),
			PreVote:            pre,
			LeadershipTransfer: transfer,
		}})
	}
}

func (c *core) becomeLeader() {
	c.role = Leader
	c.lead = c.id
	c.votes = nil
	c.transferee = NoLeader
	c.electionElapsed = 0
	last := c.log.lastIndex()
	clear(c.prs)
	c.leaving = c.leaving[:0]
	c.syncProgress()
	c.confirmed, c.roundElapsed = c.round, 0
	c.readBacklog = false // nothing in flight; a follower's backlog is void
	c.noopIndex = last + 1
	c.log.append(Entry{Index: last + 1, Term: c.term, Type: persist.EntryNoop})
	c.maybeCommit()
}

// heardLeader reports whether c leads, or heard from its leader within the
// minimum election timeout.
func (c *core) heardLeader() bool {
	return c.lead != NoLeader && c.electionElapsed < c.cfg.electionTicks
}

// inLease reports whether c heard from a leader within the minimum election
// timeout, in which case it refuses to help depose it.
func (c *core) inLease() bool {
	return c.cfg.checkQuorum && c.lead != NoLeader && c.electionElapsed < c.cfg.electionTicks
}

func (c *core) handleRequestVote(req *RequestVoteRequest) *RequestVoteResponse {
	resp := c.answerVote(req)
	resp.RemovedAt = c.removedNotice(req.CandidateID)
	return resp
}

// committedConf returns the latest configuration known to be committed and
// the index it took effect at: the one stored with the snapshot or the
// latest configuration entry at or below the commit index.
func (c *core) committedConf() confAt {
	for k := len(c.confs) - 1; k > 0; k-- {
		if c.confs[k].index <= c.log.commit {
			return c.confs[k]
		}
	}
	return c.confs[0]
}

// removedNotice returns the index of this node's committed configuration if
// it leaves out candidate, else 0. A committed configuration is never
// undone, and every later one descends from it: a candidate whose own
// configuration is older than it can only be a member again through a
// later change it will receive from a leader, so it may stop campaigning
// (handleVoteResponse). One whose configuration is at or past that index
// knows more than this node (a promotion this node missed) and ignores it.
func (c *core) removedNotice(candidate int) uint64 {
	cc := c.committedConf()
	if len(cc.m.Members) == 0 || cc.m.Contains(candidate) {
		return 0 // a joiner knows nothing; a member is not removed
	}
	return cc.index
}

// noteRemoved handles a voter's answer that a committed configuration at
// index at leaves this node out: if its own configuration is older, it was
// removed while cut off, stops campaigning and says so (once per notice).
//
// A notice for the configuration in force itself counts when that
// configuration leaves this node out: the node is a leader that removed
// itself and lost leadership before it learned the removal committed
// (mayCampaign's exception). The new leader does not replicate to a node
// outside its configuration, so the notice is all it will hear of it.
func (c *core) noteRemoved(at uint64, from int) {
	if at <= c.removedAt || at < c.confIndex() || (at == c.confIndex() && c.conf().Contains(c.id)) {
		return
	}
	c.removedAt = at
	c.note("removed from the cluster: %d's committed configuration at index %d leaves this node out (ours is at %d); not campaigning",
		from, at, c.confIndex())
	if c.role == PreCandidate || c.role == Candidate {
		c.becomeFollower(c.term, NoLeader)
	}
}

// removed reports whether this node knows it is no member (Status.Removed).
func (c *core) removed() bool {
	m := c.conf()
	return c.removedAt > c.confIndex() || (len(m.Members) > 0 && !m.Contains(c.id))
}

func (c *core) answerVote(req *RequestVoteRequest) *RequestVoteResponse {
	if !c.plausibleTerm(req.Term) {
		c.note("refused a vote request from %d with implausible term %d (ours %d)", req.CandidateID, req.Term, c.term)
		return &RequestVoteResponse{Term: c.term}
	}
	if !c.conf().IsVoter(req.CandidateID) && c.heardLeader() {
		// A node outside the configuration gets no vote, and its term is
		// not adopted, while this node hears from a leader (whatever
		// LeadershipTransfer says, and with check-quorum off too): a
		// removed node that never learned of its removal cannot disrupt
		// the cluster. Without a leader it is heard as any candidate: it
		// may be a voter this node does not know of yet (a promotion it
		// missed), whose vote a live majority needs; a removed node still
		// cannot win, since a majority of the configuration that removed
		// it holds a longer log (Raft thesis 4.2.3).
		c.note("refused a vote request from %d: not a voter of %v, and leader %d is heard", req.CandidateID, c.conf(), c.lead)
		return &RequestVoteResponse{Term: c.term}
	}
	if req.Term > c.term && c.inLease() && !req.LeadershipTransfer {
		return &RequestVoteResponse{Term: c.term}
	}
	if req.Term < c.term {
		return &RequestVoteResponse{Term: c.term}
	}
	upToDate := c.log.isUpToDate(req.LastLogIndex, req.LastLogTerm)
	if req.PreVote {
		canVote := req.Term > c.term || c.vote == req.CandidateID || (c.vote == persist.NoVote && c.lead == NoLeader)
		if canVote && upToDate {
			return &RequestVoteResponse{Term: req.Term, VoteGranted: true}
		}
		return &RequestVoteResponse{Term: c.term}
	}
	if req.Term > c.term {
		c.note("vote request from %d has term %d > %d", req.CandidateID, req.Term, c.term)
		c.becomeFollower(req.Term, NoLeader)
	}
	canVote := c.vote == req.CandidateID || (c.vote == persist.NoVote && c.lead == NoLeader)
	if canVote && upToDate {
		c.vote = req.CandidateID
		c.electionElapsed = 0
		return &RequestVoteResponse{Term: c.term, VoteGranted: true}
	}
	return &RequestVoteResponse{Term: c.term}
}

func (c *core) handleVoteResponse(m message, resp *RequestVoteResponse) {
	if resp.RemovedAt > 0 && c.role != Leader {
		c.noteRemoved(resp.RemovedAt, m.to)
	}
	if !(m.rv.PreVote && resp.VoteGranted) && c.stepDownIfNewer(resp.Term) {
		return
	}
	switch {
	case c.role == PreCandidate && m.rv.PreVote && m.rv.Term == c.term+1:
	case c.role == Candidate && !m.rv.PreVote && m.rv.Term == c.term && resp.Term == c.term:
	default:
		return // stale
	}
	if resp.VoteGranted {
		c.votes[m.to] = 1
	} else {
		c.votes[m.to] = -1
	}
	switch tally(c.voters, c.votes) {
	case voteWon:
		if c.role == PreCandidate {
			c.becomeCandidate(false)
		} else {
			c.becomeLeader()
		}
	case voteLost:
		c.note("lost the %v election for term %d", c.role, m.rv.Term)
		c.becomeFollower(c.term, NoLeader)
	}
}
