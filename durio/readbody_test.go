package durio

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// readBody returns the whole body whatever the declared length says and
// however the reader splits it, and the handler after limitBody gets those
// bytes without reading the body a second time.
func TestReadBody(t *testing.T) {
	body := strings.Repeat("0123456789", 100)
	for _, declared := range []int64{-1, 0, 10, int64(len(body)), int64(len(body)) + 5} {
		got, err := readBody(iotest.OneByteReader(strings.NewReader(body)), declared, 4096)
		if err != nil || string(got) != body {
			t.Fatalf("declared %d: %d bytes, %v", declared, len(got), err)
		}
	}
	// A body longer than declared is refused at the limit all the same.
	if _, err := readBody(strings.NewReader(body), 10, 500); err == nil {
		t.Fatal("a 1000-byte body declared as 10 passed a 500-byte limit")
	}
	var seen []byte
	h := limitBody(4096, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var err error
		if seen, err = bodyBytes(r); err != nil {
			t.Error(err)
		}
		again, err := bodyBytes(r)
		if err != nil || !bytes.Equal(again, seen) {
			t.Errorf("second bodyBytes: %q, %v", again, err)
		}
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/kvstore/put", strings.NewReader(body)))
	if string(seen) != body {
		t.Fatalf("handler saw %d bytes, want %d", len(seen), len(body))
	}
}

// A client that sends its body slowly holds no in-flight slot: the body is
// read first. It took one until --read-timeout, so 512 connections with a
// partial body made the replica answer 503 to every other request.
func TestSlowBodyHoldsNoInflightSlot(t *testing.T) {
	limits := DefaultLimits()
	limits.MaxInflight = 1
	inner := clientHandler(&mapKV{m: map[string]string{}}, limits, nil)
	started := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			started <- struct{}{}
		}
		inner.ServeHTTP(w, r)
	}))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /kvstore/put HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{\"key\":")
	<-started
	for i := range 20 {
		if code, body := do(t, "GET", srv.URL+"/kvstore/get/k", ""); code != http.StatusNotFound {
			t.Fatalf("get %d while a body arrives slowly, with --max-inflight 1: %d %v", i, code, body)
		}
	}

}

// A body declared large is not allocated in full before its bytes arrive
// (the body is read before the request takes an in-flight slot).
func TestReadBodyGrowsAsBytesArrive(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got, err := readBody(strings.NewReader(`{"key":`), 1<<20, 1<<20)
	runtime.ReadMemStats(&after)
	if err != nil || string(got) != `{"key":` {
		t.Fatalf("readBody: %q, %v", got, err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 2*readBodyFirst {
		t.Fatalf("a body declared as 1 MiB that sent 7 bytes took %d bytes", n)
	}
}
