package raft

// The core's logical clock: election timeouts, heartbeats and the check-quorum lease.

func (c *core) tick() {
	if c.role == Leader {
		c.tickLeader()
		return
	}
	c.electionElapsed++
	if c.electionElapsed >= c.timeout {
		c.note("election timeout after %d ticks as %v in term %d", c.electionElapsed, c.role, c.term)
		c.campaign()
	}
}

func (c *core) tickLeader() {
	c.electionElapsed++
	if c.electionElapsed >= c.cfg.electionTicks {
		c.electionElapsed = 0
	}
	if c.transferee != NoLeader {
		// Give up a transfer that did not happen within the longest
		// election timeout plus the shortest: time for the target to be
		// caught up (its sends may be queued behind calls that time out)
		// and to win.
		c.transferElapsed++
		if c.transferElapsed >= c.cfg.electionTicksMax+c.cfg.electionTicks {
			c.note("leadership transfer to %d abandoned after %d ticks", c.transferee, c.transferElapsed)
			c.endTransfer()
		}
	}
	for _, p := range c.peerIDs {
		c.prs[p].silent++
	}
	for i := 0; i < len(c.leaving); {
		p := c.leaving[i]
		if c.prs[p].silent++; c.prs[p].silent >= c.cfg.electionTicks {
			c.dropLeaving(p) // unreachable: it may never learn
			continue
		}
		i++
	}
	if c.cfg.checkQuorum {
		// Step down once a majority has not answered within two minimum
		// election timeouts: one lost or late heartbeat answer is no reason
		// to give up leadership.
		window := 2 * c.cfg.electionTicks
		active := 0
		for _, p := range c.voters {
			if p == c.id || c.prs[p].silent < window {
				active++
			}
		}
		if active < quorum(len(c.voters)) {
			c.note("check-quorum: only %d of %d voters answered within %d ticks in term %d; stepping down",
				active, len(c.voters), window, c.term)
			c.becomeFollower(c.term, NoLeader)
			return
		}
	}
	if c.round > c.confirmed {
		c.roundElapsed++
		if c.roundElapsed == roundWidenTicks {
			// The peers asked have not confirmed the round within a tick or
			// two: ask the others too.
			for _, p := range c.peerIDs {
				if c.prs[p].sentRound < c.round {
					c.heartbeat(p)
				}
			}
		}
	}
	for _, ps := range [2][]int{c.peerIDs, c.leaving} {
		for _, p := range ps {
			pr := c.prs[p]
			pr.idle++
			// Heartbeat when idle; also tell a follower, at most once a
			// tick, that entries it holds committed, so that it applies
			// them without waiting a whole heartbeat interval.
			if pr.idle >= c.cfg.heartbeatTicks ||
				(pr.state == stateReplicate && min(c.log.commit, pr.match) > pr.sentCommit) {
				c.heartbeat(p)
			}
		}
	}
}

// heartbeat sends p whatever keeps it following and tells it the commit
// index: a retry of a probe or snapshot chunk, or an empty AppendEntries at
// the index known to match.
func (c *core) heartbeat(p int) {
	pr := c.prs[p]
	pr.backoff = false
	switch pr.state {
	case stateProbe:
		pr.paused = false
		c.sendAppend(p)
	case stateSnapshot:
		if !pr.paused {
			c.sendChunk(p)
		}
	case stateReplicate:
		t, ok := c.log.term(pr.match)
		if !ok {
			pr.becomeSnapshot(c.log.snap.Index)
			c.sendChunk(p)
			return
		}
		c.sendAE(p, pr.match, t, nil)
	}
}
