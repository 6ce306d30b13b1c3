package raft

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestNodeFollowerReadIndex: a follower's read index covers every write
// acknowledged before the call, and its application has applied it when
// ReadIndex returns; a follower cut off from the leader fails instead.
func TestNodeFollowerReadIndex(t *testing.T) {
	cl := newCluster(t, 3, nil)
	cl.commit("warmup")
	l := cl.leader()
	f := (l + 1) % 3
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for i := range 20 {
		// The write is acknowledged once the leader applied it: the
		// follower's read must see it even though it may not have heard of
		// the commit yet.
		idx, _, ok := cl.nodes[l].Start([]byte{byte(i)})
		if !ok {
			t.Fatal("leader refused a write")
		}
		<-cl.apps[l].wait(idx)
		ri, err := cl.nodes[f].ReadIndex(ctx)
		if err != nil || ri < idx {
			t.Fatalf("follower ReadIndex = %d, %v after write %d", ri, err, idx)
		}
		cl.apps[f].mu.Lock()
		applied := cl.apps[f].last
		cl.apps[f].mu.Unlock()
		if applied < ri {
			t.Fatalf("follower returned read index %d with %d applied", ri, applied)
		}
	}
	if st := cl.nodes[f].Status(); st.ReadIndexRequests == 0 {
		t.Fatalf("follower status %+v: no read-index requests counted", st)
	}
	// Cut off, the follower fails its reads (the leader does not answer),
	// at the latest when the caller gives up.
	cl.net.isolate(f, true)
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if _, err := cl.nodes[f].ReadIndex(short); err == nil {
		t.Fatal("isolated follower returned a read index")
	}
	cl.net.isolate(f, false)
}

