package raft

// The core's log replication: the leader's AppendEntries, the follower's answer, the commit index.

import (
	"github.com/ruaft/ruaft/persist"
)

// flush sends every follower what its progress allows, and starts a read
// round if one is needed.
func (c *core) flush() {
	c.syncForwarded()
	c.readsHeld = false
	if c.role != Leader {
		c.flushForwardedReads()
		return
	}
	start := c.needRound && c.roundFree()
	if start && c.holdReads && c.readBacklog {
		start, c.readsHeld = false, true
	}
	if start {
		c.needRound, c.readBacklog = false, false
		c.round++
		c.readRounds++
		c.roundElapsed = 0
	}
	// Appends go first: each one carries the new round too.
	for _, p := range c.peerIDs {
		c.sendAppend(p)
	}
	for _, p := range c.leaving {
		c.sendAppend(p)
	}
	if start {
		c.askRound()
		c.checkReads()
	}
}

func (c *core) sendAppend(p int) {
	pr := c.prs[p]
	if pr.backoff {
		return
	}
	switch pr.state {
	case stateSnapshot:
		if !pr.paused {
			c.sendChunk(p)
		}
	case stateProbe:
		if pr.paused {
			return
		}
		prevTerm, ok := c.log.term(pr.next - 1)
		if !ok {
			pr.becomeSnapshot(c.log.snap.Index)
			c.sendChunk(p)
			return
		}
		ents, _ := c.log.limitedSlice(pr.next, c.cfg.maxEntries, c.cfg.maxBytes)
		c.sendAE(p, pr.next-1, prevTerm, ents)
		pr.paused = true
	case stateReplicate:
		for pr.next <= c.log.lastIndex() && !pr.inflightFull(c.cfg.maxInflight, c.cfg.maxInflightBytes) {
			prevTerm, ok := c.log.term(pr.next - 1)
			if !ok {
				pr.becomeSnapshot(c.log.snap.Index)
				c.sendChunk(p)
				return
			}
			ents, size := c.log.limitedSlice(pr.next, c.cfg.maxEntries, c.cfg.maxBytes)
			c.sendAE(p, pr.next-1, prevTerm, ents)
			last := ents[len(ents)-1].Index
			pr.inflights = append(pr.inflights, inflight{last: last, bytes: size})
			pr.inflightBytes += size
			pr.next = last + 1
		}
	}
}

func (c *core) sendAE(p int, prev, prevTerm uint64, ents []Entry) {
	c.send(message{to: p, match: c.prs[p].match, confGen: c.confGen, ae: &AppendEntriesRequest{
		Term:         c.term,
		LeaderID:     c.id,
		PrevLogIndex: prev,
		PrevLogTerm:  prevTerm,
		Entries:      ents,
		LeaderCommit: c.log.commit,
	}})
}

// maybeCommit advances the commit index to the highest index a majority of
// the voters of the configuration in force stores, if that entry is of the
// current term (Raft paper, 5.4.2). The leader counts itself only up to its
// durable index, and not at all once it is no voter (its own removal).
func (c *core) maybeCommit() {
	var buf [16]uint64 // no allocation for clusters of up to 16
	matches := buf[:0]
	for _, p := range c.voters {
		switch {
		case p == c.id:
			matches = append(matches, c.log.durable)
		case c.prs[p] != nil:
			matches = append(matches, c.prs[p].match)
		default:
			matches = append(matches, 0)
		}
	}
	if len(matches) == 0 {
		return
	}
	mi := quorumMin(matches)
	if mi <= c.log.commit {
		return
	}
	if t, _ := c.log.term(mi); t != c.term {
		return
	}
	wasNoop := c.log.commit >= c.noopIndex
	c.commitTo(mi)
	if !wasNoop && c.log.commit >= c.noopIndex {
		for _, id := range c.readsAwaitNoop {
			c.addRead(id, NoLeader)
		}
		c.readsAwaitNoop = nil
	}
	c.stepDownIfRemoved()
}

func (c *core) commitTo(i uint64) {
	if i > c.log.commit {
		if i > c.log.lastIndex() {
			c.violate("commit %d beyond last index %d", i, c.log.lastIndex())
			return
		}
		c.log.commit = i
	}
}

