package kvraft_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/kvraft"
	"github.com/ruaft/ruaft/kvraft/kvtest"
)

// readRequests sums the read-index requests the followers sent.
func readRequests(c *kvtest.Cluster) uint64 {
	var n uint64
	for i := range c.N() {
		if node := c.Node(i); node != nil {
			n += node.Status().ReadIndexRequests
		}
	}
	return n
}

// TestFollowerReadsServedLocally: a linearizable Get sent to a follower is
// answered by that follower from its own state (the response names it),
// after a read index from the leader, and sees every write acknowledged
// before it. Stale Gets stay local and ask no one. A follower cut off from
// the leader refuses linearizable Gets.
func TestFollowerReadsServedLocally(t *testing.T) {
	c := kvtest.NewCluster(t, kvtest.Options{Servers: 3}, kvtest.StartKVServer)
	l := c.WaitLeader()
	f := (l + 1) % 3
	srv, ok := c.Replica(f).(kvraft.Service)
	if !ok {
		t.Fatalf("replica %d is a %T, not a kvraft.Service", f, c.Replica(f))
	}
	ck := c.MakeClerk(c.All())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 20 {
		want := strconv.Itoa(i)
		c.Put(ck, "k", want, nil, 0)
		// The follower may not know the leader yet (a slow machine can
		// start an election): it refuses then, and is asked again.
		var (
			resp *kvraft.GetResponse
			err  error
		)
		for try := 0; try < 50; try++ {
			resp, err = srv.Get(ctx, &kvraft.GetRequest{Key: "k", Consistency: kvraft.Linearizable})
			var wl *kvraft.WrongLeaderError
			if !errors.As(err, &wl) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil || !resp.Found || resp.Value != want || resp.Header.ReplicaID != f {
			t.Fatalf("Get at follower %d after Put %q: %+v, %v", f, want, resp, err)
		}
	}
	before := c.Node(f).Status().ReadIndexRequests
	if before == 0 {
		t.Fatalf("follower %d answered linearizable Gets without read-index requests", f)
	}
	if resp, err := srv.Get(ctx, &kvraft.GetRequest{Key: "k", Consistency: kvraft.Stale}); err != nil || resp.Value != "19" {
		t.Fatalf("stale Get: %+v, %v", resp, err)
	}
	if got := c.Node(f).Status().ReadIndexRequests; got != before {
		t.Fatalf("a stale Get sent a read-index request (%d -> %d)", before, got)
	}

	c.Disconnect(f)
	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	defer cancelShort()
	if resp, err := srv.Get(short, &kvraft.GetRequest{Key: "k", Consistency: kvraft.Linearizable}); err == nil {
		t.Fatalf("cut-off follower answered a linearizable Get: %+v", resp)
	}
	if resp, err := srv.Get(ctx, &kvraft.GetRequest{Key: "k", Consistency: kvraft.Stale}); err != nil || resp.Value != "19" {
		t.Fatalf("stale Get at a cut-off follower: %+v, %v", resp, err)
	}
	c.Connect(f)
}

// TestFollowerReadsLinearizable: readers pinned to each replica (so most of
// their Gets are follower reads) and writers on shared keys, while the
// network is partitioned at random and leadership is transferred; porcupine
// checks the whole history. Reads that fail are left out of the history (a
// read has no effect), so only reads that returned a value are judged.
func TestFollowerReadsLinearizable(t *testing.T) {
	followerReads(t, kvtest.Options{Servers: 5}, 20)
}

// TestFollowerReadsUnreliableLinearizable is the same on a network that
// drops and delays messages (short delays, so that enough reads finish).
func TestFollowerReadsUnreliableLinearizable(t *testing.T) {
	followerReads(t, kvtest.Options{Servers: 5, Unreliable: true, ShortDelays: true}, 10)
}

func followerReads(t *testing.T, opts kvtest.Options, minReads int64) {
	const (
		writers = 3
		runFor  = 6 * time.Second
	)
	servers := opts.Servers
	c := kvtest.NewCluster(t, opts, kvtest.StartKVServer)
	c.WaitLeader()
	log := kvtest.NewOpLog()
	keys := []string{"a", "b", "c"}
	var (
		stop         atomic.Bool
		wg           sync.WaitGroup
		reads, fails atomic.Int64
	)
	for w := range writers {
		ck := c.MakeClerk(c.All())
		wg.Go(func() {
			for j := 0; !stop.Load(); j++ {
				key := keys[rand.IntN(len(keys))]
				v := fmt.Sprintf("%d.%d;", w, j)
				if rand.IntN(3) == 0 {
					c.Put(ck, key, v, log, w)
				} else {
					c.Append(ck, key, v, log, w)
				}
			}
		})
	}
	for i := range servers {
		ck := c.MakeClerk([]int{i})
		cli := writers + i
		wg.Go(func() {
			for !stop.Load() {
				key := keys[rand.IntN(len(keys))]
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				call := log.Now()
				v, err := ck.Get(ctx, key)
				ret := log.Now()
				cancel()
				if errors.Is(err, kvraft.ErrNoKey) {
					v, err = "", nil
				}
				if err != nil {
					if fails.Add(1) <= 3 {
						t.Logf("reader %d at server %d: Get(%q): %v", cli, i, key, err)
					}
					time.Sleep(10 * time.Millisecond)
					continue
				}
				reads.Add(1)
				log.Add(cli, kvtest.KVInput{Op: kvtest.OpGet, Key: key}, kvtest.KVOutput{Value: kvtest.DigestOf(v)}, call, ret)
			}
		})
	}

	deadline := time.Now().Add(runFor)
	faults := 0
	for time.Now().Before(deadline) {
		time.Sleep(300*time.Millisecond + rand.N(300*time.Millisecond))
		switch rand.IntN(3) {
		case 0:
			var a, b []int
			for i := range servers {
				if rand.IntN(2) == 0 {
					a = append(a, i)
				} else {
					b = append(b, i)
				}
			}
			c.Partition(a, b)
		case 1:
			c.Heal()
			if l, ok := c.Leader(); ok {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				err := c.Node(l).TransferLeadership(ctx, rand.IntN(servers))
				cancel()
				if err != nil {
					t.Logf("transfer from %d: %v", l, err)
				}
			}
		default:
			c.Heal()
		}
		faults++
	}
	c.Heal()
	stop.Store(true)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d faults; %d reads answered, %d failed; %d read-index requests from followers; %d operations in the history",
		faults, reads.Load(), fails.Load(), readRequests(c), log.Len())
	if reads.Load() < minReads || readRequests(c) == 0 {
		t.Fatalf("too few follower reads to judge: %d reads, %d read-index requests", reads.Load(), readRequests(c))
	}
	log.CheckLinearizable(t)
}
