package durio

import (
	"context"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ruaft/ruaft/durio/client"
)

// A dead first endpoint must not stop the Go client (against the client
// listener's handler): Twirp reports the refused
// connection as an "internal" error, which is not an answer from a server.
func TestClientSkipsDeadEndpoint(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	srv := httptest.NewServer(clientHandler(&mapKV{m: map[string]string{}}, DefaultLimits(), nil))
	defer srv.Close()
	c, err := client.New([]string{dead, srv.URL}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 3 {
		if err := c.Put(ctx, "k", "v"); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if got, err := c.Get(ctx, "k"); err != nil || got != "v" {
		t.Fatalf("get: %q %v", got, err)
	}
}