// readLoad runs readers goroutines calling ReadIndex on node for d and
// returns the number of reads done and failed.
func readLoad(node *Node, readers int, d time.Duration) (reads, fails int64) {
	var (
		wg        sync.WaitGroup
		ok, nfail atomic.Int64
	)
	deadline := time.Now().Add(d)
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := node.ReadIndex(ctx)
				cancel()
				if err != nil {
					nfail.Add(1)
					time.Sleep(time.Millisecond)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	return ok.Load(), nfail.Load()
}

// rpcsPerRead measures the peer RPCs per read beyond the heartbeat
// baseline, with readers concurrent readers on the leader (or, with
// follower, on a follower), over the whole cluster. A measurement disturbed by a leader change (a loaded machine can
// starve the ticker) is repeated, up to three times.
func rpcsPerRead(tb testing.TB, cl *cluster, follower bool, readers int, d time.Duration) (perRead float64, reads int64) {
	total := func() int64 {
		var n int64
		for i := range cl.net.rpcs {
			n += cl.net.rpcs[i].Load()
		}
		return n
	}
	for attempt := 1; ; attempt++ {
		l := cl.leader()
		term, _ := cl.nodes[l].State()
		at := l
		if follower {
			at = (l + 1) % len(cl.nodes)
		}
		// The baseline: what the idle cluster sends in the same time.
		before, t0 := total(), time.Now()
		time.Sleep(d)
		idleRate := float64(total()-before) / time.Since(t0).Seconds()

		before, t0 = total(), time.Now()
		reads, fails := readLoad(cl.nodes[at], readers, d)
		sent := float64(total() - before)
		baseline := idleRate * time.Since(t0).Seconds()
		term2, _ := cl.nodes[cl.leader()].State()
		if fails == 0 && term2 == term && reads > 0 {
			return max(0, sent-baseline) / float64(reads), reads
		}
		if attempt == 3 {
			tb.Fatalf("three measurements disturbed: last one %d reads, %d failed, term %d -> %d", reads, fails, term, term2)
		}
		tb.Logf("measurement disturbed (%d reads failed, term %d -> %d); again", fails, term, term2)
	}
}

// TestNodeReadRPCsPerRead: with 64 concurrent readers, reads coalesce into
// few rounds. The target is 0.05 peer RPCs per read beyond the heartbeats:
// at the leader one round to one peer answers every read waiting (this
// test typically measures 0.035-0.05 under -race, more without it: the
// faster the round trip, the fewer reads wait for each round); at a
// follower one request per batch and no round (with three replicas the
// request is the follower's acknowledgement). The assertions are loose so
// that a slow or fast machine does not make them flaky; BenchmarkReadRPCs
// reports the figures.
func TestNodeReadRPCsPerRead(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	cl := newCluster(t, 3, nil)
	cl.commit("warmup")
	perRead, reads := rpcsPerRead(t, cl, false, 64, time.Second)
	t.Logf("leader: %d reads, %.4f RPCs per read beyond the heartbeat baseline", reads, perRead)
	if perRead > 0.15 {
		t.Errorf("leader reads: %.4f RPCs per read, want <= 0.15 (target 0.05)", perRead)
	}
	perRead, reads = rpcsPerRead(t, cl, true, 64, time.Second)
	t.Logf("follower: %d reads, %.4f RPCs per read beyond the heartbeat baseline", reads, perRead)
	if perRead > 0.15 {
		t.Errorf("follower reads: %.4f RPCs per read, want <= 0.15 (target 0.05)", perRead)
	}
}

// TestNodeFollowerReadsAcrossLeaderChange: reads on a follower keep
// working (after at most a failed attempt) while leadership moves, and
// never return an index below a write acknowledged before they began.
func TestNodeFollowerReadsAcrossLeaderChange(t *testing.T) {
	cl := newCluster(t, 3, nil)
	cl.commit("warmup")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var acked atomic.Uint64 // highest index acknowledged to a writer
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // writer
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			l := cl.leader()
			idx, _, ok := cl.nodes[l].Start([]byte{byte(i)})
			if !ok {
				continue
			}
			select {
			case <-cl.apps[l].wait(idx):
				// Applied at the leader: committed, so acknowledged.
				for {
					cur := acked.Load()
					if idx <= cur || acked.CompareAndSwap(cur, idx) {
						break
					}
				}
			case <-time.After(time.Second):
			case <-stop:
				return
			}
		}
	}()
	var bad atomic.Value
	for r := range 3 {
		for range 4 {
			wg.Add(1)
			go func() { // readers on every replica
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					floor := acked.Load()
					rctx, rcancel := context.WithTimeout(ctx, time.Second)
					ri, err := cl.nodes[r].ReadIndex(rctx)
					rcancel()
					if err == nil && ri < floor {
						bad.Store(fmt.Sprintf("replica %d: read index %d below acknowledged write %d", r, ri, floor))
					}
					if err != nil && !errors.Is(err, ErrNotLeader) && !errors.Is(err, context.DeadlineExceeded) {
						bad.Store(fmt.Sprintf("replica %d: %v", r, err))
					}
					if err != nil {
						time.Sleep(5 * time.Millisecond)
					}
				}
			}()
		}
	}
	for i := range 3 {
		time.Sleep(300 * time.Millisecond)
		l := cl.leader()
		to := (l + 1 + i%2) % 3
		tctx, tcancel := context.WithTimeout(ctx, 3*time.Second)
		err := cl.nodes[l].TransferLeadership(tctx, to)
		tcancel()
		if err != nil {
			t.Logf("transfer %d -> %d: %v", l, to, err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	for i, n := range cl.nodes {
		if st := n.Status(); i != cl.leader() && st.ReadIndexRequests == 0 {
			t.Errorf("replica %d sent no read-index requests: %+v", i, st)
		}
	}
}

// BenchmarkReadRPCs measures linearizable reads with 64 concurrent readers
// at the leader and at a follower of a 3-replica in-process cluster, and
// reports the peer RPCs per read beyond the idle cluster's heartbeats
// (rpcs/read) next to the throughput. Each iteration is a one-second load.
func BenchmarkReadRPCs(b *testing.B) {
	for _, at := range []string{"leader", "follower"} {
		b.Run("at="+at+"/readers=64", func(b *testing.B) {
			cl := newCluster(b, 3, nil)
			cl.commit("warmup")
			var perRead float64
			var reads int64
			for b.Loop() {
				p, r := rpcsPerRead(b, cl, at == "follower", 64, time.Second)
				perRead += p * float64(r)
				reads += r
			}
			b.ReportMetric(perRead/float64(reads), "rpcs/read")
			b.ReportMetric(float64(reads)/float64(b.N), "reads/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}
