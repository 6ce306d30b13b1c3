package backup_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ruaft/ruaft/durio/backup"
	"github.com/ruaft/ruaft/durio/client"
)

// Review of the client authentication (commit 81b44af). Failed on it (fixed since):
// `durio snapshot save --token-file` (backup.Save over a client.WithToken
// client) sends its admin token to the host a redirect names. net/http
// would drop a request's own Authorization header on a cross-host
// redirect; WithToken's RoundTripper adds it again on every hop. Nothing
// leaves 127.0.0.1: the client dials it whatever the host name.
func TestReviewSnapshotSaveAdminTokenNotSentAcrossHostRedirect(t *testing.T) {
	const token = "admin-0123456789abcdef"
	var mu sync.Mutex
	var seen []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"code":"permission_denied","msg":"captured"}`))
	}))
	defer other.Close()
	_, otherPort, _ := net.SplitHostPort(other.Listener.Addr().String())
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://other-host.invalid:"+otherPort+r.URL.RequestURI(), http.StatusFound)
	}))
	defer first.Close()
	d := &net.Dialer{Timeout: 2 * time.Second}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
	}}}
	defer hc.CloseIdleConnections()
	authed, err := client.WithToken(hc, token)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = backup.Save(ctx, authed, []string{first.URL}, filepath.Join(t.TempDir(), "snap.durio"))
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("the redirect was not followed; the test exercised nothing")
	}
	for _, a := range seen {
		if strings.Contains(a, token) {
			t.Fatalf("the admin token went to the redirect's host: Authorization %q", a)
		}
	}
}
