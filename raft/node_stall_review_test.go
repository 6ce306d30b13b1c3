package raft

// Review tests of the ticker's sends while the loop is held in a store call
// (sendWhileStoringLocked, node_stall_test.go).

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
)

// holdLeaderAppend arms the leader's store, proposes cmd there and waits for
// the Append carrying it to be held.
func holdLeaderAppend(t *testing.T, cl *cluster, stores []*stallStore, l int, cmd string) *snapGate {
	t.Helper()
	g := stores[l].gates.arm()
	if _, _, ok := cl.nodes[l].Start([]byte(cmd)); !ok {
		g.open()
		t.Fatal("the leader refused the command")
	}
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		g.open()
		t.Fatal("the leader's Append never reached its store")
	}
	return g
}

// tickUntil advances the fake clock tick by tick, at most maxTicks times,
// giving the nodes up to a tick of real time after each, until cond holds;
// it reports the ticks it took, or -1.
func tickUntil(t *testing.T, cl *cluster, fc *fakeClock, maxTicks int, cond func() bool) int {
	t.Helper()
	tick := cl.cfg(0).TickInterval
	for k := range maxTicks {
		if cond() {
			return k
		}
		fc.Advance(t, tick)
		pollUntil(time.Now().Add(tick), cond)
	}
	if cond() {
		return maxTicks
	}
	return -1
}

// otherLeader returns a node other than old that leads a term after term,
// or -1.
func otherLeader(cl *cluster, old int, term uint64) int {
	for i, n := range cl.nodes {
		if i == old || n == nil {
			continue
		}
		if tm, ok := n.State(); ok && tm > term {
			return i
		}
	}
	return -1
}

// sameCommands fails t unless every node applied the same commands.
func sameCommands(t *testing.T, cl *cluster) {
	t.Helper()
	want := cl.apps[0].commands()
	for i := range cl.nodes {
		if got := cl.apps[i].commands(); !slices.Equal(got, want) {
			t.Fatalf("node %d applied %q, node 0 %q", i, got, want)
		}
	}
}

// TestStalledLeaderWithHungStoreIsReplaced: a leader whose store call never
// returns (a hung disk, an NFS mount gone away) is a failed leader, and the
// rest of the cluster must elect another one, as it did before the ticker
// sent heartbeats through stalled store calls. Those heartbeats keep the
// followers in the leader's lease and check-quorum satisfied for as long as
// the call lasts, while the leader commits nothing proposed after the held
// write (its loop, which replicates new entries, is stuck): unbounded, one
// hung disk makes the whole cluster unavailable for good. The ticker stands
// in for the loop only for a bounded time (Config.StallHeartbeats); after
// that the followers take over.
func TestStalledLeaderWithHungStoreIsReplaced(t *testing.T) {
	cl, stores, fc := stallCluster(t, nil)
	cl.commit("before")
	l := cl.leader()
	term, _ := cl.nodes[l].State()
	g := holdLeaderAppend(t, cl, stores, l, "held")
	defer g.open()

	cfg := cl.cfg(l)
	maxTicks := int(cfg.StallHeartbeats/cfg.TickInterval) + 10*int(cfg.ElectionTimeoutMax/cfg.TickInterval)
	nl := -1
	took := tickUntil(t, cl, fc, maxTicks, func() bool { nl = otherLeader(cl, l, term); return nl >= 0 })
	if took < 0 {
		st := cl.nodes[l].Status()
		t.Fatalf("the leader's store hung for %d ticks (%d longest election timeouts) and no other node took over: "+
			"node %d is %v of term %d, the cluster is unavailable for as long as the store hangs",
			maxTicks, maxTicks/int(cfg.ElectionTimeoutMax/cfg.TickInterval), l, st.Role, st.Term)
	}
	t.Logf("node %d took over after %d ticks of the hung store", nl, took)
	// The two others commit without the old leader.
	idx, _, ok := cl.nodes[nl].Start([]byte("without the old leader"))
	if !ok {
		t.Fatal("the new leader refused a command")
	}
	third := 3 - l - nl
	if tickUntil(t, cl, fc, 1000, func() bool {
		return cl.apps[nl].lastApplied() >= idx && cl.apps[third].lastApplied() >= idx
	}) < 0 {
		t.Fatal("the new leader and the third node did not apply a command while the old leader's store hung")
	}
	g.open()
	cl.commit("after")
	sameCommands(t, cl)
}

// TestStalledLeaderPartitionedThenHealed: a leader held in its Append is cut
// off; the others elect a new leader and commit; the network heals while
// the old leader is still held, so its ticker sends the heartbeats of its
// old term to nodes of a newer one (which refuse them and make it step
// down); then its write returns. Every node applies the same commands, and
// no invariant breaks (Kill reports violations).
func TestStalledLeaderPartitionedThenHealed(t *testing.T) {
	cl, stores, fc := stallCluster(t, nil)
	cl.commit("before")
	l := cl.leader()
	term, _ := cl.nodes[l].State()
	g := holdLeaderAppend(t, cl, stores, l, "held")
	defer g.open()
	cfg := cl.cfg(l)
	hb := int(cfg.HeartbeatInterval / cfg.TickInterval)
	// The ticker's sends start.
	tickUntil(t, cl, fc, 2*hb, func() bool { return false })
	cl.net.isolate(l, true)
	nl := -1
	if tickUntil(t, cl, fc, 2000, func() bool { nl = otherLeader(cl, l, term); return nl >= 0 }) < 0 {
		t.Fatal("no new leader among the two connected nodes")
	}
	idx, _, ok := cl.nodes[nl].Start([]byte("new term"))
	if !ok {
		t.Fatal("the new leader refused a command")
	}
	third := 3 - l - nl
	if tickUntil(t, cl, fc, 1000, func() bool {
		return cl.apps[nl].lastApplied() >= idx && cl.apps[third].lastApplied() >= idx
	}) < 0 {
		t.Fatal("the two connected nodes did not commit")
	}
	cl.net.isolate(l, false)
	// Still held: the old leader hears of the newer term through the answers
	// to its ticker's heartbeats (or the new leader's appends).
	if tickUntil(t, cl, fc, 1000, func() bool { _, lead := cl.nodes[l].State(); return !lead }) < 0 {
		t.Fatal("the old leader, held in its Append, kept leading after the network healed")
	}
	g.open()
	cl.commit("after")
	sameCommands(t, cl)
	if cmds := cl.apps[l].commands(); !slices.Contains(cmds, "new term") {
		t.Fatalf("the old leader never applied the new leader's command: %q", cmds)
	}
}

