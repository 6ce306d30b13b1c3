package durio

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/twitchtv/twirp"
)

// A reader may hand over its last bytes together with io.EOF. readBody
// must still refuse a body longer than the limit then: its doc (and
// limitBody, which no longer wraps a declared-length body in a
// MaxBytesReader) rely on it.
func TestReview5ReadBodyLimitWhenDataComesWithEOF(t *testing.T) {
	body := strings.Repeat("x", 600)
	for _, declared := range []int64{10, 400, 500, 599, 600} {
		got, err := readBody(iotest.DataErrReader(strings.NewReader(body)), declared, 500)
		if err == nil {
			t.Errorf("declared %d: a %d-byte body passed a 500-byte limit (%d bytes read)", declared, len(body), len(got))
		}
	}
	// At the limit it is taken.
	got, err := readBody(iotest.DataErrReader(strings.NewReader(body[:500])), 500, 500)
	if err != nil || len(got) != 500 {
		t.Fatalf("a body at the limit: %d bytes, %v", len(got), err)
	}
}

// hostileWriteBodies are put/append bodies a browser or anything else on
// the client port may send.
var hostileWriteBodies = []string{
	`{"key":"\u0000","value":"v"}`,
	`{"key":"k\u0000k","value":"\u0000"}`,
	`{"key":"\ud83d\ude00","value":"v"}`,
	`{"key":"\ud800","value":"v"}`,
	`{"key":"\udc00\ud800","value":"v"}`,
	`{"key":"\ud800\u0041","value":"v"}`,
	`{"key":"k","value":"\/\b\f\n\r\t"}`,
	`{"key":"k","value":"v","key":"k2"}`,
	`{"key":"k","value":"v","value":"w"}`,
	`{"key":"k","value":"v","if_value":"a","if_value":"b"}`,
	`{"key":"k","value":"v","IF_VALUE":"b"}`,
	`{"key":"k","value":"v","Key":"K"}`,
	`{"key":"k","value":"v","clientId":1}`,
	`{"key":"k","value":"v","extra":{"a":[1,2,{"b":null}]}}`,
	`{"key":{"a":1},"value":"v"}`,
	`{"key":1,"value":"v"}`,
	`{"key":"k","value":["v"]}`,
	`{"key":"k","value":true}`,
	`{"key":"k","value":"v","sequence":"1","client_id":1}`,
	`{"key":"k","value":"v","sequence":1e2,"client_id":1}`,
	`{"key":"k","value":"v","sequence":1.5,"client_id":1}`,
	`{"key":"k","value":"v","sequence":-1,"client_id":1}`,
	`{"key":"k","value":"v","sequence":-0,"client_id":1}`,
	`{"key":"k","value":"v","sequence":18446744073709551615,"client_id":1}`,
	`{"key":"k","value":"v","sequence":18446744073709551616,"client_id":1}`,
	`{"key":"k","value":"v","sequence":99999999999999999999,"client_id":1}`,
	`{"key":"k","value":"v","ttl_ms":9999999999999999999}`,
	`{"key":"k","value":"v","client_id":00}`,
	`{"key":"k","value":"v","ack":0}`,
	`{"key":"k","value":"v","if_absent":null}`,
	`{"key":"k","value":"v","if_absent":"true"}`,
	`{"key":"k","value":"v","if_absent":True}`,
	`{"key":"k","value":"v","if_revision":null}`,
	`{"key":"k","value":"v","if_revision":1,"if_revision":null}`,
	`{"key":"k","value":"v","if_value":null}`,
	`{"key":null,"value":null}`,
	`{"key":"k"}`,
	`{"value":"v"}`,
	`{}`,
	`null`,
	`[]`,
	`"k"`,
	`123`,
	``,
	` `,
	`{`,
	`}`,
	`{"key":"k","value":"v"}}`,
	`{"key":"k","value":"v"}{"key":"k","value":"v"}`,
	`{"key":"k","value":"v"}` + "\x00",
	`{"key":"k","value":"v"}/**/`,
	`{"key":"k","value":"v"}` + "\n\r\t ",
	"\v{\"key\":\"k\",\"value\":\"v\"}",
	"\ufeff{\"key\":\"k\",\"value\":\"v\"}",
	`{"key":"k","value":"v" , }`,
	`{,"key":"k","value":"v"}`,
	`{"key":"k",,"value":"v"}`,
	`{"key" : "k" , "value" : "v"}`,
	`{"key":"k","value":"v","extra":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`,
	`{"key":"` + strings.Repeat("\\\\", 3000) + `","value":"v"}`,
	`{"key":"k","value":"` + "\u2028\u2029\ufffe\U0010ffff" + `"}`,
	`{"key":"k","value":"` + "\x7f" + `"}`,
	// Not UTF-8: refused before either reader.
	`{"key":"` + "\xff" + `","value":"v"}`,
	`{"key":"` + "\xc0\xaf" + `","value":"v"}`,
	`{"key":"` + "\xed\xa0\x80" + `","value":"v"}`,
	`{"key":"k","value":"` + "\xe2\x82" + `"}`,
}

