package durio

import (
	"log/slog"
	"net"
	"net/url"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/ruaft/ruaft/internal/exepages"
)

// DefaultMemoryLimit is Config.MemoryLimit's default: none. A limit that
// binds buys memory with collector CPU, which is half of what a replica is
// judged by: at 256 put clients a replica's Go memory reached 26-31 MiB,
// and a 24 MiB limit took ~8 MiB off it at 3-4x the collector's CPU per
// put (docs/benchmarks.md). And the live heap grows with the data set: a
// fixed default below it would keep the collector running all the time.
const DefaultMemoryLimit = 0

// setRuntime applies the Go runtime settings of a replica process. They are
// process-wide, so Serve applies them, not StartReplica (tests run several
// replicas in one process).
func setRuntime(cfg Config, getenv func(string) string, logger *slog.Logger) {
	if cfg.MemoryLimit > 0 && getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(cfg.MemoryLimit)
	}
	if getenv("GOMAXPROCS") == "" {
		procs, shared := cfg.MaxProcs, 0
		if procs == 0 {
			if shared = coLocatedReplicas(cfg); shared > 1 {
				procs = max(1, runtime.GOMAXPROCS(0)/shared)
			}
		}
		if procs > 0 {
			runtime.GOMAXPROCS(procs)
			logger.Info("Go scheduler", "gomaxprocs", procs, "replicas_on_this_host", shared)
		}
	}
	if !cfg.Pprof {
		// Nothing can read the heap profile without --pprof. Sampling it
		// walks a stack every 512 KiB allocated and keeps a record per
		// sampled stack, in a bucket table of up to 1.4 MiB that the
		// samples scatter over.
		runtime.MemProfileRate = 0
	}
}

// coLocatedReplicas counts the replicas of cfg.Peers whose peer URL names
// this replica's host (loopback addresses and localhost are one host), this
// one included, or returns 0 when this replica's host is unknown (it
// joined, so Peers is empty).
//
// Replicas on one machine share its cores, and a Go process that may run
// on every core hands work between threads and wakes idle ones far more
// than one that runs on its share: three replicas of a local cluster on two
// cores, each with GOMAXPROCS=1 instead of 2, measured 8% less server CPU
// per put at 64 clients and 17% less at one client, with 15-30% fewer
// context switches (docs/benchmarks.md, "Replicas sharing a machine's
// cores"). A replica alone on its host keeps every core.
func coLocatedReplicas(cfg Config) int {
	if cfg.ID < 0 || cfg.ID >= len(cfg.Peers) {
		return 0
	}
	self := peerHost(cfg.Peers[cfg.ID])
	if self == "" {
		return 0
	}
	n := 0
	for _, p := range cfg.Peers {
		if peerHost(p) == self {
			n++
		}
	}
	return n
}

// peerHost is the host a peer URL names, with every loopback address and
// localhost as "loopback", or "" if the URL does not parse. Names are
// compared without case and without the trailing dot of a fully qualified
// name ("Pi-1.lan." is "pi-1.lan").
func peerHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	h := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if h == "" {
		return ""
	}
	ip := net.ParseIP(h)
	if h == "localhost" || ip != nil && ip.IsLoopback() {
		return "loopback"
	}
	if ip != nil {
		return ip.String() // one spelling per address
	}
	return h
}

// releaseExePages is exepages.Release, replaced in tests.
var releaseExePages = exepages.Release

// releaseStartPages gives back the pages of the binary that only the
// replica's start touched (package exepages): under load a replica kept
// ~20 MiB of durio's binary resident before and ~15 MiB after.
func releaseStartPages(logger *slog.Logger) {
	if n, err := releaseExePages(); err != nil {
		logger.Warn("release the binary's start-up pages", "err", err)
	} else {
		logger.Debug("released the binary's start-up pages", "bytes", n)
	}
}
