package raft

import (
	"errors"
	"slices"
)

// The types of the membership API (issue 15, see the contract the durio
// layer codes against). The Node methods that change the configuration
// (AddLearner, Promote, RemoveMember, Membership) are added with the
// membership implementation; until then durio finds them missing at run
// time and keeps the configuration fixed by its bootstrap peers.

// Member is one replica of a configuration. Addr is opaque to raft: stored
// and replicated with the configuration, never interpreted (the
// application's address of the replica).
type Member struct {
	ID      int
	Addr    string
	Learner bool
}

// Membership is a configuration: its members sorted by ID.
type Membership struct {
	Members []Member
}

// Voters returns the ids of the voting members, ascending.
func (m Membership) Voters() []int { return m.ids(false) }

// Learners returns the ids of the learners, ascending.
func (m Membership) Learners() []int { return m.ids(true) }

func (m Membership) ids(learners bool) []int {
	var out []int
	for _, x := range m.Members {
		if x.Learner == learners {
			out = append(out, x.ID)
		}
	}
	slices.Sort(out)
	return out
}

// Contains reports whether id is a member (voter or learner).
func (m Membership) Contains(id int) bool {
	return slices.ContainsFunc(m.Members, func(x Member) bool { return x.ID == id })
}

// MemberProgress is a leader's view of one member's replication.
type MemberProgress struct {
	// Match is the highest index known to be on the member; Next the next
	// one the leader sends.
	Match, Next uint64
	// RecentActive is true if the member answered recently.
	RecentActive bool
	// AppVersion is the Config.AppVersion the member sent with its
	// latest AppendEntries answer in this term (the leader's own for
	// itself); 0 until it has answered one, or if it runs a version that
	// does not send it.
	AppVersion uint32
}

// Errors of the membership changes; match them with errors.Is.
var (
	// ErrChangeInProgress: another configuration change is not committed yet.
	ErrChangeInProgress = errors.New("raft: a membership change is in progress")
	// ErrLearnerBehind: the learner has not caught up enough to be promoted.
	ErrLearnerBehind = errors.New("raft: the learner has not caught up")
	// ErrUnknownMember: no member has that id.
	ErrUnknownMember = errors.New("raft: no such member")
	// ErrAlreadyMember: a member has that id already.
	ErrAlreadyMember = errors.New("raft: already a member")
	// ErrRemoveLastVoter: the change would leave no voter.
	ErrRemoveLastVoter = errors.New("raft: cannot remove the last voter")
	// ErrOutcomeUnknown: this node lost leadership before the change
	// committed, and its log was then compacted past the change (a
	// snapshot from the new leader) before it could see whether the entry
	// there is its own: the change may or may not have been made. Read the
	// configuration (Membership) before retrying.
	ErrOutcomeUnknown = errors.New("raft: outcome of the membership change unknown")
)
