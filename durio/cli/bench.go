package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"

	"github.com/ruaft/ruaft/durio"
	"github.com/ruaft/ruaft/durio/client"
)

// benchOptions configure `durio bench`, a closed-loop load generator over the
// Twirp protobuf API: each client goroutine sends one request at a time.
type benchOptions struct {
	Endpoints []string
	Clients   int
	Duration  time.Duration
	Warmup    time.Duration
	ValueSize int
	Keys      int
	// ReadRatio is the share of gets: 0 = puts only, 1 = gets only.
	ReadRatio float64
	JSON      bool
	// Op is put, get, mixed (see ReadRatio), list or watch.
	Op string
	// ListLimit is the page size of --op list: each op lists the first
	// ListLimit of the Keys preloaded keys.
	ListLimit int
	// Watchers is the number of watchers of --op watch, all following one
	// prefix (spread over the endpoints) while Clients writers put to it.
	Watchers int
	// Stream makes the watchers follow streams (Client.FollowStream)
	// instead of long polls (Client.Follow).
	Stream bool
	// TokenFile holds the client token to send, "" for none.
	TokenFile string
}

// benchResult is what `durio bench` prints.
type benchResult struct {
	Clients   int     `json:"clients"`
	ReadRatio float64 `json:"read_ratio"`
	ValueSize int     `json:"value_size"`
	Seconds   float64 `json:"seconds"`
	Ops       int     `json:"ops"`
	Errors    int64   `json:"errors"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
	P999ms    float64 `json:"p999_ms"`
	// Op is the operation measured (put, get, mixed, list, watch).
	Op string `json:"op"`
	// Stream is set for --op watch with streams.
	Stream bool `json:"stream,omitempty"`
	// KeysPerSec is, for --op list, the keys listed per second.
	KeysPerSec float64 `json:"keys_per_sec,omitempty"`
	// For --op watch: the watchers, the events they received per second
	// in total, and the delay from a put's start to its delivery to a
	// watcher (percentiles over every delivery).
	Watchers       int     `json:"watchers,omitempty"`
	EventsPerSec   float64 `json:"events_per_sec,omitempty"`
	DeliveryP50ms  float64 `json:"delivery_p50_ms,omitempty"`
	DeliveryP99ms  float64 `json:"delivery_p99_ms,omitempty"`
	DeliveryP999ms float64 `json:"delivery_p999_ms,omitempty"`
	// Missed counts events a watcher did not receive, or received out of
	// order or twice (must be 0).
	Missed int64 `json:"missed,omitempty"`
}

// benchFlags are `durio bench`'s flags.
type benchFlags struct {
	o         benchOptions
	endpoints string
	op        string
	asJSON    bool
}

func (b *benchFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&b.endpoints, "endpoints", strings.Join(devEndpoints, ","), "comma-separated client `URLs`")
	fs.IntVar(&b.o.Clients, "clients", 64, "concurrent clients, each with one request in flight")
	fs.DurationVar(&b.o.Duration, "duration", 10*time.Second, "measured run time")
	fs.DurationVar(&b.o.Warmup, "warmup", time.Second, "unmeasured run time before it")
	fs.IntVar(&b.o.ValueSize, "value-size", 256, "value size in `bytes`")
	fs.IntVar(&b.o.Keys, "keys", 1000, "number of distinct keys (uniformly random)")
	fs.StringVar(&b.op, "op", "put", "put, get, mixed (see --read-ratio), txn (two keys written at once), list (pages of --list-limit keys) or watch (--watchers on one prefix, --clients writers)")
	fs.IntVar(&b.o.ListLimit, "list-limit", 100, "keys per page with --op list")
	fs.IntVar(&b.o.Watchers, "watchers", 1000, "watchers of one prefix with --op watch")
	fs.BoolVar(&b.o.Stream, "stream", true, "with --op watch, watchers follow streams (server-sent events); false: long polls")
	fs.Float64Var(&b.o.ReadRatio, "read-ratio", 0.9, "share of gets with --op mixed")
	fs.BoolVar(&b.o.JSON, "json-api", false, "use Twirp's JSON encoding instead of protobuf")
	fs.BoolVar(&b.asJSON, "json", false, "print the result as JSON")
	fs.StringVar(&b.o.TokenFile, "token-file", "", "`file` holding the client token to send (replicas with --client-auth-file)")
}

// options checks the flags and returns the options and whether to print JSON.
func (b *benchFlags) options() (benchOptions, bool, error) {
	o := b.o
	o.Endpoints = splitList(b.endpoints)
	o.Op = b.op
	switch b.op {
	case "put", "txn":
		o.ReadRatio = 0
	case "get":
		o.ReadRatio = 1
	case "mixed", "list", "watch":
	default:
		return o, false, fmt.Errorf("%w: --op must be put, get, mixed, txn, list or watch", durio.ErrUsage)
	}
	if o.Clients < 1 || o.Keys < 1 || o.ValueSize < 0 || o.Duration <= 0 || o.Warmup < 0 || o.ReadRatio < 0 || o.ReadRatio > 1 {
		return o, false, fmt.Errorf("%w: --clients and --keys must be positive, --duration too, --read-ratio in [0,1]", durio.ErrUsage)
	}
	if o.ListLimit < 1 || o.ListLimit > durio.MaxPageKeys || o.Watchers < 1 {
		return o, false, fmt.Errorf("%w: --list-limit must be in [1,%d], --watchers positive", durio.ErrUsage, durio.MaxPageKeys)
	}
	return o, b.asJSON, nil
}

// parseBenchFlags reads `durio bench` flags (without the command name).
func parseBenchFlags(args []string) (benchOptions, bool, error) {
	fs := pflag.NewFlagSet("durio bench", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var b benchFlags
	b.register(fs)
	if err := fs.Parse(args); err != nil {
		return benchOptions{}, false, fmt.Errorf("%w: %v", durio.ErrUsage, err)
	}
	return b.options()
}

// runBench runs the load and returns its result; progress goes to progress
// once a second.
func runBench(ctx context.Context, o benchOptions, progress io.Writer) (benchResult, error) {
	hc := &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConnsPerHost: o.Clients + o.Watchers + 8,
		IdleConnTimeout:     90 * time.Second,
	}}
	defer hc.CloseIdleConnections()
	hc, err := withTokenFile(hc, o.TokenFile)
	if err != nil {
		return benchResult{}, err
	}
	c, err := client.New(o.Endpoints, client.Options{HTTPClient: hc, JSON: o.JSON})
	if err != nil {
		return benchResult{}, err
	}
	if o.Op == "watch" {
		return runWatchBench(ctx, o, hc, c, progress)
	}
	value := strings.Repeat("v", o.ValueSize)
	key := func(r *rand.Rand) string { return fmt.Sprintf("bench-%d", r.IntN(o.Keys)) }
	if o.ReadRatio > 0 || o.Op == "list" { // every key exists before gets are measured
		if err := preload(ctx, c, o.Keys, value); err != nil {
			return benchResult{}, err
		}
	}

	var (
		measuring atomic.Bool
		done      = make(chan struct{})
		errs      atomic.Int64
		count     atomic.Int64
		mu        sync.Mutex // guards lat
		lat       []time.Duration
		wg        sync.WaitGroup
	)
	for i := range o.Clients {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			var mine []time.Duration
			for {
				select {
				case <-done:
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
					return
				default:
				}
				opCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
				start := time.Now()
				var err error
				if o.Op == "list" {
					_, err = c.List(opCtx, client.ListRequest{Prefix: "bench-", Limit: o.ListLimit})
				} else if o.Op == "txn" {
					// Two keys at once, without conditions: what a Txn costs
					// over a put.
					k1, k2 := key(r), key(r)
					for k2 == k1 && o.Keys > 1 {
						k2 = key(r)
					}
					writes := []client.TxnWrite{client.TxnPut(k1, value)}
					if k2 != k1 {
						writes = append(writes, client.TxnPut(k2, value))
					}
					_, err = c.Txn(opCtx, nil, writes...)
				} else if r.Float64() < o.ReadRatio {
					_, err = c.Get(opCtx, key(r))
				} else {
					err = c.Put(opCtx, key(r), value)
				}
				cancel()
				if !measuring.Load() {
					continue
				}
				if err != nil {
					errs.Add(1)
					continue
				}
				mine = append(mine, time.Since(start))
				count.Add(1)
			}
		})
	}
	stop := func() { close(done); wg.Wait() }
	if !sleepCtx(ctx, o.Warmup) {
		stop()
		return benchResult{}, ctx.Err()
	}
	elapsed := measurePhase(ctx, o.Duration, &measuring, &count, func(secs, rate float64) {
		fmt.Fprintf(progress, "\r%5.0fs  %8.0f ops/s  %d errors", secs, rate, errs.Load())
	})
	stop()
	fmt.Fprintln(progress)
	slices.Sort(lat)
	res := benchResult{Clients: o.Clients, ReadRatio: o.ReadRatio, ValueSize: o.ValueSize, Seconds: elapsed.Seconds(),
		Ops: len(lat), Errors: errs.Load(), OpsPerSec: float64(len(lat)) / elapsed.Seconds(),
		P50ms: quantileMs(lat, 0.50), P99ms: quantileMs(lat, 0.99), P999ms: quantileMs(lat, 0.999), Op: o.Op}
	if o.Op == "list" {
		res.KeysPerSec = res.OpsPerSec * float64(min(o.ListLimit, o.Keys))
	}
	return res, ctx.Err()
}

func preload(ctx context.Context, c *client.Client, keys int, value string) error {
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for k := range keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			opCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := c.Put(opCtx, fmt.Sprintf("bench-%d", k), value); err != nil {
				firstErr.CompareAndSwap(nil, err)
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return fmt.Errorf("durio bench: preload: %w", err)
	}
	return nil
}

func quantileMs(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(int(q*float64(len(sorted))), len(sorted)-1)
	return float64(sorted[i].Microseconds()) / 1000
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// printBench writes a result as text or JSON.
func printBench(w io.Writer, r benchResult, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(r)
	}
	switch r.Op {
	case "watch":
		how := "long polls"
		if r.Stream {
			how = "streams"
		}
		_, err := fmt.Fprintf(w, "watchers=%d (%s) writers=%d value=%dB: %d puts in %.1fs = %.0f puts/s (p50 %.2f ms, p99 %.2f ms); "+
			"%.0f events/s delivered; delivery p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms; %d missed, %d errors\n",
			r.Watchers, how, r.Clients, r.ValueSize, r.Ops, r.Seconds, r.OpsPerSec, r.P50ms, r.P99ms, r.EventsPerSec,
			r.DeliveryP50ms, r.DeliveryP99ms, r.DeliveryP999ms, r.Missed, r.Errors)
		return err
	case "list":
		_, err := fmt.Fprintf(w, "clients=%d: %d lists in %.1fs = %.0f lists/s, %.0f keys/s; p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms; %d errors\n",
			r.Clients, r.Ops, r.Seconds, r.OpsPerSec, r.KeysPerSec, r.P50ms, r.P99ms, r.P999ms, r.Errors)
		return err
	}
	_, err := fmt.Fprintf(w, "clients=%d read_ratio=%.2f value=%dB: %d ops in %.1fs = %.0f ops/s; p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms; %d errors\n",
		r.Clients, r.ReadRatio, r.ValueSize, r.Ops, r.Seconds, r.OpsPerSec, r.P50ms, r.P99ms, r.P999ms, r.Errors)
	return err
}

// measurePhase is a benchmark's measured phase: it sets measuring for d (or
// until ctx ends), reports once a second the seconds elapsed and how much
// counter grew in that second, and returns how long it measured.
func measurePhase(ctx context.Context, d time.Duration, measuring *atomic.Bool, counter *atomic.Int64, report func(secs, rate float64)) time.Duration {
	measuring.Store(true)
	defer measuring.Store(false)
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	end := time.NewTimer(d)
	defer end.Stop()
	last := counter.Load()
	for {
		select {
		case <-ctx.Done():
			return time.Since(start)
		case <-end.C:
			return time.Since(start)
		case <-tick.C:
			n := counter.Load()
			report(time.Since(start).Seconds(), float64(n-last))
			last = n
		}
	}
}
