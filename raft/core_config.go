package raft

// The core's cluster configuration (Raft thesis ch. 4, single-server
// changes): the configuration in force is the latest in the log, committed
// or not; it is tracked as the log changes (appends, truncations, snapshots)
// and decides who votes, who counts in quorums and whom a leader replicates
// to.

import (
	"fmt"
	"slices"

	"github.com/ruaft/ruaft/persist"
)

// confAt is a configuration and the log index it took effect at.
type confAt struct {
	index uint64
	m     Membership
}

// loadConfs returns the configurations of a loaded state: the one stored
// with the snapshot (or bootstrap, for a store written before configurations
// were stored, or holding nothing), then one per configuration entry of the
// log, in order.
func loadConfs(st persist.State, bootstrap Membership) ([]confAt, error) {
	base := bootstrap
	if len(st.Snapshot.Config) > 0 {
		m, err := decodeMembership(st.Snapshot.Config)
		if err != nil {
			return nil, fmt.Errorf("snapshot %d: %w", st.Snapshot.Index, err)
		}
		base = m
	}
	confs := []confAt{{index: st.Snapshot.Index, m: base}}
	for _, e := range st.Entries {
		if e.Type != persist.EntryConfig {
			continue
		}
		m, err := decodeMembership(e.Data)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", e.Index, err)
		}
		confs = append(confs, confAt{index: e.Index, m: m})
	}
	return confs, nil
}

// conf returns the configuration in force: the latest in the log.
func (c *core) conf() Membership { return c.confs[len(c.confs)-1].m }

// confIndex returns the log index of the configuration in force (the
// snapshot index for one stored with the snapshot).
func (c *core) confIndex() uint64 { return c.confs[len(c.confs)-1].index }

// confAtIndex returns the configuration in force at log index i.
func (c *core) confAtIndex(i uint64) Membership {
	for k := len(c.confs) - 1; k > 0; k-- {
		if c.confs[k].index <= i {
			return c.confs[k].m
		}
	}
	return c.confs[0].m
}

// isVoter reports whether this node votes in the configuration in force:
// only voters campaign.
func (c *core) isVoter() bool { return c.conf().IsVoter(c.id) }

// soleVoter reports whether this node alone makes a quorum.
func (c *core) soleVoter() bool { return len(c.voters) == 1 && c.voters[0] == c.id }

// confChanged recomputes what derives from the configuration in force; a
// leader starts or stops replicating to the members that came or went.
func (c *core) confChanged() {
	m := c.conf()
	c.voters = m.Voters()
	c.peerIDs = c.peerIDs[:0]
	for _, x := range m.Members {
		if x.ID != c.id {
			c.peerIDs = append(c.peerIDs, x.ID)
		}
	}
	c.confGen++
	if c.role == Leader {
		c.syncProgress()
	}
	c.note("configuration %v at index %d (voter: %v)", m, c.confIndex(), c.isVoter())
}

// syncProgress gives a leader a progress for every other member; one of a
// node the configuration removed is kept (leaving) to send it that
// configuration.
func (c *core) syncProgress() {
	c.leaving = slices.DeleteFunc(c.leaving, func(id int) bool {
		if !slices.Contains(c.peerIDs, id) {
			return false
		}
		// Added again while it was leaving: perhaps another process under
		// the same id, so its version is unknown until it answers.
		c.prs[id].appVersion, c.prs[id].since = 0, c.confGen
		return true
	})
	for id := range c.prs {
		if !slices.Contains(c.peerIDs, id) && !slices.Contains(c.leaving, id) {
			c.leaving = append(c.leaving, id)
		}
	}
	slices.Sort(c.leaving)
	for _, id := range c.peerIDs {
		if c.prs[id] == nil {
			c.prs[id] = &progress{next: c.log.lastIndex() + 1, state: stateProbe, since: c.confGen}
		}
	}
}

// isLeaving reports whether a leader still replicates to removed node p.
func (c *core) isLeaving(p int) bool { return slices.Contains(c.leaving, p) }

// dropLeaving stops replicating to removed node p.
func (c *core) dropLeaving(p int) {
	c.leaving = slices.DeleteFunc(c.leaving, func(id int) bool { return id == p })
	delete(c.prs, p)
}

// logChanged updates the configurations after the log changed from index
// from on (an append or a truncation): those at or after from are dropped,
// and the configuration entries now there are read.
func (c *core) logChanged(from uint64) {
	changed := false
	for len(c.confs) > 1 && c.confs[len(c.confs)-1].index >= from {
		c.confs = c.confs[:len(c.confs)-1]
		changed = true
	}
	for i := max(from, c.log.firstIndex()); i <= c.log.lastIndex(); i++ {
		e := c.log.entry(i)
		if e.Type != persist.EntryConfig {
			continue
		}
		m, err := decodeMembership(e.Data)
		if err != nil {
			// A leader never sends one: keep the configuration in force.
			c.violate("configuration entry %d/%d: %v", e.Index, e.Term, err)
			continue
		}
		c.confs = append(c.confs, confAt{index: i, m: m})
		changed = true
	}
	if changed {
		c.confChanged()
	}
}

