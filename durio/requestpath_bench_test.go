package durio

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	"github.com/ruaft/ruaft/kvraft/kvwire"
	"github.com/ruaft/ruaft/raft"
)

// BenchmarkRequestPath measures the CPU a request costs through durio's
// whole path: three replicas in this process (noop stores, real listeners
// on loopback) and closed-loop clients sending the REST requests of
// ../shared/bench's kvload (256-byte values, 1,000 keys), each request to
// the next replica in turn, as compare.sh does. cpu-µs/op is the process's
// user+system time per request: the three replicas and the HTTP clients
// (whose share does not change with durio's code), so differences between
// two versions are what the replicas' path costs. Noop stores leave the
// store's own cost out. http=lean is the default client listener (the lean
// HTTP/1.1 loop), http=net net/http alone (--no-lean-http).
func BenchmarkRequestPath(b *testing.B) {
	for _, op := range []string{"put", "get"} {
		for _, clients := range []int{64, 256} {
			for _, server := range []string{"lean", "net"} {
				b.Run(fmt.Sprintf("op=%s/clients=%d/http=%s", op, clients, server), func(b *testing.B) {
					benchRequestPath(b, op, clients, server == "net")
				})
			}
		}
	}
}

func benchRequestPath(b *testing.B, op string, clients int, noLean bool) {
	b.ReportAllocs() // the whole process's, client side included; steadier than CPU on a shared machine
	c := startTestCluster(b, 3, "http", func(cfg *Config) {
		cfg.RequestTimeout = 5 * time.Second
		cfg.NoLeanHTTP = noLean
	})
	c.waitLeader(b)
	urls := make([]string, len(c.replicas))
	for i, r := range c.replicas {
		urls[i] = "http://" + r.ClientAddr()
	}
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	value := string(bytes.Repeat([]byte("v"), 256))
	const keys = 1000
	do := func(op string, i int64) error {
		key := "key-" + strconv.FormatInt(i%keys, 10)
		base := urls[i%int64(len(urls))]
		var (
			resp *http.Response
			err  error
		)
		if op == "put" {
			resp, err = hc.Post(base+"/kvstore/put", "application/json",
				bytes.NewReader([]byte(`{"key":"`+key+`","value":"`+value+`"}`)))
		} else {
			resp, err = hc.Get(base + "/kvstore/get/" + key)
		}
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s %s: HTTP %d", op, key, resp.StatusCode)
		}
		return nil
	}
	if op == "get" { // every key exists: gets answer 200 with the value
		for i := range int64(keys) {
			if err := do("put", i); err != nil {
				b.Fatal(err)
			}
		}
	}
	var next atomic.Int64
	run := func(n int64) {
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				for i := next.Add(1); i <= n; i = next.Add(1) {
					if err := do(op, i); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	// Warm up: connections, sessions, the leader's first batches.
	next.Store(0)
	run(int64(4 * clients))
	next.Store(0)
	cpu0 := processCPU()
	b.ResetTimer()
	start := time.Now()
	run(int64(b.N))
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := processCPU() - cpu0
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
}

// processCPU is this process's user+system time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkClientChain measures what the client listener's handler chain
// costs per REST request without the network and without the cluster:
// the middleware of StartReplica (request id, health, metrics, browser
// policy, in-flight and body limits), the ServeMux, the REST handler, the
// Twirp-type conversion (kvwire.Server) and JSON, over a service that
// answers at once. One goroutine, so allocs/op and cpu-ns/op are steady
// enough to compare two versions on a shared machine; the request and body
// are made per iteration (the same cost in every version).
func BenchmarkClientChain(b *testing.B) {
	value := string(bytes.Repeat([]byte("v"), 256))
	putBody := []byte(`{"key":"key-17","value":"` + value + `"}`)
	const token = "w-0123456789abcdef0123456789abcdef"
	tokens, err := parseClientAuth([]byte("read r-0123456789abcdef0123456789abcdef\nwrite " + token + "\n"))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ op, auth string }{{"put", "off"}, {"get", "off"}, {"put", "on"}, {"get", "on"}} {
		op := bc.op
		b.Run("op="+op+"/auth="+bc.auth, func(b *testing.B) {
			status := func() raft.Status { return raft.Status{} }
			logger := slog.New(slog.DiscardHandler)
			m := newMetrics(status)
			h := newHealth(logger, status, nil, "", func(error) {})
			svc := kvwire.NewServer(chainKV{value: value}, kvwire.ServerOptions{})
			limits := DefaultLimits()
			if bc.auth == "on" { // --client-auth-file, and every request carries a token
				limits.auth = &clientAuth{}
				limits.auth.tokens.Store(tokens)
			}
			handler := withRequestID(logger, h.wrap(m.instrumentMux(clientHandler(svc, limits, nil))))
			w := &discardResponse{h: http.Header{}}
			b.ReportAllocs()
			cpu0, n := processCPU(), 0
			for b.Loop() {
				n++
				var r *http.Request
				if op == "put" {
					r = httptest.NewRequest(http.MethodPost, "/kvstore/put", bytes.NewReader(putBody))
					r.Header.Set("Content-Type", "application/json")
				} else {
					r = httptest.NewRequest(http.MethodGet, "/kvstore/get/key-17", nil)
				}
				r.Host = "127.0.0.1:8001" // httptest's example.com is a name the replica does not know
				if limits.auth != nil {
					r.Header.Set("Authorization", "Bearer "+token)
				}
				clear(w.h)
				w.code = 0
				handler.ServeHTTP(w, r)
				if w.code != http.StatusOK {
					b.Fatalf("%s: HTTP %d", op, w.code)
				}
			}
			// CPU time, garbage collection included: steadier than
			// ns/op when other processes share the cores.
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(n), "cpu-ns/op")
		})
	}
}

// chainKV answers Get and Put at once.
type chainKV struct {
	kvclient.Service // the other methods are not called
	value            string
}

func (s chainKV) Get(_ context.Context, req *kvclient.GetRequest) (*kvclient.GetResponse, error) {
	return &kvclient.GetResponse{Header: kvclient.ResponseHeader{Revision: 9}, Value: s.value, Found: true,
		CreateRevision: 3, ModRevision: 9, Version: 2}, nil
}

func (s chainKV) Put(_ context.Context, req *kvclient.PutRequest) (*kvclient.PutResponse, error) {
	return &kvclient.PutResponse{Header: kvclient.ResponseHeader{Revision: 10}}, nil
}

// discardResponse is a ResponseWriter that keeps only the status.
type discardResponse struct {
	h    http.Header
	code int
}

func (w *discardResponse) Header() http.Header         { return w.h }
func (w *discardResponse) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardResponse) WriteHeader(code int)        { w.code = code }
