package durio

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --no-lean-http (and the YAML key) serve the client listener with net/http
// alone; the lean loop is on by default.
func TestNoLeanHTTPFlag(t *testing.T) {
	base := []string{"--peers", "http://127.0.0.1:7000", "--listen-client", "127.0.0.1:0"}
	cfg, err := ParseServeFlags(base)
	if err != nil || cfg.NoLeanHTTP {
		t.Fatalf("default: NoLeanHTTP %v, %v", cfg.NoLeanHTTP, err)
	}
	cfg, err = ParseServeFlags(append(base, "--no-lean-http"))
	if err != nil || !cfg.NoLeanHTTP {
		t.Fatalf("--no-lean-http: NoLeanHTTP %v, %v", cfg.NoLeanHTTP, err)
	}
	file := filepath.Join(t.TempDir(), "durio.yaml")
	if err := os.WriteFile(file, []byte("no-lean-http: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = ParseServeFlags(append(base, "--config", file))
	if err != nil || !cfg.NoLeanHTTP {
		t.Fatalf("no-lean-http: true in YAML: NoLeanHTTP %v, %v", cfg.NoLeanHTTP, err)
	}
}

// TestLeanHTTPReplica: a replica's key-value requests are served by the
// lean loop (no connection handed to net/http), another route hands its
// connection over, which then serves key-value requests too; with
// --no-lean-http net/http serves everything.
func TestLeanHTTPReplica(t *testing.T) {
	for _, noLean := range []bool{false, true} {
		c := startTestCluster(t, 3, "http", func(cfg *Config) {
			cfg.NoLeanHTTP = noLean
			cfg.CORSOrigins = []string{"http://app.example"}
		})
		c.waitLeader(t)
		r := c.replicas[0]
		if (r.clientLean == nil) != noLean {
			t.Fatalf("NoLeanHTTP %v: lean loop %v", noLean, r.clientLean)
		}
		// One connection for every request below.
		hc := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
		defer hc.CloseIdleConnections()
		base := "http://" + r.ClientAddr()
		do := func(method, path, body string, want int) string {
			t.Helper()
			req, err := http.NewRequestWithContext(context.Background(), method, base+path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != want {
				t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
			}
			return string(b)
		}
		handed := func() float64 {
			t.Helper()
			families, err := r.metrics.registry.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range families {
				if f.GetName() == "durio_http_lean_handoffs_total" {
					return f.GetMetric()[0].GetCounter().GetValue()
				}
			}
			t.Fatal("no durio_http_lean_handoffs_total")
			return 0
		}
		do("POST", "/kvstore/put", `{"key":"k","value":"v1"}`, 200)
		if got := do("GET", "/kvstore/get/k", "", 200); !strings.Contains(got, `"value":"v1"`) {
			t.Fatalf("get: %s", got)
		}
		do("POST", "/twirp/kv.v1.KVService/Get", `{"key":"k"}`, 200)
		do("DELETE", "/kvstore/nothing", "", 200)
		do("GET", "/kvstore/get/nothing", "", 404)
		// A browser's CORS preflight keeps the connection in the lean
		// loop too.
		pre, err := http.NewRequestWithContext(context.Background(), http.MethodOptions, base+"/kvstore/put", nil)
		if err != nil {
			t.Fatal(err)
		}
		pre.Header.Set("Origin", "http://app.example")
		pre.Header.Set("Access-Control-Request-Method", "POST")
		pre.Header.Set("Access-Control-Request-Headers", "content-type")
		resp, err := hc.Do(pre)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "http://app.example" ||
			resp.Header.Get("Access-Control-Allow-Methods") == "" {
			t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
		}
		if n := handed(); n != 0 {
			t.Fatalf("NoLeanHTTP %v: %v connections handed to net/http by key-value requests", noLean, n)
		}
		do("GET", "/healthz", "", 200)
		want := 1.0
		if noLean {
			want = 0
		}
		if n := handed(); n != want {
			t.Fatalf("NoLeanHTTP %v: %v connections handed over after /healthz, want %v", noLean, n, want)
		}
		// The handed-over connection goes on serving.
		do("POST", "/kvstore/put", `{"key":"k","value":"v2"}`, 200)
		if got := do("GET", "/kvstore/get/k", "", 200); !strings.Contains(got, `"value":"v2"`) {
			t.Fatalf("get after the hand-over: %s", got)
		}
		if n := handed(); n != want {
			t.Fatalf("NoLeanHTTP %v: %v connections handed over, want %v (one connection in all)", noLean, n, want)
		}
	}
}
