package raft

// The core's surface toward the node: what the node may read of the core's
// state, and the few hand-overs it takes from it. The node reads no core
// field directly; it calls these methods (or the protocol steps: tick,
// handle*, propose, ready, advance).

import (
	"slices"

	"github.com/ruaft/ruaft/persist"
)

// coreView is a copy of the core's state as the node publishes and reports
// it (State, Status, events, waits).
type coreView struct {
	term uint64
	role Role
	// lead is the leader of term known to the core, or NoLeader.
	lead int
	// transferee is the target of a leadership transfer in progress, or
	// NoLeader.
	transferee int
	// commit, lastIndex and snapIndex are the log's commit index, last
	// index and snapshot index.
	commit, lastIndex, snapIndex uint64
	// confGen counts the changes of the configuration in force; confIndex
	// is the index it took effect at.
	confGen, confIndex uint64
	// readRounds and fwdRequests count the leader's read rounds and the
	// follower's read-index requests (Status).
	readRounds, fwdRequests uint64
}

// view returns the core's state for the node.
func (c *core) view() coreView {
	return coreView{
		term:        c.term,
		role:        c.role,
		lead:        c.lead,
		transferee:  c.transferee,
		commit:      c.log.commit,
		lastIndex:   c.log.lastIndex(),
		snapIndex:   c.log.snap.Index,
		confGen:     c.confGen,
		confIndex:   c.confIndex(),
		readRounds:  c.readRounds,
		fwdRequests: c.fwdRequests,
	}
}

// confCommitted reports whether the configuration in force is committed.
func (v coreView) confCommitted() bool { return v.confIndex <= v.commit }

// unsaved reports whether the core holds state that the next ready batch
// will ask the node to store: entries, a received snapshot, or a new term
// or vote. An answer to an RPC that reflects the current state must wait
// until that batch is stored.
func (c *core) unsaved() bool {
	return c.log.unstable <= c.log.lastIndex() || c.log.snapUnstable ||
		c.term != c.prevHS.Term || c.vote != c.prevHS.VotedFor
}

// takeEvents returns the explanations of role changes recorded since the
// last call, for the node's log, and forgets them. The returned slice is
// valid until the next step of the core.
func (c *core) takeEvents() []string {
	ev := c.events
	c.events = c.events[:0]
	return ev
}

// takeSnapshotToCheck returns the complete received snapshot that
// handleInstallSnapshot left for the application to validate (nil if
// none). The node must pass it to finishSnapshot, whatever the outcome.
func (c *core) takeSnapshotToCheck() *snapshotBuffer {
	b := c.toCheck
	c.toCheck = nil
	return b
}

// startRead registers read id (readIndex) if c can serve reads, as leader
// or as a follower that knows its leader, and reports whether it did.
func (c *core) startRead(id uint64) bool {
	if c.role != Leader && (c.role != Follower || c.lead == NoLeader) {
		return false
	}
	c.readIndex(id)
	return true
}

// abandon makes c a follower that knows no leader in its term and drops
// the read answers not handed out yet: the node calls it when its store
// failed, after which nothing the core decides can be stored.
func (c *core) abandon() {
	c.becomeFollower(c.term, NoLeader)
	c.readStates = nil
}

// prepareCompaction fills in the term and the configuration of a snapshot
// the application took at s.Index, and reports whether it is still worth
// storing: false if the log no longer holds s.Index (a snapshot from the
// leader covered it meanwhile).
func (c *core) prepareCompaction(s *persist.Snapshot) bool {
	t, have := c.log.term(s.Index)
	if !have || s.Index <= c.log.snap.Index {
		return false
	}
	s.Term = t
	s.Config = c.snapshotConfig(s.Index)
	return true
}

// entryFate is what became of an entry a node appended as leader
// (entryOutcome).
type entryFate int

const (
	// entryPending: the entry is in the log, not committed yet; it may
	// still commit (a new leader may commit it too).
	entryPending entryFate = iota
	// entryCommitted: the entry is in the log and committed.
	entryCommitted
	// entryOverwritten: another leader's entry took its index; it will
	// never commit.
	entryOverwritten
	// entryCompacted: the node no longer leads in the entry's term and its
	// log was compacted past the index (a newer leader's snapshot):
	// whether the entry there was this one is lost.
	entryCompacted
)

// entryOutcome tells what became of the entry the node appended at index
// in term.
func (c *core) entryOutcome(index, term uint64) entryFate {
	t, have := c.log.term(index)
	// A leader never loses entries of its own term: if it still leads in
	// term, the entry is there even if compacted meanwhile.
	mine := (have && t == term) || (c.role == Leader && c.term == term)
	switch {
	case mine && c.log.commit >= index:
		return entryCommitted
	case mine:
		return entryPending
	case !have && index <= c.log.snap.Index:
		return entryCompacted
	case have || index > c.log.lastIndex():
		return entryOverwritten
	}
	return entryPending
}

// brokenInvariants returns a copy of the invariant violations the core
// recorded.
func (c *core) brokenInvariants() []string { return slices.Clone(c.violations) }
