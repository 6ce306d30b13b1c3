package durio

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// leanEcho answers with what it was asked, and says in X-Lean whether the
// lean loop served it.
func leanEcho(w http.ResponseWriter, r *http.Request) {
	_, lean := w.(*leanWriter)
	w.Header().Set("X-Lean", strconv.FormatBool(lean))
	q := r.URL.Query()
	var body []byte
	if !q.Has("skip") {
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	if n, err := strconv.Atoi(q.Get("size")); err == nil {
		body = bytes.Repeat([]byte("z"), n)
	}
	w.Header().Set("X-Method", r.Method)
	w.Header().Set("X-Path", r.URL.Path)
	w.Header().Set("X-Query", r.URL.RawQuery)
	w.Header().Set("X-Host", r.Host)
	w.Header().Set("X-Length", strconv.FormatInt(r.ContentLength, 10))
	w.Header().Set("X-Token", r.Header.Get("Authorization"))
	w.Header().Set("X-Close", strconv.FormatBool(r.Close))
	w.Header().Set("X-Remote-Set", strconv.FormatBool(r.RemoteAddr != ""))
	if q.Has("echo") {
		w.Header().Set("X-Echo", q.Get("echo")) // may hold CR or LF
	}
	if q.Has("nocontenttype") {
		w.Header()["Content-Type"] = nil
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	if q.Has("declare") {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	code := http.StatusOK
	if c, err := strconv.Atoi(q.Get("status")); err == nil {
		code = c
	}
	w.WriteHeader(code)
	if q.Has("chunks") {
		for len(body) > 0 {
			n := min(len(body), 10000)
			_, _ = w.Write(body[:n])
			body = body[n:]
		}
		return
	}
	_, _ = w.Write(body)
}

// startLean serves h on 127.0.0.1 with the lean loop in front of srv's
// settings; the server is shut down at the test's end.
func startLean(t testing.TB, srv *http.Server) (*leanServer, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ls := newLeanServer(srv, ln)
	done := make(chan error, 1)
	go func() { done <- ls.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = ls.Shutdown(ctx)
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ls, ln.Addr().String()
}

// startPlain serves srv with net/http alone on 127.0.0.1.
func startPlain(t testing.TB, srv *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func leanTestServer(h http.HandlerFunc) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second,
		WriteTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second, MaxHeaderBytes: 32 << 10}
}

// exchange sends raw on a new connection and reads the answers until the
// connection closes (it is half-closed after raw, or closed after 2 s).
func exchange(t *testing.T, addr, raw string) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	out, _ := io.ReadAll(c)
	return out
}

// answers parses every answer in raw: status, body and the header
// without Date (which differs from one second to the next).
func answers(t *testing.T, raw []byte) []string {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(raw))
	var out []string
	for {
		if _, err := br.Peek(1); err != nil {
			return out
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return append(out, "unparsable: "+err.Error())
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return append(out, "body: "+err.Error())
		}
		resp.Header.Del("Date")
		resp.Header.Del("X-Lean")
		var h bytes.Buffer
		_ = resp.Header.Write(&h)
		out = append(out, fmt.Sprintf("%d %s\n%s\n%q chunked=%v", resp.StatusCode, resp.Proto, h.String(), body,
			len(resp.TransferEncoding) > 0))
	}
}

// TestLeanAnswersAsNetHTTP sends the same raw requests to the lean loop and
// to net/http alone, with the same handler: the answers must be the same
// (the header's order and Date aside, and whether a long answer is chunked),
// whether the lean loop served the request or handed it over.
func TestLeanAnswersAsNetHTTP(t *testing.T) {
	big := strings.Repeat("b", 100<<10)
	cases := []struct {
		name string
		raw  string
		lean bool // the lean loop serves the first request
	}{
		{"get", "GET /kvstore/get/a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"lower-case names", "GET /kvstore/get/a HTTP/1.1\r\nhost: h\r\nauthorization: Bearer t\r\nx-odd-Name: v\r\n\r\n", true},
		{"post with body", "POST /kvstore/put HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", true},
		{"delete", "DELETE /kvstore/k%2Fx?if_revision=3 HTTP/1.1\r\nHost: h:80\r\n\r\n", true},
		{"twirp", "POST /twirp/kv.v1.KVService/Get HTTP/1.1\r\nHost: [::1]:9\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", true},
		{"connection close", "GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /kvstore/get/b HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"pipelined", "GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\n\r\nPOST /kvstore/put HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /kvstore/get/c HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"lean then handed over", "GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\n\r\nGET /metrics HTTP/1.1\r\nHost: h\r\n\r\nGET /kvstore/get/a HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"large answer", "GET /kvstore/get/a?size=200000 HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"large answer in pieces", "GET /kvstore/get/a?size=200000&chunks HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"declared length", "GET /kvstore/get/a?size=100000&declare&chunks HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"no content", "DELETE /kvstore/a?status=204 HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"sniffed type", "GET /kvstore/get/a?nocontenttype&size=10 HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"header value with newline", "GET /kvstore/get/a?echo=x%0D%0ASet-Cookie:%20y=1 HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"small unread body", "POST /kvstore/put?skip HTTP/1.1\r\nHost: h\r\nContent-Length: 3000\r\n\r\n" + strings.Repeat("u", 3000) + "GET /kvstore/get/z HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"unread body", "POST /kvstore/put?size=1&skip HTTP/1.1\r\nHost: h\r\nContent-Length: 300000\r\n\r\n" + strings.Repeat("u", 300000) + "GET /kvstore/get/z HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"body of 100 KiB", "POST /kvstore/put HTTP/1.1\r\nHost: h\r\nContent-Length: " + strconv.Itoa(len(big)) + "\r\n\r\n" + big, true},
		{"short body", "POST /kvstore/put HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc", true},
		{"preflight", "OPTIONS /kvstore/put HTTP/1.1\r\nHost: h\r\nOrigin: http://app.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\nGET /kvstore/get/a HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"options with a body", "OPTIONS /twirp/kv.v1.KVService/Get HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", true},
		// Handed over from the first request: net/http's answers.
		{"chunked request", "POST /kvstore/put HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", false},
		{"two lengths", "POST /kvstore/put HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", false},
		{"length and chunked", "POST /kvstore/put HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", false},
		{"signed length", "POST /kvstore/put HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc", false},
		{"negative length", "POST /kvstore/put HTTP/1.1\r\nHost: h\r\nContent-Length: -3\r\n\r\nabc", false},
		{"no host", "GET /kvstore/get/a HTTP/1.1\r\n\r\n", false},
		{"two hosts", "GET /kvstore/get/a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", false},
		{"bad host", "GET /kvstore/get/a HTTP/1.1\r\nHost: a b\r\n\r\n", false},
		{"folded line", "GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n", false},
		{"space before colon", "GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n", false},
		{"control in value", "GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\nX-A: 1\x002\r\n\r\n", false},
		{"bare LF", "GET /kvstore/get/a HTTP/1.1\nHost: h\n\n", false},
		{"HTTP/1.0", "GET /kvstore/get/a HTTP/1.0\r\nHost: h\r\n\r\n", false},
		{"HEAD", "HEAD /kvstore/get/a HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"PUT", "PUT /kvstore/put HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx", false},
		{"absolute form", "GET http://h/kvstore/get/a HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"expect", "POST /kvstore/put HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx", false},
		{"upgrade", "GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false},
		{"long poll", "GET /kvstore/get/a?index=5&wait=1ms HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"watch", "GET /kvstore/watch/a HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"other route", "GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"header past the buffer", "GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("v", 12<<10) + "\r\n\r\n", false},
		{"header past the limit", "GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("v", 64<<10) + "\r\n\r\n", false},
		{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", false},
		{"space in target", "GET /kvstore/get/a b HTTP/1.1\r\nHost: h\r\n\r\n", false},
	}
	_, lean := startLean(t, leanTestServer(leanEcho))
	plain := startPlain(t, leanTestServer(leanEcho))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gotRaw := exchange(t, lean, tc.raw)
			want := answers(t, exchange(t, plain, tc.raw))
			got := answers(t, gotRaw)
			if len(want) == 0 {
				t.Fatalf("net/http answered nothing: the case tests nothing")
			}
			servedLean := bytes.Contains(gotRaw, []byte("X-Lean: true"))
			if servedLean != tc.lean {
				t.Errorf("served by the lean loop: %v, want %v", servedLean, tc.lean)
			}
			if len(got) != len(want) {
				t.Fatalf("%d answers, net/http gave %d:\n%s\n---\n%s", len(got), len(want), strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			for i := range want {
				// A long answer may be chunked by one and not the
				// other; its bytes must be the same.
				g := strings.Replace(got[i], "chunked=true", "chunked=false", 1)
				w := strings.Replace(want[i], "chunked=true", "chunked=false", 1)
				if g != w {
					t.Errorf("answer %d:\n%.2000s\nnet/http:\n%.2000s", i, g, w)
				}
			}
		})
	}
}

// waitClosed reads c until it ends, for up to limit; it returns what was
// read and whether the connection ended in time.
func waitClosed(c net.Conn, limit time.Duration) ([]byte, bool) {
	_ = c.SetReadDeadline(time.Now().Add(limit))
	out, err := io.ReadAll(c)
	return out, err == nil
}

// TestLeanTimeouts sends what a slow or idle client sends: the lean loop
// must close the connection as net/http would, on the server's timeouts.
func TestLeanTimeouts(t *testing.T) {
	srv := leanTestServer(leanEcho)
	srv.ReadHeaderTimeout, srv.ReadTimeout, srv.IdleTimeout = 300*time.Millisecond, 600*time.Millisecond, 300*time.Millisecond
	_, addr := startLean(t, srv)
	dial := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	t.Run("no request", func(t *testing.T) {
		c := dial(t)
		if out, ok := waitClosed(c, 10*time.Second); !ok || len(out) != 0 {
			t.Fatalf("a connection that sends nothing: closed %v, got %q", ok, out)
		}
	})
	t.Run("half a header", func(t *testing.T) {
		c := dial(t)
		_, _ = io.WriteString(c, "GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\n")
		start := time.Now()
		out, ok := waitClosed(c, 10*time.Second)
		if !ok || len(out) != 0 {
			t.Fatalf("half a header: closed %v, got %q", ok, out)
		}
		// Closed on the header's timeout, not handed to net/http for a
		// second one (generous: 300 ms against 600).
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("closed after %v", d)
		}
	})
	t.Run("idle after a request", func(t *testing.T) {
		c := dial(t)
		_, _ = io.WriteString(c, "GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\n\r\n")
		out, ok := waitClosed(c, 10*time.Second)
		if !ok || !bytes.HasPrefix(out, []byte("HTTP/1.1 200 OK\r\n")) {
			t.Fatalf("idle connection: closed %v, got %q", ok, out)
		}
	})
	t.Run("body that stops", func(t *testing.T) {
		c := dial(t)
		_, _ = io.WriteString(c, "POST /kvstore/put HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
		out, ok := waitClosed(c, 10*time.Second)
		if !ok || !bytes.HasPrefix(out, []byte("HTTP/1.1 400 ")) || !bytes.Contains(out, []byte("timeout")) {
			t.Fatalf("a body that stops: closed %v, got %q", ok, out)
		}
	})
}

// TestLeanShutdown: Shutdown closes idle connections at once, lets a
// request being served finish and answer, and, when its context ends
// first, closes the connections still serving.
func TestLeanShutdown(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	srv := leanTestServer(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/kvstore/get/block" {
			entered <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "done")
	})
	ls, addr := startLean(t, srv)
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	_, _ = io.WriteString(idle, "GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\n\r\n")
	br := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("first answer: %v %v", resp, err)
	} else if body, err := io.ReadAll(resp.Body); err != nil || string(body) != "done" {
		t.Fatalf("first answer: %q %v", body, err)
	}
	busy, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, _ = io.WriteString(busy, "GET /kvstore/get/block HTTP/1.1\r\nHost: h\r\n\r\n")
	<-entered
	shut := shutdownAsync(ls, 20*time.Second)
	// The idle connection ends without waiting for the busy one (nor
	// for its idle timeout).
	start := time.Now()
	if rest, ok := waitClosed(idle, 10*time.Second); !ok || len(rest) != 0 || br.Buffered() != 0 {
		t.Fatalf("idle connection at shutdown: closed %v, got %q", ok, rest)
	}
	if d := time.Since(start); d >= srv.IdleTimeout {
		t.Fatalf("the idle connection closed after %v, on its idle timeout", d)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned while a request was being served: %v", err)
	default:
	}
	close(release)
	out, ok := waitClosed(busy, 10*time.Second)
	if !ok || !bytes.HasPrefix(out, []byte("HTTP/1.1 200 OK\r\n")) || !bytes.HasSuffix(out, []byte("done")) {
		t.Fatalf("busy connection at shutdown: closed %v, got %q", ok, out)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return once the request was served")
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("the listener still accepts after Shutdown")
	}
}

func TestLeanShutdownDeadline(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	entered := make(chan struct{}, 1)
	ls, addr := startLean(t, leanTestServer(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-stop
	}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\n\r\n")
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := ls.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a request that never ends: %v", err)
	}
	if out, ok := waitClosed(c, 10*time.Second); !ok || len(out) != 0 {
		t.Fatalf("connection after Shutdown's deadline: closed %v, got %q", ok, out)
	}
}

// TestLeanPanic: a handler's panic closes its connection, without an
// answer, and the server goes on serving.
func TestLeanPanic(t *testing.T) {
	srv := leanTestServer(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/kvstore/get/panic":
			panic("boom")
		case "/kvstore/get/abort":
			panic(http.ErrAbortHandler)
		}
		_, _ = io.WriteString(w, "fine")
	})
	var logged bytes.Buffer
	var mu sync.Mutex
	srv.ErrorLog = log.New(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logged.Write(p)
	}), "", 0)
	_, addr := startLean(t, srv)
	for _, path := range []string{"panic", "abort"} {
		out := exchange(t, addr, "GET /kvstore/get/"+path+" HTTP/1.1\r\nHost: h\r\n\r\nGET /kvstore/get/a HTTP/1.1\r\nHost: h\r\n\r\n")
		if len(out) != 0 {
			t.Errorf("%s: the connection answered %q", path, out)
		}
	}
	if out := exchange(t, addr, "GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\n\r\n"); !bytes.HasSuffix(out, []byte("fine")) {
		t.Errorf("after the panics: %q", out)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logged.String(), "http: panic serving"); n != 1 {
		t.Errorf("%d panics logged, want 1 (ErrAbortHandler is not logged): %q", n, logged.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestLeanHandOffKeepsCappedConn: a connection handed to net/http is still
// found under the request's context, so vouchConn vouches for it.
func TestLeanHandOffKeepsCappedConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	cc := &cappedConn{Conn: a}
	for _, c := range []net.Conn{cc, &handedConn{Conn: cc, r: bufio.NewReader(cc)}} {
		if got, _ := withCappedConn(context.Background(), c).Value(cappedConnKey{}).(*cappedConn); got != cc {
			t.Errorf("%T: capped connection %v, want it found", c, got)
		}
	}
	if got := withCappedConn(context.Background(), &handedConn{Conn: a}).Value(cappedConnKey{}); got != nil {
		t.Errorf("a plain connection: %v", got)
	}
}

// TestLeanRefusedBodyIsAnswered: a handler that refuses a large body
// without reading it (413) gets its answer to the client, which is still
// sending the body, instead of a reset connection.
func TestLeanRefusedBodyIsAnswered(t *testing.T) {
	_, addr := startLean(t, leanTestServer(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	}))
	for i := range 5 {
		resp, err := http.Post("http://"+addr+"/kvstore/put", "application/json", bytes.NewReader(make([]byte, 4<<20)))
		if err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
			t.Fatalf("post %d: %d, close %v", i, resp.StatusCode, resp.Close)
		}
	}
}

// TestLeanWriteAfterHandlerReturned: the answer's buffers go back to their
// pools when it is sent, so a Write through a ResponseWriter kept past its
// handler (which the interface forbids) must fail, not write into a buffer
// another answer uses or onto the connection.
func TestLeanWriteAfterHandlerReturned(t *testing.T) {
	kept := make(chan http.ResponseWriter, 1)
	second := make(chan struct{}, 1)
	srv := leanTestServer(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/kvstore/get/keep":
			kept <- w
		case "/kvstore/get/second":
			second <- struct{}{} // the first answer's writer is released by now
		}
		_, _ = io.WriteString(w, "answer to "+r.URL.Path)
	})
	_, addr := startLean(t, srv)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	get := func(path string) string {
		t.Helper()
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer to %s: %v", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(body)
	}
	get("/kvstore/get/keep")
	get("/kvstore/get/second")
	<-second
	w := <-kept
	if n, err := w.Write([]byte("LATE BYTES")); err == nil || n != 0 {
		t.Errorf("Write after the handler returned: %d, %v; want 0 and an error", n, err)
	}
	if got, want := get("/kvstore/get/third"), "answer to /kvstore/get/third"; got != want {
		t.Errorf("next answer %q, want %q", got, want)
	}
}

// TestLeanHandedConnDropsBuffer: a connection handed to net/http reads
// what the lean loop had buffered first, then the connection itself, and
// lets the lean loop's buffer go.
func TestLeanHandedConnDropsBuffer(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	br := bufio.NewReaderSize(server, leanReadBuffer)
	go func() { _, _ = io.WriteString(client, "buffered") }()
	if _, err := br.Peek(len("buffered")); err != nil {
		t.Fatal(err)
	}
	c := &handedConn{Conn: server, r: br}
	go func() { _, _ = io.WriteString(client, " then direct") }()
	got := make([]byte, 0, 64)
	buf := make([]byte, 5)
	for len(got) < len("buffered then direct") {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "buffered then direct" {
		t.Errorf("read %q", got)
	}
	if c.r != nil {
		t.Error("the lean loop's reader is still held after it was drained")
	}
}

// shutdownAsync starts ls.Shutdown with a deadline of within; its result
// comes on the channel.
func shutdownAsync(ls *leanServer, within time.Duration) <-chan error {
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		shut <- ls.Shutdown(ctx)
	}()
	return shut
}
