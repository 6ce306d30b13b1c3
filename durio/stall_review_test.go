package durio

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/raft"
)

// Review: explaining a stall reads the data folder's free space (statfs)
// before the replica is stopped. statfs on the file system whose disk hangs
// (an NFS hard mount, a FUSE file system, some block-layer hangs) blocks
// too, so the fail-stop that exists for a hung disk never happens: the
// watch goroutine is stuck in fail -> explain -> diskFull, stop is never
// called, and /readyz keeps answering.
func TestReviewStallExplainDoesNotBlockOnHungDisk(t *testing.T) {
	old := freeSpace
	hang := make(chan struct{})
	freeSpace = func(string) (uint64, bool) { <-hang; return 0, false }
	checked := make(chan struct{})
	defer func() { close(hang); <-checked; freeSpace = old }()
	stopped := make(chan error, 1)
	h := newHealth(slog.New(slog.DiscardHandler), func() raft.Status { return raft.Status{Leader: 1} }, nil, t.TempDir(),
		func(err error) { stopped <- err })
	h.writeOverdue, h.stallTimeout = func() time.Duration { return time.Minute }, 30*time.Second
	go func() { defer close(checked); h.checkStall(time.Hour) }()
	select {
	case err := <-stopped:
		if !errors.Is(err, errStoreStalled) {
			t.Fatalf("stopped with %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("a stalled store did not stop the replica: explain's statfs of the hung disk blocks the fail-stop")
	}
}

// Review: "disk full" is put on any store failure on a file system with
// less than 64 MiB free, and publicReason prefers it: a store found corrupt
// (or a write that hangs) on a small, nearly full partition is reported as
// "the data folder's disk is full ... make room, then restart the replica",
// which a restart does not fix.
func TestReviewDiskFullDoesNotHideCorruption(t *testing.T) {
	old := freeSpace
	freeSpace = func(string) (uint64, bool) { return 40 << 20, true }
	t.Cleanup(func() { freeSpace = old })
	h := newHealth(slog.New(slog.DiscardHandler), func() raft.Status { return raft.Status{} }, nil, t.TempDir(), func(error) {})
	h.fail(fmt.Errorf("%w: %w: record 12: bad checksum", raft.ErrStoreFailed, persist.ErrCorrupt))
	err := h.failed()
	if got := publicReason(err); got != "store failed: corrupt data" {
		t.Errorf("corrupt store on a 40 MiB-free disk: reason %q, want %q (error: %v)", got, "store failed: corrupt data", err)
	}
	if strings.Contains(err.Error(), "make room, then restart") {
		t.Errorf("corrupt store told to make room and restart: %v", err)
	}
}

// Review: every store failure is explained with a statfs of the data
// folder before the replica stops; on a file system whose disk hangs (an
// NFS hard mount, FUSE) that blocks the fail-stop of a plugin crash too.
func TestReviewExplainStatfsIsBounded(t *testing.T) {
	old := freeSpace
	hang := make(chan struct{})
	freeSpace = func(string) (uint64, bool) { <-hang; return 0, false }
	failed := make(chan struct{})
	defer func() { close(hang); <-failed; freeSpace = old }()
	stopped := make(chan error, 1)
	h := newHealth(slog.New(slog.DiscardHandler), func() raft.Status { return raft.Status{} }, nil, t.TempDir(),
		func(err error) { stopped <- err })
	go func() {
		defer close(failed)
		h.fail(fmt.Errorf("%w: %w: connection reset by peer", raft.ErrStoreFailed, persist.ErrUnavailable))
	}()
	select {
	case <-stopped:
	case <-time.After(3 * time.Second):
		t.Fatal("a store failure did not stop the replica: explain's statfs blocks")
	}
}
