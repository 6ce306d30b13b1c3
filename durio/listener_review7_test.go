package durio

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestReview7HugeHeadersRefused sends a header block far over
// --max-header-bytes to both listeners (their connections read with raw
// system calls, package rawconn): the answer is 431 and the connection is
// closed, and the next connection is served.
func TestReview7HugeHeadersRefused(t *testing.T) {
	r := startOne(t, func(cfg *Config) { cfg.MaxHeaderBytes = 4 << 10 })
	for _, tc := range []struct{ name, addr string }{{"client", r.ClientAddr()}, {"peer", r.PeerAddr()}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			go func() {
				_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 256<<10)+"\r\n\r\n")
			}()
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer to a huge header: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Fatalf("status %d, want 431", resp.StatusCode)
			}
			c2, err := net.Dial("tcp", tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close()
			_ = c2.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = io.WriteString(c2, "GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n\r\n")
			if resp, err := http.ReadResponse(bufio.NewReader(c2), nil); err != nil {
				t.Fatalf("next connection: %v", err)
			} else {
				resp.Body.Close()
			}
		})
	}
}
