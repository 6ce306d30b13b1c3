package plugin_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/plugin"
)

// socketsIn lists the plugin sockets in dir.
func socketsIn(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if e.Type()&os.ModeSocket != 0 {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestStaleSocketsRemoved kills a host with SIGKILL, which leaves its
// plugin's socket folder under the data dir, and checks that the next Open
// on that data dir removes it: one socket folder while open, none after
// Close.
func TestStaleSocketsRemoved(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("relies on Pdeathsig (Linux) to stop the orphaned plugin")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "rs") // short: the socket lives under it
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	host := exec.Command(exe, "-test.run=^$")
	host.Env = append(os.Environ(), "PERSIST_TEST_HOST="+dir)
	out, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	pid, perr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || perr != nil {
		_ = host.Process.Kill()
		_ = host.Wait()
		t.Fatalf("host said %q, %v", line, err)
	}
	sockDir := filepath.Join(dir, "plugin")
	if got := socketsIn(t, sockDir); len(got) != 1 {
		t.Fatalf("sockets under the data dir while the host runs: %v, want 1", got)
	}
	_ = host.Process.Kill()
	_ = host.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil && !isZombie(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("plugin %d outlived its host", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stale := socketsIn(t, sockDir)
	if len(stale) != 1 {
		t.Fatalf("after SIGKILL of the host: sockets %v, want the stale one", stale)
	}

	s, err := plugin.Open(ctx, plugin.Config{Persister: "file", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, persist.HardState{Term: 1}, nil); err != nil {
		t.Fatal(err)
	}
	got := socketsIn(t, sockDir)
	if len(got) != 1 || got[0] == stale[0] {
		t.Fatalf("sockets after a restart: %v; want only a new one (stale was %s)", got, stale[0])
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := socketsIn(t, sockDir); len(got) != 0 {
		t.Fatalf("sockets after Close: %v", got)
	}
}

// TestLongSocketDirFallsBack opens a plugin whose data dir is too deep for a
// Unix socket path under it: the socket goes to a private temporary folder,
// the store works, and Close removes that folder.
func TestLongSocketDirFallsBack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	before := tempPersisterDirs(t)
	s, err := plugin.Open(ctx, plugin.Config{Persister: "file", DataDir: dir})
	if err != nil {
		t.Fatalf("Open with a %d-byte data dir: %v", len(dir), err)
	}
	if err := s.Append(ctx, persist.HardState{Term: 1}, nil); err != nil {
		t.Fatal(err)
	}
	if got := socketsIn(t, filepath.Join(dir, "plugin")); len(got) != 0 {
		t.Fatalf("a socket under a data dir too deep for it: %v", got)
	}
	if got := tempPersisterDirs(t); len(got) != len(before)+1 {
		t.Fatalf("private sockets in the temp folder while open: %d, want %d", len(got), len(before)+1)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := tempPersisterDirs(t); len(got) != len(before) {
		t.Fatalf("private socket folder left in the temp folder after Close (%d, want %d)", len(got), len(before))
	}
}

func tempPersisterDirs(t *testing.T) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(os.TempDir(), "ruaft-persister-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
