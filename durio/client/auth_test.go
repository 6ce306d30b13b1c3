package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/durio"
	"github.com/ruaft/ruaft/durio/client"
	"github.com/ruaft/ruaft/durio/duriotest"
)

// Options.Token reaches every kind of request, and a refusal ends a call
// at once with ErrRejected and the server's Twirp code, never a retry.
func TestClientToken(t *testing.T) {
	const read, write = "r-0123456789abcdef", "w-0123456789abcdef"
	authFile := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(authFile, []byte("read "+read+"\nwrite "+write+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := duriotest.StartOneWith(t, func(cfg *durio.Config) { cfg.ClientAuthFile = authFile })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(token string) *client.Client {
		t.Helper()
		// Two endpoints, the second down: a refusal must not send the
		// call there (and wait out its attempt).
		c, err := client.New([]string{base, "127.0.0.1:1"}, client.Options{Token: token, AttemptTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	code := func(err error) twirp.ErrorCode {
		var terr twirp.Error
		if errors.As(err, &terr) {
			return terr.Code()
		}
		return ""
	}
	refused := func(what string, err error, want twirp.ErrorCode, start time.Time) {
		t.Helper()
		if !errors.Is(err, client.ErrRejected) || code(err) != want {
			t.Errorf("%s: %v, want ErrRejected with %s", what, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), read) || strings.Contains(err.Error(), write)) {
			t.Errorf("%s: the error shows a token: %v", what, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s took %v: a refusal was retried", what, d)
		}
	}

	writer := dial(write)
	if err := writer.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	reader := dial(read)
	if v, err := reader.Get(ctx, "k"); err != nil || v != "v" {
		t.Fatalf("get with the read token: %q %v", v, err)
	}
	start := time.Now()
	refused("put with the read token", reader.Put(ctx, "k", "w"), twirp.PermissionDenied, start)
	start = time.Now()
	_, err := dial("").Get(ctx, "k")
	refused("get without a token", err, twirp.Unauthenticated, start)
	start = time.Now()
	_, err = dial("x-0123456789abcdef").Get(ctx, "k")
	refused("get with an unknown token", err, twirp.Unauthenticated, start)

	// Streams: the token goes with them too; a refused one ends at once.
	got := make(chan client.Event, 4)
	sctx, scancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- reader.FollowStream(sctx, "k", false, 0, func(ev client.Event) error {
			got <- ev
			return nil
		})
	}()
	if err := writer.Put(ctx, "k", "streamed"); err != nil {
		t.Fatal(err)
	}
	for streamed := false; !streamed; {
		select {
		case ev := <-got:
			streamed = ev.KV.Value == "streamed"
		case err := <-done:
			t.Fatalf("the stream ended: %v", err)
		case <-ctx.Done():
			t.Fatal("no event on the stream")
		}
	}
	scancel()
	<-done
	start = time.Now()
	err = dial("").FollowStream(ctx, "k", false, 0, func(client.Event) error { return nil })
	if !errors.Is(err, client.ErrRejected) || time.Since(start) > 3*time.Second {
		t.Errorf("a stream without a token: %v after %v", err, time.Since(start))
	}

	for _, bad := range []string{"with space-0123456789", "line\nbreak-012345678", "tab\t0123456789abcdef"} {
		if _, err := client.New([]string{base}, client.Options{Token: bad}); err == nil || strings.Contains(err.Error(), bad) {
			t.Errorf("token %q: %v", bad, err)
		}
	}
}

// A token never follows a redirect to another origin (the redirect is
// followed without it, as net/http does with its own headers).
func TestWithTokenKeepsTheTokenHome(t *testing.T) {
	const token = "t-0123456789abcdef"
	var leaked atomic.Value
	leaked.Store("")
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Store(r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusOK)
	}))
	defer other.Close()
	home := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, other.URL+"/x", http.StatusTemporaryRedirect)
		case "/here":
			http.Redirect(w, r, "/landed", http.StatusTemporaryRedirect)
		case "/landed":
			if r.Header.Get("Authorization") != "Bearer "+token {
				t.Errorf("a same-origin redirect lost the token")
			}
		}
	}))
	defer home.Close()
	hc, err := client.WithToken(&http.Client{Timeout: 5 * time.Second}, token)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(home.URL + "/away")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || leaked.Load() != "" {
		t.Errorf("cross-origin redirect: status %d, the other server got %q", resp.StatusCode, leaked.Load())
	}
	resp, err = hc.Get(home.URL + "/here")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("same-origin redirect: %d", resp.StatusCode)
	}
	if _, err := client.WithToken(http.DefaultClient, ""); err == nil {
		t.Error("an empty token was accepted")
	}
}
