package durio

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Bugs a second review found in the lean loop; each test fails without its
// fix. Helpers: lean_test.go and lean_review_test.go.

// TestLeanReview2HostBytes: leanHost took any token byte, but '#', '^', '`'
// and '|' are tokens and not Host bytes: net/http answers such a Host with
// 400 (httpguts.ValidHostHeader), the lean loop served the request, with
// r.Host as given, to the browser policy's host checks.
func TestLeanReview2HostBytes(t *testing.T) {
	_, lean := startLean(t, leanTestServer(leanEcho))
	plain := startPlain(t, leanTestServer(leanEcho))
	for _, host := range []string{"a|b", "a#b", "a^b", "a`b", "127.0.0.1|evil"} {
		raw := "GET /kvstore/get/a HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
		want := answers(t, exchange(t, plain, raw))
		if len(want) != 1 || !strings.HasPrefix(want[0], "400 ") {
			t.Fatalf("Host %q: net/http answered %q (the case tests nothing)", host, want)
		}
		sameAnswers(t, answers(t, exchange(t, lean, raw)), want)
	}
}

// TestLeanReview2NegativeZeroLength: strconv.ParseInt takes a sign, and only
// '+' was refused: "Content-Length: -0" was served as a body of 0 bytes,
// and the bytes after it as the next request; net/http refuses the length
// (400) and closes the connection.
func TestLeanReview2NegativeZeroLength(t *testing.T) {
	raw := "POST /kvstore/put HTTP/1.1\r\nHost: h\r\nContent-Length: -0\r\n\r\nGET /kvstore/get/b HTTP/1.1\r\nHost: h\r\n\r\n"
	got, want := leanVsPlain(t, func() *http.Server { return leanTestServer(leanEcho) }, raw)
	if len(want) != 1 || !strings.HasPrefix(want[0], "400 ") {
		t.Fatalf("net/http answered %q (the case tests nothing)", want)
	}
	sameAnswers(t, got, want)
}

// TestLeanReview2UnreadBodyAtLimit: net/http closes the connection when
// the handler left 256 KiB or more of the body unread; the lean loop read
// past exactly 256 KiB and served the next request.
func TestLeanReview2UnreadBodyAtLimit(t *testing.T) {
	raw := "POST /kvstore/put?size=1&skip HTTP/1.1\r\nHost: h\r\nContent-Length: 262144\r\n\r\n" +
		strings.Repeat("u", 256<<10) + "GET /kvstore/get/z HTTP/1.1\r\nHost: h\r\n\r\n"
	got, want := leanVsPlain(t, func() *http.Server { return leanTestServer(leanEcho) }, raw)
	if len(want) != 1 {
		t.Fatalf("net/http gave %d answers (the case tests nothing)", len(want))
	}
	sameAnswers(t, got, want)
}

// saysClose reports whether the first answer in raw carries
// "Connection: close" (http.ReadResponse keeps it out of the header).
func saysClose(t *testing.T, raw []byte) bool {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		t.Fatalf("%.200q: %v", raw, err)
	}
	resp.Body.Close()
	return resp.Close
}

// TestLeanReview2DeclaredAnswerSaysClose: an answer with the handler's own
// Content-Length (Twirp's) has its header written at the first Write, and
// the unread body was judged after the handler: the lean loop closed the
// connection without saying so in the answer, and a client could send its
// next request on a connection about to close. net/http judges the body
// when it sends the header and says "Connection: close".
func TestLeanReview2DeclaredAnswerSaysClose(t *testing.T) {
	raw := "POST /kvstore/put?size=1&skip&declare HTTP/1.1\r\nHost: h\r\nContent-Length: 300000\r\n\r\n" +
		strings.Repeat("u", 300000) + "GET /kvstore/get/z HTTP/1.1\r\nHost: h\r\n\r\n"
	_, lean := startLean(t, leanTestServer(leanEcho))
	plain := startPlain(t, leanTestServer(leanEcho))
	if !saysClose(t, exchange(t, plain, raw)) {
		t.Fatal("net/http's answer does not say Connection: close (the case tests nothing)")
	}
	out := exchange(t, lean, raw)
	if !saysClose(t, out) {
		t.Errorf("the lean loop closes after an answer that does not say so: %.300q", out)
	}
	if len(answers(t, out)) != 1 {
		t.Errorf("answers after the unread body: %q", answers(t, out))
	}
}

