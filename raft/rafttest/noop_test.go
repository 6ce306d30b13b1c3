package rafttest

import (
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist/persisttest"
	"github.com/ruaft/ruaft/raft"
)

// TestNoopRestartCannotLeadEmpty: on the noop store a restarted server
// comes back with nothing (term 0, no vote, empty log). With the committed
// entries on the other two, it must not lead before it got them back: each
// time it leads, its log reaches the committed index. A follower is
// restarted, then the leader, three times. Check-quorum is off so that no
// lease hides a broken log comparison: the voters of a dead leader grant
// whoever asks first. The harness's apply checker catches a different
// command at an index on top.
func TestNoopRestartCannotLeadEmpty(t *testing.T) {
	t.Parallel() // mostly waiting on election timeouts
	f := persisttest.Noop()
	c := NewCluster(t, 3, Options{Store: &f, ShortDelays: true,
		Configure: func(cfg *raft.Config) { cfg.CheckQuorum = false }})
	committed := c.One(c.RandCmd(), 3, true)
	leader := c.CheckOneLeader()
	victims := []int{(leader + 1) % 3, -1, -1, -1} // -1: the leader of the moment
	for _, victim := range victims {
		if victim < 0 {
			victim = c.CheckOneLeader()
		}
		c.Restart(victim)
		c.Connect(victim)
		// Watch the restarted server while the cluster settles: until
		// it catches up it may campaign but must never win.
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			if nd := c.Node(victim); nd != nil {
				st := nd.Status()
				if st.Role == raft.Leader && st.LastIndex < committed {
					t.Fatalf("restarted server %d leads term %d with last index %d < committed %d\n%s",
						victim, st.Term, st.LastIndex, committed, c.StatusDump())
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		committed = c.One(c.RandCmd(), 3, true)
		for i := range 3 {
			if got := c.LastApplied(i); got < committed {
				t.Fatalf("server %d applied up to %d, want %d\n%s", i, got, committed, c.StatusDump())
			}
		}
	}
}
