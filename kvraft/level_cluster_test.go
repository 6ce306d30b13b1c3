package kvraft_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ruaft/ruaft/kvraft"
	"github.com/ruaft/ruaft/kvraft/kvtest"
	"github.com/ruaft/ruaft/raft"
)

// levels returns every running server's apply level.
func levels(c *kvtest.Cluster) []uint32 {
	out := make([]uint32, c.N())
	for i := range c.N() {
		if s, ok := c.Replica(i).(*kvraft.Server); ok {
			out[i] = s.ApplyLevel()
		}
	}
	return out
}

// versionedCluster starts a kvtest cluster (opts.Raft is replaced) whose
// servers in old report no apply level, as an older version does;
// setOld(id, false) upgrades server id and setOld(id, true) downgrades it,
// from its next start.
func versionedCluster(t *testing.T, opts kvtest.Options, old ...int) (c *kvtest.Cluster, setOld func(id int, isOld bool)) {
	var mu sync.Mutex
	olds := map[int]bool{}
	for _, id := range old {
		olds[id] = true
	}
	opts.Raft = func(cfg *raft.Config) {
		mu.Lock()
		defer mu.Unlock()
		if olds[cfg.ID] {
			cfg.AppVersion = 0
		}
	}
	return kvtest.NewCluster(t, opts, kvtest.StartKVServer), func(id int, isOld bool) {
		mu.Lock()
		defer mu.Unlock()
		olds[id] = isOld
	}
}

// leaderOtherThan returns the leader, once it is not server id (cut off
// until another leads).
func leaderOtherThan(c *kvtest.Cluster, id int) int {
	l := c.WaitLeader()
	for l == id {
		c.Disconnect(id)
		for l = c.WaitLeader(); l == id; l = c.WaitLeader() {
			time.Sleep(10 * time.Millisecond)
		}
		c.Connect(id)
		l = c.WaitLeader()
	}
	return l
}

