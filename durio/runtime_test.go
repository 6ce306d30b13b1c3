package durio

import (
	"bytes"
	"context"
	"math"
	"runtime"
	"runtime/debug"
	"testing"
)

// keepRuntime restores the process-wide settings setRuntime changes.
func keepRuntime(t *testing.T) {
	rate, limit := runtime.MemProfileRate, debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		runtime.MemProfileRate = rate
		debug.SetMemoryLimit(limit)
	})
}

func TestSetRuntime(t *testing.T) {
	noEnv := func(string) string { return "" }
	for _, c := range []struct {
		name      string
		limit     int64
		pprof     bool
		getenv    func(string) string
		wantLimit int64 // -1: left as it was
		wantRate  int   // -1: left as it was
	}{
		{"defaults", DefaultMemoryLimit, false, noEnv, -1, 0},
		{"limit", 32 << 20, false, noEnv, 32 << 20, 0},
		{"GOMEMLIMIT wins", 32 << 20, false, func(k string) string {
			if k == "GOMEMLIMIT" {
				return "100MiB"
			}
			return ""
		}, -1, 0},
		{"no limit", 0, false, noEnv, -1, 0},
		{"pprof keeps heap profiling", 32 << 20, true, noEnv, 32 << 20, -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			keepRuntime(t)
			const unset = math.MaxInt64 - 1 // neither a default nor any case's limit
			debug.SetMemoryLimit(unset)
			runtime.MemProfileRate = 4096
			cfg := DefaultConfig()
			cfg.MemoryLimit, cfg.Pprof = c.limit, c.pprof
			setRuntime(cfg, c.getenv)
			wantLimit, wantRate := c.wantLimit, c.wantRate
			if wantLimit == -1 {
				wantLimit = unset
			}
			if wantRate == -1 {
				wantRate = 4096
			}
			if got := debug.SetMemoryLimit(-1); got != wantLimit {
				t.Errorf("memory limit %d, want %d", got, wantLimit)
			}
			if runtime.MemProfileRate != wantRate {
				t.Errorf("MemProfileRate %d, want %d", runtime.MemProfileRate, wantRate)
			}
		})
	}
}

// TestServeSetsRuntimeAndReleasesStartPages checks that Serve applies the
// runtime settings and, once the replica has started, releases the binary's
// start-up pages.
func TestServeSetsRuntimeAndReleasesStartPages(t *testing.T) {
	keepRuntime(t)
	t.Setenv("GOMEMLIMIT", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	released := 0
	old := releaseExePages
	releaseExePages = func() (int64, error) {
		released++
		cancel() // the replica is up: stop it
		return 0, nil
	}
	t.Cleanup(func() { releaseExePages = old })
	cfg := DefaultConfig()
	cfg.Peers = []string{"http://127.0.0.1:0"}
	cfg.ListenPeer, cfg.ListenClient = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir, cfg.Persister = t.TempDir(), "noop"
	cfg.MemoryLimit = 40 << 20
	var logs bytes.Buffer
	if err := Serve(ctx, cfg, &logs); err != nil {
		t.Fatalf("Serve: %v\n%s", err, logs.String())
	}
	if released != 1 {
		t.Errorf("start-up pages released %d times, want once", released)
	}
	if got := debug.SetMemoryLimit(-1); got != 40<<20 {
		t.Errorf("memory limit %d, want %d", got, 40<<20)
	}
	if runtime.MemProfileRate != 0 {
		t.Errorf("MemProfileRate %d without --pprof, want 0", runtime.MemProfileRate)
	}
}
