package raft

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
)

// keepingStore hides its store's persist.SnapshotLoader, as Noop, a plugin
// that predates LoadSnapshot or a third-party store would: the node keeps
// the snapshot's data in memory.
type keepingStore struct{ persist.Store }

// loaderStore is a Memory store whose next faults LoadSnapshot calls a test
// makes fail or answer with another snapshot.
type loaderStore struct {
	*persist.Memory
	loads atomic.Int64
	mu    sync.Mutex // guards fault and faults
	fault func(persist.Snapshot) (persist.Snapshot, error)
	// faults is how many more loads fault.
	faults int
}

func (s *loaderStore) LoadSnapshot(ctx context.Context) (persist.Snapshot, error) {
	snap, err := s.Memory.LoadSnapshot(ctx)
	s.loads.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && s.faults > 0 {
		s.faults--
		return s.fault(snap)
	}
	return snap, err
}

// snapHeld reports whether node n's core holds its snapshot's data in
// memory, and whether it has a snapshot at all.
func snapHeld(n *Node) (held, has bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.core.log.snapStored, n.core.log.snap.Index > 0
}

// TestNodeSendsStoredSnapshot: a leader whose store can read its snapshot
// back keeps no snapshot data in memory once the snapshot is stored; to
// catch a lagging follower up it reads it from the store, outside its lock
// and chunk by chunk, and sends only a snapshot that is the one it
// announces: a store read that fails or returns another snapshot (a newer
// one, or other bytes) fails that send, which is retried later. The
// follower that installed the snapshot drops its data too once stored and
// applied.
func TestNodeSendsStoredSnapshot(t *testing.T) {
	newer := func(s persist.Snapshot) (persist.Snapshot, error) {
		s.Index++
		return s, nil
	}
	other := func(s persist.Snapshot) (persist.Snapshot, error) {
		s.Data = append(slices.Clone(s.Data), 'x')
		return s, nil
	}
	flipped := func(s persist.Snapshot) (persist.Snapshot, error) {
		if len(s.Data) > 0 {
			s.Data = slices.Clone(s.Data)
			s.Data[0] ^= 1 // same size: only the checksum tells
		}
		return s, nil
	}
	failed := func(persist.Snapshot) (persist.Snapshot, error) {
		return persist.Snapshot{}, errors.New("disk on fire")
	}
	for _, tc := range []struct {
		name  string
		fault func(persist.Snapshot) (persist.Snapshot, error)
	}{{"store", nil}, {"newer", newer}, {"other", other}, {"flipped", flipped}, {"failed", failed}} {
		t.Run(tc.name, func(t *testing.T) {
			stores := make([]*loaderStore, 3)
			cl := newClusterStores(t, 3, func(c *Config) {
				c.SnapshotThresholdBytes = 2000
				c.SnapshotChunkBytes = 100
			}, func(i int) persist.Store {
				stores[i] = &loaderStore{Memory: persist.NewMemory(), fault: tc.fault}
				if tc.fault != nil {
					stores[i].faults = 3
				}
				return stores[i]
			})
			lag, others, want := cutOffFollower(cl, 200)
			l := cl.leader()
			if held, has := snapHeld(cl.nodes[l]); !has || held {
				t.Fatalf("leader: snapshot %v, data held in memory %v; want a snapshot, not held", has, held)
			}
			cl.net.isolate(lag, false)
			// Not cl.commit: it proposes again when the lagging node is
			// slow to catch up (a busy machine), and the command then
			// counts twice.
			others.commit("last")
			want = append(want, "last")
			waitCaughtUpBySnapshot(t, cl, lag, want)
			if stores[l].loads.Load() == 0 {
				t.Fatal("the leader sent a snapshot without reading it from its store")
			}
			if tc.fault != nil {
				stores[l].mu.Lock()
				left := stores[l].faults
				stores[l].mu.Unlock()
				if left != 0 {
					t.Fatalf("%d faults left: the leader read its store fewer times than expected", left)
				}
			}
			// The follower drops what it installed once stored and applied.
			if !cl.waitUntil(5*time.Second, func() bool { held, _ := snapHeld(cl.nodes[lag]); return !held }) {
				t.Fatal("the lagging node still holds the installed snapshot's data")
			}
		})
	}
}

