package raft

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestNodeSnapshotInstalledWhileApplyBlocked: a follower's application is
// stuck in Apply of an old entry while the node, cut off and reconnected,
// installs a snapshot from the leader (stored, log replaced) and goes on
// receiving entries. Once Apply returns, the application sees the queued
// entries, then the snapshot, then the entries after it, in index order,
// and ends with exactly the leader's commands; no invariant is broken.
func TestNodeSnapshotInstalledWhileApplyBlocked(t *testing.T) {
	cl := newCluster(t, 3, func(c *Config) {
		c.SnapshotThresholdBytes = 2000
		c.SnapshotChunkBytes = 100
	})
	want := []string{"first"}
	cl.commit("first")
	lag := (cl.leader() + 1) % 3
	cl.crash(lag)
	blocked := &blockingApp{testApp: newTestApp(), release: make(chan struct{})}
	n, err := New(cl.cfg(lag), cl.transport(lag), cl.stores[lag], blocked)
	if err != nil {
		t.Fatal(err)
	}
	blocked.node = n
	cl.nodes[lag], cl.apps[lag] = n, blocked.testApp
	cl.net.set(lag, n)
	released := false
	defer func() {
		if !released {
			close(blocked.release)
		}
	}()

	others := newClusterView(cl, lag)
	for i := range 3 {
		cmd := fmt.Sprintf("before-%d", i)
		others.commit(cmd)
		want = append(want, cmd)
	}
	cl.net.isolate(lag, true)
	for i := range 200 {
		cmd := fmt.Sprintf("command-%03d-padding-padding", i)
		others.commit(cmd)
		want = append(want, cmd)
	}
	snap := cl.nodes[cl.leader()].Status().SnapshotIndex
	if snap == 0 {
		t.Fatal("the leader never compacted")
	}
	cl.net.isolate(lag, false)
	for i := range 3 {
		cmd := fmt.Sprintf("after-%d", i)
		others.commit(cmd)
		want = append(want, cmd)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := n.Status()
		if st.SnapshotIndex >= snap && st.Commit >= st.SnapshotIndex+3 {
			if st.Applied > 2 { // Apply of "first" (index 2) blocks
				t.Fatalf("setup: the blocked node applied up to %d", st.Applied)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lagging node did not install the leader's snapshot %d while Apply was blocked: %+v", snap, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(blocked.release)
	released = true
	cl.commit("last")
	want = append(want, "last")
	if got := blocked.commands(); !slices.Equal(got, want) {
		t.Fatalf("lagging node ends with %d commands, want %d", len(got), len(want))
	}
	blocked.mu.Lock()
	snaps, errs := blocked.snaps, blocked.errs
	blocked.mu.Unlock()
	if snaps == 0 || len(errs) > 0 {
		t.Fatalf("lagging node: %d snapshots applied, errors %v", snaps, errs)
	}
	cl.crash(lag) // reports invariant violations, if any
}
