package raft

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		field string
		mod   func(*Config)
	}{
		{"", func(*Config) {}},
		{"Peers", func(c *Config) { c.Peers = -1 }},
		{"Peers", func(c *Config) { c.Bootstrap = []Member{{ID: 0}} }},
		{"ID", func(c *Config) { c.ID = -1 }},
		{"Bootstrap", func(c *Config) { c.Peers, c.Bootstrap = 0, []Member{{ID: 0}, {ID: 0}} }},
		{"Bootstrap", func(c *Config) { c.Peers, c.Bootstrap = 0, []Member{{ID: 0, Learner: true}} }},
		{"Bootstrap", func(c *Config) { c.Peers, c.Bootstrap = 0, []Member{{ID: -5}} }},
		{"ID", func(c *Config) { c.ID = 3 }},
		{"TickInterval", func(c *Config) { c.TickInterval = 0 }},
		{"ElectionTimeoutMax", func(c *Config) { c.ElectionTimeoutMax = c.ElectionTimeoutMin }},
		{"HeartbeatInterval", func(c *Config) { c.HeartbeatInterval = c.ElectionTimeoutMin }},
		{"SnapshotChunkBytes", func(c *Config) { c.SnapshotChunkBytes = 2 << 20 }},
		{"ReadBatchWindow", func(c *Config) { c.ReadBatchWindow = -1 }},
		{"ReadBatchWindow", func(c *Config) { c.ReadBatchWindow = c.HeartbeatInterval }},
		{"MaxInflightAppends", func(c *Config) { c.MaxInflightAppends = 0 }},
	} {
		c := testConfig(0, 3)
		tc.mod(&c)
		err := c.Validate()
		if tc.field == "" {
			if err != nil {
				t.Errorf("default config: %v", err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %v does not name the field", tc.field, err)
		}
	}
	// The lab's numbers validate.
	c := testConfig(0, 3)
	c.HeartbeatInterval, c.ElectionTimeoutMin, c.ElectionTimeoutMax = 110*time.Millisecond, 300*time.Millisecond, 600*time.Millisecond
	if err := c.Validate(); err != nil {
		t.Errorf("lab config: %v", err)
	}
}

func TestNodeAgreeAndRestart(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			cl := newCluster(t, n, nil)
			var want []string
			for i := range 20 {
				cmd := fmt.Sprintf("c%d", i)
				cl.commit(cmd)
				want = append(want, cmd)
			}
			for i := range n {
				if got := cl.apps[i].commands(); !slices.Equal(got, want) {
					t.Fatalf("node %d applied %v", i, got)
				}
			}
			// Crash all, restart from the stored state: everything is
			// re-applied and the cluster goes on.
			for i := range n {
				cl.crash(i)
			}
			for i := range n {
				cl.start(i)
			}
			cl.commit("after")
			want = append(want, "after")
			for i := range n {
				if got := cl.apps[i].commands(); !slices.Equal(got, want) {
					t.Fatalf("node %d applied %v after restart", i, got)
				}
			}
		})
	}
}

// TestNodeLeaderFailover: a leader cut off from the others steps down
// (check-quorum) within two election timeouts, the others elect a new
// leader and commit, and the old leader catches up when it rejoins. The
// nodes run on a fake clock: the bound is on clock time, exact however busy
// the machine, and nothing sleeps.
func TestNodeLeaderFailover(t *testing.T) {
	cl := newFakeClockCluster(t, 3, nil)
	cl.commit("a")
	l := cl.leader()
	cl.net.isolate(l, true)
	cfg := cl.cfg(l)
	// Cut off, the leader hears nothing: when it steps down depends on its
	// ticks alone. A tick is acted on before the next one is handed over,
	// hence the one tick of slack.
	limit := int(2*cfg.ElectionTimeoutMin/cfg.TickInterval) + 1
	for k := 0; ; k++ {
		if _, ok := cl.nodes[l].State(); !ok {
			break
		}
		if k > limit {
			t.Fatalf("isolated leader still leads after %d ticks (check-quorum: within %v)", k, 2*cfg.ElectionTimeoutMin)
		}
		cl.clock.Advance(t, cfg.TickInterval)
	}
	// The old leader's node is still up but cut off; the others elect.
	others := newClusterView(cl, l)
	others.commit("b")
	cl.net.isolate(l, false)
	cl.commit("c")
	for i := range 3 {
		if got := cl.apps[i].commands(); !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Fatalf("node %d applied %v", i, got)
		}
	}
}

