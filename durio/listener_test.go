package durio

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
)

// startOne starts a single-replica cluster on loopback with a peer token and
// the given tweaks.
func startOne(t *testing.T, tweak func(cfg *Config)) *Replica {
	t.Helper()
	cfg := oneMemberConfig(t)
	cfg.PeerToken = "s3cret"
	if tweak != nil {
		tweak(&cfg)
	}
	r, err := StartReplica(cfg, persist.NewNoop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return r
}

// countingReader yields n zero bytes and counts what was read.
type countingReader struct {
	left int64
	read atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), r.left))
	clear(p[:n])
	r.left -= int64(n)
	r.read.Add(int64(n))
	return n, nil
}

func totalAlloc() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// A 100 MB body to the peer port is refused without being read: by the
// token check, by its Content-Length, or, sent chunked, by the cap on
// reading. The replica allocates far less than the body.
func TestPeerBodyLimit(t *testing.T) {
	const limit = 4 << 20
	r := startOne(t, func(cfg *Config) { cfg.MaxPeerBodyBytes = limit })
	url := "http://" + r.PeerAddr() + raftv1.RaftServicePathPrefix + "AppendEntries"
	const huge = 100 << 20
	for _, tc := range []struct {
		name    string
		token   string
		chunked bool
		status  int
	}{
		{"no token", "", false, http.StatusUnauthorized},
		{"no token chunked", "", true, http.StatusUnauthorized},
		{"content-length", "s3cret", false, http.StatusRequestEntityTooLarge},
		{"chunked", "s3cret", true, 0}, // a 4xx or a closed connection
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := &countingReader{left: huge}
			req, err := http.NewRequest("POST", url, body)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = huge
			if tc.chunked {
				req.ContentLength = -1
			}
			req.Header.Set("Content-Type", "application/protobuf")
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			before := totalAlloc()
			resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
			allocated := totalAlloc() - before
			if err == nil {
				resp.Body.Close()
			}
			switch {
			case tc.status != 0 && (err != nil || resp.StatusCode != tc.status):
				t.Fatalf("got %v %v, want %d", resp, err, tc.status)
			case tc.status == 0 && err == nil && (resp.StatusCode < 400 || resp.StatusCode >= 500):
				t.Fatalf("got %d, want a 4xx", resp.StatusCode)
			}
			t.Logf("sent %d KiB, allocated %d MiB", body.read.Load()>>10, allocated>>20)
			// Whatever the kernel buffered, the sender could not push the
			// whole body, and the process did not take it into memory.
			if sent := body.read.Load(); sent >= huge {
				t.Errorf("the whole %d-byte body was sent", sent)
			}
			if allocated > 48<<20 {
				t.Errorf("%d MiB allocated while refusing the body", allocated>>20)
			}
		})
	}
	// The listener still serves peers.
	req, _ := http.NewRequest("POST", url, strings.NewReader(""))
	req.Header.Set("Content-Type", "application/protobuf")
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("empty AppendEntries after the attack: %d", resp.StatusCode)
	}
}

// trickle opens a connection to addr, sends head, then one byte of body
// every 200 ms, and returns how long the server kept the connection open.
func trickle(t *testing.T, addr, head string) time.Duration {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, _ = io.Copy(io.Discard, conn) // until the server closes
	}()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-closed:
			return time.Since(start)
		case <-tick.C:
			_, _ = conn.Write([]byte("x")) // errors once the server closed
		}
	}
}

// A body (or headers) sent at a few bytes a second does not hold a
// connection past the read timeout, on either listener.
func TestSlowRequestsCut(t *testing.T) {
	r := startOne(t, func(cfg *Config) {
		cfg.ReadTimeout, cfg.RequestTimeout, cfg.WriteTimeout = time.Second, time.Second, 2*time.Second
	})
	for _, tc := range []struct{ name, addr, head string }{
		{"client body", r.ClientAddr(), "POST /kvstore/put HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"},
		{"client headers", r.ClientAddr(), "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "},
		{"peer body", r.PeerAddr(), "POST " + raftv1.RaftServicePathPrefix + "AppendEntries HTTP/1.1\r\nHost: x\r\n" +
			"Authorization: Bearer s3cret\r\nContent-Type: application/protobuf\r\nContent-Length: 100000\r\n\r\n"},
		{"peer headers", r.PeerAddr(), "POST " + raftv1.RaftServicePathPrefix + "AppendEntries HTTP/1.1\r\nHost: x\r\nX-Slow: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The read timeout is 1 s; allow generous slack for a loaded CI
			// machine, far below the 15 s the probe would wait.
			if held := trickle(t, tc.addr, tc.head); held > 5*time.Second {
				t.Fatalf("connection held %v with a 1s read timeout", held)
			}
		})
	}
}