// TestLeanReview2CloseDoesNotWaitForBody: a request with "Connection:
// close" whose handler answers without reading the body gets its answer at
// once from net/http (the body is not read: the connection closes); the
// lean loop first waited for the rest of the body, up to ReadTimeout.
func TestLeanReview2CloseDoesNotWaitForBody(t *testing.T) {
	mk := func() *http.Server {
		s := leanTestServer(leanEcho)
		s.ReadTimeout = 20 * time.Second
		return s
	}
	_, lean := startLean(t, mk())
	plain := startPlain(t, mk())
	for _, addr := range []string{plain, lean} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// 100 KB declared, 10 sent: the client waits for the answer.
		_, _ = io.WriteString(c, "POST /kvstore/put?skip HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 100000\r\n\r\n0123456789")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			if addr == plain {
				t.Fatalf("net/http: %v (the case tests nothing)", err)
			}
			t.Fatalf("no answer within 5 s while the body is still to come: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !resp.Close {
			t.Errorf("lean=%v: status %d, close %v", addr == lean, resp.StatusCode, resp.Close)
		}
	}
}

// TestLeanReview2TruncatedRequest: a client that sends part of a request
// and ends its side of the connection gets net/http's 400; the lean loop
// closed the connection without an answer.
func TestLeanReview2TruncatedRequest(t *testing.T) {
	_, lean := startLean(t, leanTestServer(leanEcho))
	plain := startPlain(t, leanTestServer(leanEcho))
	for _, raw := range []string{
		"GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\n",
		"GET /kvstore/get/a HTTP/1.1",
		"GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\n\r\nGET /kvstore/get/b HTTP/1.1\r\nHo",
		"POST /kvstore/put HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx\r\nGET /kvs",
	} {
		want := answers(t, exchange(t, plain, raw))
		if len(want) == 0 || !strings.HasPrefix(want[len(want)-1], "400 ") {
			t.Fatalf("%q: net/http answered %q (the case tests nothing)", raw, want)
		}
		got := answers(t, exchange(t, lean, raw))
		if len(got) != len(want) {
			t.Errorf("%q: %d answers, net/http gave %d: %q", raw, len(got), len(want), got)
			continue
		}
		sameAnswers(t, got, want)
	}
	// A connection that ends without a byte, after the CR LF an old
	// client sends after a POST, or with fewer than 4 bytes after a
	// request (net/http waits for 4 before reading one), closes without
	// an answer.
	for _, raw := range []string{
		"",
		"POST /kvstore/put HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx\r\n",
		"GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\n\r\n\r\n ",
		"GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\n\r\nGET",
	} {
		got, want := answers(t, exchange(t, lean, raw)), answers(t, exchange(t, plain, raw))
		sameAnswers(t, got, want)
	}
}

// TestLeanReview2PragmaNoCache: net/http gives a request with "Pragma:
// no-cache" and no Cache-Control a "Cache-Control: no-cache" (RFC 7234
// section 5.4); the lean loop's request did not have it.
func TestLeanReview2PragmaNoCache(t *testing.T) {
	h := func(w http.ResponseWriter, r *http.Request) {
		w.Header()["X-Cache-Control"] = r.Header["Cache-Control"]
		_, lean := w.(*leanWriter)
		w.Header().Set("X-Lean", "false")
		if lean {
			w.Header().Set("X-Lean", "true")
		}
	}
	raw := "GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\nPragma: no-cache\r\n\r\n" +
		"GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\nPragma: no-cache\r\nCache-Control: max-age=1\r\n\r\n"
	_, lean := startLean(t, leanTestServer(h))
	plain := startPlain(t, leanTestServer(h))
	out := exchange(t, lean, raw)
	if !bytes.Contains(out, []byte("X-Lean: true")) {
		t.Fatalf("not served by the lean loop: %q", out)
	}
	sameAnswers(t, answers(t, out), answers(t, exchange(t, plain, raw)))
}

// TestLeanReview2NoBodyStatuses: net/http sends no Content-Type with a 304,
// and keeps the connection after a 204 or 304 whose handler declared a
// Content-Length (no body is sent: none is short); the lean loop sent the
// handler's Content-Type and closed the connection as after a short body.
func TestLeanReview2NoBodyStatuses(t *testing.T) {
	raw := "GET /kvstore/get/a?status=304 HTTP/1.1\r\nHost: h\r\n\r\n" +
		"GET /kvstore/get/a?status=204&size=10&declare HTTP/1.1\r\nHost: h\r\n\r\n" +
		"GET /kvstore/get/a?status=304&size=10&declare HTTP/1.1\r\nHost: h\r\n\r\n" +
		"GET /kvstore/get/b HTTP/1.1\r\nHost: h\r\n\r\n"
	got, want := leanVsPlain(t, func() *http.Server { return leanTestServer(leanEcho) }, raw)
	if len(want) != 4 {
		t.Fatalf("net/http gave %d answers (the case tests nothing)", len(want))
	}
	sameAnswers(t, got, want)
}
