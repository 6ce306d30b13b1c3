package client_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ruaft/ruaft/durio/client"
)

// Review of the client authentication (commit 81b44af): tokens must not
// follow a redirect to another host.
//
// net/http drops Authorization when it follows a redirect to another host
// (shouldCopyHeaderOnRedirect). WithToken sets the header in its
// RoundTripper, which runs for every hop, the redirected ones included, so
// the token is re-sent to whatever host a Location names. The Twirp calls
// are safe (the generated clients refuse redirects), but every plain
// http.Client.Do through a WithToken client follows them: the Go client's
// watch streams (FollowStream), `durio snapshot save` (backup.Save, with an
// admin token) and any caller of the exported WithToken.

const reviewToken = "review-0123456789abcdef"

// redirectPair starts the endpoint the client is given (it answers every
// request with a 307 to another host name) and the other host, which
// records the Authorization headers it receives. The other host is named
// other-host.invalid; the returned client dials 127.0.0.1 whatever the
// name, so nothing leaves the machine.
func redirectPair(t *testing.T) (endpoint string, hc *http.Client, seen func() []string) {
	t.Helper()
	var mu sync.Mutex
	var auths []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"code":"unauthenticated","msg":"captured"}`))
	}))
	t.Cleanup(other.Close)
	_, otherPort, _ := net.SplitHostPort(other.Listener.Addr().String())
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://other-host.invalid:"+otherPort+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	t.Cleanup(first.Close)
	d := &net.Dialer{Timeout: 2 * time.Second}
	hc = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
		},
	}}
	t.Cleanup(hc.CloseIdleConnections)
	return first.URL, hc, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), auths...)
	}
}

func checkNotLeaked(t *testing.T, seen []string) {
	t.Helper()
	if len(seen) == 0 {
		t.Fatal("the redirect was not followed at all; the test did not exercise anything")
	}
	for _, a := range seen {
		if strings.Contains(a, reviewToken) {
			t.Fatalf("the token was sent to the host a redirect named: Authorization %q", a)
		}
	}
}

// Baseline: a header set on the request is dropped by net/http on a
// cross-host redirect (this passes; it shows what WithToken defeats).
func TestReviewBaselineStdlibDropsAuthorizationOnCrossHostRedirect(t *testing.T) {
	endpoint, hc, seen := redirectPair(t)
	req, _ := http.NewRequest(http.MethodGet, endpoint+"/admin/snapshot", nil)
	req.Header.Set("Authorization", "Bearer "+reviewToken)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	checkNotLeaked(t, seen())
}

// Failed on 81b44af (fixed since): WithToken re-sends the token to the redirect's host.
func TestReviewWithTokenNotSentAcrossHostRedirect(t *testing.T) {
	endpoint, hc, seen := redirectPair(t)
	authed, err := client.WithToken(hc, reviewToken)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := authed.Get(endpoint + "/admin/snapshot")
	if err == nil {
		resp.Body.Close()
	}
	checkNotLeaked(t, seen())
}

// Failed on 81b44af (fixed since): a Client with Options.Token sends its token to the host
// a replica's (or a proxy's) redirect names when it opens a watch stream.
func TestReviewFollowStreamTokenNotSentAcrossHostRedirect(t *testing.T) {
	endpoint, hc, seen := redirectPair(t)
	c, err := client.New([]string{endpoint}, client.Options{HTTPClient: hc, Token: reviewToken})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	// The other host answers 401, which ends FollowStream at once.
	_ = c.FollowStream(ctx, "k", false, 1, func(client.Event) error { return nil })
	checkNotLeaked(t, seen())
}