// Every hostile body gets, through decodeWrite (fast reader first), the
// same answer as through encoding/json alone: status, error body, and
// the decoded write.
func TestReview5HostileWriteBodiesMatchEncodingJSON(t *testing.T) {
	slow := func(w http.ResponseWriter, r *http.Request) (restWrite, bool) {
		var body restWrite
		if !decodeJSON(w, r, &body, "a JSON object with key and value") {
			return body, false
		}
		switch {
		case body.Key == nil:
			writeError(w, twirp.RequiredArgumentError("key"))
			return body, false
		case body.Value == nil:
			writeError(w, twirp.RequiredArgumentError("value"))
			return body, false
		}
		return body, true
	}
	for _, body := range hostileWriteBodies {
		checkDecodeWriteFast(t, body)
		run := func(decode func(http.ResponseWriter, *http.Request) (restWrite, bool)) (restWrite, bool, int, string) {
			var got restWrite
			var ok bool
			h := limitBody(1<<20, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got, ok = decode(w, r)
			}))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/kv/k", strings.NewReader(body)))
			return got, ok, rec.Code, rec.Body.String()
		}
		fw, fok, fcode, fbody := run(decodeWrite)
		sw, sok, scode, sbody := run(slow)
		if fok != sok || fcode != scode || fbody != sbody || (fok && !reflect.DeepEqual(fw, sw)) {
			t.Errorf("%.80q:\nfast: ok %v %d %s %+v\njson: ok %v %d %s %+v", body, fok, fcode, fbody, fw, sok, scode, sbody, sw)
		}
	}
}

// rawExchange sends req on a new connection to addr, half-closes it if
// asked, and returns the first response's status line, or an error.
func rawExchange(t *testing.T, addr, req string, closeWrite bool) (string, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, req); err != nil {
		return "", err
	}
	if closeWrite {
		_ = c.(*net.TCPConn).CloseWrite()
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// A Content-Length that lies cannot make the server read more than the
// limit, hand a handler more (or fewer) bytes than declared, or hang past
// the server's read timeout.
func TestReview5LyingContentLength(t *testing.T) {
	const limit = 1024
	seen := make(chan int, 16)
	srv := httptest.NewUnstartedServer(limitBody(limit, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := bodyBytes(r)
		if err != nil {
			t.Error(err)
		}
		seen <- len(b)
		w.WriteHeader(http.StatusNoContent)
	})))
	srv.Config.ReadTimeout = time.Second
	srv.Start()
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	head := func(n int) string {
		return fmt.Sprintf("POST /kv/k HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", n)
	}

	// Declared over the limit: 413 at once, whatever follows.
	line, err := rawExchange(t, addr, head(limit+1)+strings.Repeat("x", 10), false)
	if err != nil || !strings.Contains(line, " 413 ") {
		t.Errorf("declared over the limit: %q, %v", line, err)
	}
	// Declared under what is sent: the handler gets the declared bytes
	// only; the rest is read as the next request (and refused as one).
	line, err = rawExchange(t, addr, head(10)+strings.Repeat("y", 4*limit), true)
	if err != nil || !strings.Contains(line, " 204 ") {
		t.Errorf("declared under what is sent: %q, %v", line, err)
	}
	select {
	case n := <-seen:
		if n != 10 {
			t.Errorf("handler saw %d bytes, declared 10", n)
		}
	case <-time.After(10 * time.Second):
		t.Error("handler not called")
	}
	// Declared over what is sent, then the client goes quiet: the read
	// ends at the server's read timeout (a 400 or a closed connection),
	// the handler never sees a short body.
	start := time.Now()
	line, _ = rawExchange(t, addr, head(limit)+strings.Repeat("z", 10), false)
	if strings.Contains(line, " 204 ") {
		t.Errorf("a short body was handed to the handler: %q", line)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("the server held a short body for %v", d)
	}
	// Declared over what is sent, then the client half-closes: refused.
	line, _ = rawExchange(t, addr, head(limit)+strings.Repeat("z", 10), true)
	if strings.Contains(line, " 204 ") {
		t.Errorf("a truncated body was handed to the handler: %q", line)
	}
	// Chunked, over the limit: 413.
	chunk := strings.Repeat("c", limit+1)
	req := "POST /kv/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(chunk), chunk)
	line, err = rawExchange(t, addr, req, false)
	if err != nil || !strings.Contains(line, " 413 ") {
		t.Errorf("chunked over the limit: %q, %v", line, err)
	}
	// At the limit exactly: taken.
	line, err = rawExchange(t, addr, head(limit)+strings.Repeat("a", limit), false)
	if err != nil || !strings.Contains(line, " 204 ") {
		t.Errorf("at the limit: %q, %v", line, err)
	}
	for len(seen) > 0 {
		if n := <-seen; n > limit {
			t.Errorf("handler saw %d bytes over a %d limit", n, limit)
		}
	}
}
