//go:build unix

package plugin_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/persisttest"
	"github.com/ruaft/ruaft/persist/plugin"
)

// lockedBuffer is a log sink safe for the plugin's forwarding goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// tryFlock opens path anew and tries an exclusive flock on it, as another
// process would: EWOULDBLOCK while anyone holds the lock.
func tryFlock(t *testing.T, path string) error {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

// A file in Config.Inherit stays open in the plugin until it exits: a lock
// on it outlives the host's own copy while the plugin runs, and is free
// once the plugin has exited. The direct Append channel, passed after the
// inherited files, still works.
func TestInheritedFileHeldUntilPluginExits(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "held.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	s, err := plugin.Open(ctx, plugin.Config{Persister: "file", DataDir: filepath.Join(dir, "store"), SocketDir: shortSocketDir(t),
		Inherit: []*os.File{f}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f.Close() // the host's copy: the plugin's keeps the lock
	if err := tryFlock(t, path); err != syscall.EWOULDBLOCK {
		t.Fatalf("flock while the plugin runs: %v, want EWOULDBLOCK", err)
	}
	if err := s.Append(ctx, persist.HardState{Term: 1}, persisttest.Entries(1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "no direct Append channel") {
		t.Fatalf("the inherited file displaced the direct Append channel:\n%s", logs.String())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tryFlock(t, path); err != nil {
		t.Fatalf("flock after the plugin exited: %v", err)
	}
}
