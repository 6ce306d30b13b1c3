package kvraft_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/kvraft"
	"github.com/ruaft/ruaft/kvraft/kvtest"
)

// watcher follows a prefix through ck from revision after, collecting
// every event, until stop is closed and it has reached revision until (set
// before stop closes).
type watcher struct {
	events []kvraft.Event
	err    error
}

func (w *watcher) run(ck *kvraft.Clerk, prefix string, after uint64, stop <-chan struct{}, until *atomic.Uint64) {
	for {
		select {
		case <-stop:
			if after >= until.Load() {
				return
			}
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), kvtest.OpTimeout)
		resp, err := ck.Watch(ctx, kvraft.WatchRequest{Key: prefix, Prefix: true, AfterRevision: after, Wait: 300 * time.Millisecond})
		cancel()
		if err != nil {
			w.err = err
			return
		}
		if resp.Compacted {
			w.err = fmt.Errorf("compacted after %d", after)
			return
		}
		if resp.NextAfterRevision < after {
			w.err = fmt.Errorf("next_after_revision went back from %d to %d", after, resp.NextAfterRevision)
			return
		}
		w.events = append(w.events, resp.Events...)
		after = resp.NextAfterRevision
	}
}

// check fails t unless the watcher saw exactly the writes: revision ->
// value, in revision order, none twice.
func (w *watcher) check(t *testing.T, writes map[uint64]string) {
	t.Helper()
	if w.err != nil {
		t.Fatalf("watcher: %v", w.err)
	}
	var last uint64
	for _, e := range w.events {
		rev := e.KV.ModRevision
		if rev <= last {
			t.Fatalf("event at revision %d after %d: out of order or twice", rev, last)
		}
		last = rev
		want, ok := writes[rev]
		if !ok || e.Type != kvraft.EventPut || e.KV.Value != want {
			t.Fatalf("event %+v at revision %d; the write there was %q (%v)", e, rev, want, ok)
		}
	}
	if len(w.events) != len(writes) {
		t.Fatalf("watcher saw %d events for %d writes", len(w.events), len(writes))
	}
}

// writeMany puts n values under prefix through ck and returns revision ->
// value of each write.
func writeMany(t *testing.T, ck *kvraft.Clerk, prefix string, n int, between func(i int)) map[uint64]string {
	t.Helper()
	writes := make(map[uint64]string)
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), kvtest.OpTimeout)
		v := fmt.Sprint("v", i)
		resp, err := ck.PutWith(ctx, kvraft.PutRequest{Key: fmt.Sprintf("%s%d", prefix, i%4), Value: v})
		cancel()
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		if _, dup := writes[resp.Header.Revision]; dup {
			t.Fatalf("two writes answered revision %d", resp.Header.Revision)
		}
		writes[resp.Header.Revision] = v
		if between != nil {
			between(i)
		}
	}
	return writes
}

// TestWatchAcrossLeaderChanges: a watcher following a prefix through a
// clerk sees every write exactly once and in order while the leader is
// cut off again and again (the clerk re-asks other replicas with its last
// revision).
func TestWatchAcrossLeaderChanges(t *testing.T) {
	c := kvtest.NewCluster(t, kvtest.Options{Servers: 3}, kvtest.StartKVServer)
	ck, wck := c.MakeClerk(c.All()), c.MakeClerk(c.All())
	var until atomic.Uint64
	stop := make(chan struct{})
	var w watcher
	var wg sync.WaitGroup
	wg.Go(func() { w.run(wck, "w/", 0, stop, &until) })
	changes := 0
	writes := writeMany(t, ck, "w/", 60, func(i int) {
		if i%15 == 7 {
			l := c.WaitLeader()
			others := []int{(l + 1) % 3, (l + 2) % 3}
			c.Partition([]int{l}, others)
			changes++
		}
		if i%15 == 12 {
			c.Heal()
		}
	})
	c.Heal()
	var maxRev uint64
	for rev := range writes {
		maxRev = max(maxRev, rev)
	}
	until.Store(maxRev)
	close(stop)
	wg.Wait()
	w.check(t, writes)
	t.Logf("%d events through %d leader changes", len(w.events), changes)
}

