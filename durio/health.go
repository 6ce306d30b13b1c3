package durio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/raft"
)

// healthPollInterval is how often a replica checks its store and plugin
// when nothing else tells it.
const healthPollInterval = 50 * time.Millisecond

// health is a replica's fail-stop state: the first fatal error (a failed
// store, a persister plugin that exited), reported on /healthz and /readyz
// and handed to Serve, which drains what it can and exits non-zero.
type health struct {
	logger *slog.Logger
	status func() raft.Status
	exited func() bool // the persister plugin process exited; nil for in-process stores
	// exitReason says how the plugin process ended (see plugin.Store);
	// nil for in-process stores.
	exitReason func() string
	dataDir    string          // the store's folder, whose file system a store failure may have filled
	stop       func(err error) // tells the owner to shut the replica down; called once
	// writeOverdue is how long the store write in progress (a raft log
	// Append, or a snapshot past its allowance by size) has run (0: none);
	// stallTimeout fails the replica once it reaches that (0: never). Both
	// unset for a replica without a meteredStore.
	writeOverdue func() time.Duration
	stallTimeout time.Duration
	once         sync.Once  // guards the call to stop
	mu           sync.Mutex // guards err
	err          error      // the first fatal error, or nil
}

func newHealth(logger *slog.Logger, status func() raft.Status, store persist.Store, dataDir string, stop func(error)) *health {
	h := &health{logger: logger, status: status, dataDir: dataDir, stop: stop}
	if p, ok := store.(interface{ Exited() bool }); ok {
		h.exited = p.Exited
	}
	if p, ok := store.(interface{ ExitReason() string }); ok {
		h.exitReason = p.ExitReason
	}
	return h
}

// fail records err as fatal (the first one wins), logs it, and asks the
// owner to stop the replica.
func (h *health) fail(err error) {
	if h.failed() == nil {
		err = h.explain(err)
	}
	h.mu.Lock()
	first := h.err == nil
	if first {
		h.err = err
	}
	h.mu.Unlock()
	if first {
		h.logger.Error("replica failed; stopping so that it can be restarted (fail-stop)", "err", err)
	}
	h.once.Do(func() { h.stop(err) })
}

// failed returns the fatal error, or nil while healthy.
func (h *health) failed() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// check looks for a store failure once.
func (h *health) check() {
	if h.failed() != nil {
		return
	}
	if err := h.status().Err; err != nil {
		if errors.Is(err, raft.ErrPanic) {
			// Not the store: a daemon of the node panicked (such as the
			// applier, on a snapshot the state machine could not restore).
			h.fail(err)
			return
		}
		h.fail(fmt.Errorf("%w: %w", raft.ErrStoreFailed, err))
		return
	}
	if h.exited != nil && h.exited() {
		h.fail(fmt.Errorf("%w: %w: the persister plugin process exited", raft.ErrStoreFailed, persist.ErrUnavailable))
	}
}

// checkStall fails the replica if the raft log write in progress has run
// for stallTimeout since the process last ran (running: how long the
// process has run without a pause; see watch). A replica that was itself
// stopped, or whose machine was paused, did not see its store hang
// meanwhile: the write must hang for the whole timeout after it resumed.
func (h *health) checkStall(running time.Duration) {
	if h.writeOverdue == nil || h.stallTimeout <= 0 || h.failed() != nil {
		return
	}
	if age := min(h.writeOverdue(), running); age >= h.stallTimeout {
		h.fail(fmt.Errorf("%w: %w: a write of the raft log or a snapshot has not returned for %v (store-stall-timeout %v): the disk or the persister plugin hangs",
			raft.ErrStoreFailed, errStoreStalled, age.Round(time.Second), h.stallTimeout))
	}
}

// lateTick is how late a watch tick may come before watch takes it that
// the process did not run meanwhile.
const lateTick = time.Second

// errStoreStalled is matched by the failure of a store whose write hangs.
var errStoreStalled = errors.New("store stalled")

// storeSlow is how long a raft log write may run before /readyz says the
// replica is not ready: it cannot apply, so reads sent to it would wait.
const storeSlow = 5 * time.Second

// slow is storeSlow, or half the stall timeout if that is shorter.
func (h *health) slow() time.Duration {
	if h.stallTimeout > 0 {
		return min(storeSlow, h.stallTimeout/2)
	}
	return storeSlow
}

