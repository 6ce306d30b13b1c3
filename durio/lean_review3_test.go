package durio

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// A third review, of the lean loop's header parse into one string, its
// pooled answer buffers, the hand-off's dropped read buffer and OPTIONS.
// Helpers: lean_test.go, lean_review_test.go and lean_review2_test.go.

// TestLeanReview3SniffAtChunkedSwitch: an answer without a Content-Type
// that outgrows the lean loop's buffer is sniffed, as net/http sniffs it,
// from its first bytes — those buffered and those of the write that
// outgrew the buffer. The lean loop sniffed only what it had buffered:
// nothing at all when the first write was the large one (no Content-Type
// where net/http says text/html), and only the first short write when a
// large one followed (text/plain where net/http, seeing the binary bytes
// after it, says application/octet-stream).
func TestLeanReview3SniffAtChunkedSwitch(t *testing.T) {
	h := func(w http.ResponseWriter, r *http.Request) {
		big := bytes.Repeat([]byte{0}, leanBuffered+10)
		switch r.URL.Path {
		case "/kvstore/get/big":
			copy(big, "<html><body>")
			_, _ = w.Write(big)
		case "/kvstore/get/small-then-big":
			_, _ = w.Write([]byte("hello worl"))
			_, _ = w.Write(big)
		case "/kvstore/get/small-then-small":
			_, _ = w.Write([]byte("hello worl"))
			_, _ = w.Write(big[:100])
		}
	}
	_, lean := startLean(t, leanTestServer(h))
	plain := startPlain(t, leanTestServer(h))
	for _, path := range []string{"big", "small-then-big", "small-then-small"} {
		raw := "GET /kvstore/get/" + path + " HTTP/1.1\r\nHost: h\r\n\r\n"
		if d := sameAsNetHTTP(t, lean, plain, raw); d != "" {
			t.Error(d)
		}
	}
}

// TestLeanReview3HeaderValues: the header's values, parsed as parts of one
// string with the first of each name in one shared array, are those
// net/http parses — trimmed of spaces and tabs, a name repeated between
// others keeping every value, Host out of the map — and a handler that adds
// to one name does not overwrite its neighbour's value (checks commit
// e69b450; it passed).
func TestLeanReview3HeaderValues(t *testing.T) {
	h := func(w http.ResponseWriter, r *http.Request) {
		r.Header.Add("A", "added")
		r.Header["B"] = append(r.Header["B"], "appended")
		var lines []string
		for k, vs := range r.Header {
			lines = append(lines, k+"="+strings.Join(vs, "|")+";")
		}
		sort.Strings(lines)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(r.Host + "\n" + strings.Join(lines, "\n")))
	}
	_, lean := startLean(t, leanTestServer(h))
	plain := startPlain(t, leanTestServer(h))
	for _, raw := range []string{
		"GET /kvstore/get/a HTTP/1.1\r\nA: 1\r\nHost: \t h:1 \t\r\nB:2\r\na: \t3\t \r\nC: \t\r\nB: 4 5 \r\nD:\r\nX-Request-Id:  id \r\n\r\n",
		"GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\nB: only\r\nA: x\r\nPragma: no-cache\r\n\r\n",
		"OPTIONS /kvstore/put HTTP/1.1\r\nHost: h\r\nOrigin: http://a.example\r\nAccess-Control-Request-Method: POST\r\n\r\n",
	} {
		if d := sameAsNetHTTP(t, lean, plain, raw); d != "" {
			t.Error(d)
		}
	}
}

// TestLeanReview3HandedBufferReadInBackground: a connection handed to
// net/http with more buffered than net/http's first read takes (a
// pipelined request past its 4 KiB reader) has net/http's background read
// take its byte from the lean loop's buffer while the handler runs, and
// the next request read the rest and drop the buffer: net/http reads the
// connection from one goroutine at a time, in order (the race detector
// watches handedConn.r; checks commit d6301e5; it passed).
func TestLeanReview3HandedBufferReadInBackground(t *testing.T) {
	_, lean := startLean(t, leanTestServer(leanEcho))
	plain := startPlain(t, leanTestServer(leanEcho))
	pad := strings.Repeat("p", 5000)
	raw := "PUT /kvstore/put HTTP/1.1\r\nHost: h\r\n\r\n" +
		"GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\nX-Pad: " + pad + "\r\n\r\n" +
		"GET /kvstore/get/b HTTP/1.1\r\nHost: h\r\n\r\n"
	if d := sameAsNetHTTP(t, lean, plain, raw); d != "" {
		t.Error(d)
	}
	if got := answers(t, exchange(t, lean, raw)); len(got) != 3 {
		t.Errorf("%d answers, want 3:\n%s", len(got), strings.Join(got, "\n"))
	}
}

