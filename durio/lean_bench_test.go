package durio

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkHTTPServer measures what serving one HTTP/1.1 request costs in
// the lean loop and in net/http alone, with a handler that answers a
// 300-byte body at once: 64 keep-alive connections on loopback send a
// kvload-style GET each in turn (raw, so the client's share is small and
// the same for both). cpu-µs/op is the whole process's user+system time
// per request, server and clients.
func BenchmarkHTTPServer(b *testing.B) {
	for _, server := range []string{"lean", "net"} {
		b.Run("http="+server, func(b *testing.B) { benchHTTPServer(b, server == "lean") })
	}
}

func benchHTTPServer(b *testing.B, lean bool) {
	body := bytes.Repeat([]byte("v"), 300)
	srv := leanTestServer(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = jsonContentType
		_, _ = w.Write(body)
	})
	var addr string
	if lean {
		_, addr = startLean(b, srv)
	} else {
		addr = startPlain(b, srv)
	}
	const conns = 64
	req := []byte("GET /kvstore/get/key-123 HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n")
	var next atomic.Int64
	run := func(n int64) {
		var wg sync.WaitGroup
		for range conns {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for i := next.Add(1); i <= n; i = next.Add(1) {
					if _, err := c.Write(req); err != nil {
						b.Error(err)
						return
					}
					length := -1
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							b.Error(err)
							return
						}
						if len(line) <= 2 {
							break
						}
						if bytes.HasPrefix(line, []byte("Content-Length: ")) {
							length, _ = strconv.Atoi(string(bytes.TrimSpace(line[16:])))
						}
					}
					if length != len(body) {
						b.Errorf("answer of %d bytes", length)
						return
					}
					if _, err := io.CopyN(io.Discard, br, int64(length)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	run(int64(4 * conns))
	next.Store(0)
	cpu0 := processCPU()
	b.ResetTimer()
	start := time.Now()
	run(int64(b.N))
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
}

// BenchmarkHTTPIdleConnMemory measures the memory (heap and goroutine
// stacks) that an idle keep-alive connection holds after one request, in
// the lean loop and in net/http alone: 256 connections, as many as
// compare.sh's clients keep to each replica. Run it with -benchtime 1x.
func BenchmarkHTTPIdleConnMemory(b *testing.B) {
	for _, server := range []string{"lean", "net"} {
		b.Run("http="+server, func(b *testing.B) {
			srv := leanTestServer(func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Content-Type"] = jsonContentType
				_, _ = w.Write(bytes.Repeat([]byte("v"), 300))
			})
			var addr string
			if server == "lean" {
				_, addr = startLean(b, srv)
			} else {
				addr = startPlain(b, srv)
			}
			const conns = 256
			req := []byte("GET /kvstore/get/key-123 HTTP/1.1\r\nHost: " + addr + "\r\n\r\n")
			var perConn float64
			for range b.N {
				before := inUse()
				cs := make([]net.Conn, 0, conns)
				for range conns {
					c, err := net.Dial("tcp", addr)
					if err != nil {
						b.Fatal(err)
					}
					cs = append(cs, c)
					if _, err := c.Write(req); err != nil {
						b.Fatal(err)
					}
					resp, err := http.ReadResponse(bufio.NewReader(c), nil)
					if err != nil {
						b.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
				}
				perConn += float64(inUse()-before) / conns
				for _, c := range cs {
					c.Close()
				}
			}
			b.ReportMetric(perConn/float64(b.N), "bytes/conn")
		})
	}
}

// inUse is the heap and stack memory in use after a collection.
func inUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}