// TestNodeDropsSnapshotData: a node restarting from a store that can read
// its snapshot back, or installing one from a leader, keeps its data only
// until it is stored and handed to the application; with a store that
// cannot (keepingStore) it keeps it.
func TestNodeDropsSnapshotData(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(*persist.Memory) persist.Store
		held bool
	}{
		{"memory", func(m *persist.Memory) persist.Store { return m }, false},
		{"keeping", func(m *persist.Memory) persist.Store { return keepingStore{m} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			mem := persist.NewMemory()
			if err := mem.Append(ctx, persist.HardState{Term: 2, VotedFor: persist.NoVote}, nil); err != nil {
				t.Fatal(err)
			}
			if err := mem.SaveSnapshot(ctx, persist.Snapshot{Index: 4, Term: 2, Data: []byte("a\nb\n")}); err != nil {
				t.Fatal(err)
			}
			app := &checkedApp{testApp: newTestApp()}
			n := startAlone(t, tc.wrap(mem), app)
			<-app.wait(4)
			if held, _ := snapHeld(n); held != tc.held {
				t.Fatalf("after start-up: data held %v, want %v", held, tc.held)
			}
			if resp, err := n.HandleInstallSnapshot(ctx, snapshotChunk(3, 1, 9, []byte("c\nd\ne\n"))); err != nil || !resp.Installed {
				t.Fatalf("install: %+v, %v", resp, err)
			}
			select {
			case <-app.wait(9):
			case <-time.After(5 * time.Second):
				t.Fatal("snapshot not applied")
			}
			deadline := time.Now().Add(5 * time.Second)
			if !pollUntil(deadline, func() bool { held, _ := snapHeld(n); return held == tc.held }) {
				t.Fatalf("after an install: data held %v, want %v", !tc.held, tc.held)
			}
		})
	}
}

// TestNodeForgetsSnapshotItNoLongerSends: the stored snapshot a leader's
// senders read to send in chunks is kept only while a transfer of it is
// under way: a leader that loses leadership mid-transfer forgets it, so a
// follower does not hold the data the store already has.
func TestNodeForgetsSnapshotItNoLongerSends(t *testing.T) {
	cl := newClusterStores(t, 3, func(c *Config) {
		c.SnapshotThresholdBytes = 2000
		c.SnapshotChunkBytes = 1 // thousands of chunks: the transfer is still under way when cut
	}, func(int) persist.Store { return persist.NewMemory() })
	lag, _, _ := cutOffFollower(cl, 200)
	l := cl.leader()
	n := cl.nodes[l]
	sending := func() bool {
		n.sendMu.Lock()
		defer n.sendMu.Unlock()
		return n.sending != nil
	}
	cl.net.isolate(lag, false)
	if !cl.waitUntil(20*time.Second, sending) {
		t.Fatal("the leader did not read its snapshot from the store to send it")
	}
	cl.net.isolate(lag, true)
	if err := n.TransferLeadership(context.Background(), 3-l-lag); err != nil {
		t.Fatalf("transfer leadership: %v", err)
	}
	if !cl.waitUntil(10*time.Second, func() bool { return !sending() }) {
		t.Fatal("the former leader still holds the snapshot it was sending")
	}
}

// slowLoader is a Memory store whose LoadSnapshot takes delay (unless ctx
// ends first), as a plugin streaming a large snapshot does.
type slowLoader struct {
	*persist.Memory
	delay time.Duration
}

func (s slowLoader) LoadSnapshot(ctx context.Context) (persist.Snapshot, error) {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return persist.Snapshot{}, ctx.Err()
	}
	return s.Memory.LoadSnapshot(ctx)
}

// TestNodeSendsSnapshotSlowerToLoadThanAnRPC: reading the stored snapshot
// is not part of the RPC's time budget: a snapshot that takes longer than
// RPCTimeout to read (a large one, a busy plugin) is still sent, rather
// than every attempt timing out before its first chunk.
func TestNodeSendsSnapshotSlowerToLoadThanAnRPC(t *testing.T) {
	const rpcTimeout = 200 * time.Millisecond
	cl := newClusterStores(t, 3, func(c *Config) {
		c.SnapshotThresholdBytes = 2000
		c.SnapshotChunkBytes = 1000
		c.RPCTimeout = rpcTimeout
	}, func(int) persist.Store { return slowLoader{persist.NewMemory(), 3 * rpcTimeout} })
	lag, _, cmds := cutOffFollower(cl, 200)
	want := len(cmds)
	if held, has := snapHeld(cl.nodes[cl.leader()]); !has || held {
		t.Fatalf("leader: snapshot %v, data held in memory %v; want a snapshot, not held", has, held)
	}
	cl.net.isolate(lag, false)
	if !cl.waitUntil(20*time.Second, func() bool { return len(cl.apps[lag].commands()) >= want }) {
		t.Fatalf("lagging node applied %d commands, want %d", len(cl.apps[lag].commands()), want)
	}
}

