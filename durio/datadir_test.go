package durio_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ruaft/ruaft/durio"
	"github.com/ruaft/ruaft/durio/client"
	"github.com/ruaft/ruaft/internal/freeport"
)

// LockDataDir: a second lock on a held folder is refused, naming the
// holder; a released (or never taken) folder can be locked again; another
// folder is independent.
func TestLockDataDir(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no data folder lock on Windows")
	}
	dir, other := t.TempDir(), t.TempDir()
	lock, err := durio.LockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = durio.LockDataDir(dir)
	if !errors.Is(err, durio.ErrDataDirInUse) || !strings.Contains(err.Error(), fmt.Sprintf("process %d holds", os.Getpid())) {
		t.Fatalf("second lock: %v, want ErrDataDirInUse naming pid %d", err, os.Getpid())
	}
	otherLock, err := durio.LockDataDir(other)
	if err != nil {
		t.Fatalf("another folder: %v", err)
	}
	otherLock.Release()
	lock.Release()
	lock.Release() // a second Release does nothing
	lock, err = durio.LockDataDir(dir)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	lock.Release()
	// A folder that does not exist yet is made; one that cannot be (under
	// a file) is an error, not "in use".
	fresh, err := durio.LockDataDir(filepath.Join(dir, "new", "replica"))
	if err != nil {
		t.Fatalf("a folder that does not exist yet: %v", err)
	}
	fresh.Release()
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := durio.LockDataDir(filepath.Join(dir, "file", "replica")); err == nil || errors.Is(err, durio.ErrDataDirInUse) {
		t.Fatalf("a folder under a file: %v", err)
	}
}

// Two processes on one data folder: a second `durio serve` given a running
// replica's --data-dir refuses to start (exit 1, naming the holder's pid)
// without touching the store, and `durio snapshot restore` into it is
// refused the same way; the running replica keeps serving. Once it has
// stopped, even by SIGKILL, the folder can be used again.
func TestE2ESecondProcessOnOneDataDirRefused(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no data folder lock on Windows")
	}
	c, cl := oneReplicaWithKey(t)
	file := filepath.Join(t.TempDir(), "backup.durio")
	runCLI(t, []string{"DURIO_ENDPOINTS=" + c.clients[0]}, "", "snapshot", "save", file).expect(t, 0, "snapshot save")

	dataDir := filepath.Join(c.dir, "replica-0")
	holder := fmt.Sprintf("process %d holds", c.procs[0].cmd.Process.Pid)
	ports := freeport.Ports(t, 2)
	serve := []string{"serve", "--id", "0", "--peers", "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		"--listen-client", "127.0.0.1:" + strconv.Itoa(ports[1]), "--data-dir", dataDir, "--persister", "file"}
	r := runCLI(t, nil, "", serve...)
	r.expect(t, 1, serve...)
	if !strings.Contains(r.stderr, "in use by another process") || !strings.Contains(r.stderr, holder) {
		t.Fatalf("second serve on %s: %q, want the folder in use by %s", dataDir, r.stderr, holder)
	}
	restore := []string{"snapshot", "restore", file, "--data-dir", dataDir, "--persister", "file"}
	r = runCLI(t, nil, "", restore...)
	r.expect(t, 1, restore...)
	if !strings.Contains(r.stderr, "in use by another process") {
		t.Fatalf("restore into a running replica's folder: %q", r.stderr)
	}
	if got, err := cl.Get(t.Context(), "k"); err != nil || got != "v" {
		t.Fatalf("the running replica answers %q, %v after the refusals", got, err)
	}

	// The plugin, which writes the store, holds the lock too (it
	// inherited it), so the folder is not free before the plugin is gone.
	if runtime.GOOS == "linux" {
		if holders := lockHolders(t, filepath.Join(dataDir, "durio.lock")); len(holders) != 2 {
			t.Fatalf("processes with durio.lock open: %v, want the replica and its plugin", holders)
		}
	}

	// SIGKILL drops the lock with the processes: the folder starts again.
	c.kill(0)
	c.start(0)
	waitKey(t, cl, "k", "v", "the replica restarted on its folder", c.procs[0].logText)
}

// durio dev on a folder another process holds stops at once with the
// holder's pid, before it starts any replica (which would share the first
// one's logs and be refused five times each).
func TestDevRefusesAFolderInUse(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no data folder lock on Windows")
	}
	dir := t.TempDir()
	lock, err := durio.LockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	base := freeport.Range(t, 6)
	args := []string{"dev", "--dir", dir, "--persister", "file", "--client-port", strconv.Itoa(base), "--peer-port", strconv.Itoa(base + 3)}
	r := runCLI(t, nil, "", args...)
	r.expect(t, 1, args...)
	if !strings.Contains(r.stderr, "another durio dev runs on it") || !strings.Contains(r.stderr, fmt.Sprintf("process %d holds", os.Getpid())) ||
		strings.Contains(r.stdout, "started") {
		t.Fatalf("durio dev on a folder in use: stdout %q, stderr %q", r.stdout, r.stderr)
	}
}

// lockHolders returns the pids of the processes that have path open
// (Linux: /proc/PID/fd).
func lockHolders(t *testing.T, path string) []int {
	t.Helper()
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	seen := map[int]bool{}
	var pids []int
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil && target == path {
			pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
			if !seen[pid] {
				seen[pid] = true
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// A replica restarted with another persister on its data folder (a changed
// config file, say) refuses to start (exit 2) instead of starting empty
// without its log and vote; started again with its own persister it has
// its data.
func TestE2EOtherPersisterOnAFolderRefused(t *testing.T) {
	c, cl := oneReplicaWithKey(t)
	c.stop(0)
	for _, other := range []string{"badger", "noop"} {
		args := []string{"serve", "--id", "0", "--peers", c.peers[0], "--listen-client", strings.TrimPrefix(c.clients[0], "http://"),
			"--data-dir", filepath.Join(c.dir, "replica-0"), "--persister", other}
		r := runCLI(t, nil, "", args...)
		r.expect(t, 2, args...)
		if !strings.Contains(r.stderr, `holds the store of persister "file"`) || !strings.Contains(r.stderr, `--persister "file"`) {
			t.Fatalf("%s on a file store: %q", other, r.stderr)
		}
	}
	c.start(0)
	waitKey(t, cl, "k", "v", "the replica restarted with its own persister", c.procs[0].logText)
}

// waitKey waits up to a minute for cl to read key as want, failing with
// who and log's tail.
func waitKey(t *testing.T, cl *client.Client, key, want, who string, log func() string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if v, err := cl.Get(t.Context(), key); err == nil && v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not read %s as %q:\n%s", who, key, want, tail(log(), 4096))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// oneReplicaWithKey starts a one-replica cluster with the file persister
// and writes k=v.
func oneReplicaWithKey(t *testing.T) (*cluster, *client.Client) {
	t.Helper()
	c := startCluster(t, 1, "file")
	cl, err := client.New(c.clients, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Put(t.Context(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	return c, cl
}
