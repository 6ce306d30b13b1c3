// Package duriotest starts durio replicas in process for the tests of the
// packages built around the replica (durio/cli, durio/backup), as httptest
// does for HTTP servers. Production code does not import it.
package duriotest

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ruaft/ruaft/durio"
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
// (nil changes nothing). With ClientAuthFile set, the file must hold a
// read token, and the wait for leadership sends the first one it finds.
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
		data, err := os.ReadFile(cfg.ClientAuthFile)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(f[0], "#") {
				hc = &http.Client{Transport: bearer("Bearer " + f[1])}
				break
			}
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

// bearer sends its Authorization header with every request.
type bearer string

func (b bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", string(b))
	return http.DefaultTransport.RoundTrip(req)
}
