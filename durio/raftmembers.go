package durio

import (
	"context"
	"errors"

	"github.com/ruaft/ruaft/raft"
)

// memberChanger is the membership API of raft.Node (issue 15): the
// configuration in force and single-server changes, each returning once
// committed.
type memberChanger interface {
	AddLearner(ctx context.Context, m raft.Member) error
	Promote(ctx context.Context, id int) error
	RemoveMember(ctx context.Context, id int) error
	Membership() raft.Membership
}

// errNoMembershipChanges answers membership changes when the raft node
// cannot make them.
var errNoMembershipChanges = errors.New("durio: this build's raft cannot change the cluster's membership")

// raftChangesMembership reports whether raft.Node has the membership API.
func raftChangesMembership() bool {
	_, ok := any((*raft.Node)(nil)).(memberChanger)
	return ok
}

// nodeMembers is the memberNode of a raft node. Without the membership API
// the configuration is the bootstrap one (Replica.membership) and every
// change is refused with errNoMembershipChanges.
type nodeMembers struct {
	node    *raft.Node
	changer memberChanger // nil without the API
}

var _ memberNode = nodeMembers{}

func newNodeMembers(n *raft.Node) nodeMembers {
	c, _ := any(n).(memberChanger)
	return nodeMembers{node: n, changer: c}
}

func (m nodeMembers) AddLearner(ctx context.Context, mb raft.Member) error {
	if m.changer == nil {
		return errNoMembershipChanges
	}
	return m.changer.AddLearner(ctx, mb)
}

func (m nodeMembers) Promote(ctx context.Context, id int) error {
	if m.changer == nil {
		return errNoMembershipChanges
	}
	return m.changer.Promote(ctx, id)
}

func (m nodeMembers) RemoveMember(ctx context.Context, id int) error {
	if m.changer == nil {
		return errNoMembershipChanges
	}
	return m.changer.RemoveMember(ctx, id)
}

func (m nodeMembers) Membership() raft.Membership {
	if m.changer == nil {
		return raft.Membership{}
	}
	return m.changer.Membership()
}

func (m nodeMembers) Status() raft.Status { return m.node.Status() }

// Progress is the leader's view of each member's replication, if raft
// reports it.
func (m nodeMembers) Progress() map[int]raft.MemberProgress {
	if p, ok := any(m.node).(interface {
		Progress() map[int]raft.MemberProgress
	}); ok {
		return p.Progress()
	}
	return nil
}
