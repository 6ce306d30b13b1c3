package raft

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
)

// stallStore is a Memory store whose next Append, once a test arms it,
// waits until the test releases it: a disk whose write stalls, or a store
// that holds its Appends while it collects (badger's value-log reopen).
type stallStore struct {
	*persist.Memory
	gates gates
}

func (s *stallStore) Append(ctx context.Context, hs persist.HardState, entries []persist.Entry) error {
	s.gates.pass()
	return s.Memory.Append(ctx, hs, entries)
}

// stallCluster is a three-node cluster on a fake clock whose stores hold an
// Append when armed; tweak, if not nil, changes the nodes' Config.
func stallCluster(t *testing.T, tweak func(*Config)) (*cluster, []*stallStore, *fakeClock) {
	stores := make([]*stallStore, 3)
	fc := newFakeClock()
	cl := newClusterStores(t, 3, func(c *Config) {
		c.clock = fc
		if tweak != nil {
			tweak(c)
		}
	}, func(i int) persist.Store {
		stores[i] = &stallStore{Memory: persist.NewMemory()}
		return stores[i]
	})
	return cl, stores, fc
}

// TestLeaderHeartbeatsThroughStalledAppend holds a leader's own Append
// (after it sent the entry to its followers) on a fake clock, so the hold
// is counted in ticks whatever the machine's load:
//   - within StallHeartbeats: its ticker goes on sending heartbeats, so no
//     follower campaigns, the leader keeps its term (check-quorum hears from
//     a majority), and the followers apply the entry, committed by their own
//     acknowledgements;
//   - with StallHeartbeats 0 (the sends off) a follower takes over within
//     the same hold: the contrast shows the test can tell;
//   - past StallHeartbeats (a store that hangs) the sends stop, and the
//     followers elect a leader that commits without the stuck one.
//
// In every case the cluster agrees once the write is released.
func TestLeaderHeartbeatsThroughStalledAppend(t *testing.T) {
	base := DefaultConfig()
	long := 4 * base.ElectionTimeoutMax
	for _, tc := range []struct {
		name  string
		stall time.Duration // StallHeartbeats
		hold  time.Duration // how long the Append is held at most
		keep  bool          // whether the leader must keep its term all through
	}{
		{"within", 3 * long, long, true},
		{"off", 0, long, false},
		{"hung", long / 2, long/2 + long, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, stores, fc := stallCluster(t, func(c *Config) { c.StallHeartbeats = tc.stall })
			cl.commit("before")
			l := cl.leader()
			term, _ := cl.nodes[l].State()
			g := stores[l].gates.arm()
			defer g.open()
			idx, _, ok := cl.nodes[l].Start([]byte("during"))
			if !ok {
				t.Fatal("the leader refused the command")
			}
			select {
			case <-g.entered:
			case <-time.After(10 * time.Second):
				t.Fatal("the leader's Append never reached its store")
			}
			// Hold the write tick by tick, with real time for the nodes
			// to act on each tick, until some node sees another term or
			// leader.
			tick := base.TickInterval
			changed, changedAt := "", time.Duration(0)
			for held := time.Duration(0); held < tc.hold && changed == ""; held += tick {
				fc.Advance(t, tick)
				pollUntil(time.Now().Add(tick), func() bool { return false })
				for i, n := range cl.nodes {
					if st := n.Status(); st.Term != term || st.Leader != l {
						changed = fmt.Sprintf("node %d: term %d leader %d, was term %d leader %d", i, st.Term, st.Leader, term, l)
						changedAt = held + tick
						break
					}
				}
			}
			followersApplied := func() bool {
				for i, a := range cl.apps {
					if i != l && a.lastApplied() < idx {
						return false
					}
				}
				return true
			}
			switch {
			case tc.keep && changed != "":
				t.Fatalf("the leader's Append held for %v: %s after %v", tc.hold, changed, changedAt)
			case tc.keep && !followersApplied():
				t.Fatalf("the followers did not apply index %d, committed by their own acknowledgements, while the leader's write was held", idx)
			case tc.keep && cl.apps[l].lastApplied() >= idx:
				t.Fatalf("the leader applied index %d before its own write of it returned", idx)
			case !tc.keep && changed == "":
				t.Fatalf("no other leader within %v of a held Append with StallHeartbeats %v: the test cannot tell", tc.hold, tc.stall)
			case !tc.keep && changedAt < tc.stall:
				t.Fatalf("%s after %v, before StallHeartbeats (%v) ran out", changed, changedAt, tc.stall)
			}
			if !tc.keep {
				t.Logf("StallHeartbeats %v: %s after %v of held Append", tc.stall, changed, changedAt)
			}
			if tc.name == "hung" {
				// A new leader commits while the old one's write still hangs.
				var nl int
				if !cl.waitUntil(10*time.Second, func() bool {
					for i, n := range cl.nodes {
						if _, isLeader := n.State(); isLeader && i != l {
							nl = i
							return true
						}
					}
					return false
				}) {
					t.Fatal("no new leader while the old one's write hangs")
				}
				var at uint64
				if !cl.waitUntil(10*time.Second, func() bool {
					if at == 0 {
						var ok bool
						if at, _, ok = cl.nodes[nl].Start([]byte("without the old leader")); !ok {
							at = 0
							return false
						}
					}
					for i, a := range cl.apps {
						if i != l && a.lastApplied() < at {
							return false
						}
					}
					return true
				}) {
					t.Fatal("the new leader did not commit while the old one's write hangs")
				}
			}
			g.open()
			cl.commit("after")
			want := cl.apps[cl.leader()].commands()
			for i := range cl.nodes {
				if got := cl.apps[i].commands(); len(got) != len(want) {
					t.Fatalf("node %d applied %d commands, the leader %d", i, len(got), len(want))
				}
			}
		})
	}
}

