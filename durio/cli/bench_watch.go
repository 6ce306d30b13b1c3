package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ruaft/ruaft/durio/client"
)

// runWatchBench measures watch fan-out: o.Watchers watchers follow one
// prefix (spread over the endpoints, each through its own client) while
// o.Clients writers put to keys under it in a closed loop. Each value
// starts with the put's start time, so a watcher measures the delay to its
// delivery; and each watcher checks that it got every event once, in order.
func runWatchBench(ctx context.Context, o benchOptions, hc *http.Client, c *client.Client, progress io.Writer) (benchResult, error) {
	prefix := fmt.Sprintf("bench-watch-%d/", time.Now().UnixNano())
	from, err := c.Revision(ctx)
	if err != nil {
		return benchResult{}, fmt.Errorf("durio bench: %w", err)
	}
	var (
		measuring  atomic.Bool
		delivered  atomic.Int64
		missed     atomic.Int64
		mu         sync.Mutex // guards deliveries
		deliveries []time.Duration
		lastSeen   = make([]atomic.Uint64, o.Watchers)
		counts     = make([]atomic.Int64, o.Watchers)
		watchers   sync.WaitGroup
	)
	wctx, stopWatchers := context.WithCancel(ctx)
	defer stopWatchers()
	ready := make(chan struct{}, o.Watchers)
	for i := range o.Watchers {
		// Each watcher starts at its own endpoint and fails over to the next.
		eps := append(slices.Clone(o.Endpoints[i%len(o.Endpoints):]), o.Endpoints[:i%len(o.Endpoints)]...)
		wc, err := client.New(eps, client.Options{HTTPClient: hc, JSON: o.JSON})
		if err != nil {
			return benchResult{}, err
		}
		watchers.Go(func() {
			var mine []time.Duration
			defer func() {
				mu.Lock()
				deliveries = append(deliveries, mine...)
				mu.Unlock()
			}()
			ready <- struct{}{}
			follow := wc.Follow
			if o.Stream {
				follow = wc.FollowStream
			}
			_ = follow(wctx, prefix, true, from, func(ev client.Event) error {
				if ev.KV.ModRevision <= lastSeen[i].Load() {
					missed.Add(1) // repeated or out of order
				}
				lastSeen[i].Store(ev.KV.ModRevision)
				counts[i].Add(1)
				if !measuring.Load() {
					return nil
				}
				sent, _, _ := strings.Cut(ev.KV.Value, " ")
				if ns, err := strconv.ParseInt(sent, 10, 64); err == nil {
					mine = append(mine, time.Since(time.Unix(0, ns)))
				}
				delivered.Add(1)
				return nil
			})
		})
	}
	for range o.Watchers {
		<-ready
	}

	var (
		done     = make(chan struct{})
		errs     atomic.Int64
		puts     atomic.Int64
		maxRev   atomic.Uint64
		latMu    sync.Mutex // guards lat
		lat      []time.Duration
		writers  sync.WaitGroup
		pad      = strings.Repeat("v", max(o.ValueSize-20, 0))
		keyCount = o.Keys
	)
	for w := range o.Clients {
		writers.Go(func() {
			var mine []time.Duration
			for n := 0; ; n++ {
				select {
				case <-done:
					latMu.Lock()
					lat = append(lat, mine...)
					latMu.Unlock()
					return
				default:
				}
				opCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
				start := time.Now()
				rev, err := c.PutWith(opCtx, fmt.Sprintf("%sk%d", prefix, (w*7919+n)%keyCount),
					strconv.FormatInt(start.UnixNano(), 10)+" "+pad, client.WriteOptions{})
				cancel()
				if err != nil {
					errs.Add(1)
					continue
				}
				for cur := maxRev.Load(); rev > cur && !maxRev.CompareAndSwap(cur, rev); cur = maxRev.Load() {
				}
				if measuring.Load() {
					mine = append(mine, time.Since(start))
					puts.Add(1)
				}
			}
		})
	}
	if !sleepCtx(ctx, o.Warmup) {
		close(done)
		writers.Wait()
		return benchResult{}, ctx.Err()
	}
	elapsed := measurePhase(ctx, o.Duration, &measuring, &delivered, func(secs, rate float64) {
		fmt.Fprintf(progress, "\r%5.0fs  %8.0f events/s delivered  %d put errors", secs, rate, errs.Load())
	})
	close(done)
	writers.Wait()
	fmt.Fprintln(progress)

	// Every watcher must reach the last write, with every event once.
	final := maxRev.Load()
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < o.Watchers && time.Now().Before(deadline); {
		if lastSeen[i].Load() >= final {
			i++
			continue
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopWatchers()
	watchers.Wait()
	// Nothing else writes during the run: every revision after from is one
	// of the writers' puts, which every watcher must have seen.
	want := int64(final - from)
	for i := range counts {
		if d := want - counts[i].Load(); d != 0 {
			missed.Add(max(d, -d))
		}
	}
	slices.Sort(lat)
	slices.Sort(deliveries)
	res := benchResult{Op: "watch", Stream: o.Stream, Clients: o.Clients, ValueSize: o.ValueSize, Seconds: elapsed.Seconds(), Ops: len(lat),
		Errors: errs.Load(), OpsPerSec: float64(len(lat)) / elapsed.Seconds(), P50ms: quantileMs(lat, 0.50),
		P99ms: quantileMs(lat, 0.99), P999ms: quantileMs(lat, 0.999), Watchers: o.Watchers,
		EventsPerSec: float64(len(deliveries)) / elapsed.Seconds(), DeliveryP50ms: quantileMs(deliveries, 0.50),
		DeliveryP99ms: quantileMs(deliveries, 0.99), DeliveryP999ms: quantileMs(deliveries, 0.999), Missed: missed.Load()}
	if res.Missed > 0 {
		return res, fmt.Errorf("durio bench: watchers missed or repeated %d events", res.Missed)
	}
	return res, ctx.Err()
}
