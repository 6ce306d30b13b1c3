package cli

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ruaft/ruaft/durio/client"
	"github.com/ruaft/ruaft/durio/duriotest"
)

// A put --keep-alive whose put times out after it applied (its answer held
// back by a proxy until the command gives up) revokes the lease it was
// granted: the key does not outlive the command by the lease's TTL. The
// command still exits as a timed-out write does.
func TestPutKeepAliveRevokesTheLeaseOfAFailedPut(t *testing.T) {
	base := duriotest.StartOne(t)
	target, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/kv.v1.KVService/Put") {
			rp.ServeHTTP(w, r)
			return
		}
		rp.ServeHTTP(httptest.NewRecorder(), r)
		<-r.Context().Done() // the command gave up on the answer
	}))
	defer proxy.Close()

	var out, errOut bytes.Buffer
	// --ttl far beyond the test: a lease left behind keeps the key.
	code := Main(context.Background(), []string{"put", "held", "v", "--ttl", "5m", "--keep-alive", "--endpoints", proxy.URL, "--timeout", "2s"},
		strings.NewReader(""), &out, &errOut)
	if code != ExitTimeout {
		t.Fatalf("put with its answer held back: exit %d, want %d; output %q %q", code, ExitTimeout, out.String(), errOut.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.New([]string{base}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	kv, _, err := cl.GetKV(ctx, "held")
	if !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("the key after its put --keep-alive failed: %+v %v, want not found (its lease revoked)", kv, err)
	}
}
