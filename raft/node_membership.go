package raft

// The node's membership API: single-server configuration changes, each
// returning once committed.

import (
	"context"
	"errors"
	"fmt"
)

// Membership returns the configuration in force on this node: the latest in
// its log, committed or not.
func (n *Node) Membership() Membership {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.conf().Clone()
}

// Progress returns, on the leader, its view of each member's replication
// (itself included if it is a member); nil on any other node.
func (n *Node) Progress() map[int]MemberProgress {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.memberProgress()
}

// AddLearner adds m to the configuration as a learner: it receives the log
// (or a snapshot) but does not vote and counts in no quorum. Call it on the
// leader; it returns once the change is committed, or an error:
// ErrNotLeader, ErrChangeInProgress (another change is not committed yet,
// the leader has not committed an entry of its term, or a leadership
// transfer runs: retry later), ErrAlreadyMember, ErrBadMembership (an
// invalid id or address), ErrNotLeader (also when leadership was lost and
// the change overwritten: it was not made), ErrOutcomeUnknown (leadership
// was lost and the log compacted past the change: it may have been made),
// or ctx's error (the change may still commit). A refusal that comes from
// the configuration (ErrAlreadyMember, ErrUnknownMember,
// ErrRemoveLastVoter, a full configuration) is given only once the leader
// has confirmed with a heartbeat round that it still leads; one that cannot
// confirm answers ErrNotLeader, as it may hold an outdated configuration
// (with Config.CheckQuorum off, a leader cut off from the others never
// learns that it cannot, and waits until ctx ends, as it would for a change
// it accepted).
func (n *Node) AddLearner(ctx context.Context, m Member) error {
	return n.changeConf(ctx, confChange{op: opAddLearner, member: m})
}

// AddLearnerInTerm is AddLearner made only by the leader of term: a node
// that does not lead, or leads another term (it lost leadership and won
// it back since), refuses it with ErrNotLeader and changes nothing. A
// caller that checked something on the leader in term (as
// kvraft.Server.AdmitMember checks a joining replica's apply level) adds
// the learner with it so that the check and the change belong to one
// leadership.
func (n *Node) AddLearnerInTerm(ctx context.Context, m Member, term uint64) error {
	if term == 0 {
		return fmt.Errorf("%w: term 0", ErrNotLeader)
	}
	return n.changeConf(ctx, confChange{op: opAddLearner, member: m, term: term})
}

// Promote makes learner id a voter. It is refused with ErrLearnerBehind
// unless the learner's log is within Config.MaxPromoteLag entries of the
// leader's and it answered within the last election timeout; with
// ErrUnknownMember if id is no member and ErrAlreadyMember if it votes
// already. Otherwise as AddLearner.
func (n *Node) Promote(ctx context.Context, id int) error {
	return n.changeConf(ctx, confChange{op: opPromote, member: Member{ID: id}})
}

// RemoveMember removes voter or learner id from the configuration. A
// leader that removes itself keeps leading until the change commits, then
// steps down (and never campaigns again). It is refused with
// ErrRemoveLastVoter if id is the only voter and ErrUnknownMember if id is
// no member. Otherwise as AddLearner.
func (n *Node) RemoveMember(ctx context.Context, id int) error {
	return n.changeConf(ctx, confChange{op: opRemove, member: Member{ID: id}})
}

func (n *Node) changeConf(ctx context.Context, ch confChange) error {
	if ch.op == opAddLearner {
		if err := (Membership{Members: []Member{ch.member}}).Validate(); err != nil {
			return err
		}
	}
	var (
		index, term uint64
		err         error
	)
	n.locked(func() {
		if err = n.usable(); err == nil {
			index, term, err = n.core.proposeConfChange(ch, n.cfg.MaxPromoteLag)
		}
	})
	if refusedByConfiguration(err) {
		return n.confirmRefusal(ctx, term, err)
	}
	if err != nil {
		return err
	}
	n.logger.Info("raft: proposed a configuration change", "op", ch.op.String(), "member", ch.member.ID, "index", index, "term", term)
	n.kick()
	return n.waitConfChange(ctx, index, term)
}

// refusedByConfiguration reports whether err refuses a change because of
// the configuration the leader holds (the member is there already, or is
// not, or is the last voter, or there is no room).
func refusedByConfiguration(err error) bool {
	return errors.Is(err, ErrAlreadyMember) || errors.Is(err, ErrUnknownMember) ||
		errors.Is(err, ErrRemoveLastVoter) || errors.Is(err, ErrBadMembership)
}

// confirmRefusal returns refusal, which the leader of term gave from its
// configuration, once a heartbeat round started after the check confirms
// that it still leads term: then no later leader exists whose
// configuration could differ. A leader deposed without knowing it (cut off
// from the others) would refuse from a configuration that is no longer the
// cluster's, for example not know a learner its successor added; such a
// refusal becomes ErrNotLeader, which the caller retries at the leader.
func (n *Node) confirmRefusal(ctx context.Context, term uint64, refusal error) error {
	_, err := n.readIndex(ctx, func(c *core, id uint64) bool {
		return c.role == Leader && c.term == term && c.startRead(id)
	})
	switch {
	case err == nil:
		return refusal
	case errors.Is(err, ErrKilled) || errors.Is(err, ErrStoreFailed):
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		return fmt.Errorf("%w: leadership of term %d not confirmed before refusing (%v)", ErrNotLeader, term, refusal)
	}
}

// waitConfChange waits for the configuration entry at index of term to
// commit. It fails with ErrNotLeader once the entry is gone from the log
// (another leader overwrote it, or the log was cut below it): then the
// change did not happen. If the log was compacted past index (this node,
// no longer leading, installed a newer leader's snapshot) it cannot tell
// and fails with ErrOutcomeUnknown. While the entry is in the log but not
// committed, it waits (a new leader may still commit it) until ctx ends.
func (n *Node) waitConfChange(ctx context.Context, index, term uint64) error {
	for {
		n.mu.Lock()
		err := n.usable()
		fate := n.core.entryOutcome(index, term)
		snapIndex := n.core.view().snapIndex
		changed := n.changedCh
		n.mu.Unlock()
		switch {
		case err != nil:
			return err
		case fate == entryCommitted:
			return nil
		case fate == entryCompacted:
			// Committed entries are never overwritten, but whether
			// the compacted entry at index was this one is lost.
			return fmt.Errorf("%w: lost leadership, and the log was compacted to index %d past the change at index %d of term %d",
				ErrOutcomeUnknown, snapIndex, index, term)
		case fate == entryOverwritten:
			return fmt.Errorf("%w: the configuration change at index %d of term %d was overwritten", ErrNotLeader, index, term)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.ctx.Done():
			return ErrKilled
		case <-changed:
		}
	}
}

// String names the change for logs.
func (op confOp) String() string {
	switch op {
	case opAddLearner:
		return "add-learner"
	case opPromote:
		return "promote"
	default:
		return "remove"
	}
}