// explain adds to a store failure what the replica can find out about it:
// how the persister plugin process ended, if it did (a crash's own words),
// and a full disk.
func (h *health) explain(err error) error {
	if !errors.Is(err, raft.ErrStoreFailed) && !errors.Is(err, persist.ErrUnavailable) {
		return err
	}
	if h.exitReason != nil && errors.Is(err, persist.ErrUnavailable) {
		if why := h.exitReason(); why != "" {
			err = fmt.Errorf("%w (the persister plugin process %s)", err, why)
		}
	}
	if errors.Is(err, errStoreStalled) || errors.Is(err, persist.ErrCorrupt) {
		// Not what a full disk does; and statfs on a disk that hangs
		// may hang too.
		return err
	}
	return diskFull(h.dataDir, err)
}

// watch checks every healthPollInterval until ctx ends, so a store or plugin
// that fails while no write is in flight is noticed too.
func (h *health) watch(ctx context.Context) {
	t := time.NewTicker(healthPollInterval)
	defer t.Stop()
	last := time.Now()
	resumed := last // since when the process has run without a pause
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.check()
			now := time.Now()
			if now.Sub(last) > healthPollInterval+lateTick {
				resumed = now
			}
			last = now
			h.checkStall(now.Sub(resumed))
		}
	}
}

// publicReason names the kind of failure without file names or other
// detail from the machine (those are in the log).
func publicReason(err error) string {
	switch {
	case errors.Is(err, persist.ErrCorrupt):
		return "store failed: corrupt data"
	case errors.Is(err, errStoreStalled):
		return "store failed: a write hangs"
	case errors.Is(err, errDiskFull):
		return "store failed: the data folder's disk is full"
	case errors.Is(err, persist.ErrUnavailable):
		return "store failed: persister plugin unavailable"
	case errors.Is(err, raft.ErrStoreFailed):
		return "store failed: write or sync error"
	default:
		return "replica failed"
	}
}

// healthResponse is the JSON body of /healthz and /readyz.
type healthResponse struct {
	// Status is "ok" (healthz) or "ready" (readyz) when 200, "failed" or
	// "not_ready" when 503.
	Status string `json:"status"`
	// Reason says why it is not 200.
	Reason string `json:"reason,omitempty"`
	// LeaderID is the leader this replica knows of (readyz only).
	LeaderID *int `json:"leader_id,omitempty"`
}

// wrap serves GET /healthz and GET /readyz in front of next:
//
//   - /healthz is 200 while the replica's store works, 503 once it failed
//     (until the replica exits, moments later);
//   - /readyz is 200 only when the store works and the replica knows a
//     leader, i.e. when it can serve requests; a load balancer or the
//     frontend of another replica routes around it otherwise.
//
// Both carry Cache-Control: no-store and Retry-After when 503.
func (h *health) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead ||
			r.URL.Path != "/healthz" && r.URL.Path != "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		h.check()
		code, resp := http.StatusOK, healthResponse{Status: "ok"}
		if err := h.failed(); err != nil {
			code, resp = http.StatusServiceUnavailable, healthResponse{Status: "failed", Reason: publicReason(err)}
		} else if r.URL.Path == "/readyz" {
			st := h.status()
			if st.Leader == raft.NoLeader {
				code, resp = http.StatusServiceUnavailable, healthResponse{Status: "not_ready", Reason: "no known leader"}
			} else if h.writeOverdue != nil && h.writeOverdue() >= h.slow() {
				code, resp = http.StatusServiceUnavailable, healthResponse{Status: "not_ready", Reason: "store write slow"}
			} else {
				resp = healthResponse{Status: "ready", LeaderID: &st.Leader}
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		if code != http.StatusOK {
			w.Header().Set("Retry-After", strconv.Itoa(1))
		}
		writeJSON(w, code, resp)
	})
}

// fatal hands a fatal error to whoever waits on Failed (Serve), without
// blocking: if the channel is full, an error is already waiting.
func (r *Replica) fatal(err error) {
	select {
	case r.failed <- err:
	default:
	}
}

// Fail stops the replica for err, as a failed store does: /healthz and
// /readyz turn 503 and Failed receives err. Layers that find the replica's
// state unusable (a snapshot that cannot be restored) call it.
func (r *Replica) Fail(err error) { r.health.fail(err) }
