package durio

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// leanVsPlain sends raw to the lean loop and to net/http alone, each built
// by mk, and returns both sets of answers.
func leanVsPlain(t *testing.T, mk func() *http.Server, raw string) (got, want []string) {
	t.Helper()
	_, lean := startLean(t, mk())
	plain := startPlain(t, mk())
	return answers(t, exchange(t, lean, raw)), answers(t, exchange(t, plain, raw))
}

func sameAnswers(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d answers, net/http gave %d:\n%s\n---\n%s", len(got), len(want), strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("answer %d:\n%.1000s\nnet/http:\n%.1000s", i, got[i], want[i])
		}
	}
}

// TestLeanReviewMaxHeaderBytes: the lean loop serves any header that fits
// its 8 KiB buffer, whatever srv.MaxHeaderBytes says; net/http refuses a
// header past MaxHeaderBytes (plus its 4 KiB of slack) with 431.
func TestLeanReviewMaxHeaderBytes(t *testing.T) {
	mk := func() *http.Server {
		s := leanTestServer(leanEcho)
		s.MaxHeaderBytes = 1 << 10
		return s
	}
	raw := "GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("v", 7000) + "\r\n\r\n"
	got, want := leanVsPlain(t, mk, raw)
	if len(want) == 0 || !strings.HasPrefix(want[0], "431 ") {
		t.Fatalf("net/http's answer: %q (the case tests nothing)", want)
	}
	sameAnswers(t, got, want)
}

// TestLeanReviewLeadingCRLFAfterPost: net/http skips the CR LF that old
// clients send after a POST's body (RFC 7230 section 3.5); the lean loop
// hands the rest of the connection to net/http with the CR LF in front,
// which net/http, on a connection new to it, answers with 400.
func TestLeanReviewLeadingCRLFAfterPost(t *testing.T) {
	raw := "POST /kvstore/put HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc\r\nGET /kvstore/get/b HTTP/1.1\r\nHost: h\r\n\r\n"
	got, want := leanVsPlain(t, func() *http.Server { return leanTestServer(leanEcho) }, raw)
	sameAnswers(t, got, want)
}

// TestLeanReviewHandlerConnectionClose: a handler that sets "Connection:
// close" gets the connection closed after its answer from net/http; the
// lean loop dropped the header and kept the connection.
func TestLeanReviewHandlerConnectionClose(t *testing.T) {
	h := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/kvstore/get/close" {
			w.Header().Set("Connection", "close")
		}
		_, _ = io.WriteString(w, r.URL.Path)
	}
	raw := "GET /kvstore/get/close HTTP/1.1\r\nHost: h\r\n\r\nGET /kvstore/get/b HTTP/1.1\r\nHost: h\r\n\r\n"
	got, want := leanVsPlain(t, func() *http.Server { return leanTestServer(h) }, raw)
	if len(want) != 1 {
		t.Fatalf("net/http gave %d answers: %q", len(want), want)
	}
	sameAnswers(t, got, want)
}

// TestLeanReviewHeaderAfterWriteHeader: net/http sends the header as it was
// at WriteHeader (later changes are not sent), and adds Date only when the
// handler set none; the lean loop sent later changes and a second Date.
func TestLeanReviewHeaderAfterWriteHeader(t *testing.T) {
	h := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Date", "Thu, 01 Jan 1970 00:00:00 GMT")
		w.WriteHeader(http.StatusAccepted)
		w.Header().Set("X-After", "1")
		_, _ = io.WriteString(w, "body")
	}
	raw := "GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\n\r\n"
	_, lean := startLean(t, leanTestServer(h))
	plain := startPlain(t, leanTestServer(h))
	for _, addr := range []string{plain, lean} {
		out := exchange(t, addr, raw)
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(out))), nil)
		if err != nil {
			t.Fatalf("%q: %v", out, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || resp.Header.Get("X-After") != "" || len(resp.Header["Date"]) != 1 {
			t.Errorf("lean=%v: %q", addr == lean, out)
		}
	}
}

