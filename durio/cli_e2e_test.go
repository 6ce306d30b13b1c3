package durio_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/internal/freeport"
	"github.com/ruaft/ruaft/kvraft"
)

// cliResult is what one run of the durio binary printed and returned.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs the built durio binary with args, extra environment variables
// (KEY=VALUE) and stdin, bounded by a minute.
func runCLI(t *testing.T, env []string, stdin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, durioBin, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	default:
		t.Fatalf("durio %q: %v", args, err)
	}
	return res
}

// cleanEnv is this process's environment without DURIO_* variables, so a
// developer's own settings cannot change what the tests see.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DURIO_") {
			env = append(env, kv)
		}
	}
	return env
}

func (r cliResult) expect(t *testing.T, code int, args ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("durio %q: exit %d, want %d\nstdout: %s\nstderr: %s", args, r.code, code, r.stdout, r.stderr)
	}
}

func TestCLIHelpForEveryCommandAndFlag(t *testing.T) {
	clientFlags := []string{"--endpoints", "--timeout", "--json", "--cacert", "--insecure-skip-verify", "[$DURIO_ENDPOINTS]", "[$DURIO_TIMEOUT]"}
	cases := map[string][]string{
		"":           {"get", "put", "append", "delete", "list", "watch", "lease", "status", "serve", "dev", "bench", "version", "completion", "Exit codes:", "DURIO_ENDPOINTS"},
		"list":       append([]string{"--limit", "--keys-only", "--stale", "--revision"}, clientFlags...),
		"watch":      append([]string{"--prefix", "--index"}, clientFlags...),
		"lease":      {"grant", "keepalive", "revoke", "show"},
		"get":        append([]string{"--stale", "get KEY"}, clientFlags...),
		"put":        append([]string{"put KEY VALUE", "standard input", "-- -5", "--if-absent", "--if-revision", "--if-version", "--if-value", "--ttl", "--lease", "--keep-alive"}, clientFlags...),
		"append":     append([]string{"append KEY VALUE"}, clientFlags...),
		"delete":     append([]string{"delete KEY", "--if-revision", "--if-version", "--if-value"}, clientFlags...),
		"status":     clientFlags,
		"serve":      {"--config", "--id", "--peers", "--client-urls", "--listen-peer", "--listen-client", "--data-dir", "--persister", "--max-body-bytes", "--request-timeout", "--log-level", "--peer-token", "--peer-token-file", "--tls-cert", "--tls-key", "--pprof", "[$DURIO_PEERS]", "[$DURIO_DATA_DIR]"},
		"dev":        {"--dir", "--persister", "--client-port", "--peer-port", "--replicas", "--log-level", "[$DURIO_PERSISTER]"},
		"bench":      {"--endpoints", "--clients", "--duration", "--warmup", "--value-size", "--keys", "--op", "--read-ratio", "--json-api", "--json", "--list-limit", "--watchers"},
		"version":    {"--json"},
		"completion": {"bash", "zsh", "fish"},
	}
	for name, want := range cases {
		for _, form := range [][]string{{name, "--help"}, {name, "-h"}, {"help", name}} {
			args := form
			if name == "" {
				args = form[1:]
				if form[0] == "help" {
					args = []string{"help"}
				}
			}
			r := runCLI(t, nil, "", args...)
			r.expect(t, 0, args...)
			if !strings.Contains(r.stdout, "Usage:") {
				t.Fatalf("durio %q: no Usage: in\n%s", args, r.stdout)
			}
			for _, w := range want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("durio %q: help lacks %q:\n%s", args, w, r.stdout)
				}
			}
		}
	}
}