// TestLeanReview3Preflight: CORS preflights through the browser policy —
// allowed, refused, same-origin, without Access-Control-Request-Method,
// with a body — get net/http's answers from the lean loop, and "OPTIONS *"
// (net/http's own OPTIONS handler) and an absolute target still go to
// net/http (checks commit 8625968; it passed).
func TestLeanReview3Preflight(t *testing.T) {
	mk := func() *http.Server {
		p := newBrowserPolicy([]string{"http://app.example"}, nil, []string{"h"})
		return leanTestServer(p.guard(http.HandlerFunc(leanEcho)).ServeHTTP)
	}
	_, lean := startLean(t, mk())
	plain := startPlain(t, mk())
	const pre = "OPTIONS /kvstore/put HTTP/1.1\r\nHost: h\r\n"
	for _, raw := range []string{
		pre + "Origin: http://app.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n",
		pre + "Origin: http://evil.example\r\nAccess-Control-Request-Method: POST\r\n\r\n",
		pre + "Origin: http://h\r\nAccess-Control-Request-Method: POST\r\n\r\n",
		pre + "Origin: http://app.example\r\n\r\n",
		pre + "Origin: http://app.example\r\nAccess-Control-Request-Method: POST\r\nContent-Length: 3\r\n\r\nabc" + pre + "\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n" + pre + "\r\n",
		"OPTIONS http://h/kvstore/put HTTP/1.1\r\nHost: h\r\n\r\n",
	} {
		if d := sameAsNetHTTP(t, lean, plain, raw); d != "" {
			t.Error(d)
		}
	}
}

// TestLeanReview3ParseMemory: a header of one name on every line of the
// 8 KiB buffer (a client's, to make the server allocate) costs the lean
// parse no more memory than net/http's reading of it. The map was sized
// for one name per line: 347 KB per request against net/http's 224 KB
// (150 KB before the header became one string).
func TestLeanReview3ParseMemory(t *testing.T) {
	raw := "GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\n" + strings.Repeat("a:\r\n", (leanReadBuffer-64)/4) + "\r\n"
	lean := testing.Benchmark(func(b *testing.B) {
		for range b.N {
			var p leanRequest
			if _, v := p.parse(bufio.NewReaderSize(strings.NewReader(raw), leanReadBuffer), 1<<20); v != leanServe {
				b.Fatal(v)
			}
		}
	})
	std := testing.Benchmark(func(b *testing.B) {
		for range b.N {
			if _, err := http.ReadRequest(bufio.NewReaderSize(strings.NewReader(raw), leanReadBuffer)); err != nil {
				b.Fatal(err)
			}
		}
	})
	if l, s := lean.AllocedBytesPerOp(), std.AllocedBytesPerOp(); l > s {
		t.Errorf("lean parse allocates %d bytes for %d header lines, net/http %d", l, (leanReadBuffer-64)/4, s)
	}
}

// TestLeanReview3PanicAfterWrite: handlers that panic after writing part of
// an answer (buffered, or sent under their Content-Length) close their
// connection without giving their pooled buffer and writer back; answers
// on other connections at the same time are whole and their own (checks
// commit 9cf374a; it passed).
func TestLeanReview3PanicAfterWrite(t *testing.T) {
	srv := leanTestServer(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, "/kvstore/get/")
		switch {
		case strings.HasPrefix(key, "panic-declared"):
			w.Header().Set("Content-Length", "100000")
			_, _ = w.Write(bytes.Repeat([]byte("P"), 9000))
			panic(http.ErrAbortHandler)
		case strings.HasPrefix(key, "panic"):
			_, _ = w.Write([]byte("PARTIAL"))
			panic(http.ErrAbortHandler)
		}
		_, _ = w.Write([]byte(strings.Repeat(key, 50)))
	})
	_, addr := startLean(t, srv)
	deadline := time.Now().Add(10 * time.Second)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20 && time.Now().Before(deadline); i++ {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					errs <- err.Error()
					return
				}
				_ = c.SetDeadline(deadline)
				key := fmt.Sprintf("k%d-%d", g, i)
				path := key
				switch i % 3 {
				case 1:
					path = "panic" + key
				case 2:
					path = "panic-declared" + key
				}
				_, _ = io.WriteString(c, "GET /kvstore/get/"+path+" HTTP/1.1\r\nHost: h\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if i%3 == 0 {
					if err != nil {
						errs <- key + ": " + err.Error()
					} else if body, _ := io.ReadAll(resp.Body); string(body) != strings.Repeat(key, 50) {
						errs <- fmt.Sprintf("%s: answer %.80q", key, body)
					}
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
