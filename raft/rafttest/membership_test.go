package rafttest

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/raft"
)

// Lab-style tests of membership changes over the simulated network (issue
// 15): servers are addressed by id; spares (ids past Options.Voters) join.

// TestMembershipGrowShrink3D: 3 -> 4 -> 5 -> 4 -> 3 with agreement at every
// size, through the even sizes.
func TestMembershipGrowShrink3D(t *testing.T) {
	c := NewCluster(t, 5, Options{Voters: 3})
	c.One(c.RandCmd(), 3, true)
	c.AddVoter(3)
	c.CheckMembership([]int{0, 1, 2, 3}, []int{0, 1, 2, 3}, nil)
	c.One(c.RandCmd(), 4, true)
	c.AddVoter(4)
	c.CheckMembership([]int{0, 1, 2, 3, 4}, []int{0, 1, 2, 3, 4}, nil)
	c.One(c.RandCmd(), 5, true)
	// Five voters: two down, the other three commit.
	leader := c.CheckOneLeader()
	c.Disconnect((leader + 1) % 5)
	c.Disconnect((leader + 2) % 5)
	c.One(c.RandCmd(), 3, true)
	c.Connect((leader + 1) % 5)
	c.Connect((leader + 2) % 5)
	c.Remove(4)
	c.CheckMembership([]int{0, 1, 2, 3}, []int{0, 1, 2, 3}, nil)
	c.One(c.RandCmd(), 4, true)
	c.Remove(3)
	c.CheckMembership([]int{0, 1, 2}, []int{0, 1, 2}, nil)
	c.One(c.RandCmd(), 3, true)
	// The removed servers stay up and do not disturb the three.
	term := c.CheckTerms2([]int{0, 1, 2})
	sleep(2 * time.Second)
	if t2 := c.CheckTerms2([]int{0, 1, 2}); t2 != term {
		t.Fatalf("term moved from %d to %d with removed servers running", term, t2)
	}
}

// CheckTerms2 returns the common term of servers ids, failing if they
// disagree.
func (c *Cluster) CheckTerms2(ids []int) uint64 {
	c.t.Helper()
	var term uint64
	for _, i := range ids {
		x, _ := c.State(i)
		if term == 0 {
			term = x
		} else if x != term {
			c.t.Fatalf("servers disagree on term: %d and %d\n%s", term, x, c.StatusDump())
		}
	}
	return term
}

// TestMembershipReplaceDead3D: a voter dies; a spare with an empty store
// joins as a learner, is promoted, and the dead one is removed; the cluster
// never stops committing.
func TestMembershipReplaceDead3D(t *testing.T) {
	c := NewCluster(t, 4, Options{Voters: 3})
	c.One(c.RandCmd(), 3, true)
	dead := (c.CheckOneLeader() + 1) % 3
	c.Crash(dead)
	c.One(c.RandCmd(), 2, true)
	c.Replace(dead, 3)
	c.One(c.RandCmd(), 3, true)
	voters := []int{}
	for i := range 4 {
		if i != dead {
			voters = append(voters, i)
		}
	}
	c.CheckMembership(voters, voters, nil)
	// The new three tolerate one more failure.
	c.Disconnect(voters[c.RandIntN(3)])
	c.One(c.RandCmd(), 2, true)
}

// TestMembershipRemoveLeader3D: the leader removes itself, steps down once
// that commits, and the others go on.
func TestMembershipRemoveLeader3D(t *testing.T) {
	c := NewCluster(t, 3, Options{})
	c.One(c.RandCmd(), 3, true)
	leader := c.CheckOneLeader()
	if err := c.Node(leader).RemoveMember(context.Background(), leader); err != nil {
		t.Fatalf("leader removes itself: %v", err)
	}
	if _, isLeader := c.State(leader); isLeader {
		t.Fatal("removed leader still leads after the change committed")
	}
	c.One(c.RandCmd(), 2, true)
	if l := c.CheckOneLeader(); l == leader {
		t.Fatal("removed server leads again")
	}
	rest := []int{(leader + 1) % 3, (leader + 2) % 3}
	c.CheckMembership(rest, []int{min(rest[0], rest[1]), max(rest[0], rest[1])}, nil)
}

// TestMembershipLearnerSnapshot3D: a learner added while cut off falls
// behind a compaction and catches up through InstallSnapshot; promotion is
// refused while it lags and accepted once it caught up.
func TestMembershipLearnerSnapshot3D(t *testing.T) {
	c := NewCluster(t, 4, Options{Voters: 3, Snapshots: true, Configure: func(cfg *raft.Config) { cfg.MaxPromoteLag = 5 }})
	c.One(c.RandCmd(), 3, true)
	c.Disconnect(3)
	c.AddLearner(3)
	for range 2 * SnapshotInterval {
		c.One(c.RandCmd(), 3, true)
	}
	leader := c.CheckOneLeader()
	if err := c.Node(leader).Promote(context.Background(), 3); !errors.Is(err, raft.ErrLearnerBehind) {
		t.Fatalf("promote a learner cut off: %v, want ErrLearnerBehind", err)
	}
	before := c.MethodCount(MethodInstallSnapshot)
	c.Connect(3)
	c.Promote(3)
	if c.MethodCount(MethodInstallSnapshot) == before {
		t.Fatal("the learner caught up without a snapshot")
	}
	c.One(c.RandCmd(), 4, true)
	c.CheckMembership([]int{0, 1, 2, 3}, []int{0, 1, 2, 3}, nil)
}

