package durio

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// keepRuntime restores the process-wide settings setRuntime changes.
func keepRuntime(t *testing.T) {
	rate, limit, procs := runtime.MemProfileRate, debug.SetMemoryLimit(-1), runtime.GOMAXPROCS(0)
	t.Cleanup(func() {
		runtime.MemProfileRate = rate
		debug.SetMemoryLimit(limit)
		runtime.GOMAXPROCS(procs)
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
			setRuntime(cfg, c.getenv, slog.New(slog.DiscardHandler))
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

// TestSetRuntimeMaxProcs checks how many cores a replica's Go code gets:
// the machine's cores shared among the replicas of Peers on its host,
// --max-procs, or GOMAXPROCS from the environment.
func TestSetRuntimeMaxProcs(t *testing.T) {
	three := []string{"http://127.0.0.1:2380", "http://localhost:2381", "http://[::1]:2382"}
	for _, c := range []struct {
		name     string
		cores    int
		peers    []string
		id       int
		maxProcs int
		env      string
		want     int // -1: left as it was
	}{
		{"three local replicas, 6 cores", 6, three, 1, 0, "", 2},
		{"three local replicas, 2 cores", 2, three, 0, 0, "", 1},
		{"three local replicas, 8 cores", 8, three, 2, 0, "", 2},
		{"alone on its host", 4, []string{"http://10.0.0.1:2380", "http://10.0.0.2:2380", "http://10.0.0.3:2380"}, 0, 0, "", -1},
		{"two of three on one host", 4, []string{"http://10.0.0.1:2380", "http://10.0.0.1:2381", "http://10.0.0.3:2380"}, 1, 0, "", 2},
		{"names compared without case", 4, []string{"http://Pi-1:2380", "http://pi-1:2381", "http://pi-2:2380"}, 0, 0, "", 2},
		{"one spelling per address", 4, []string{"http://[2001:db8::1]:2380", "http://[2001:db8:0::1]:2381", "http://10.0.0.3:2380"}, 0, 0, "", 2},
		{"single-replica cluster", 4, []string{"http://127.0.0.1:2380"}, 0, 0, "", -1},
		{"joined: peers unknown", 4, nil, 3, 0, "", -1},
		{"--max-procs", 4, three, 0, 3, "", 3},
		{"GOMAXPROCS wins", 4, three, 0, 3, "4", -1},
		{"GOMAXPROCS wins over sharing", 6, three, 0, 0, "6", -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			keepRuntime(t)
			runtime.GOMAXPROCS(c.cores)
			cfg := DefaultConfig()
			cfg.Peers, cfg.ID, cfg.MaxProcs = c.peers, c.id, c.maxProcs
			var logs bytes.Buffer
			setRuntime(cfg, func(k string) string {
				if k == "GOMAXPROCS" {
					return c.env
				}
				return ""
			}, slog.New(slog.NewTextHandler(&logs, nil)))
			want := c.want
			if want == -1 {
				want = c.cores
			}
			if got := runtime.GOMAXPROCS(0); got != want {
				t.Errorf("GOMAXPROCS %d, want %d", got, want)
			}
			if logged := strings.Contains(logs.String(), "gomaxprocs="); logged != (c.want != -1) {
				t.Errorf("logged the setting: %v, want %v:\n%s", logged, c.want != -1, logs.String())
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
	cfg := oneMemberConfig(t)
	cfg.Persister = "noop"
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