// openIdle opens n connections to addr and sends req on each, reading the
// answer where there is one; it returns the connections and how many were
// served.
func openIdle(t *testing.T, addr, req string, n int) ([]net.Conn, int) {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	served := 0
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			continue // closed over the cap
		}
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			resp.Body.Close()
			served++
		}
	}
	return conns, served
}

var idleProbes = []struct{ name, req string }{
	{"client", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"},
	{"peer", "POST /nope HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Length: 0\r\n\r\n"},
}

// Hundreds of keep-alive connections cannot pile up: those over the cap are
// closed at once, so goroutines stay bounded.
func TestConnectionCap(t *testing.T) {
	const capConns, n = 40, 500
	// Timeouts far longer than the test, so only the cap can close anything.
	r := startOne(t, func(cfg *Config) { cfg.MaxClientConns, cfg.MaxPeerConns = capConns, capConns })
	for i, tc := range idleProbes {
		t.Run(tc.name, func(t *testing.T) {
			addr := []string{r.ClientAddr(), r.PeerAddr()}[i]
			before := runtime.NumGoroutine()
			_, served := openIdle(t, addr, tc.req, n)
			t.Logf("%d of %d connections served; goroutines %d -> %d", served, n, before, runtime.NumGoroutine())
			if served == 0 || served > capConns {
				t.Errorf("%d connections served, want 1..%d", served, capConns)
			}
			// Each open connection costs the server a goroutine or two.
			if g := runtime.NumGoroutine(); g > before+3*capConns+20 {
				t.Errorf("goroutines %d -> %d with %d connections open", before, g, n)
			}
		})
	}
}

// Idle keep-alive connections are closed after the idle timeout, and the
// ones over the cap at once: none is left open.
func TestIdleConnectionsClosed(t *testing.T) {
	const capConns, n = 40, 500
	r := startOne(t, func(cfg *Config) {
		cfg.MaxClientConns, cfg.MaxPeerConns = capConns, capConns
		cfg.IdleTimeout, cfg.ReadTimeout = time.Second, time.Second
	})
	for i, tc := range idleProbes {
		t.Run(tc.name, func(t *testing.T) {
			conns, _ := openIdle(t, []string{r.ClientAddr(), r.PeerAddr()}[i], tc.req, n)
			deadline := time.Now().Add(6 * time.Second)
			for i, c := range conns {
				_ = c.SetReadDeadline(deadline)
				_, err := c.Read(make([]byte, 1))
				var ne net.Error
				if err == nil || errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("connection %d still open 6s later with a 1s idle timeout: %v", i, err)
				}
			}
		})
	}
}

// blockingKV blocks Put until release is closed.
type blockingKV struct {
	mapKV
	entered chan struct{}
	release chan struct{}
}

func (b *blockingKV) Put(ctx context.Context, req *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.mapKV.Put(ctx, req)
}

// Over the in-flight cap, requests get 503 with Retry-After at once.
func TestInflightCap(t *testing.T) {
	kv := &blockingKV{mapKV: mapKV{m: map[string]string{}}, entered: make(chan struct{}, 2), release: make(chan struct{})}
	limits := DefaultLimits()
	limits.MaxInflight = 2
	srv := httptest.NewServer(clientHandler(kv, limits, nil))
	defer srv.Close()
	done := make(chan int, 2)
	for range 2 {
		go func() {
			resp, err := http.Post(srv.URL+"/kvstore/put", "application/json", strings.NewReader(`{"key":"a","value":"b"}`))
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
	}
	<-kv.entered
	<-kv.entered
	req, _ := http.NewRequest("POST", srv.URL+"/kvstore/put", strings.NewReader(`{"key":"a","value":"b"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over the cap: %d Retry-After=%q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if code, body := do(t, "GET", srv.URL+"/healthz", ""); code != 200 {
		t.Fatalf("healthz is exempt from the cap: %d %v", code, body)
	}
	close(kv.release)
	for range 2 {
		if code := <-done; code != 200 {
			t.Fatalf("blocked put: %d", code)
		}
	}
}