// TestWatchAcrossSnapshotInstall: a watcher waiting at a follower cut off
// from the others keeps waiting while the others write and compact their
// logs; the follower then catches up by InstallSnapshot, and the watcher
// gets every write exactly once from the history the snapshot carries.
func TestWatchAcrossSnapshotInstall(t *testing.T) {
	c := kvtest.NewCluster(t, kvtest.Options{Servers: 3, MaxRaftState: 2000},
		kvtest.StartKVServerWith(func(cfg *kvraft.Config) { cfg.HistoryMaxEvents, cfg.HistoryMaxBytes = 1000, 1<<20 }))
	ck := c.MakeClerk(c.All())
	l := c.WaitLeader()
	f := (l + 1) % 3
	c.Put(ck, "other", "x", nil, -1)
	var start uint64
	{
		ctx, cancel := context.WithTimeout(context.Background(), kvtest.OpTimeout)
		resp, err := ck.GetKV(ctx, "other", kvraft.Linearizable)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		start = resp.Header.Revision
	}
	c.Disconnect(f)
	wck := c.MakeClerk([]int{f})
	var until atomic.Uint64
	stop := make(chan struct{})
	var w watcher
	var wg sync.WaitGroup
	wg.Go(func() { w.run(wck, "s/", start, stop, &until) })
	c.ConnectClerk(ck, []int{l, (l + 2) % 3})
	writes := writeMany(t, ck, "s/", 80, nil)
	snapBefore := c.Node(f).Status().SnapshotIndex
	c.Connect(f)
	var maxRev uint64
	for rev := range writes {
		maxRev = max(maxRev, rev)
	}
	until.Store(maxRev)
	close(stop)
	wg.Wait()
	w.check(t, writes)
	if after := c.Node(f).Status().SnapshotIndex; after == snapBefore {
		t.Fatalf("follower %d caught up without a snapshot (snapshot index %d)", f, after)
	}
}

// TestLeaseAcrossLeaderChanges: a lease kept alive survives leader
// changes; once its keep-alives stop and the leader that answered the last
// one is cut off, it still lives at least its TTL from that keep-alive (a
// new leader starts it at its full TTL), then expires through the log: the
// key is gone on every replica at the same revision.
func TestLeaseAcrossLeaderChanges(t *testing.T) {
	c := kvtest.NewCluster(t, kvtest.Options{Servers: 3},
		kvtest.StartKVServerWith(func(cfg *kvraft.Config) { cfg.LeaseTick = 20 * time.Millisecond }))
	ck := c.MakeClerk(c.All())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ttl = 2 * time.Second
	g, err := ck.LeaseGrant(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ck.PutWith(ctx, kvraft.PutRequest{Key: "lock", Value: "mine", Lease: g.ID}); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		l := c.WaitLeader()
		c.Partition([]int{l}, []int{(l + 1) % 3, (l + 2) % 3})
		for range 6 {
			if _, err := ck.LeaseKeepAlive(ctx, g.ID); err != nil {
				t.Fatalf("round %d: keep-alive: %v", round, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		c.Heal()
		if resp, err := ck.GetKV(ctx, "lock", kvraft.Linearizable); err != nil || !resp.Found {
			t.Fatalf("round %d: the kept-alive key: %+v, %v", round, resp, err)
		}
	}
	last := time.Now()
	if _, err := ck.LeaseKeepAlive(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	l := c.WaitLeader()
	c.Partition([]int{l}, []int{(l + 1) % 3, (l + 2) % 3})
	for {
		resp, err := ck.GetKV(ctx, "lock", kvraft.Linearizable)
		if err != nil {
			t.Fatal(err)
		}
		if !resp.Found {
			if ended := time.Since(last); ended < ttl {
				t.Fatalf("the lease ended %v after its last keep-alive, before its TTL %v", ended, ttl)
			}
			break
		}
		if time.Since(last) > ttl+15*time.Second {
			t.Fatal("the lease never expired")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := ck.LeaseKeepAlive(ctx, g.ID); !errors.Is(err, kvraft.ErrLeaseNotFound) {
		t.Fatalf("keep-alive of the expired lease: %v", err)
	}
	c.Heal()
	// Every replica applied the expiry as the same event.
	var revs []uint64
	for i := range 3 {
		srv := c.Replica(i).(kvraft.Service)
		var del uint64
		for try := 0; try < 200 && del == 0; try++ {
			resp, err := srv.Watch(ctx, &kvraft.WatchRequest{Key: "lock", Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range resp.Events {
				if e.Type == kvraft.EventDelete {
					del = e.KV.ModRevision
				}
			}
			if del == 0 {
				time.Sleep(50 * time.Millisecond)
			}
		}
		revs = append(revs, del)
	}
	if revs[0] == 0 || revs[0] != revs[1] || revs[1] != revs[2] {
		t.Fatalf("the expiry's revision on each replica: %v", revs)
	}
}

// Compare-and-swap and paged listings, checked with porcupine's revision
// model, under partitions; then with crashes, an unreliable network and
// snapshots.
func TestRevisionsLinearizablePartitions(t *testing.T) {
	kvtest.RevTest(t, kvtest.RevParams{Servers: 5, Clients: 3, Partitions: true, Rounds: 2, RoundTime: 3 * time.Second, ListPage: 2})
}

func TestRevisionsLinearizableUnreliableCrashSnapshots(t *testing.T) {
	kvtest.RevTest(t, kvtest.RevParams{Servers: 5, Clients: 3, Unreliable: true, Crash: true, Partitions: true,
		MaxRaftState: 1000, Rounds: 3, RoundTime: 3 * time.Second, ListPage: 2})
}
