package rafttest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ruaft/ruaft/raft"
)

// TestMembershipChurnReview adds, promotes and removes members through the
// Node API while partitioning, crashing and restarting servers on the
// unreliable simulated network, with commands proposed throughout. The
// harness checks on every apply that servers agree on each committed index
// (also across restarts); at the end, healed and restarted, a command must
// commit on every voter of the final configuration.
//
// Servers 0..2 bootstrap the cluster; 3..5 start as joiners (no
// configuration), so ids join, leave and may join again.
func TestMembershipChurnReview(t *testing.T) {
	t.Parallel() // long and mostly waiting; see the package doc
	const n = 6
	c := NewCluster(t, n, Options{Unreliable: true, ShortDelays: true, Configure: func(cfg *raft.Config) {
		cfg.Peers = 0
		if cfg.ID < 3 {
			cfg.Bootstrap = raft.BootstrapMembers(3)
		}
		cfg.MaxPromoteLag = 50
	}})
	leader := func() (int, *raft.Node) {
		for i := range n {
			if nd := c.Node(i); nd != nil {
				if _, is := nd.State(); is {
					return i, nd
				}
			}
		}
		return -1, nil
	}
	deadline := time.Now().Add(8 * time.Second)
	changes, committed := 0, 0
	for cmd := 0; time.Now().Before(deadline); cmd++ {
		for range 3 {
			if _, nd := leader(); nd != nil {
				nd.Start(Cmd(cmd))
			}
		}
		switch r := c.RandIntN(100); {
		case r < 40:
			// A membership change at the leader, bounded in time.
			_, nd := leader()
			if nd == nil {
				break
			}
			m := nd.Membership()
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			var err error
			switch op := c.RandIntN(3); {
			case op == 0 || len(m.Members) < 3:
				var out []int
				for id := range n {
					if !m.Contains(id) {
						out = append(out, id)
					}
				}
				if len(out) > 0 {
					err = nd.AddLearner(ctx, raft.Member{ID: out[c.RandIntN(len(out))]})
				}
			case op == 1 && len(m.Learners()) > 0:
				err = nd.Promote(ctx, m.Learners()[c.RandIntN(len(m.Learners()))])
			default:
				err = nd.RemoveMember(ctx, m.Members[c.RandIntN(len(m.Members))].ID)
			}
			cancel()
			changes++
			if err == nil {
				committed++
			} else if !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrChangeInProgress) &&
				!errors.Is(err, raft.ErrLearnerBehind) && !errors.Is(err, raft.ErrRemoveLastVoter) &&
				!errors.Is(err, raft.ErrKilled) && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("membership change: %v", err)
			}
		case r < 55:
			var a, b []int
			for i := range n {
				if c.RandIntN(2) == 0 {
					a = append(a, i)
				} else {
					b = append(b, i)
				}
			}
			c.Partition(a, b)
		case r < 70:
			for i := range n {
				c.Connect(i)
			}
		case r < 80:
			c.Crash(c.RandIntN(n))
		case r < 92:
			for i := range n {
				if c.Node(i) == nil {
					c.Restart(i)
					c.Connect(i)
					break
				}
			}
		}
		time.Sleep(time.Duration(20+c.RandIntN(80)) * time.Millisecond)
	}
	c.SetUnreliable(false)
	for i := range n {
		if c.Node(i) == nil {
			c.Restart(i)
		}
		c.Connect(i)
	}
	// A command commits on every voter of the leader's configuration (it
	// may still change while this waits: then again).
	for try := 0; ; try++ {
		if try > 30 {
			t.Fatalf("no command committed on all voters after healing:\n%s", c.StatusDump())
		}
		l, nd := leader()
		if nd == nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		voters := nd.Membership().Voters()
		if !slices.Contains(voters, l) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if _, err := c.OneErr(Cmd(1_000_000+try), len(voters), true); err == nil {
			break
		}
	}
	t.Logf("%d membership changes proposed, %d committed", changes, committed)
}
