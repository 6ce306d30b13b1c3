// Package duriotest starts durio replicas in process for the tests of the
// packages built around the replica (durio/cli, durio/backup), as httptest
// does for HTTP servers. Production code does not import it.
package duriotest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/ruaft/ruaft/durio"
	"github.com/ruaft/ruaft/durio/client"
	"github.com/ruaft/ruaft/persist"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// StartOne starts a one-member replica in process (noop store, loopback
// ports chosen by the kernel, data in a test folder), waits until it leads,
// and returns its client URL. The test's cleanup closes it.
func StartOne(t testing.TB) string {
	t.Helper()
	return StartOneWith(t, nil)
}

// StartOneWith is StartOne with the configuration changed by edit first
// (nil changes nothing). With ClientAuthFile set, the wait for leadership
// sends the file's first token.
func StartOneWith(t testing.TB, edit func(*durio.Config)) string {
	t.Helper()
	cfg := durio.DefaultConfig()
	cfg.Peers = []string{"http://127.0.0.1:0"}
	cfg.ListenPeer, cfg.ListenClient = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	hc := http.DefaultClient
	if edit != nil {
		edit(&cfg)
	}
	if cfg.ClientAuthFile != "" {
		token, err := durio.FirstClientToken(cfg.ClientAuthFile)
		if err == nil {
			hc, err = client.WithToken(hc, token)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	r, err := durio.StartReplica(cfg, persist.NewNoop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	base := "http://" + r.ClientAddr()
	kv := kvv1.NewKVServiceJSONClient(base, hc)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := kv.Status(context.Background(), &kvv1.StatusRequest{})
		if err == nil && st.GetRole() == kvv1.Role_ROLE_LEADER {
			return base
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader after 10s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