// TestMembershipTwoChangesAtOnce3D: while a change cannot commit (the
// leader is cut off), a second one is refused with ErrChangeInProgress.
func TestMembershipTwoChangesAtOnce3D(t *testing.T) {
	c := NewCluster(t, 5, Options{Voters: 3})
	c.One(c.RandCmd(), 3, true)
	leader := c.CheckOneLeader()
	nd := c.Node(leader)
	c.Disconnect(leader)
	// The first change reaches the leader's log but cannot commit.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := nd.AddLearner(ctx, raft.Member{ID: 3}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first change in a minority: %v, want a timeout", err)
	}
	// Two more at once: both refused while the first is uncommitted.
	errs := make(chan error, 2)
	for _, id := range []int{4, 3} {
		go func() { errs <- nd.AddLearner(context.Background(), raft.Member{ID: id}) }()
	}
	for range 2 {
		if err := <-errs; !errors.Is(err, raft.ErrChangeInProgress) {
			t.Fatalf("change while another is uncommitted: %v, want ErrChangeInProgress", err)
		}
	}
	// The change proposed while partitioned does not commit; the majority
	// elects another leader, and the old one's change is truncated when it
	// rejoins.
	c.One(c.RandCmd(), 2, true)
	c.Connect(leader)
	c.One(c.RandCmd(), 3, true)
	c.CheckMembership([]int{0, 1, 2}, []int{0, 1, 2}, nil)
}

// TestMembershipRefusalFromDeposedLeader3D: a leader refuses a change from
// its configuration (no such member, already a member) only while it can
// confirm that it leads. One cut off from the others may have been replaced
// by a leader that changed the configuration (a CI run saw a deposed leader
// answer "no such member" for a learner its successor had added); it
// answers ErrNotLeader or runs out of time instead, and the retry at the
// real leader succeeds.
func TestMembershipRefusalFromDeposedLeader3D(t *testing.T) {
	c := NewCluster(t, 4, Options{Voters: 3})
	c.One(c.RandCmd(), 3, true)

	// Connected, the refusals stand (ChangeErr retries on whichever node
	// leads if an election happens meanwhile).
	if err := c.ChangeErr(10*time.Second, func(ctx context.Context, nd *raft.Node) error {
		return nd.Promote(ctx, 3)
	}); !errors.Is(err, raft.ErrUnknownMember) {
		t.Fatalf("promote a non-member on the leader: %v, want ErrUnknownMember", err)
	}
	if err := c.ChangeErr(10*time.Second, func(ctx context.Context, nd *raft.Node) error {
		return nd.AddLearner(ctx, raft.Member{ID: 1})
	}); !errors.Is(err, raft.ErrAlreadyMember) {
		t.Fatalf("add a voter as learner on the leader: %v, want ErrAlreadyMember", err)
	}

	leader := c.CheckOneLeader()
	nd := c.Node(leader)
	other := (leader + 1) % 3
	// Cut off, the old leader cannot tell: the others elect a leader that
	// adds 3 as a learner, which the old one has never heard of.
	c.Disconnect(leader)
	c.AddLearner(3)
	for _, call := range []struct {
		what string
		f    func(context.Context) error
	}{
		{"promote 3", func(ctx context.Context) error { return nd.Promote(ctx, 3) }},
		{"remove 3", func(ctx context.Context) error { return nd.RemoveMember(ctx, 3) }},
		{"add voter " + strconv.Itoa(other) + " as learner", func(ctx context.Context) error {
			return nd.AddLearner(ctx, raft.Member{ID: other})
		}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err := call.f(ctx)
		cancel()
		if !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s on the cut-off old leader: %v, want ErrNotLeader or a timeout", call.what, err)
		}
	}
	c.Promote(3) // at the real leader
	c.Connect(leader)
	c.One(c.RandCmd(), 4, true)
	c.CheckMembership([]int{0, 1, 2, 3}, []int{0, 1, 2, 3}, nil)
}

// TestMembershipLeaderCrashUncommitted3D: a leader crashes with an
// uncommitted change in its log; after restart, the cluster agrees on one
// configuration and keeps committing.
func TestMembershipLeaderCrashUncommitted3D(t *testing.T) {
	c := NewCluster(t, 4, Options{Voters: 3})
	c.One(c.RandCmd(), 3, true)
	leader := c.CheckOneLeader()
	nd := c.Node(leader)
	c.Disconnect(leader)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := nd.AddLearner(ctx, raft.Member{ID: 3}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("change in a minority: %v, want a timeout", err)
	}
	if !nd.Membership().Contains(3) {
		t.Fatal("the uncommitted change is not in force on the leader")
	}
	c.Crash(leader)
	c.One(c.RandCmd(), 2, true)
	c.Restart(leader)
	c.Connect(leader)
	c.One(c.RandCmd(), 3, true)
	c.CheckMembership([]int{0, 1, 2}, []int{0, 1, 2}, nil)
	// Now it can be added for real.
	c.AddVoter(3)
	c.One(c.RandCmd(), 4, true)
}