func TestCLIUsageErrorsExit2(t *testing.T) {
	cases := []struct {
		env    []string
		args   []string
		stderr string
	}{
		{nil, []string{"frob"}, `unknown command "frob"`},
		{nil, []string{"put", "k"}, "takes 2 argument(s)"},
		{nil, []string{"get"}, "takes 1 argument(s)"},
		{nil, []string{"status", "extra"}, "takes no arguments"},
		{nil, []string{"put", "temp", "-5"}, "put -- before values that begin with -"},
		{nil, []string{"get", "k", "--nope"}, "unknown flag: --nope"},
		{nil, []string{"get", "k", "--timeout", "soon"}, "--timeout"},
		{nil, []string{"get", "k", "--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"DURIO_TIMEOUT=soon"}, []string{"get", "k"}, "DURIO_TIMEOUT"},
		{nil, []string{"get", "k", "--cacert", filepath.Join(t.TempDir(), "missing.pem")}, "--cacert"},
		{nil, []string{"get", "k", "--endpoints", "ftp://x:1"}, "not an http(s) URL"},
		{nil, []string{"serve", "--peers", "http://127.0.0.1:1", "--listen-client", "127.0.0.1:2", "--log-level", "loud"}, "log-level"},
		{[]string{"DURIO_LOG_LEVEL=loud"}, []string{"serve", "--peers", "http://127.0.0.1:1", "--listen-client", "127.0.0.1:2"}, "log-level"},
		{[]string{"DURIO_PEERS=ftp://x:1"}, []string{"serve", "--listen-client", "127.0.0.1:2"}, "peers"},
		{nil, []string{"dev", "--replicas", "0"}, "--replicas"},
		{nil, []string{"bench", "--op", "scan"}, "--op"},
	}
	for _, c := range cases {
		r := runCLI(t, c.env, "not utf-8 \xff", c.args...)
		r.expect(t, 2, c.args...)
		if !strings.Contains(r.stderr, c.stderr) {
			t.Errorf("durio %q: stderr %q lacks %q", c.args, r.stderr, c.stderr)
		}
	}
}

func TestCLIStatusExitsNonZeroWhenEveryEndpointIsDown(t *testing.T) {
	ports := freeport.Ports(t, 2)
	eps := "http://127.0.0.1:" + strconv.Itoa(ports[0]) + ",http://127.0.0.1:" + strconv.Itoa(ports[1])
	r := runCLI(t, nil, "", "status", "--endpoints", eps)
	r.expect(t, 4, "status")
	if strings.Count(r.stdout, "no (") != 2 || !strings.Contains(r.stderr, "no endpoint answered") {
		t.Fatalf("stdout %q stderr %q", r.stdout, r.stderr)
	}
	// No replica took the request: exit 4 (unavailable), not 5, which
	// would tell a script that the put may have been applied.
	for _, args := range [][]string{{"get", "k"}, {"put", "k", "v"}} {
		r = runCLI(t, []string{"DURIO_ENDPOINTS=" + eps}, "", append(args, "--timeout", "1s")...)
		r.expect(t, 4, args[0]+" with every endpoint down")
	}
}

// The client commands against a real cluster: values that look like flags,
// values from stdin, keys with slashes, the environment, exit codes, and,
// with quorum lost, the cluster's own 503 rather than a local timeout.
func TestCLIAgainstCluster(t *testing.T) {
	c := startCluster(t, 3, "noop")
	env := []string{"DURIO_ENDPOINTS=" + strings.Join(c.clients, ",")}
	run := func(code int, stdin string, args ...string) cliResult {
		t.Helper()
		r := runCLI(t, env, stdin, args...)
		r.expect(t, code, args...)
		return r
	}
	getJSON := func(key string) string {
		t.Helper()
		var out struct{ Key, Value string }
		if err := json.Unmarshal([]byte(run(0, "", "get", key, "--json").stdout), &out); err != nil || out.Key != key {
			t.Fatalf("get %s --json: %+v %v", key, out, err)
		}
		return out.Value
	}
	if r := run(0, "", "put", "temp", "--", "-5"); r.stdout != "OK\n" {
		t.Fatalf("put: %q", r.stdout)
	}
	if r := run(0, "", "get", "temp"); r.stdout != "-5\n" {
		t.Fatalf("get temp: %q", r.stdout)
	}
	run(0, "", "append", "--json", "temp", "0")
	if v := getJSON("temp"); v != "-50" {
		t.Fatalf("after append: %q", v)
	}
	run(0, "host: db.local\nport: 5432\n", "put", "config/db.yaml", "-")
	if v := getJSON("config/db.yaml"); v != "host: db.local\nport: 5432\n" {
		t.Fatalf("value from stdin: %q", v)
	}
	run(0, "", "append", "config/db.yaml", "-")
	if v := getJSON("config/db.yaml"); v != "host: db.local\nport: 5432\n" {
		t.Fatalf("empty stdin appended something: %q", v)
	}
	if r := run(2, "\xff\xfe", "put", "bin", "-"); !strings.Contains(r.stderr, "UTF-8") {
		t.Fatalf("binary stdin: %q", r.stderr)
	}
	if r := run(0, "", "get", "temp", "--stale", "--endpoints", c.clients[c.waitLeader(10*time.Second)]); r.stdout != "-50\n" {
		t.Fatalf("stale get from the leader: %q", r.stdout)
	}
	if r := run(0, "", "delete", "temp"); r.stdout != "deleted\n" {
		t.Fatalf("delete: %q", r.stdout)
	}
	if r := run(0, "", "delete", "temp"); r.stdout != "not found\n" {
		t.Fatalf("second delete: %q", r.stdout)
	}
	run(3, "", "get", "temp")
	// Every replica reports the apply level its version supports, and the
	// cluster, all of one version, moves to it (within a few lease ticks
	// of the leader hearing every member).
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := run(0, "", "status", "--json")
		var rows []struct {
			Reachable     bool
			Role          string
			ApplyLevel    uint32 `json:"apply_level"`
			MaxApplyLevel uint32 `json:"max_apply_level"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil || len(rows) != 3 {
			t.Fatalf("status --json: %v %q", err, r.stdout)
		}
		at := 0
		for _, row := range rows {
			if row.MaxApplyLevel != kvraft.ApplyLevel {
				t.Fatalf("status --json: max_apply_level %d, want %d: %q", row.MaxApplyLevel, kvraft.ApplyLevel, r.stdout)
			}
			if row.ApplyLevel == kvraft.ApplyLevel {
				at++
			}
		}
		if at == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replicas did not reach apply level %d: %q", kvraft.ApplyLevel, r.stdout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A flag on the command line beats the environment: one dead endpoint
	// still answers status (exit 0) because the others are up, but a list of
	// only dead endpoints is exit 4.
	dead := "http://127.0.0.1:" + strconv.Itoa(freeport.Ports(t, 1)[0])
	run(4, "", "status", "--endpoints", dead)

	// Quorum lost: keep one follower. Its answer (503, no leader) must reach
	// the user, not be hidden behind the CLI's own timeout. The cluster's
	// request timeout is 2s (startCluster); the CLI's default is longer.
	leader := c.waitLeader(10 * time.Second)
	survivor := (leader + 1) % 3
	c.kill(leader)
	c.kill((leader + 2) % 3)
	r := runCLI(t, nil, "", "put", "k", "v", "--endpoints", c.clients[survivor], "--timeout", "5s")
	t.Logf("quorum lost: exit %d, stderr %s", r.code, r.stderr)
	r.expect(t, 4, "put with quorum lost")
	if !strings.Contains(r.stderr, "unavailable") {
		t.Fatalf("quorum lost: stderr %q does not show the cluster's 503", r.stderr)
	}
}

// A TLS certificate error fails at once (one connection, no retries across
// endpoints) with exit 1; --cacert and --insecure-skip-verify get through.
func TestCLITLSCertificates(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"code":"not_found","msg":"key not found"}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	eps := srv.URL + "," + srv.URL + "," + srv.URL

	r := runCLI(t, nil, "", "get", "k", "--endpoints", eps, "--timeout", "30s")
	r.expect(t, 1, "get without --cacert")
	if !strings.Contains(r.stderr, "certificate") || !strings.Contains(r.stderr, "--cacert") {
		t.Fatalf("stderr %q should name the certificate problem and --cacert", r.stderr)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for a certificate error; want 1 (no retries)", n)
	}

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	runCLI(t, nil, "", "get", "k", "--endpoints", srv.URL, "--cacert", caFile).expect(t, 3, "get --cacert")
	runCLI(t, []string{"DURIO_CACERT=" + caFile}, "", "get", "k", "--endpoints", srv.URL).expect(t, 3, "get DURIO_CACERT")
	runCLI(t, nil, "", "get", "k", "--endpoints", srv.URL, "--insecure-skip-verify").expect(t, 3, "get --insecure-skip-verify")
	notPEM := filepath.Join(t.TempDir(), "x.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	runCLI(t, nil, "", "get", "k", "--endpoints", srv.URL, "--cacert", notPEM).expect(t, 2, "get --cacert not-PEM")
}

// An https:// endpoint that serves plain HTTP fails at once (exit 1, one
// connection, a hint to use http://) instead of being retried until
// --timeout: retrying cannot fix it.
func TestCLIHTTPSEndpointServingPlainHTTP(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	ep := strings.Replace(srv.URL, "http://", "https://", 1)
	start := time.Now()
	r := runCLI(t, nil, "", "get", "k", "--endpoints", ep+","+ep, "--timeout", "30s")
	r.expect(t, 1, "get from an https:// endpoint serving plain HTTP")
	if !strings.Contains(r.stderr, "http://") || time.Since(start) > 20*time.Second {
		t.Fatalf("after %v, stderr %q should say to use http://", time.Since(start), r.stderr)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections; want 1 (no retries)", n)
	}
}

func TestCLIVersionAndCompletion(t *testing.T) {
	r := runCLI(t, nil, "", "version")
	r.expect(t, 0, "version")
	for _, w := range []string{"module:   github.com/ruaft/ruaft", "go:       " + runtime.Version(), "platform: " + runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("version lacks %q:\n%s", w, r.stdout)
		}
	}
	var info struct{ Module, Go string }
	if err := json.Unmarshal([]byte(runCLI(t, nil, "", "version", "--json").stdout), &info); err != nil || info.Module != "github.com/ruaft/ruaft" || info.Go != runtime.Version() {
		t.Fatalf("version --json: %+v %v", info, err)
	}
	runCLI(t, nil, "", "--version").expect(t, 0, "--version")

	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		r := runCLI(t, nil, "", "completion", shell)
		r.expect(t, 0, "completion", shell)
		if !strings.Contains(r.stdout, "durio") {
			t.Fatalf("completion %s: %q", shell, r.stdout[:min(200, len(r.stdout))])
		}
	}
	// What a shell asks when completing `durio serve --persister <TAB>`
	// and `durio st<TAB>`.
	if r := runCLI(t, nil, "", "__complete", "serve", "--persister", ""); !strings.Contains(r.stdout, "badger\n") || !strings.Contains(r.stdout, "file\n") {
		t.Fatalf("persister completion: %q", r.stdout)
	}
	if r := runCLI(t, nil, "", "__complete", "st"); !strings.Contains(r.stdout, "status") {
		t.Fatalf("command completion: %q", r.stdout)
	}
}
