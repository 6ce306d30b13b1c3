package cli

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ruaft/ruaft/durio"
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

// --token-file reaches the replicas on every kind of command, and a
// refusal is exit code 8 with a hint, not a retry until --timeout.
func TestCLIToken(t *testing.T) {
	dir := t.TempDir()
	const read, write, admin, scoped = "r-0123456789abcdef", "w-0123456789abcdef", "a-0123456789abcdef", "p-0123456789abcdef"
	authFile := filepath.Join(dir, "tokens")
	files := map[string]string{authFile: "read " + read + "\nwrite " + write + "\nadmin " + admin + "\nwrite " + scoped + " app/\n"}
	for _, tok := range []string{read, write, admin, scoped} {
		files[filepath.Join(dir, tok[:1])] = tok + "\n"
	}
	files[filepath.Join(dir, "bad")] = "two words\n"
	for name, content := range files {
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := duriotest.StartOneWith(t, func(cfg *durio.Config) { cfg.ClientAuthFile = authFile })
	run := func(args ...string) (int, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		args = append(args, "--endpoints", base, "--timeout", "10s")
		start := time.Now()
		code := Main(context.Background(), args, strings.NewReader(""), &out, &errOut)
		if time.Since(start) > 5*time.Second {
			t.Errorf("%v took %v", args, time.Since(start))
		}
		return code, out.String() + errOut.String()
	}
	tokenOf := func(role string) string { return "--token-file=" + filepath.Join(dir, role) }
	for _, c := range []struct {
		args []string
		want int
		text string
	}{
		{[]string{"put", "k", "v"}, ExitUnauthorized, "--token-file"},
		{[]string{"put", "k", "v", tokenOf("r")}, ExitUnauthorized, "higher role"},
		{[]string{"put", "k", "v", tokenOf("p")}, ExitUnauthorized, "limited to a key prefix"},
		{[]string{"put", "app/k", "v", tokenOf("p")}, ExitOK, ""},
		{[]string{"put", "k", "v", "--token-file=" + filepath.Join(dir, "bad")}, ExitUsage, "printable ASCII"},
		{[]string{"put", "k", "v", tokenOf("w")}, ExitOK, ""},
		{[]string{"get", "k", tokenOf("r")}, ExitOK, "v"},
		{[]string{"member", "list", tokenOf("r")}, ExitOK, "voter"},
		{[]string{"member", "remove", "5", tokenOf("w")}, ExitUnauthorized, "higher role"},
		{[]string{"snapshot", "save", filepath.Join(dir, "snap"), tokenOf("w")}, ExitUnauthorized, ""},
		{[]string{"snapshot", "save", filepath.Join(dir, "snap"), tokenOf("a")}, ExitOK, ""},
	} {
		code, out := run(c.args...)
		if code != c.want || !strings.Contains(out, c.text) {
			t.Errorf("durio %s: exit %d, want %d; output %q", strings.Join(c.args, " "), code, c.want, out)
		}
		for _, tok := range []string{read, write, admin} {
			if strings.Contains(out, tok) {
				t.Errorf("durio %s shows a token: %q", strings.Join(c.args, " "), out)
			}
		}
	}
}

// durio token makes lines a replica accepts, with tokens that work.
func TestCLITokenCommand(t *testing.T) {
	dir := t.TempDir()
	gen := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), append([]string{"token"}, args...), strings.NewReader(""), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	var lines []string
	for _, args := range [][]string{{"--role", "write", "--prefix", "app/"}, {}} {
		code, out := gen(args...)
		if code != ExitOK || !regexp.MustCompile(`^(write|read) [0-9a-f]{32}( app/)?\n$`).MatchString(out) {
			t.Fatalf("durio token %v: exit %d, %q", args, code, out)
		}
		lines = append(lines, out)
	}
	if _, a := gen("--role", "write"); strings.Contains(lines[0], strings.Fields(a)[1]) {
		t.Fatal("two runs made the same token")
	}
	for _, args := range [][]string{{"--role", "root"}, {"--role", "admin", "--prefix", "x/"}, {"--prefix", "a b"}, {"extra"}} {
		if code, out := gen(args...); code != ExitUsage {
			t.Errorf("durio token %v: exit %d, %q", args, code, out)
		}
	}
	authFile := filepath.Join(dir, "tokens")
	if err := os.WriteFile(authFile, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	writeFile := filepath.Join(dir, "w")
	if err := os.WriteFile(writeFile, []byte(strings.Fields(lines[0])[1]), 0o600); err != nil {
		t.Fatal(err)
	}
	base := duriotest.StartOneWith(t, func(cfg *durio.Config) { cfg.ClientAuthFile = authFile })
	for key, want := range map[string]int{"app/k": ExitOK, "other": ExitUnauthorized} {
		var out bytes.Buffer
		if code := Main(context.Background(), []string{"put", key, "v", "--token-file", writeFile, "--endpoints", base},
			strings.NewReader(""), &out, &out); code != want {
			t.Errorf("put %s with the generated app/ token: exit %d, want %d: %s", key, code, want, out.String())
		}
	}
}