// propose appends a command to a leader's log.
func (c *core) propose(data []byte) (index, term uint64, ok bool) {
	if c.role != Leader || c.transferee != NoLeader {
		return 0, c.term, false
	}
	index = c.log.lastIndex() + 1
	c.log.append(Entry{Index: index, Term: c.term, Type: persist.EntryCommand, Data: data})
	if c.soleVoter() {
		c.maybeCommit()
	}
	return index, c.term, true
}

func (c *core) handleAppendEntries(req *AppendEntriesRequest) *AppendEntriesResponse {
	if !c.observeLeader(req.Term, req.LeaderID) {
		return &AppendEntriesResponse{Term: c.term, LastLogIndex: c.log.lastIndex()}
	}
	prev, prevTerm, ents := req.PrevLogIndex, req.PrevLogTerm, req.Entries
	lastNew := prev + uint64(len(ents))
	// Entries the snapshot covers are committed, so they match the leader's.
	if snap := c.log.snap; prev < snap.Index {
		skip := snap.Index - prev
		if skip >= uint64(len(ents)) {
			return &AppendEntriesResponse{Term: c.term, Success: true, MatchIndex: lastNew, LastLogIndex: c.log.lastIndex()}
		}
		ents = ents[skip:]
		prev, prevTerm = snap.Index, snap.Term
	}
	if !c.log.matchTerm(prev, prevTerm) {
		resp := &AppendEntriesResponse{Term: c.term, LastLogIndex: c.log.lastIndex()}
		if last := c.log.lastIndex(); prev > last {
			resp.ConflictIndex = last + 1
		} else {
			ct, _ := c.log.term(prev)
			resp.ConflictTerm = ct
			resp.ConflictIndex = c.log.firstIndexOfTerm(prev, ct)
		}
		return resp
	}
	for i, e := range ents {
		if e.Index > c.log.lastIndex() {
			c.log.append(cloneEntries(ents[i:])...)
			c.logChanged(e.Index)
			break
		}
		if t, _ := c.log.term(e.Index); t != e.Term {
			if e.Index <= c.log.commit {
				c.violate("log matching broken: leader %d sends %d/%d over committed %d/%d (commit %d)",
					req.LeaderID, e.Index, e.Term, e.Index, t, c.log.commit)
				return &AppendEntriesResponse{Term: c.term, LastLogIndex: c.log.lastIndex()}
			}
			// The configuration in force reverts to the latest one left.
			c.log.truncateAndAppend(cloneEntries(ents[i:]))
			c.logChanged(e.Index)
			break
		}
	}
	c.commitTo(min(req.LeaderCommit, lastNew))
	return &AppendEntriesResponse{Term: c.term, Success: true, MatchIndex: lastNew, LastLogIndex: c.log.lastIndex()}
}

// cloneEntries copies es and their data. The data of all of them goes
// into one allocation rather than one each: the entries of a message enter
// the log, and leave it, together. Each entry's Data is capped at its own
// length, so appending to one never writes into the next.
func cloneEntries(es []Entry) []Entry {
	out := make([]Entry, len(es))
	n := 0
	for _, e := range es {
		n += len(e.Data)
	}
	data := make([]byte, 0, n)
	for i, e := range es {
		if e.Data != nil { // nil stays nil, as bytes.Clone keeps it
			start := len(data)
			data = append(data, e.Data...)
			e.Data = data[start:len(data):len(data)]
		}
		out[i] = e
	}
	return out
}

// leaderAck handles the part common to every answer a leader gets in its
// term: the peer is active and acknowledged the message's read round.
func (c *core) leaderAck(m message, reqTerm, respTerm uint64) bool {
	if c.role == Leader && respTerm > c.term && c.isLeaving(m.to) {
		// A node this leader removed (told of it in core.leaving) moved to
		// a later term, campaigning alone: it is no member, its term no
		// reason to step down. It learns of its removal no more.
		c.note("removed node %d answered with term %d > %d; no longer replicating to it", m.to, respTerm, c.term)
		c.dropLeaving(m.to)
		return false
	}
	if c.stepDownIfNewer(respTerm) || c.role != Leader || reqTerm != c.term || respTerm != c.term {
		return false
	}
	pr := c.prs[m.to]
	if pr == nil {
		return false // no longer a member
	}
	pr.silent = 0
	if m.round > pr.ackRound {
		pr.ackRound = m.round
		c.checkReads()
	}
	return true
}