// newClusterView returns a view of cl without node skip (it stays running).
func newClusterView(cl *cluster, skip int) *cluster {
	v := *cl
	v.nodes = slices.Clone(cl.nodes)
	v.nodes[skip] = nil
	return &v
}

// cutOffFollower commits "first" on cl, cuts a follower off and commits n
// more commands without it (enough, at a small snapshot threshold, for the
// leader to compact them away). It returns the follower, the view of the
// other nodes, and every command committed, in order.
func cutOffFollower(cl *cluster, n int) (lag int, others *cluster, want []string) {
	cl.commit("first")
	lag = (cl.leader() + 1) % 3
	cl.net.isolate(lag, true)
	others = newClusterView(cl, lag)
	want = []string{"first"}
	for i := range n {
		cmd := fmt.Sprintf("command-%03d-padding-padding", i)
		others.commit(cmd)
		want = append(want, cmd)
	}
	return lag, others, want
}

func TestNodeSnapshotsAndInstall(t *testing.T) {
	cl := newCluster(t, 3, func(c *Config) {
		c.SnapshotThresholdBytes = 2000
		c.SnapshotChunkBytes = 100
	})
	lag, _, want := cutOffFollower(cl, 200)
	l := cl.leader()
	st := cl.nodes[l].Status()
	if st.SnapshotIndex == 0 {
		t.Fatalf("leader never compacted: %+v", st)
	}
	if st.LogSizeBytes > 4*2000 {
		t.Fatalf("leader log %d bytes, threshold 2000", st.LogSizeBytes)
	}
	cl.net.isolate(lag, false)
	cl.commit("last")
	want = append(want, "last")
	if got := cl.apps[lag].commands(); !slices.Equal(got, want) {
		t.Fatalf("lagging node applied %d commands, want %d", len(got), len(want))
	}
	cl.apps[lag].mu.Lock()
	snaps := cl.apps[lag].snaps
	cl.apps[lag].mu.Unlock()
	if snaps == 0 {
		t.Fatal("lagging node caught up without a snapshot")
	}
	// Restart everyone: the snapshot comes first, then the rest.
	for i := range 3 {
		cl.crash(i)
	}
	for i := range 3 {
		cl.start(i)
	}
	cl.commit("again")
	want = append(want, "again")
	for i := range 3 {
		if got := cl.apps[i].commands(); !slices.Equal(got, want) {
			t.Fatalf("node %d after restart applied %d commands, want %d", i, len(got), len(want))
		}
	}
}

func TestNodeReadIndex(t *testing.T) {
	cl := newCluster(t, 3, nil)
	idx := cl.commit("a")
	l := cl.leader()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	ri, err := cl.nodes[l].ReadIndex(ctx)
	if err != nil || ri < idx {
		t.Fatalf("ReadIndex = %d, %v; want >= %d", ri, err, idx)
	}
	// Many concurrent reads.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := cl.nodes[l].ReadIndex(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// A follower gets its read index from the leader.
	f := (l + 1) % 3
	if ri, err := cl.nodes[f].ReadIndex(ctx); err != nil || ri < idx {
		t.Fatalf("follower ReadIndex = %d, %v; want >= %d", ri, err, idx)
	}
	// A partitioned leader never returns an index.
	cl.net.isolate(l, true)
	_, err = cl.nodes[l].ReadIndex(ctx)
	if err == nil {
		t.Fatal("isolated leader answered a read")
	}
	cl.net.isolate(l, false)
}

