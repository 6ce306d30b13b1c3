package twirptransport

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/raft"
)

// processCPU is the user+system CPU time of this process so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAppendEntries sends AppendEntries round trips over loopback to
// an in-process peer, per-request Twirp over HTTP/1.1 and over HTTP/2
// without TLS (h2c: one connection, Go's HTTP/2 multiplexing) against the
// peer stream:
// heartbeats (no entries) and 16-entry batches of 256-byte commands, from 1
// and 16 concurrent callers. cpu-ns/op is the process's CPU time (both
// sides: client and server) per round trip.
//
//	go test -run '^$' -bench AppendEntries -count 5 ./raft/twirptransport
func BenchmarkAppendEntries(b *testing.B) {
	for _, path := range []string{"twirp", "h2c", "stream"} {
		for _, entries := range []int{0, 16} {
			for _, callers := range []int{1, 16} {
				b.Run(fmt.Sprintf("path=%s/entries=%d/callers=%d", path, entries, callers), func(b *testing.B) {
					benchAppendEntries(b, path, entries, callers)
				})
			}
		}
	}
}

func benchAppendEntries(b *testing.B, path string, entries, callers int) {
	url := ""
	opts := Options{DisableStream: path != "stream"}
	if path == "h2c" {
		srv := httptest.NewUnstartedServer(NewHandler(echoNode{}))
		srv.Config.Protocols = new(http.Protocols)
		srv.Config.Protocols.SetHTTP1(true)
		srv.Config.Protocols.SetUnencryptedHTTP2(true)
		srv.Start()
		defer srv.Close()
		h2 := &http.Transport{Protocols: new(http.Protocols)}
		h2.Protocols.SetUnencryptedHTTP2(true)
		defer h2.CloseIdleConnections()
		url, opts.HTTPClient = srv.URL, &http.Client{Transport: h2}
	} else {
		url = startStreamPeer(b, echoNode{}, StreamServerOptions{}, path == "stream", nil).srv.URL
	}
	tr := New(0, []string{"", url}, opts)
	defer tr.Close()
	req := &raft.AppendEntriesRequest{Term: 1, PrevLogIndex: 100, PrevLogTerm: 1, LeaderCommit: 100}
	for i := range entries {
		req.Entries = append(req.Entries, raft.Entry{Index: uint64(101 + i), Term: 1, Type: persist.EntryCommand, Data: make([]byte, 256)})
	}
	// Warm up: connections dialed, pools filled.
	for range 100 {
		if _, err := tr.AppendEntries(context.Background(), 1, req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	var wg sync.WaitGroup
	per := (b.N + callers - 1) / callers
	for range callers {
		wg.Go(func() {
			for range per {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := tr.AppendEntries(ctx, 1, req)
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(per*callers), "cpu-ns/op")
}