// slowStore is a Memory store whose Appends at random take up to maxDelay
// (real time): store calls that outlast a heartbeat interval now and then,
// so the ticker's sends run beside the loop's dispatch, pruning and the
// senders.
type slowStore struct {
	*persist.Memory
	mu       sync.Mutex
	rng      *rand.Rand
	maxDelay time.Duration
}

func (s *slowStore) Append(ctx context.Context, hs persist.HardState, entries []persist.Entry) error {
	s.mu.Lock()
	d := time.Duration(s.rng.Int64N(int64(s.maxDelay)))
	s.mu.Unlock()
	if d > s.maxDelay/2 {
		time.Sleep(d)
	}
	return s.Memory.Append(ctx, hs, entries)
}

// TestStallSendsUnderChurn runs, under the race detector, a cluster whose
// Appends often outlast a heartbeat interval (so the ticker sends beside the
// loop), with proposals, reads and leadership transfers going on: every
// node applies the same commands and no invariant breaks.
func TestStallSendsUnderChurn(t *testing.T) {
	cl := newClusterStores(t, 3, func(c *Config) {
		c.TickInterval = 2 * time.Millisecond
		c.HeartbeatInterval = 6 * time.Millisecond
		c.ElectionTimeoutMin, c.ElectionTimeoutMax = 200*time.Millisecond, 400*time.Millisecond
		c.SnapshotThresholdBytes = 4000
	}, func(i int) persist.Store {
		return &slowStore{Memory: persist.NewMemory(), rng: rand.New(rand.NewPCG(uint64(i), 7)), maxDelay: 30 * time.Millisecond}
	})
	deadline := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; time.Now().Before(deadline); k++ {
				for i, n := range cl.nodes {
					if _, lead := n.State(); lead {
						n.Start([]byte(fmt.Sprintf("w%d-%d-%d", w, k, i)))
					}
				}
				if k%5 == 0 {
					ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
					cl.nodes[k%3].ReadIndex(ctx)
					cancel()
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	for k := 0; time.Now().Before(deadline); k++ {
		time.Sleep(300 * time.Millisecond)
		for i, n := range cl.nodes {
			if _, lead := n.State(); lead {
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				n.TransferLeadership(ctx, (i+1+k%2)%3)
				cancel()
				break
			}
		}
	}
	wg.Wait()
	cl.commit("after")
	for i := range cl.nodes {
		if got, want := len(cl.apps[i].commands()), len(cl.apps[0].commands()); got != want {
			t.Fatalf("node %d applied %d commands, node 0 %d", i, got, want)
		}
	}
}

// TestLeaderHeartbeatsThroughInlineCompaction: a store that does not take
// snapshots beside its Appends has the loop store a compaction inline,
// before it sends the batch it took with it; held there for four of the
// longest election timeouts, the leader keeps its term through the ticker's
// heartbeats, which go out ahead of that batch's own messages (an order the
// loop itself never takes, but the core tolerates reordered messages). Once
// released, every node applies the same commands.
func TestLeaderHeartbeatsThroughInlineCompaction(t *testing.T) {
	stores := make([]*gateStore, 3)
	fc := newFakeClock()
	cl := newClusterStores(t, 3, func(c *Config) {
		c.clock = fc
		c.SnapshotThresholdBytes = 2000
		c.StallHeartbeats = 10 * c.ElectionTimeoutMax // longer than the hold
	}, func(i int) persist.Store {
		stores[i] = &gateStore{Memory: persist.NewMemory()}
		return stores[i]
	})
	cl.commit("before")
	l := cl.leader()
	term, _ := cl.nodes[l].State()
	g := stores[l].gates.arm()
	defer g.open()
	proposeUntil(t, cl, l, g)
	for i := range 5 {
		cl.nodes[l].Start([]byte(fmt.Sprintf("during %d", i)))
	}
	cfg := cl.cfg(l)
	holdTicks := 4 * int(cfg.ElectionTimeoutMax/cfg.TickInterval)
	changed := ""
	tickUntil(t, cl, fc, holdTicks, func() bool {
		for i, n := range cl.nodes {
			if st := n.Status(); st.Term != term || st.Leader != l {
				changed = fmt.Sprintf("node %d: term %d leader %d, was term %d leader %d", i, st.Term, st.Leader, term, l)
			}
		}
		return changed != ""
	})
	if changed != "" {
		t.Fatalf("the leader's inline compaction held for %d ticks: %s", holdTicks, changed)
	}
	g.open()
	cl.commit("after")
	sameCommands(t, cl)
}
