package raft

import (
	"context"
	"fmt"
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

// TestLeaderHeartbeatsThroughStalledAppend: while a leader's own Append is
// held for several election timeouts, its ticker goes on sending heartbeats,
// so no follower campaigns, the leader keeps its term (check-quorum hears
// from a majority) and the command the leader sent before its write commits
// on the followers' acknowledgements and is applied by them. Without those
// sends (noSendWhileStoring) the followers elect another leader within the
// same hold: the contrast shows the test can tell. The nodes run on a fake
// clock, so the hold is counted in ticks, whatever the machine's load.
func TestLeaderHeartbeatsThroughStalledAppend(t *testing.T) {
	for _, send := range []bool{true, false} {
		t.Run(fmt.Sprintf("send=%v", send), func(t *testing.T) {
			stores := make([]*stallStore, 3)
			fc := newFakeClock()
			cl := newClusterStores(t, 3, func(c *Config) {
				c.clock = fc
				c.noSendWhileStoring = !send
			}, func(i int) persist.Store {
				stores[i] = &stallStore{Memory: persist.NewMemory()}
				return stores[i]
			})
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
			// Hold the write for four of the longest election timeouts,
			// tick by tick, with real time for the nodes to act on each.
			cfg := cl.cfg(l)
			holdTicks := int(4 * cfg.ElectionTimeoutMax / cfg.TickInterval)
			changed := ""
			for range holdTicks {
				fc.Advance(t, cfg.TickInterval)
				pollUntil(time.Now().Add(cfg.TickInterval), func() bool { return false })
				for i, n := range cl.nodes {
					if st := n.Status(); st.Term != term || st.Leader != l {
						changed = fmt.Sprintf("node %d: term %d leader %d, was term %d leader %d", i, st.Term, st.Leader, term, l)
					}
				}
				if changed != "" {
					break
				}
			}
			followersApplied := true
			for i, a := range cl.apps {
				if i != l && a.lastApplied() < idx {
					followersApplied = false
				}
			}
			if !send {
				if changed == "" {
					t.Fatal("the followers kept the leader through a stalled Append without its ticker's heartbeats: the test cannot tell")
				}
				t.Logf("without the ticker's sends: %s", changed)
			} else {
				if changed != "" {
					t.Fatalf("the leader's Append held for %d ticks: %s", holdTicks, changed)
				}
				if !followersApplied {
					t.Fatalf("the followers did not apply index %d, committed by their own acknowledgements, while the leader's write was held", idx)
				}
				if cl.apps[l].lastApplied() >= idx {
					t.Fatalf("the leader applied index %d before its own write of it returned", idx)
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
