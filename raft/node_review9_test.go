package raft

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
)

// TestNodeSnapshotLoadUnsupportedAcrossRestart: with stores that announce
// LoadSnapshot but answer errors.ErrUnsupported on every node, a lagging
// follower still catches up after the leader that dropped its snapshot's
// data restarts (the flag that says the store cannot read back is lost with
// the process, and the data is dropped again at start) and leadership may
// move; once it has, the application is no longer asked for snapshots.
func TestNodeSnapshotLoadUnsupportedAcrossRestart(t *testing.T) {
	unsupported := func(persist.Snapshot) (persist.Snapshot, error) {
		return persist.Snapshot{}, fmt.Errorf("load snapshot: rpc error: code = Unimplemented: %w", errors.ErrUnsupported)
	}
	newStore := func(m *persist.Memory) *loaderStore {
		return &loaderStore{Memory: m, fault: unsupported, faults: math.MaxInt}
	}
	stores := make([]*loaderStore, 3)
	cl := newClusterStores(t, 3, func(c *Config) {
		c.SnapshotThresholdBytes = 0
		c.SnapshotChunkBytes = 100
	}, func(i int) persist.Store {
		stores[i] = newStore(persist.NewMemory())
		return stores[i]
	})
	lag, others, want := cutOffFollower(cl, 30)
	// Both nodes that may lead store a snapshot the follower lacks, so
	// that whichever leads must send one.
	for i := range 3 {
		if i == lag {
			continue
		}
		n := cl.nodes[i]
		if !cl.waitUntil(10*time.Second, func() bool { return len(cl.apps[i].commands()) == len(want) }) {
			t.Fatalf("node %d applied %d commands, want %d", i, len(cl.apps[i].commands()), len(want))
		}
		applied := n.applied.Load()
		if err := n.SaveSnapshot(applied, encodeCmds(want)); err != nil {
			t.Fatal(err)
		}
		if !cl.waitUntil(10*time.Second, func() bool {
			n.mu.Lock()
			defer n.mu.Unlock()
			return n.core.log.snap.Index == applied
		}) {
			t.Fatalf("node %d did not compact to %d", i, applied)
		}
	}
	l := others.leader()
	cl.net.set(l, nil)
	if err := cl.nodes[l].Kill(); err != nil {
		t.Fatal(err)
	}
	stores[l] = newStore(stores[l].Memory.Clone())
	cl.stores[l] = stores[l]
	cl.start(l)
	if held, has := snapHeld(cl.nodes[l]); held || !has {
		t.Fatalf("restarted node: snapshot data held %v, has a snapshot %v; want it dropped (the store says it reads back)", held, has)
	}
	cl.net.isolate(lag, false)
	if !cl.waitUntil(30*time.Second, func() bool { return len(cl.apps[lag].commands()) >= len(want) }) ||
		!slices.Equal(cl.apps[lag].commands(), want) {
		t.Fatalf("lagging node applied %d commands, want %d", len(cl.apps[lag].commands()), len(want))
	}
	asks := func() (n int) {
		for _, a := range cl.apps {
			a.mu.Lock()
			n += a.askCount
			a.mu.Unlock()
		}
		return n
	}
	before := asks()
	for i := range 5 {
		cmd := fmt.Sprintf("after-%d", i)
		cl.commit(cmd)
		want = append(want, cmd)
	}
	if got := asks(); got > before {
		t.Fatalf("the applications were asked for %d more snapshots after the follower caught up", got-before)
	}
	for i := range 3 {
		if got := cl.apps[i].commands(); !slices.Equal(got, want) {
			t.Fatalf("node %d applied %d commands, want %d", i, len(got), len(want))
		}
	}
}

// TestNodeOvertakenCompactionEndsRequest: an application's answer to
// SnapshotNeeded that a newer snapshot overtook before the node compacted to
// it (one installed from the leader meanwhile) still ends the request. Left
// pending, it swallowed every later request for the snapshot's data (a
// store that cannot read it back after all): the node asks only when no
// request is unanswered, so a lagging follower waited until the log grew by
// another threshold, forever on an idle cluster.
func TestNodeOvertakenCompactionEndsRequest(t *testing.T) {
	cl := newCluster(t, 1, func(c *Config) { c.SnapshotThresholdBytes = 0 })
	for i := range 5 {
		cl.commit(fmt.Sprintf("c%d", i))
	}
	n := cl.nodes[0]
	applied := n.applied.Load()
	if err := n.SaveSnapshot(applied, encodeCmds(cl.apps[0].commands())); err != nil {
		t.Fatal(err)
	}
	if !cl.waitUntil(10*time.Second, func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.core.view().snapIndex == applied
	}) {
		t.Fatalf("no compaction to %d", applied)
	}
	n.mu.Lock()
	n.snapshotAsked.Store(true)
	n.compaction = &persist.Snapshot{Index: applied - 1, Data: []byte("overtaken")}
	n.kick()
	n.mu.Unlock()
	if !cl.waitUntil(10*time.Second, func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.compaction == nil && !n.snapshotAsked.Load()
	}) {
		t.Fatal("the request an overtaken compaction answered is still pending")
	}
}