func TestNodeTransferLeadership(t *testing.T) {
	cl := newCluster(t, 3, nil)
	cl.commit("a")
	l := cl.leader()
	to := (l + 1) % 3
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := cl.nodes[l].TransferLeadership(ctx, to); err != nil {
		t.Fatal(err)
	}
	if got := cl.leader(); got != to {
		t.Fatalf("leader %d after transfer to %d", got, to)
	}
	ib := cl.commit("b")
	// The old leader, now a follower, reads through the new one.
	if ri, err := cl.nodes[l].ReadIndex(ctx); err != nil || ri < ib {
		t.Fatalf("old leader ReadIndex = %d, %v; want >= %d", ri, err, ib)
	}
}

// TestNodeFollowerLosesLog: a follower restarted with an empty store (the
// noop persister) is caught up again.
func TestNodeFollowerLosesLog(t *testing.T) {
	cl := newCluster(t, 3, nil)
	for i := range 10 {
		cl.commit(fmt.Sprint(i))
	}
	f := (cl.leader() + 1) % 3
	cl.crash(f)
	cl.stores[f] = persist.NewMemory()
	cl.start(f)
	cl.commit("after")
	if got := len(cl.apps[f].commands()); got != 11 {
		t.Fatalf("restarted follower applied %d commands, want 11", got)
	}
}

// gatedApp blocks in Apply of a command until gate is closed, and records
// that the call returned.
type gatedApp struct {
	*testApp
	gate     chan struct{}
	returned atomic.Bool
}

func (a *gatedApp) Apply(msg ApplyMsg) {
	if !msg.IsSnapshot {
		<-a.gate
	}
	a.testApp.Apply(msg)
	a.returned.Store(true)
}

// TestNodeReadIndexWaitsForApply: a read whose index is committed but whose
// Apply is still running returns only once Apply returned, woken by the
// applier (the applier signals only when a reader waits).
func TestNodeReadIndexWaitsForApply(t *testing.T) {
	app := &gatedApp{testApp: newTestApp(), gate: make(chan struct{})}
	n, err := New(testConfig(0, 1), &inprocTransport{net: newInprocNet(1), from: 0}, persist.NewMemory(), app)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := n.Kill(); err != nil {
			t.Error(err)
		}
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		if !pollUntil(time.Now().Add(5*time.Second), cond) {
			close(app.gate)
			t.Fatalf("no %s within 5s", what)
		}
	}
	waitFor("leader", func() bool { _, ok := n.State(); return ok })
	idx, _, ok := n.Start([]byte("x"))
	if !ok {
		t.Fatal("single node is not leader")
	}
	waitFor("commit", func() bool { return n.Status().Commit >= idx })

	type result struct {
		index    uint64
		err      error
		returned bool
	}
	done := make(chan result, 1)
	go func() {
		ri, err := n.ReadIndex(t.Context())
		done <- result{ri, err, app.returned.Load()}
	}()
	waitFor("reader waiting for the apply", n.appliedWaiting.Load)
	close(app.gate)
	select {
	case r := <-done:
		if r.err != nil || r.index < idx {
			t.Fatalf("ReadIndex = %d, %v; want >= %d", r.index, r.err, idx)
		}
		if !r.returned {
			t.Fatal("ReadIndex returned before Apply of its index returned")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadIndex not woken after Apply returned")
	}
}

// TestNodeHopTransport: the benchmarks' goroutine-hop transport carries a
// cluster through commits and a leader failover, and its goroutines stop.
func TestNodeHopTransport(t *testing.T) {
	cl := newHopCluster(t, 3, nil)
	cl.commit("a")
	l := cl.leader()
	cl.net.isolate(l, true)
	newClusterView(cl, l).commit("b") // by the other two
	cl.net.isolate(l, false)
	cl.commit("c")
	for i, a := range cl.apps {
		if got := a.commands(); !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Errorf("node %d applied %q", i, got)
		}
	}
}
