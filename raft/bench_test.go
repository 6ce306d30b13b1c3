package raft

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime/trace"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/filestore"
)

// BenchmarkCommit measures commits per second of a 3-node cluster in one
// process (in-process transport calling the peers' handlers directly, memory
// stores) with concurrent proposers, and the commit latency: p50-µs ...
// p99.9-µs from just before Start until the proposer runs again after the
// leader's application applied the command, which is what ../shared/bench's
// hraft measures for hashicorp/raft (Apply until the future's Error
// returns); apply-p50-µs and apply-p99-µs stop when the application is
// handed the command, before the proposer is scheduled again. The
// application only counts what it applies, like hraft's state machine.
func BenchmarkCommit(b *testing.B) {
	benchCommit(b, func(b *testing.B) *cluster { return newCluster(b, 3, nil) })
}

// BenchmarkCommitHop is BenchmarkCommit over a transport with the shape of
// hashicorp/raft's InmemTransport (hopNet: a goroutine hop each way per
// RPC), to compare the libraries rather than their transports.
func BenchmarkCommitHop(b *testing.B) {
	benchCommit(b, func(b *testing.B) *cluster { return newHopCluster(b, 3, nil) })
}

// BenchmarkCommitDurable is BenchmarkCommit with each replica on a
// persist/filestore store that fsyncs every Append.
func BenchmarkCommitDurable(b *testing.B) {
	benchCommit(b, func(b *testing.B) *cluster {
		return newClusterStores(b, 3, nil, func(i int) persist.Store {
			s, err := filestore.Open(filepath.Join(b.TempDir(), fmt.Sprint(i)), filestore.DefaultOptions())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		})
	})
}

func benchCommit(b *testing.B, newCl func(*testing.B) *cluster) {
	for _, proposers := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("proposers=%d", proposers), func(b *testing.B) {
			b.ReportAllocs()
			cl := newCl(b)
			for _, a := range cl.apps {
				a.mu.Lock()
				a.countOnly = true
				a.mu.Unlock()
			}
			cl.commit("warmup")
			var (
				next   atomic.Int64
				leader atomic.Int64
				lost   atomic.Int64
			)
			leader.Store(int64(cl.leader()))
			// lat is each commit's latency until its proposer runs again;
			// applyLat until the leader's application applied it (the
			// difference is the time the woken proposer waits for a CPU).
			lat := make([][]time.Duration, proposers)
			applyLat := make([][]time.Duration, proposers)
			for p := range lat {
				lat[p] = make([]time.Duration, 0, b.N/proposers+1)
				applyLat[p] = make([]time.Duration, 0, b.N/proposers+1)
			}
			cmd := make([]byte, 64)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for p := range proposers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					// Reused: the harness should cost little next to what
					// it measures.
					applied := make(chan time.Time, 1)
					check := time.NewTicker(100 * time.Millisecond)
					defer check.Stop()
					for next.Add(1) <= int64(b.N) {
						for !propose(cl, &leader, cmd, applied, check, &lat[p], &applyLat[p], &lost) {
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			reportLatency(b, slices.Concat(lat...), elapsed, "commits/s")
			all := slices.Concat(applyLat...)
			slices.Sort(all)
			b.ReportMetric(percentile(all, 0.50), "apply-p50-µs")
			b.ReportMetric(percentile(all, 0.99), "apply-p99-µs")
			b.ReportMetric(float64(lost.Load()), "lost")
		})
	}
}

// slowCommit is the latency above which a commit is logged in an execution
// trace (-test.trace; category "slowcommit", message its latency in ns).
const slowCommit = time.Millisecond

// propose proposes cmd at the leader and waits until the leader applied it,
// appending the latency to lat, and the time until the application applied
// it to applyLat. It reports false, counting the proposal as
// lost, if the leader lost its leadership meanwhile (the entry may have been
// overwritten: the caller proposes again).
func propose(cl *cluster, leader *atomic.Int64, cmd []byte, applied chan time.Time, check *time.Ticker, lat, applyLat *[]time.Duration, lost *atomic.Int64) bool {
	l := int(leader.Load())
	t0 := time.Now()
	idx, term, ok := cl.nodes[l].Start(cmd)
	if !ok {
		leader.Store(int64(cl.leader()))
		return false
	}
	cl.apps[l].notifyAt(idx, applied)
	for {
		select {
		case at := <-applied:
			d := time.Since(t0)
			*lat = append(*lat, d)
			if d > slowCommit && trace.IsEnabled() {
				// For the analysis of a -test.trace: which commits were
				// slow, and when (the event's time is their end).
				trace.Log(context.Background(), "slowcommit", strconv.FormatInt(int64(d), 10))
			}
			*applyLat = append(*applyLat, at.Sub(t0))
			return true
		case <-check.C:
		}
		if t, isLeader := cl.nodes[l].State(); t == term && isLeader {
			if time.Since(t0) < 5*time.Second {
				continue
			}
			var st []Status
			for _, n := range cl.nodes {
				st = append(st, n.Status())
			}
			cl.t.Errorf("index %d not applied at leader %d in 5s: %+v", idx, l, st)
			cl.apps[l].cancelNotify(idx)
			return true
		}
		cl.apps[l].cancelNotify(idx)
		select {
		case <-applied:
		default:
		}
		lost.Add(1)
		leader.Store(int64(cl.leader()))
		return false
	}
}

// BenchmarkReadIndex measures linearizable reads per second (ReadIndex at
// the leader) with 64 concurrent readers.
func BenchmarkReadIndex(b *testing.B) {
	const readers = 64
	b.Run(fmt.Sprintf("readers=%d", readers), func(b *testing.B) {
		cl := newCluster(b, 3, nil)
		cl.commit("warmup")
		l := cl.leader()
		var next atomic.Int64
		lat := make([][]time.Duration, readers)
		b.ResetTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for r := range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(b.N) {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					t0 := time.Now()
					_, err := cl.nodes[l].ReadIndex(ctx)
					cancel()
					if err != nil {
						b.Error(err)
						return
					}
					lat[r] = append(lat[r], time.Since(t0))
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		b.StopTimer()
		reportLatency(b, slices.Concat(lat...), elapsed, "reads/s")
	})
}

func reportLatency(b *testing.B, all []time.Duration, elapsed time.Duration, unit string) {
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), unit)
	b.ReportMetric(percentile(all, 0.50), "p50-µs")
	b.ReportMetric(percentile(all, 0.90), "p90-µs")
	b.ReportMetric(percentile(all, 0.99), "p99-µs")
	b.ReportMetric(percentile(all, 0.999), "p99.9-µs")
	b.ReportMetric(0, "ns/op")
}

// percentile returns the p-th quantile of sorted, in µs (0 if it is empty).
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return float64(sorted[int(p*float64(len(sorted)-1))].Microseconds())
}
