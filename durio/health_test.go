package durio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/filestore"
	"github.com/ruaft/ruaft/raft"
)

// getHealth fetches path from the replica's client listener and decodes the
// JSON body.
func getHealth(t *testing.T, r *Replica, path string) (int, healthResponse) {
	t.Helper()
	resp, err := http.Get("http://" + r.ClientAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body healthResponse
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("%s: Cache-Control %q, want no-store", path, resp.Header.Get("Cache-Control"))
	}
	return resp.StatusCode, body
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStoreFailureFailStop runs a one-replica cluster on the file store over
// an in-memory file system, makes the disk full (ENOSPC on the next write)
// or fail (EIO on the next fsync), and checks fail-stop: the write is not
// acknowledged, /healthz and /readyz turn 503 with a reason that names no
// path, and Failed delivers the error so that Serve exits non-zero.
func TestStoreFailureFailStop(t *testing.T) {
	for _, c := range []struct {
		op  filestore.Op
		err syscall.Errno
	}{{filestore.OpWrite, syscall.ENOSPC}, {filestore.OpSync, syscall.EIO}} {
		t.Run(string(c.op), func(t *testing.T) { storeFailureFailStop(t, c.op, c.err) })
	}
}

func storeFailureFailStop(t *testing.T, failOp filestore.Op, failErr syscall.Errno) {
	fs := filestore.NewMemFS()
	o := filestore.DefaultOptions()
	o.FS = fs
	store, err := filestore.Open("/data/store", o)
	if err != nil {
		t.Fatal(err)
	}
	cfg := oneMemberConfig(t)
	cfg.RequestTimeout = time.Second
	r, err := StartReplica(cfg, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())

	// Before the failure: healthy, and ready once it leads itself.
	if code, body := getHealth(t, r, "/healthz"); code != http.StatusOK || body.Status != "ok" {
		t.Fatalf("healthz before the failure: %d %+v", code, body)
	}
	waitFor(t, "readyz 200", 10*time.Second, func() bool { code, _ := getHealth(t, r, "/readyz"); return code == http.StatusOK })
	put := func(key string) int {
		resp, err := http.Post("http://"+r.ClientAddr()+"/kvstore/put", "application/json",
			strings.NewReader(`{"key":"`+key+`","value":"v"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor(t, "first put acknowledged", 10*time.Second, func() bool { return put("before") == http.StatusOK })

	var faults atomic.Int32
	fs.SetFault(func(op filestore.Op, name string) error {
		if op == failOp {
			faults.Add(1)
			return failErr
		}
		return nil
	})
	if code := put("after"); code == http.StatusOK {
		t.Fatalf("a put whose %s failed with %v was acknowledged", failOp, failErr)
	}
	if faults.Load() == 0 {
		t.Fatal("the store never tried to write: the test injected nothing")
	}
	select {
	case err := <-r.Failed():
		if !strings.Contains(err.Error(), "store failed") || !errors.Is(err, failErr) {
			t.Fatalf("Failed() = %v, want a store failure wrapping %v", err, failErr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Failed() delivered nothing within 10s of a store failure")
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		code, body := getHealth(t, r, path)
		if code != http.StatusServiceUnavailable || body.Status != "failed" || !strings.HasPrefix(body.Reason, "store failed") {
			t.Fatalf("%s after the failure: %d %+v, want 503 failed", path, code, body)
		}
		if strings.Contains(body.Reason, "/data") {
			t.Fatalf("%s reason %q names a path", path, body.Reason)
		}
	}
}

// TestReadyzNeedsLeader: a replica of a three-replica cluster whose peers
// are not running never learns of a leader, so it is healthy but not ready.
func TestReadyzNeedsLeader(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Peers = []string{"http://127.0.0.1:0", "http://127.0.0.1:1", "http://127.0.0.1:2"}
	cfg.ListenPeer, cfg.ListenClient = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	r, err := StartReplica(cfg, filestoreMem(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	if code, body := getHealth(t, r, "/healthz"); code != http.StatusOK {
		t.Fatalf("healthz: %d %+v", code, body)
	}
	code, body := getHealth(t, r, "/readyz")
	if code != http.StatusServiceUnavailable || body.Status != "not_ready" || body.Reason != "no known leader" {
		t.Fatalf("readyz without a leader: %d %+v, want 503 not_ready", code, body)
	}
	// Only GET and HEAD are health checks; anything else falls through to
	// the routes behind (a JSON 4xx, never a health answer).
	resp, err := http.Post("http://"+r.ClientAddr()+"/readyz", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Fatalf("POST /readyz: %d, want a 4xx", resp.StatusCode)
	}
}

func filestoreMem(t *testing.T) *filestore.Store {
	t.Helper()
	o := filestore.DefaultOptions()
	o.FS = filestore.NewMemFS()
	s, err := filestore.Open("/data/store", o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestFailStopsReplica: another layer (a snapshot that cannot be restored)
// stops the replica through Fail; the first error wins and is delivered
// once, and the health routes report a generic reason.
func TestFailStopsReplica(t *testing.T) {
	cfg := oneMemberConfig(t)
	r, err := StartReplica(cfg, filestoreMem(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	first := errors.New("restore snapshot: bad data at /some/path")
	r.Fail(first)
	r.Fail(errors.New("a later error"))
	select {
	case err := <-r.Failed():
		if err != first {
			t.Fatalf("Failed() = %v, want the first error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Failed() delivered nothing after Fail")
	}
	select {
	case err := <-r.Failed():
		t.Fatalf("Failed() delivered a second error: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	code, body := getHealth(t, r, "/healthz")
	if code != http.StatusServiceUnavailable || body.Reason != "replica failed" {
		t.Fatalf("healthz after Fail: %d %+v, want 503 with a reason that names no path", code, body)
	}
}

// TestHealthNodePanicIsNotAStoreFailure: a node that stopped because one of
// its daemons panicked (the applier, on a snapshot the state machine could
// not restore) fails the replica with that error, not as a store failure.
func TestHealthNodePanicIsNotAStoreFailure(t *testing.T) {
	cause := fmt.Errorf("%w: applier: rsm: restore snapshot at index 7: corrupt", raft.ErrPanic)
	var stopped error
	h := &health{logger: slog.New(slog.DiscardHandler), status: func() raft.Status { return raft.Status{Err: cause} },
		stop: func(err error) { stopped = err }}
	h.check()
	err := h.failed()
	if !errors.Is(err, raft.ErrPanic) || errors.Is(err, raft.ErrStoreFailed) || stopped != err {
		t.Fatalf("failed() = %v (stopped with %v), want the panic, not a store failure", err, stopped)
	}
	if got := publicReason(err); got != "replica failed" {
		t.Fatalf("reason %q, want %q", got, "replica failed")
	}
}

// crashedStore is a persister plugin that has exited, as plugin.Store
// reports one.
type crashedStore struct{ persist.Store }

func (crashedStore) Exited() bool { return true }
func (crashedStore) ExitReason() string {
	return "exited (exit status 2): fatal error: fault [signal SIGBUS: bus error code=0x2]"
}

// A store failure is explained with what the replica can find out: how its
// plugin process ended, and a full disk (a memory-mapped store dies of
// SIGBUS on a full disk, and the crash itself says nothing of space; before,
// the log and the exit said only "connection reset by peer"). /healthz
// names a full disk too, without the path.
func TestHealthExplainsStoreFailure(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name   string
		free   uint64
		full   bool
		reason string
	}{
		{"disk full", 1 << 20, true, "store failed: the data folder's disk is full"},
		{"room left", 10 << 30, false, "store failed: persister plugin unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := freeSpace
			freeSpace = func(string) (uint64, bool) { return tc.free, true }
			t.Cleanup(func() { freeSpace = old })
			var stopped error
			h := newHealth(slog.New(slog.DiscardHandler), func() raft.Status { return raft.Status{} }, crashedStore{}, dir,
				func(err error) { stopped = err })
			h.check()
			err := h.failed()
			if err == nil || stopped != err || !errors.Is(err, persist.ErrUnavailable) {
				t.Fatalf("failed() = %v (stopped with %v), want the plugin's exit", err, stopped)
			}
			if !strings.Contains(err.Error(), "(the persister plugin process exited (exit status 2): fatal error: fault [signal SIGBUS") {
				t.Errorf("error %q does not say how the plugin ended", err)
			}
			if got := strings.Contains(err.Error(), "1024 KiB free on the file system of "+dir); got != tc.full {
				t.Errorf("error %q: says the disk is full: %v, want %v", err, got, tc.full)
			}
			if got := publicReason(err); got != tc.reason {
				t.Errorf("reason %q, want %q", got, tc.reason)
			}
		})
	}
}

// freeSpace reads the file system's free space where it can (Linux and
// macOS).
func TestFreeSpace(t *testing.T) {
	free, ok := freeSpace(t.TempDir())
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		if ok {
			t.Fatalf("freeSpace = %d, true on %s", free, runtime.GOOS)
		}
		return
	}
	if !ok || free == 0 {
		t.Fatalf("freeSpace = %d, %v; want the temporary folder's free bytes", free, ok)
	}
}

// A raft log write that has run for the stall timeout fails the replica as
// a store failure that names the hang; one that has run for half of it (or
// 5 s) makes /readyz answer 503 first; 0 turns the check off.
func TestHealthStalledStore(t *testing.T) {
	for _, tc := range []struct {
		age, timeout time.Duration
		fails, slow  bool
	}{
		{3 * time.Second, 2 * time.Second, true, true},
		{1500 * time.Millisecond, 2 * time.Second, false, true},
		{500 * time.Millisecond, 2 * time.Second, false, false},
		{4 * time.Second, time.Minute, false, false},
		{time.Hour, 0, false, true},
	} {
		var stopped error
		h := newHealth(slog.New(slog.DiscardHandler), func() raft.Status { return raft.Status{Leader: 1} }, nil, "",
			func(err error) { stopped = err })
		h.writeOverdue, h.stallTimeout = func() time.Duration { return tc.age }, tc.timeout
		h.checkStall(time.Hour)
		err := h.failed()
		if (err != nil) != tc.fails || stopped != err {
			t.Errorf("write running %v, timeout %v: failed() = %v (stopped with %v), want failing: %v", tc.age, tc.timeout, err, stopped, tc.fails)
			continue
		}
		if tc.fails {
			if !errors.Is(err, raft.ErrStoreFailed) || !strings.Contains(err.Error(), "a write of the raft log or a snapshot has not returned for 3s") ||
				publicReason(err) != "store failed: a write hangs" {
				t.Errorf("failure %q (reason %q) does not name the hang", err, publicReason(err))
			}
			continue
		}
		rec := httptest.NewRecorder()
		h.wrap(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if slow := rec.Code == http.StatusServiceUnavailable && strings.Contains(rec.Body.String(), "store write slow"); slow != tc.slow {
			t.Errorf("write running %v, timeout %v: /readyz %d %s, want slow: %v", tc.age, tc.timeout, rec.Code, rec.Body.String(), tc.slow)
		}
	}
}

// A replica that was itself stopped (SIGSTOP, a paused machine) while a
// write was in progress is not failed when it resumes: the write must hang
// for the whole timeout after the process runs again. (Found by hand: a
// replica stopped for 6 s with --store-stall-timeout 3s failed on resume,
// its write's answer not yet read.)
func TestHealthStallAfterPause(t *testing.T) {
	h := newHealth(slog.New(slog.DiscardHandler), func() raft.Status { return raft.Status{} }, nil, "", func(error) {})
	h.writeOverdue, h.stallTimeout = func() time.Duration { return 6 * time.Second }, 3*time.Second
	h.checkStall(time.Second) // resumed a second ago
	if err := h.failed(); err != nil {
		t.Fatalf("failed %v after the process ran for 1s of a 3s timeout", err)
	}
	h.checkStall(3 * time.Second)
	if err := h.failed(); !errors.Is(err, errStoreStalled) {
		t.Fatalf("failed() = %v once the write hung 3s after the resume, want a stall", err)
	}
}