// termGateStore holds the first Append that stores a term above the one it
// was opened with, until the test opens the gate.
type termGateStore struct {
	*persist.Memory
	entered, release chan struct{}
	held             atomic.Bool
}

func (s *termGateStore) Append(ctx context.Context, hs persist.HardState, entries []persist.Entry) error {
	if hs.Term > 0 && s.held.CompareAndSwap(false, true) {
		close(s.entered)
		<-s.release
	}
	return s.Memory.Append(ctx, hs, entries)
}

// TestSoleVoterSendsNewTermAfterStoringIt: the only voter of a cluster with
// a learner wins its first term without asking anyone, in one ready that
// also holds its first entry of the term and the AppendEntries that carries
// it to the learner. Sent before the Append that stores the term, that
// entry could reach the learner and be lost to a crash of the voter, which
// would then win the same term again and put another entry at that index
// (two entries with one index and term: the log matching property broken).
// So nothing of the new term reaches the learner while the voter's Append
// is held, neither from the loop nor from the ticker (which sends for a
// held call); once released, the learner follows.
func TestSoleVoterSendsNewTermAfterStoringIt(t *testing.T) {
	fc := newFakeClock()
	var voter *termGateStore
	cl := newClusterOn(t, newInprocNet(2), nil, 2, func(c *Config) {
		c.clock = fc
		c.Peers, c.Bootstrap = 0, []Member{{ID: 0}, {ID: 1, Learner: true}}
		c.StallHeartbeats = 10 * c.ElectionTimeoutMax
	}, func(i int) persist.Store {
		s := &termGateStore{Memory: persist.NewMemory(), entered: make(chan struct{}), release: make(chan struct{})}
		if i == 0 {
			voter = s
		} else {
			s.held.Store(true) // the learner's store never holds
		}
		return s
	})
	released := false
	defer func() {
		if !released {
			close(voter.release)
		}
	}()
	cfg := cl.cfg(0)
	if !cl.waitUntil(10*time.Second, func() bool {
		select {
		case <-voter.entered:
			return true
		default:
			return false
		}
	}) {
		t.Fatal("the voter never stored a term")
	}
	// Hold the voter's Append for several heartbeat intervals.
	for range 4 * int(cfg.ElectionTimeoutMax/cfg.TickInterval) {
		fc.Advance(t, cfg.TickInterval)
		pollUntil(time.Now().Add(cfg.TickInterval), func() bool { return false })
		if st := cl.nodes[1].Status(); st.Term != 0 || st.LastIndex > 1 {
			t.Fatalf("the learner is at term %d with last index %d while the voter's Append storing its new term is held", st.Term, st.LastIndex)
		}
	}
	close(voter.release)
	released = true
	idx := cl.commit("after")
	if !cl.waitUntil(10*time.Second, func() bool { return cl.apps[1].lastApplied() >= idx }) {
		t.Fatal("the learner did not follow once the voter's Append returned")
	}
}
