package kvtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ruaft/ruaft/raft"
	"github.com/ruaft/ruaft/raft/rafttest"
)

// Membership changes on a key-value Cluster. Servers are addressed by their
// replica id, which is also their slot (ids are never reused: a replacement
// is a spare server with a new id). With Options.Voters the servers past
// the bootstrap voters are spares waiting to join.

// runningNodes returns the nodes of the running servers, the ones believing
// they lead in the highest term first, so that a change goes to the leader
// most likely to be current rather than to a deposed one in a minority.
func (c *Cluster) runningNodes() []*raft.Node {
	type ranked struct {
		nd   *raft.Node
		term uint64
	}
	var rs []ranked
	for i := range c.opts.Servers {
		if nd := c.Node(i); nd != nil {
			term, _ := nd.State()
			rs = append(rs, ranked{nd, term})
		}
	}
	slices.SortStableFunc(rs, func(a, b ranked) int { return int(b.term) - int(a.term) })
	nodes := make([]*raft.Node, len(rs))
	for i, r := range rs {
		nodes[i] = r.nd
	}
	return nodes
}

// ChangeErr runs change on the leader until it is not refused for a
// transient reason, or timeout passes (rafttest.ChangeOnLeader). Safe from
// any goroutine.
func (c *Cluster) ChangeErr(timeout time.Duration, change func(context.Context, *raft.Node) error) error {
	return rafttest.ChangeOnLeader(timeout, c.runningNodes, change)
}

// AddLearner adds server id as a learner through the leader and returns
// once the change is committed (an earlier attempt that committed counts).
func (c *Cluster) AddLearner(timeout time.Duration, id int) error {
	return c.ChangeErr(timeout, func(ctx context.Context, nd *raft.Node) error {
		err := nd.AddLearner(ctx, raft.Member{ID: id, Addr: ServerName(id)})
		if errors.Is(err, raft.ErrAlreadyMember) {
			return nil
		}
		return err
	})
}

// Promote makes learner id a voter, retrying while it catches up.
func (c *Cluster) Promote(timeout time.Duration, id int) error {
	return c.ChangeErr(timeout, func(ctx context.Context, nd *raft.Node) error {
		err := nd.Promote(ctx, id)
		if errors.Is(err, raft.ErrAlreadyMember) && nd.Membership().IsVoter(id) {
			return nil
		}
		return err
	})
}

// RemoveMember removes member id (an unknown id counts as removed).
func (c *Cluster) RemoveMember(timeout time.Duration, id int) error {
	return c.ChangeErr(timeout, func(ctx context.Context, nd *raft.Node) error {
		err := nd.RemoveMember(ctx, id)
		if errors.Is(err, raft.ErrUnknownMember) {
			return nil
		}
		return err
	})
}

// Membership returns the configuration in force at the leader of the
// highest term, or, without a leader, the latest one among the running
// servers.
func (c *Cluster) Membership() raft.Membership {
	var (
		best    raft.Membership
		bestIdx uint64
		found   bool
	)
	for _, nd := range c.runningNodes() {
		if _, leader := nd.State(); leader {
			return nd.Membership()
		}
		if st := nd.Status(); !found || st.MembershipIndex > bestIdx {
			best, bestIdx, found = st.Membership, st.MembershipIndex, true
		}
	}
	return best
}

// WaitMembership waits up to timeout until every running server among ids
// holds a configuration with exactly these voters and learners, and
// returns an error saying who disagrees otherwise.
func (c *Cluster) WaitMembership(timeout time.Duration, ids, voters, learners []int) error {
	var last string
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		last = ""
		for _, i := range ids {
			nd := c.Node(i)
			if nd == nil {
				continue
			}
			if m := nd.Membership(); !slices.Equal(m.Voters(), voters) || !slices.Equal(m.Learners(), learners) {
				last = fmt.Sprintf("server %d has %v", i, m)
				break
			}
		}
		if last == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("want voters %v learners %v: %s", voters, learners, last)
		}
	}
}
