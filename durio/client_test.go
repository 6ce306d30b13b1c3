package durio

import (
	"context"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twitchtv/twirp"

	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// A dead first endpoint must not stop the client: Twirp reports the refused
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
	c, err := NewClient([]string{dead, srv.URL}, ClientOptions{})
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
	// The frontend treats a dead peer the same way.
	self := &scriptedKV{putErr: twirp.NewError(twirp.Unavailable, "not the leader").WithMeta("leader_id", "1")}
	f := newFrontend(self, kvv1.NewKVServiceProtobufClient(dead, newPeerHTTPClient()))
	_, err = f.Put(context.Background(), &kvv1.PutRequest{Key: "k", Value: "v"})
	if code(err) != twirp.Unavailable {
		t.Fatalf("frontend with a dead leader: %v, want unavailable (503: the write never reached a leader)", err)
	}
	if len(self.seen) < 2 {
		t.Fatalf("the frontend gave up after %d tries", len(self.seen))
	}
}