// TestNodeSnapshotLoadUnsupported: a store that says it can read its
// snapshot back (a plugin that announces LoadSnapshot) but answers
// errors.ErrUnsupported leaves the leader without the data it dropped; the
// leader stops asking the store, asks the application for a snapshot
// instead, keeps that one's data and catches the lagging follower up with
// it. "idle": nothing was applied since the stored snapshot, so the
// application answers with the state at its index, and the core takes it
// as the dropped data; "newer": the answer is a newer snapshot, stored and
// kept.
func TestNodeSnapshotLoadUnsupported(t *testing.T) {
	unsupported := func(persist.Snapshot) (persist.Snapshot, error) {
		return persist.Snapshot{}, fmt.Errorf("load snapshot: rpc error: code = Unimplemented: %w", errors.ErrUnsupported)
	}
	for _, tc := range []struct {
		name  string
		newer bool
	}{{"idle", false}, {"newer", true}} {
		t.Run(tc.name, func(t *testing.T) {
			stores := make([]*loaderStore, 3)
			cl := newClusterStores(t, 3, func(c *Config) {
				c.SnapshotThresholdBytes = 0 // snapshots only when the test (or the node) asks
				c.SnapshotChunkBytes = 100
			}, func(i int) persist.Store {
				stores[i] = &loaderStore{Memory: persist.NewMemory(), fault: unsupported, faults: math.MaxInt}
				return stores[i]
			})
			lag, _, want := cutOffFollower(cl, 50)
			l := cl.leader()
			n := cl.nodes[l]
			if !cl.waitUntil(10*time.Second, func() bool { return len(cl.apps[l].commands()) == len(want) }) {
				t.Fatalf("leader applied %d commands, want %d", len(cl.apps[l].commands()), len(want))
			}
			// The leader stores a snapshot the follower lacks and drops its
			// data; "newer" leaves the last command out of it, so that the
			// application's next snapshot is a newer one.
			applied := n.applied.Load()
			stored, cmds := applied, want
			if tc.newer {
				stored, cmds = applied-1, want[:len(want)-1]
			}
			if err := n.SaveSnapshot(stored, encodeCmds(cmds)); err != nil {
				t.Fatal(err)
			}
			snapIndex := func() uint64 {
				n.mu.Lock()
				defer n.mu.Unlock()
				return n.core.log.snap.Index
			}
			if !cl.waitUntil(10*time.Second, func() bool { return snapIndex() >= stored }) {
				t.Fatalf("leader: snapshot %d, want %d", snapIndex(), stored)
			}
			cl.net.isolate(lag, false)
			waitCaughtUpBySnapshot(t, cl, lag, want)
			if held, _ := snapHeld(n); !held {
				t.Fatal("leader does not hold its snapshot's data after the store could not read it back")
			}
			if got := snapIndex(); (got > stored) != tc.newer {
				t.Fatalf("leader's snapshot %d, stored before the transfer %d: newer %v, want %v", got, stored, got > stored, tc.newer)
			}
			if loads, max := stores[l].loads.Load(), int64(n.cfg.RPCWorkersPerPeer*2); loads == 0 || loads > max {
				t.Fatalf("the leader asked its store for the snapshot %d times; want at least once, and no more once it was unsupported (%d senders)", loads, max)
			}
		})
	}
}

// waitCaughtUpBySnapshot waits up to 20 s for node lag to have applied
// exactly want, and checks that it installed a snapshot on the way.
func waitCaughtUpBySnapshot(t *testing.T, cl *cluster, lag int, want []string) {
	t.Helper()
	if !cl.waitUntil(20*time.Second, func() bool { return len(cl.apps[lag].commands()) >= len(want) }) ||
		!slices.Equal(cl.apps[lag].commands(), want) {
		t.Fatalf("lagging node applied %d commands, want %d", len(cl.apps[lag].commands()), len(want))
	}
	cl.apps[lag].mu.Lock()
	snaps := cl.apps[lag].snaps
	cl.apps[lag].mu.Unlock()
	if snaps == 0 {
		t.Fatal("lagging node caught up without a snapshot")
	}
}