// compactConfs drops the configurations a snapshot at index makes obsolete:
// the first one kept is the one in force at index.
func (c *core) compactConfs(index uint64) {
	k := 0
	for k+1 < len(c.confs) && c.confs[k+1].index <= index {
		k++
	}
	c.confs = c.confs[k:]
}

// restoreConf makes the configuration stored with an installed snapshot the
// only one (the log is replaced by the snapshot).
func (c *core) restoreConf(index uint64, m Membership) {
	c.confs = []confAt{{index: index, m: m}}
	c.confChanged()
}

// snapConfig returns the encoded configuration in force at the snapshot's
// index, to send with it.
func (c *core) snapConfig() []byte { return encodeMembership(c.confs[0].m) }

// proposeConfChange appends a single-server change to a leader's log. It is
// refused unless this node leads, no leadership transfer runs, an entry of
// this term has committed (the fix Ongaro described in 2015: otherwise two
// changes of different leaders could both commit with disjoint majorities),
// and the configuration in force is committed (one change at a time). A
// learner is promoted only if its log is within maxLag entries of the
// leader's, past the leader's snapshot and the configuration in force, and
// it answered within the last election timeout.
func (c *core) proposeConfChange(ch confChange, maxLag uint64) (index, term uint64, err error) {
	switch {
	case c.role != Leader:
		return 0, c.term, ErrNotLeader
	case ch.term != 0 && ch.term != c.term:
		return 0, c.term, fmt.Errorf("%w: the change is for term %d, and this node leads term %d", ErrNotLeader, ch.term, c.term)
	case c.transferee != NoLeader:
		return 0, c.term, fmt.Errorf("%w: a leadership transfer is running", ErrChangeInProgress)
	case c.log.commit < c.noopIndex:
		return 0, c.term, fmt.Errorf("%w: the leader has not committed an entry of its term yet", ErrChangeInProgress)
	case c.confIndex() > c.log.commit:
		return 0, c.term, fmt.Errorf("%w: configuration at index %d not committed (commit %d)",
			ErrChangeInProgress, c.confIndex(), c.log.commit)
	}
	next, err := c.conf().apply(ch)
	if err != nil {
		return 0, c.term, err
	}
	if ch.op == opPromote {
		pr := c.prs[ch.member.ID]
		last := c.log.lastIndex()
		switch {
		case pr == nil:
			return 0, c.term, fmt.Errorf("%w: %d", ErrUnknownMember, ch.member.ID)
		case pr.match < max(c.log.snap.Index, c.confIndex()):
			// Behind a compaction (it needs the snapshot, however short the
			// log after it), or without the configuration that made it a
			// member: not caught up, whatever maxLag allows.
			return 0, c.term, fmt.Errorf("%w: %d has index %d, below the leader's snapshot %d or configuration %d",
				ErrLearnerBehind, ch.member.ID, pr.match, c.log.snap.Index, c.confIndex())
		case pr.match+maxLag < last:
			return 0, c.term, fmt.Errorf("%w: %d has index %d, the leader %d (at most %d behind)",
				ErrLearnerBehind, ch.member.ID, pr.match, last, maxLag)
		case pr.silent >= c.cfg.electionTicks:
			return 0, c.term, fmt.Errorf("%w: %d has not answered for %d ticks", ErrLearnerBehind, ch.member.ID, pr.silent)
		}
	}
	index = c.log.lastIndex() + 1
	c.log.append(Entry{Index: index, Term: c.term, Type: persist.EntryConfig, Data: encodeMembership(next)})
	c.logChanged(index)
	if c.soleVoter() {
		c.maybeCommit()
	}
	return index, c.term, nil
}

// stepDownIfRemoved makes a leader that is no voter of the committed
// configuration in force step down: it led only to commit its removal.
func (c *core) stepDownIfRemoved() {
	if c.role == Leader && !c.isVoter() && c.log.commit >= c.confIndex() {
		c.note("removed from the configuration (committed at %d); stepping down", c.confIndex())
		c.becomeFollower(c.term, NoLeader)
	}
}

// memberProgress returns a leader's view of the other members.
func (c *core) memberProgress() map[int]MemberProgress {
	if c.role != Leader {
		return nil
	}
	out := make(map[int]MemberProgress, len(c.prs)+1)
	for id, pr := range c.prs {
		if c.isLeaving(id) {
			continue
		}
		out[id] = MemberProgress{Match: pr.match, Next: pr.next, RecentActive: pr.silent < c.cfg.electionTicks,
			AppVersion: pr.appVersion}
	}
	if c.conf().Contains(c.id) {
		out[c.id] = MemberProgress{Match: c.log.lastIndex(), Next: c.log.lastIndex() + 1, RecentActive: true,
			AppVersion: c.cfg.appVersion}
	}
	return out
}
