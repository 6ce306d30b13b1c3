package raft

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
)

// heldLoader is a Memory store whose LoadSnapshot, once armed, blocks until
// its context ends (a large snapshot being read), noting that it started
// and that it was stopped.
type heldLoader struct {
	*persist.Memory
	armed, started, stopped *atomic.Bool
}

func (s heldLoader) LoadSnapshot(ctx context.Context) (persist.Snapshot, error) {
	heldLoads.Add(1)
	if s.armed.Load() {
		s.started.Store(true)
		<-ctx.Done()
		s.stopped.Store(true)
		return persist.Snapshot{}, ctx.Err()
	}
	return s.Memory.LoadSnapshot(ctx)
}

var heldLoads atomic.Int64

// A leader that loses leadership while it reads a snapshot back from its
// store for a lagging follower stops the read (the store sees its context
// end), rather than reading on to the end for a transfer that is over.
func TestSnapshotReadStopsWhenLeadershipLost(t *testing.T) {
	var armed, started, stopped atomic.Bool
	armed.Store(true)
	cl := newClusterStores(t, 3, func(c *Config) {
		c.SnapshotThresholdBytes = 2000
		c.SnapshotChunkBytes = 100
	}, func(int) persist.Store {
		return heldLoader{Memory: persist.NewMemory(), armed: &armed, started: &started, stopped: &stopped}
	})
	lag, _, _ := cutOffFollower(cl, 200)
	l := cl.leader()
	if held, has := snapHeld(cl.nodes[l]); !has || held {
		t.Fatalf("leader: snapshot %v, data held %v", has, held)
	}
	cl.net.isolate(lag, false)
	if !cl.waitUntil(20*time.Second, started.Load) {
		t.Fatalf("the leader did not read its snapshot from the store (%d loads, lag applied %d)", heldLoads.Load(), len(cl.apps[lag].commands()))
	}
	if err := cl.nodes[l].TransferLeadership(context.Background(), 3-l-lag); err != nil {
		t.Fatalf("transfer leadership: %v", err)
	}
	if !cl.waitUntil(5*time.Second, stopped.Load) {
		t.Fatal("the former leader's snapshot read was not stopped when it lost leadership (only Kill stops it)")
	}
}
