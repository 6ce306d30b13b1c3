package durio

import (
	"log/slog"
	"runtime"
	"runtime/debug"

	"github.com/ruaft/ruaft/internal/exepages"
)

// DefaultMemoryLimit is Config.MemoryLimit's default: none. A limit that
// binds buys memory with collector CPU, which is half of what a replica is
// judged by: at 256 put clients a replica's Go memory reached 26-31 MiB,
// and a 24 MiB limit took ~8 MiB off it at 3-4x the collector's CPU per
// put (README, Benchmarks). And the live heap grows with the data set: a
// fixed default below it would keep the collector running all the time.
const DefaultMemoryLimit = 0

// setRuntime applies the Go runtime settings of a replica process. They are
// process-wide, so Serve applies them, not StartReplica (tests run several
// replicas in one process).
func setRuntime(cfg Config, getenv func(string) string) {
	if cfg.MemoryLimit > 0 && getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(cfg.MemoryLimit)
	}
	if !cfg.Pprof {
		// Nothing can read the heap profile without --pprof. Sampling it
		// walks a stack every 512 KiB allocated and keeps a record per
		// sampled stack, in a bucket table of up to 1.4 MiB that the
		// samples scatter over.
		runtime.MemProfileRate = 0
	}
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