// TestLeanReviewShutdownAnswerSaysClose: an answer written once Shutdown
// has begun says "Connection: close" (as net/http's does), so the client
// does not send another request on a connection about to close.
func TestLeanReviewShutdownAnswerSaysClose(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	srv := leanTestServer(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "done")
	})
	ls, addr := startLean(t, srv)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\n\r\n")
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not reach the handler")
	}
	shut := shutdownAsync(ls, 10*time.Second)
	// Shutdown has begun once the listener refuses connections.
	waitRefused(t, addr)
	close(release)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !resp.Close {
		t.Errorf("the answer written during Shutdown does not say Connection: close: %v", resp.Header)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// slowHeader dials addr and sends a request's header in parts, each after
// the pause before it; it reports whether the server answered 200.
func slowHeader(t *testing.T, addr string, parts []string, pauses []time.Duration) (bool, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, p := range parts {
		time.Sleep(pauses[i]) // the attack is the timing itself
		if _, err := io.WriteString(c, p); err != nil {
			break // closed on a timeout: that is the point
		}
	}
	out, _ := waitClosed(c, 10*time.Second)
	return strings.HasPrefix(string(out), "HTTP/1.1 200 "), out
}

// TestLeanReviewFirstHeaderTimeout: net/http gives a connection's first
// request ReadHeaderTimeout from the accept for its whole header; the lean
// loop gave it ReadHeaderTimeout for the first byte and again from the
// first byte for the rest: twice as long for a slowloris client.
func TestLeanReviewFirstHeaderTimeout(t *testing.T) {
	mk := func() *http.Server {
		s := leanTestServer(leanEcho)
		s.ReadHeaderTimeout, s.IdleTimeout = time.Second, 500*time.Millisecond
		return s
	}
	_, lean := startLean(t, mk())
	plain := startPlain(t, mk())
	parts := []string{"G", "ET /kvstore/get/a HTTP/1.1\r\nHost: h\r\n\r\n"}
	pauses := []time.Duration{700 * time.Millisecond, 700 * time.Millisecond}
	if ok, out := slowHeader(t, plain, parts, pauses); ok {
		t.Fatalf("net/http answered a header that took 1.4 s: %q (the case tests nothing)", out)
	}
	if ok, out := slowHeader(t, lean, parts, pauses); ok {
		t.Errorf("the lean loop answered a header that took 1.4 s against a ReadHeaderTimeout of 1 s: %q", out)
	}
}

// TestLeanReviewHandOffHeaderTimeout: a header that outgrows the lean
// loop's buffer near the end of ReadHeaderTimeout is handed to net/http,
// which gave it a whole ReadHeaderTimeout more.
func TestLeanReviewHandOffHeaderTimeout(t *testing.T) {
	mk := func() *http.Server {
		s := leanTestServer(leanEcho)
		s.ReadHeaderTimeout, s.IdleTimeout = time.Second, 500*time.Millisecond
		return s
	}
	_, lean := startLean(t, mk())
	plain := startPlain(t, mk())
	parts := []string{
		"GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("v", 4000),
		strings.Repeat("v", 4500), // past the lean loop's buffer
		"\r\n\r\n",
	}
	pauses := []time.Duration{0, 700 * time.Millisecond, 700 * time.Millisecond}
	if ok, out := slowHeader(t, plain, parts, pauses); ok {
		t.Fatalf("net/http answered a header that took 1.4 s: %.100q (the case tests nothing)", out)
	}
	if ok, out := slowHeader(t, lean, parts, pauses); ok {
		t.Errorf("lean then net/http answered a header that took 1.4 s against a ReadHeaderTimeout of 1 s: %.100q", out)
	}
}

// TestLeanReviewParseCost: parse rescans the whole buffer each time a byte
// arrives, so a header sent a byte at a time costs the server time
// quadratic in its length (measured: 9 ms for 8 KiB, 75 times net/http's;
// 260 ms with -race).
func TestLeanReviewParseCost(t *testing.T) {
	raw := "GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("v", 8100) + "\r\n\r\n"
	best := func(f func()) time.Duration {
		d := time.Duration(1 << 62)
		for range 3 {
			start := time.Now()
			f()
			d = min(d, time.Since(start))
		}
		return d
	}
	lean := best(func() {
		br := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(raw)), leanReadBuffer)
		_, _ = br.Peek(1)
		var p leanRequest
		if _, v := p.parse(br, leanReadBuffer); v != leanServe {
			t.Fatalf("verdict %v", v)
		}
	})
	std := best(func() {
		br := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(raw)), 4<<10)
		if _, err := http.ReadRequest(br); err != nil {
			t.Fatal(err)
		}
	})
	if lean > 10*std+5*time.Millisecond {
		t.Errorf("parsing 8 KiB a byte at a time took %v, net/http %v", lean, std)
	}
}

