package durio

import (
	"bytes"
	"net/http"
	"net/http/httptest"
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