// TestMembershipRandomized3D adds, removes and replaces members while
// partitioning, crashing and restarting servers and proposing from several
// clients; the harness checks log agreement at every apply, and at the end
// every member agrees on the configuration and commits.
func TestMembershipRandomized3D(t *testing.T) {
	const slots = 8
	c := NewCluster(t, slots, Options{Voters: 3, Unreliable: true, Snapshots: true, ShortDelays: true})
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for !stop.Load() {
				for i := range slots {
					if c.Connected(i) {
						c.Start(i, c.RandCmd())
					}
				}
				sleep(time.Duration(5+c.RandIntN(20)) * time.Millisecond)
			}
		})
	}
	next := 3 // the next spare id; ids are never reused
	members := []int{0, 1, 2}
	removed := map[int]bool{}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		switch r := c.RandIntN(10); {
		case r < 2 && next < slots: // grow
			c.AddVoter(next)
			members = append(members, next)
			next++
		case r < 4 && len(members) > 3: // shrink
			victim := members[c.RandIntN(len(members))]
			c.Remove(victim)
			removed[victim] = true
			members = deleteInt(members, victim)
		case r < 5 && next < slots: // replace, possibly the leader
			victim := members[c.RandIntN(len(members))]
			c.Replace(victim, next)
			removed[victim] = true
			members = append(deleteInt(members, victim), next)
			next++
		case r < 7: // crash and restart a member
			victim := members[c.RandIntN(len(members))]
			c.Crash(victim)
			sleep(time.Duration(c.RandIntN(500)) * time.Millisecond)
			c.Restart(victim)
			c.Connect(victim)
		default: // partition a minority of the members away for a while
			victim := members[c.RandIntN(len(members))]
			c.Disconnect(victim)
			sleep(time.Duration(c.RandIntN(800)) * time.Millisecond)
			c.Connect(victim)
		}
	}
	stop.Store(true)
	wg.Wait()
	c.SetUnreliable(false)
	for i := range slots {
		if c.Node(i) != nil && !c.Connected(i) {
			c.Connect(i)
		}
	}
	voters := slices.Sorted(slices.Values(members))
	c.CheckMembership(members, voters, nil)
	c.One(c.RandCmd(), len(members), true)
	t.Logf("final members %v, removed %v", voters, removed)
}

func deleteInt(s []int, x int) []int {
	out := s[:0:0]
	for _, v := range s {
		if v != x {
			out = append(out, v)
		}
	}
	return out
}

// TestMembershipRemovedCutOffStops3D: a voter cut off while it is removed
// never gets its removal; reconnected, its first refused campaign tells it
// (RequestVoteResponse.RemovedAt over the wire), its Status says Removed,
// it sends no more vote requests, and the others' term does not move.
func TestMembershipRemovedCutOffStops3D(t *testing.T) {
	c := NewCluster(t, 4, Options{})
	c.One(c.RandCmd(), 4, true)
	leader := c.CheckOneLeader()
	gone := (leader + 1) % 4
	c.Disconnect(gone)
	c.Remove(gone)
	c.One(c.RandCmd(), 3, true)
	if c.Node(gone).Status().Removed {
		t.Fatal("the cut-off node knows of its removal already")
	}
	sleep(2 * ElectionTimeout) // the leader stops replicating to it
	c.Connect(gone)
	deadline := time.Now().Add(10 * time.Second)
	for !c.Node(gone).Status().Removed {
		if time.Now().After(deadline) {
			t.Fatalf("the removed node was never told\n%s", c.StatusDump())
		}
		sleep(20 * time.Millisecond)
	}
	// Requests of the campaign that got the notice may still be on the
	// (delaying) network when Removed turns true; let them land first.
	sleep(ElectionTimeout)
	rest := slices.DeleteFunc([]int{0, 1, 2, 3}, func(i int) bool { return i == gone })
	term := c.CheckTerms2(rest)
	votes := c.MethodCount(MethodRequestVote)
	sleep(3 * ElectionTimeout)
	if got := c.MethodCount(MethodRequestVote); got != votes {
		t.Fatalf("%d vote requests after the removed node was told", got-votes)
	}
	if t2 := c.CheckTerms2(rest); t2 != term {
		t.Fatalf("term moved from %d to %d", term, t2)
	}
	if st := c.Node(gone).Status(); st.Role != raft.Follower {
		t.Fatalf("removed node is %v", st.Role)
	}
	c.One(c.RandCmd(), 3, true)
}