// TestApplyLevelRollingUpgrade: a cluster with one replica that reports
// no apply level (an older version) stays at level 0, where a delayed copy
// of a refused conditional Put still applies once its condition comes
// true; once that replica is upgraded (restarted reporting
// kvraft.ApplyLevel), the leader raises the level on every replica, and a
// delayed copy gets the first answer again, at the leader and at a
// follower, and never applies.
func TestApplyLevelRollingUpgrade(t *testing.T) {
	c, setOld := versionedCluster(t, kvtest.Options{Servers: 3, MaxRaftState: 2000}, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// scenario runs, on the leader, a conditional Put that fails, makes
	// its condition true with another write of the same session (which
	// does not acknowledge the first), then sends the first again, as a
	// copy delayed in the network would arrive; it returns the second
	// answer and the key's value after it.
	scenario := func(key string) (error, string) {
		t.Helper()
		l := c.WaitLeader()
		srv := c.Replica(l).(*kvraft.Server)
		sess, err := srv.OpenSession(ctx, &kvraft.OpenSessionRequest{})
		if err != nil {
			t.Fatal(err)
		}
		id := sess.ClientID
		if _, err := srv.Put(ctx, &kvraft.PutRequest{Key: key, Value: "a", Write: kvraft.WriteID{ClientID: id, Seq: 1, Ack: 1}}); err != nil {
			t.Fatal(err)
		}
		cas := &kvraft.PutRequest{Key: key, Value: "b", Condition: kvraft.IfValue("x"), Write: kvraft.WriteID{ClientID: id, Seq: 2, Ack: 2}}
		_, err = srv.Put(ctx, cas)
		var cf *kvraft.ConditionFailedError
		if !errors.As(err, &cf) {
			t.Fatalf("the CAS: %v, want a failed condition", err)
		}
		if _, err := srv.Put(ctx, &kvraft.PutRequest{Key: key, Value: "x", Write: kvraft.WriteID{ClientID: id, Seq: 3, Ack: 2}}); err != nil {
			t.Fatal(err)
		}
		_, again := srv.Put(ctx, cas)
		if again == nil {
			return nil, c.Get(c.MakeClerk(c.All()), key, nil, 0)
		}
		var cf2 *kvraft.ConditionFailedError
		if !errors.As(again, &cf2) || cf2.Revision != cf.Revision || cf2.Current == nil || *cf2.Current != *cf.Current {
			t.Fatalf("the copy answered %v, want the first answer %v", again, cf)
		}
		// A follower that has applied the write answers a copy sent to
		// it from its own table, the same way.
		for f := range c.N() {
			if f == l {
				continue
			}
			fs := c.Replica(f).(*kvraft.Server)
			deadline := time.Now().Add(10 * time.Second)
			for fs.Status().Applied < srv.Status().Applied && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := fs.Put(ctx, cas); !errors.As(err, &cf2) || cf2.Revision != cf.Revision {
				t.Fatalf("follower %d answered the copy %v, want %v", f, err, cf)
			}
		}
		return again, c.Get(c.MakeClerk(c.All()), key, nil, 0)
	}

	// Level 0: the leader hears every member (the old one reports 0),
	// and keeps the level.
	l := c.WaitLeader()
	deadline := time.Now().Add(20 * time.Second)
	for {
		pr := c.Node(l).Status().Progress
		if len(pr) == 3 && pr[0].AppVersion+pr[1].AppVersion+pr[2].AppVersion == 2*kvraft.ApplyLevel && pr[2].RecentActive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leader %d reports progress %+v", l, pr)
		}
		time.Sleep(10 * time.Millisecond)
		l = c.WaitLeader()
	}
	if err, v := scenario("level0"); err != nil || v != "b" {
		t.Fatalf("at level 0 the delayed copy answered %v and left %q, want it applied (b)", err, v)
	}
	if got := levels(c); fmt.Sprint(got) != "[0 0 0]" {
		t.Fatalf("levels %v with an old replica in the cluster", got)
	}
	for i := range c.N() {
		if j := c.Replica(i).(*kvraft.Server).JoinLevel(); j != 0 {
			t.Fatalf("server %d: JoinLevel %d at level 0 with an old member", i, j)
		}
	}

	// The old replica is upgraded: every replica reaches the level.
	setOld(2, false)
	c.Restart(2)
	c.Connect(2)
	want := fmt.Sprint([]uint32{kvraft.ApplyLevel, kvraft.ApplyLevel, kvraft.ApplyLevel})
	deadline = time.Now().Add(30 * time.Second)
	for fmt.Sprint(levels(c)) != want {
		if time.Now().After(deadline) {
			t.Fatalf("levels %v after the upgrade, want %s", levels(c), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if j := c.Replica(c.WaitLeader()).(*kvraft.Server).JoinLevel(); j != kvraft.ApplyLevel {
		t.Fatalf("the leader's JoinLevel is %d at level %d", j, kvraft.ApplyLevel)
	}
	if err, v := scenario("level1"); err == nil || v != "x" {
		t.Fatalf("at level 1 the delayed copy answered %v and left %q, want the first answer and x", err, v)
	}

	// The level survives restarts, from a snapshot and the log: with every
	// replica reporting level 0 after the restart, no leader raises it
	// again.
	ck := c.MakeClerk(c.All())
	for i := range 50 {
		c.Put(ck, fmt.Sprintf("fill%d", i%5), fmt.Sprintf("%0100d", i), nil, 0)
	}
	for i := range c.N() {
		if c.Node(i).Status().SnapshotIndex == 0 {
			t.Fatalf("server %d took no snapshot", i)
		}
	}
	for i := range c.N() {
		setOld(i, true)
	}
	c.CrashAll()
	c.RestartAll()
	c.Heal()
	c.WaitLeader()
	c.Put(ck, "after", "restart", nil, 0)
	deadline = time.Now().Add(30 * time.Second)
	for fmt.Sprint(levels(c)) != want {
		if time.Now().After(deadline) {
			t.Fatalf("levels %v after restarting every replica, want %s", levels(c), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAdmitMemberAtomicWithLevelRaise: AdmitMember's check and its
// addition are one step against raising the level. A replica that
// supports only level 0 passes the check while an old voter holds the
// cluster at level 0; that voter is upgraded while the addition is under
// way, so every member of the configuration then reports level 1, and
// the leader must still not raise the level (the new replica, once in the
// configuration, reports 0 and holds the level, so it never meets an
// entry it cannot apply). Once it is removed, the level rises, and a
// replica at level 0 is refused without being added.
func TestAdmitMemberAtomicWithLevelRaise(t *testing.T) {
	c, setOld := versionedCluster(t, kvtest.Options{Servers: 4, Voters: 3}, 2, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// A leader other than the old voter, which is restarted below.
	l := leaderOtherThan(c, 2)
	// reports returns what the leader hears each voter support.
	reports := func() string {
		pr := c.Node(l).Status().Progress
		return fmt.Sprint(pr[0].AppVersion, pr[1].AppVersion, pr[2].AppVersion)
	}
	srv := c.Replica(l).(*kvraft.Server)
	added := false
	err := srv.AdmitMember(ctx, 0, func(term uint64) error {
		if now, _ := c.Node(l).State(); term != now {
			t.Errorf("add was given term %d; the leader checked in term %d", term, now)
		}
		setOld(2, false)
		c.Restart(2)
		c.Connect(2)
		want := fmt.Sprint(kvraft.ApplyLevel, kvraft.ApplyLevel, kvraft.ApplyLevel)
		deadline := time.Now().Add(20 * time.Second)
		for reports() != want {
			if time.Now().After(deadline) {
				t.Fatalf("the leader hears its voters support %s", reports())
			}
			time.Sleep(10 * time.Millisecond)
		}
		// Every voter supports level 1 now; the leader waits (ten of its
		// level ticks) while the addition is under way.
		for end := time.Now().Add(10 * 100 * time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if got := levels(c); fmt.Sprint(got) != "[0 0 0 0]" {
				t.Fatalf("levels %v while a replica at level 0 was being added", got)
			}
		}
		added = true
		return c.Node(l).AddLearnerInTerm(ctx, raft.Member{ID: 3, Addr: kvtest.ServerName(3)}, term)
	})
	if err != nil || !added {
		t.Fatalf("AdmitMember at level 0: %v (added %v)", err, added)
	}
	// The learner reports level 0 and catches up; nothing raises the level.
	ck := c.MakeClerk([]int{0, 1, 2})
	c.Put(ck, "k", "v", nil, 0)
	deadline := time.Now().Add(20 * time.Second)
	for c.Node(3).Status().Applied < c.Node(l).Status().Commit {
		if time.Now().After(deadline) {
			t.Fatalf("the learner applied %d, the leader committed %d", c.Node(3).Status().Applied, c.Node(l).Status().Commit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for end := time.Now().Add(1 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if got := levels(c); fmt.Sprint(got) != "[0 0 0 0]" {
			t.Fatalf("levels %v with a learner at level 0", got)
		}
	}

	// Without it, the level rises, and a replica at level 0 is refused.
	if err := c.RemoveMember(20*time.Second, 3); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint([]uint32{kvraft.ApplyLevel, kvraft.ApplyLevel, kvraft.ApplyLevel})
	deadline = time.Now().Add(20 * time.Second)
	for fmt.Sprint(levels(c)[:3]) != want {
		if time.Now().After(deadline) {
			t.Fatalf("levels %v after the learner left, want %s", levels(c), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	l = c.WaitLeader()
	err = c.Replica(l).(*kvraft.Server).AdmitMember(ctx, 0, func(uint64) error {
		t.Error("a replica at level 0 was added to a cluster at level 1")
		return nil
	})
	var le *kvraft.ApplyLevelError
	if !errors.As(err, &le) || le.Supported != 0 || le.Required != kvraft.ApplyLevel {
		t.Fatalf("AdmitMember at level 0 in a cluster at level %d: %v", kvraft.ApplyLevel, err)
	}
}

// TestAdmitMemberRefusedOffLeader: AdmitMember checks and adds on the
// leader, in one term. On a follower its read index succeeds (the
// follower asks the leader), but the follower's JoinLevel knows neither
// what the leader hears its members support nor what it proposed: here
// the check passes for a replica at level 0 while the leader raises the
// level, and if the follower then leads (in a later term), its addition
// would put the replica after the raising entry. It must refuse with
// raft.ErrNotLeader and never call add.
func TestAdmitMemberRefusedOffLeader(t *testing.T) {
	c, setOld := versionedCluster(t, kvtest.Options{Servers: 4, Voters: 3}, 2, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// errLed: the follower chosen led when add ran (a leader change
	// before the call); then AdmitMember may add, and the test picks again.
	errLed := errors.New("the follower leads")
	var err error
	called := false
	for range 10 {
		// A leader other than the old voter, which is restarted below.
		l := leaderOtherThan(c, 2)
		f := 1 - l // the other of voters 0 and 1: a follower
		called = false
		err = c.Replica(f).(*kvraft.Server).AdmitMember(ctx, 0, func(uint64) error {
			if _, isLeader := c.Node(f).State(); isLeader {
				return errLed
			}
			called = true
			// The old voter is upgraded; the leader, which the follower's
			// admission does not hold, raises the level.
			setOld(2, false)
			c.Restart(2)
			c.Connect(2)
			want := fmt.Sprint([]uint32{kvraft.ApplyLevel, kvraft.ApplyLevel, kvraft.ApplyLevel})
			deadline := time.Now().Add(20 * time.Second)
			for fmt.Sprint(levels(c)[:3]) != want {
				if time.Now().After(deadline) {
					t.Fatalf("levels %v after the old voter's upgrade", levels(c))
				}
				time.Sleep(20 * time.Millisecond)
			}
			// The follower takes over and adds the replica it checked.
			for {
				err := c.Node(l).TransferLeadership(ctx, f)
				if err == nil || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			for {
				err := c.Node(f).AddLearner(ctx, raft.Member{ID: 3, Addr: kvtest.ServerName(3)})
				if !errors.Is(err, raft.ErrChangeInProgress) || time.Now().After(deadline) {
					return err
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
		if err != errLed {
			break
		}
	}
	if called {
		t.Fatalf("AdmitMember on a follower called add (it returned %v): a replica at level 0 joined a cluster at levels %v",
			err, levels(c))
	}
	if !errors.Is(err, raft.ErrNotLeader) {
		t.Fatalf("AdmitMember on a follower: %v, want raft.ErrNotLeader", err)
	}
}
