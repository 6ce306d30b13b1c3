package rafttest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/raft"
)

// Membership changes on a Cluster. Servers are addressed by their replica
// id, which is also their slot in the cluster (ids are never reused: a
// replacement is a spare server with a new id). With Options.Voters the
// servers past the bootstrap voters are spares waiting to join.

// ChangeErr runs change on the leader until it is not refused for a
// transient reason (no leader, another change in progress), or timeout
// passes; it returns the last error. Safe from any goroutine.
func (c *Cluster) ChangeErr(timeout time.Duration, change func(context.Context, *raft.Node) error) error {
	return ChangeOnLeader(timeout, func() []*raft.Node {
		var nodes []*raft.Node
		for i := range c.n {
			if nd := c.Node(i); nd != nil && c.Connected(i) {
				nodes = append(nodes, nd)
			}
		}
		return nodes
	}, change)
}

// ChangeOnLeader runs change on whichever of the nodes returned by nodes
// believes it leads, until change is not refused for a transient reason
// (ErrNotLeader, ErrChangeInProgress, ErrLearnerBehind, a deadline), or
// timeout passes; it returns the last error. Any harness with raft nodes
// (this package's Cluster, kvraft/kvtest's) drives membership with it.
func ChangeOnLeader(timeout time.Duration, nodes func() []*raft.Node, change func(context.Context, *raft.Node) error) error {
	deadline := time.Now().Add(timeout)
	err := errors.New("no leader found")
	for time.Now().Before(deadline) {
		for _, nd := range nodes() {
			if _, leader := nd.State(); !leader {
				continue
			}
			ctx, cancel := context.WithDeadline(context.Background(), deadline)
			err = change(ctx, nd)
			cancel()
			if err == nil || !Transient(err) {
				return err
			}
		}
		sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("change not made in %v: %w", timeout, err)
}

// Transient reports whether a membership change refused with err may be
// retried as it is. That includes raft.ErrOutcomeUnknown: the retry finds
// out (a change that was made is refused with ErrAlreadyMember or
// ErrUnknownMember, which the helpers here count as done).
func Transient(err error) bool {
	return errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrChangeInProgress) ||
		errors.Is(err, raft.ErrLearnerBehind) || errors.Is(err, raft.ErrOutcomeUnknown) ||
		errors.Is(err, context.DeadlineExceeded)
}

func (c *Cluster) change(what string, f func(context.Context, *raft.Node) error) {
	c.t.Helper()
	if err := c.ChangeErr(10*time.Second, f); err != nil {
		c.t.Fatalf("%s: %v\n%s", what, err, c.StatusDump())
	}
}

// AddLearner adds server id as a learner through the leader, waiting until
// it is committed.
func (c *Cluster) AddLearner(id int) {
	c.t.Helper()
	c.change(fmt.Sprintf("add learner %d", id), func(ctx context.Context, nd *raft.Node) error {
		err := nd.AddLearner(ctx, raft.Member{ID: id, Addr: serverName(id)})
		if errors.Is(err, raft.ErrAlreadyMember) {
			return nil // an earlier attempt committed
		}
		return err
	})
}

// Promote makes learner id a voter, retrying while it catches up.
func (c *Cluster) Promote(id int) {
	c.t.Helper()
	c.change(fmt.Sprintf("promote %d", id), func(ctx context.Context, nd *raft.Node) error {
		err := nd.Promote(ctx, id)
		if errors.Is(err, raft.ErrAlreadyMember) {
			return nil
		}
		return err
	})
}

// Remove removes member id.
func (c *Cluster) Remove(id int) {
	c.t.Helper()
	c.change(fmt.Sprintf("remove %d", id), func(ctx context.Context, nd *raft.Node) error {
		err := nd.RemoveMember(ctx, id)
		if errors.Is(err, raft.ErrUnknownMember) {
			return nil
		}
		return err
	})
}

// AddVoter adds id as a learner and promotes it once caught up.
func (c *Cluster) AddVoter(id int) {
	c.t.Helper()
	c.AddLearner(id)
	c.Promote(id)
}

// Replace replaces member old by the spare server new: new joins as a
// learner, is promoted, and old is removed (the README's procedure for a
// dead machine).
func (c *Cluster) Replace(old, new int) {
	c.t.Helper()
	c.AddVoter(new)
	c.Remove(old)
}

// WipeStore crashes server i and gives it an empty store (a new disk).
func (c *Cluster) WipeStore(i int) {
	c.Crash(i)
	if c.slots != nil {
		c.t.Fatal("WipeStore: not with Options.Store")
	}
	c.mu.Lock()
	c.stores[i] = persist.NewMemory()
	c.logs[i] = make(map[uint64][]byte)
	c.mu.Unlock()
}

// CheckMembership waits (up to 10 s) until every connected running server
// among ids holds the configuration with exactly these voters and learners.
func (c *Cluster) CheckMembership(ids []int, voters, learners []int) {
	c.t.Helper()
	var last string
	for t0 := time.Now(); time.Since(t0) < 10*time.Second; sleep(50 * time.Millisecond) {
		ok := true
		for _, i := range ids {
			nd := c.Node(i)
			if nd == nil || !c.Connected(i) {
				continue
			}
			m := nd.Membership()
			if !slices.Equal(m.Voters(), voters) || !slices.Equal(m.Learners(), learners) {
				ok = false
				last = fmt.Sprintf("server %d has %v", i, m)
				break
			}
		}
		if ok {
			return
		}
	}
	c.t.Fatalf("membership: want voters %v learners %v; %s\n%s", voters, learners, last, c.StatusDump())
}