// TestLeanReviewShutdownHandedConns: connections handed to net/http are
// shut down with the rest: an idle one is closed at once, a busy one gets
// its answer, and Serve and Shutdown return.
func TestLeanReviewShutdownHandedConns(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	srv := leanTestServer(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			entered <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "done")
	})
	srv.IdleTimeout = time.Minute
	ls, addr := startLean(t, srv)
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	idle := dial()
	_, _ = io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n")
	br := bufio.NewReader(idle)
	_ = idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if resp, err := http.ReadResponse(br, nil); err != nil {
		t.Fatal(err)
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	busy := dial()
	_, _ = io.WriteString(busy, "GET /block HTTP/1.1\r\nHost: h\r\n\r\n")
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not reach the handler")
	}
	shut := shutdownAsync(ls, 20*time.Second)
	if rest, ok := waitClosed(idle, 5*time.Second); !ok || len(rest) != 0 {
		t.Fatalf("idle handed connection at shutdown: closed %v, got %q", ok, rest)
	}
	close(release)
	out, ok := waitClosed(busy, 10*time.Second)
	if !ok || !strings.HasSuffix(string(out), "done") {
		t.Fatalf("busy handed connection: closed %v, got %q", ok, out)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}

// TestLeanReviewClientNeverReads: a client that pipelines requests for
// large answers and never reads them holds its connection no longer than
// WriteTimeout.
func TestLeanReviewClientNeverReads(t *testing.T) {
	srv := leanTestServer(leanEcho)
	srv.WriteTimeout = 500 * time.Millisecond
	ls, addr := startLean(t, srv)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
	req := "GET /kvstore/get/a?size=1000000 HTTP/1.1\r\nHost: h\r\n\r\n"
	_, _ = io.WriteString(c, strings.Repeat(req, 20))
	// Wait until the server gave up on the connection: Shutdown then
	// finds no connection left to wait for.
	waitUntil(t, "the connection of a client that does not read is no longer served",
		func() bool { return leanConns(ls) == 0 })
}

// leanConns is how many connections ls serves.
func leanConns(ls *leanServer) int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return len(ls.conns)
}

// waitRefused waits until addr refuses connections (a listener closed).
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	waitUntil(t, "the listener refuses connections", func() bool {
		d, err := net.Dial("tcp", addr)
		if err != nil {
			return true
		}
		d.Close()
		return false
	})
}

// waitGoroutinesBack waits until no more goroutines run than before, and
// fails with every goroutine's stack if that takes over 10 s.
func waitGoroutinesBack(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLeanReviewHandOffDuringShutdown: a connection whose header is on its
// way when Shutdown begins, and that the lean loop then hands to net/http,
// ends; Shutdown and Serve return, and no goroutine stays behind.
func TestLeanReviewHandOffDuringShutdown(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls := newLeanServer(leanTestServer(leanEcho), ln)
		served := make(chan error, 1)
		go func() { served <- ls.Serve() }()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHo")
		// Wait until the lean loop has the connection.
		waitUntil(t, "the lean loop has the connection", func() bool { return leanConns(ls) == 1 })
		shut := shutdownAsync(ls, 10*time.Second)
		waitRefused(t, ln.Addr().String())
		_, _ = io.WriteString(c, "st: h\r\n\r\n")
		// net/http (go1.26) answers no request it reads once Shutdown
		// has begun: the connection just ends, as here.
		if out, ok := waitClosed(c, 10*time.Second); !ok {
			t.Errorf("not closed: %q", out)
		}
		if err := <-shut; err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != http.ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
	}()
	waitGoroutinesBack(t, before)
}

// TestLeanReviewHeaderInTwoReads: a header that arrives in two reads, the
// second more than one byte long, is served at once. parse peeked one
// byte more than it had scanned, looked only at that much, and then waited
// for a byte past everything buffered: the request waited for its header
// timeout (then was served from the timed-out read).
func TestLeanReviewHeaderInTwoReads(t *testing.T) {
	srv := leanTestServer(leanEcho)
	srv.ReadHeaderTimeout, srv.ReadTimeout = 5*time.Second, 10*time.Second
	_, addr := startLean(t, srv)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET /kvstore/get/a HTTP/1.1\r\n")
	time.Sleep(100 * time.Millisecond) // two segments, two reads
	_, _ = io.WriteString(c, "Host: h\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer within 2 s to a header sent in two parts: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
}