func (c *core) handleAppendResponse(m message, resp *AppendEntriesResponse) {
	if !c.leaderAck(m, m.ae.Term, resp.Term) {
		return
	}
	p := m.to
	pr := c.prs[p]
	if m.confGen >= pr.since {
		pr.appVersion = resp.AppVersion
	}
	if resp.Success {
		updated := pr.maybeUpdate(resp.MatchIndex)
		pr.freeInflights(resp.MatchIndex)
		switch pr.state {
		case stateProbe:
			pr.becomeReplicate()
		case stateReplicate:
			// Everything in [match+1, next) is covered by an inflight; if
			// none is left, what was sent is lost: resend from match+1.
			if len(pr.inflights) == 0 && pr.next > pr.match+1 {
				pr.next = pr.match + 1
			}
		case stateSnapshot:
			if pr.match >= pr.snapIndex {
				pr.becomeProbe()
			}
		}
		if updated {
			c.maybeCommit()
		}
		if p == c.transferee && pr.match == c.log.lastIndex() {
			c.sendTimeoutNow(p)
		}
		if c.isLeaving(p) && min(m.ae.LeaderCommit, resp.MatchIndex) >= c.confIndex() {
			// It has the configuration that removed it, and knows it
			// committed: it will not campaign.
			c.dropLeaving(p)
		}
		return
	}
	prev := m.ae.PrevLogIndex
	if pr.state != stateSnapshot && prev <= m.match {
		// The follower had acknowledged prev in this term before this
		// append was sent, and now lacks it: it lost its log (a store that
		// does not survive restarts). Start over from what it has, in
		// either state: in probe state the next probe would otherwise ask
		// for prev again forever.
		pr.match = min(pr.match, resp.LastLogIndex)
		pr.becomeProbe()
		pr.next = c.backupHint(pr, prev, resp)
		return
	}
	switch pr.state {
	case stateReplicate:
		if prev <= pr.match {
			// The follower got this append before an earlier one that the
			// network delayed (pipelined appends may be reordered), and
			// dropped it: the logs match up to match, so restart the
			// pipeline there if the dropped entries are not yet matched.
			if n := len(m.ae.Entries); n > 0 && m.ae.Entries[n-1].Index > pr.match {
				pr.becomeReplicate()
			}
			return
		}
		pr.becomeProbe()
	case stateProbe:
		if prev != pr.next-1 {
			return // stale
		}
		pr.paused = false
	default:
		return
	}
	next := c.backupHint(pr, prev, resp)
	if next >= prev+1 {
		// No progress (only a confused follower answers so): retry at the
		// next heartbeat rather than at once.
		pr.backoff = true
	}
	pr.next = next
}

// backupHint computes where to probe next after a rejection at prev, from
// the follower's conflict hints (fast log backup).
func (c *core) backupHint(pr *progress, prev uint64, resp *AppendEntriesResponse) uint64 {
	next := resp.ConflictIndex
	if resp.ConflictTerm != 0 {
		if i := c.log.lastIndexOfTerm(prev, resp.ConflictTerm); i > 0 {
			next = i + 1
		}
	}
	next = min(next, prev)
	next = max(next, pr.match+1)
	return next
}

// handleFailure notes that m got no answer: replication to its target
// resumes from what is known at the next heartbeat.
func (c *core) handleFailure(m message) {
	if m.ri != nil {
		// The leader did not answer: fail the batch (its reads' callers
		// retry, possibly elsewhere) rather than wait another RPC timeout.
		if m.batch != 0 && m.batch == c.fwdBatch {
			c.failForwarded(c.fwdInflight, ErrNotLeader)
			c.fwdInflight, c.fwdBatch = nil, 0
		}
		return
	}
	pr := c.prs[m.to]
	if c.role != Leader || pr == nil {
		return
	}
	switch {
	case m.ae != nil && m.ae.Term == c.term:
		switch pr.state {
		case stateReplicate:
			if n := len(m.ae.Entries); n > 0 && m.ae.Entries[n-1].Index > pr.match {
				pr.becomeProbe()
				pr.backoff = true
			}
		case stateProbe:
			if m.ae.PrevLogIndex == pr.next-1 {
				pr.paused = false
				pr.backoff = true
			}
		}
	case m.is != nil && m.is.Term == c.term:
		if pr.state == stateSnapshot {
			pr.paused = false
			pr.backoff = true
		}
	}
}
