package kvraft_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ruaft/ruaft/kvraft"
	"github.com/ruaft/ruaft/kvraft/kvtest"
	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/filestore"
)

// BenchmarkKV measures operations per second and p50/p99 latency of puts
// and linearizable gets with 1, 16 and 64 concurrent clients (each with its
// own clerk, or all sharing one clerk), on a 3-server cluster over the
// reliable simulated network, with memory stores and with the file store
// (fsync on).
//
//	go test -run '^$' -bench BenchmarkKV -benchtime 2000x ./kvraft/
func BenchmarkKV(b *testing.B) {
	for _, store := range []string{"memory", "file"} {
		for _, op := range []string{"put", "get"} {
			for _, clients := range []int{1, 16, 64} {
				b.Run(fmt.Sprintf("store=%s/op=%s/clients=%d", store, op, clients), func(b *testing.B) {
					benchKV(b, store, op, clients, false)
				})
			}
		}
		b.Run(fmt.Sprintf("store=%s/op=put/clients=64/shared-clerk", store), func(b *testing.B) {
			benchKV(b, store, "put", 64, true)
		})
	}
}

// speedTarget is the project's target for one operation of the lab's speed
// tests (1000 sequential appends by one client): the lab's reference takes
// 33 ms, ours should take under 3 ms. It is a benchmark's report, not a
// unit test's assertion, so that a loaded machine cannot fail the suite.
const speedTarget = 3 * time.Millisecond

// BenchmarkSpeed is the lab's speed test (TestSpeed4B without snapshots,
// TestSpeed4C with maxraftstate 1000) as a benchmark: b.N sequential
// appends by one client on 3 servers. It reports ms/append and its ratio to
// speedTarget (at most 1 meets the target).
//
//	go test -run '^$' -bench BenchmarkSpeed -benchtime 1000x ./kvraft/
func BenchmarkSpeed(b *testing.B) {
	for _, tc := range []struct {
		name         string
		maxraftstate int64
	}{{"4B", -1}, {"4C", 1000}} {
		b.Run(tc.name, func(b *testing.B) {
			c := kvtest.NewCluster(b, kvtest.Options{Servers: 3, MaxRaftState: tc.maxraftstate}, kvtest.StartKVServer)
			ck := speedClerk(c)
			b.ResetTimer()
			elapsed := sequentialAppends(b, c, ck, b.N)
			b.StopTimer()
			per := elapsed / time.Duration(b.N)
			b.ReportMetric(float64(per)/float64(time.Millisecond), "ms/append")
			b.ReportMetric(float64(per)/float64(speedTarget), "x-target")
			if per > speedTarget {
				b.Logf("%v per append, above the %v target", per, speedTarget)
			}
		})
	}
}

func benchKV(b *testing.B, store, op string, clients int, shared bool) {
	opts := kvtest.Options{Servers: 3, ShortDelays: true, Seed: 1}
	if store == "file" {
		dir := b.TempDir()
		opts.OpenStore = func(i int) (persist.Store, error) {
			return filestore.Open(filepath.Join(dir, strconv.Itoa(i)), filestore.DefaultOptions())
		}
	}
	c := kvtest.NewCluster(b, opts, kvtest.StartKVServer)
	value := strings.Repeat("v", 256)
	const keys = 100
	setup := c.MakeClerk(c.All())
	for k := range keys {
		c.Put(setup, "key"+strconv.Itoa(k), value, nil, -1)
	}
	clerks := make([]*kvraft.Clerk, clients)
	for i := range clerks {
		if shared && i > 0 {
			clerks[i] = clerks[0]
		} else {
			clerks[i] = c.MakeClerk(c.All())
		}
	}
	lat := make([][]time.Duration, clients)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for cli := range clients {
		n := b.N / clients
		if cli < b.N%clients {
			n++
		}
		wg.Go(func() {
			ck := clerks[cli]
			ctx := context.Background()
			l := make([]time.Duration, 0, n)
			for i := range n {
				key := "key" + strconv.Itoa((cli*7+i)%keys)
				t0 := time.Now()
				var err error
				if op == "put" {
					err = ck.Put(ctx, key, value)
				} else {
					_, err = ck.Get(ctx, key)
				}
				if err != nil {
					b.Error(err)
					return
				}
				l = append(l, time.Since(t0))
			}
			lat[cli] = l
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "ops/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}
