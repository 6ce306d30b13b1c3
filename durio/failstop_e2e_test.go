package durio_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// waitExit waits for replica i's process to exit on its own and returns its
// exit code.
func (c *cluster) waitExit(i int, within time.Duration) int {
	c.t.Helper()
	p := c.procs[i]
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		c.t.Fatalf("replica %d still running %v after it should have stopped", i, within)
		return 0
	}
}

func (c *cluster) dataDir(i int) string { return filepath.Join(c.dir, "replica-"+strconv.Itoa(i)) }

// socketsIn lists the Unix sockets in dir.
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

// flipByte XORs one byte of name, as a failing disk would.
func flipByte(t *testing.T, name string, off int64) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// largestFile returns the largest file in dir whose name ends in ext.
func largestFile(t *testing.T, dir, ext string) (string, int64) {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	best, size := "", int64(-1)
	for _, e := range es {
		info, err := e.Info()
		if err == nil && strings.HasSuffix(e.Name(), ext) && info.Size() > size {
			best, size = filepath.Join(dir, e.Name()), info.Size()
		}
	}
	if best == "" {
		t.Fatalf("no *%s file in %s", ext, dir)
	}
	return best, size
}

// TestE2ECorruptStoreRefusesToStart stops a replica, flips one byte of its
// store (a badger table; the file store's last, complete record), and
// checks that the replica refuses to start: non-zero exit and a message
// that says the store is damaged. The other two keep serving.
func TestE2ECorruptStoreRefusesToStart(t *testing.T) {
	for _, persister := range []string{"badger", "file"} {
		t.Run(persister, func(t *testing.T) {
			c := startCluster(t, 3, persister)
			for i := range 100 {
				key := "k" + strconv.Itoa(i)
				if code, body := httpDo(t, "POST", c.clients[i%3]+"/kvstore/put", `{"key":"`+key+`","value":"v"}`); code != 200 {
					t.Fatalf("put %s: %d %v", key, code, body)
				}
			}
			victim := (c.leader() + 1) % 3
			c.stop(victim)
			store := filepath.Join(c.dataDir(victim), "store")
			if persister == "badger" {
				name, size := largestFile(t, store, ".sst")
				flipByte(t, name, size/3) // inside a data block
			} else {
				name, size := largestFile(t, store, ".wal")
				flipByte(t, name, size-3) // inside the last record, which is complete
			}
			c.start(victim)
			if code := c.waitExit(victim, 30*time.Second); code == 0 {
				t.Fatalf("replica %d started on a damaged store and exited 0", victim)
			}
			log := c.procs[victim].log.String()
			if !strings.Contains(log, "refusing to start") || !strings.Contains(log, "corrupt") {
				t.Fatalf("replica %d exited without saying its store is damaged:\n%s", victim, tail(log, 2048))
			}
			for _, line := range strings.Split(log, "\n") {
				if strings.Contains(line, "refusing to start") {
					t.Logf("replica %d: %s", victim, line)
				}
			}
			other := (victim + 1) % 3
			if code, body := httpDo(t, "POST", c.clients[other]+"/kvstore/put", `{"key":"after","value":"v"}`); code != 200 {
				t.Fatalf("put through replica %d with one replica down: %d %v", other, code, body)
			}
		})
	}
}

// pluginPID returns the pid of the persister plugin process that pid
// started (its one child), or 0.
func pluginPID(t *testing.T, parent int) int {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(parent) {
			return pid
		}
	}
	return 0
}

// TestE2EKillPluginFailStop kills the leader's badger plugin with SIGKILL
// under writes: the leader exits non-zero (fail-stop) instead of staying up
// as a replica that cannot write, the other two keep acknowledging writes,
// and after a restart no acknowledged write is missing on any replica. The
// dead plugin's socket is removed at the restart, and no socket is left
// over after SIGKILL of the replica itself and another restart.
func TestE2EKillPluginFailStop(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("finds the plugin process through /proc")
	}
	c := startCluster(t, 3, "badger")
	httpClient := &http.Client{Timeout: 3 * time.Second}
	put := func(i int, key string) bool {
		resp, err := httpClient.Post(c.clients[i]+"/kvstore/put", "application/json",
			strings.NewReader(`{"key":"`+key+`","value":"`+key+`"}`))
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	var (
		mu     sync.Mutex // guards acked and lastOK
		acked  []string
		lastOK time.Time
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				key := fmt.Sprintf("w%d-%d", w, n)
				if put((w+n)%3, key) {
					mu.Lock()
					acked, lastOK = append(acked, key), time.Now()
					mu.Unlock()
				}
			}
		})
	}
	ackedAfter := func(since time.Time, within time.Duration) bool {
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			mu.Lock()
			ok := lastOK.After(since)
			mu.Unlock()
			if ok {
				return true
			}
			time.Sleep(10 * time.Millisecond)
		}
		return false
	}
	if !ackedAfter(time.Time{}, 20*time.Second) {
		t.Fatal("no write acknowledged")
	}
	time.Sleep(300 * time.Millisecond) // let some writes through before the kill

	leader := c.leader()
	if leader < 0 {
		t.Fatal("no leader")
	}
	plugin := pluginPID(t, c.procs[leader].cmd.Process.Pid)
	if plugin == 0 {
		t.Fatalf("no plugin process under replica %d", leader)
	}
	if got := socketsIn(t, filepath.Join(c.dataDir(leader), "plugin")); len(got) != 1 {
		t.Fatalf("plugin sockets under replica %d's data dir: %v, want 1", leader, got)
	}
	if err := syscall.Kill(plugin, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	if code := c.waitExit(leader, 20*time.Second); code == 0 {
		t.Fatalf("replica %d exited 0 after its plugin died; want non-zero so systemd restarts it", leader)
	}
	if log := c.procs[leader].log.String(); !strings.Contains(log, "replica failed") ||
		!strings.Contains(log, "the persister plugin process exited (signal: killed)") {
		t.Fatalf("replica %d's log does not say why it stopped:\n%s", leader, tail(log, 2048))
	}
	t.Logf("replica %d exited %v after its plugin was killed", leader, time.Since(killedAt).Round(time.Millisecond))
	if !ackedAfter(killedAt, 15*time.Second) {
		t.Fatal("the other two replicas acknowledged no write after the leader's plugin died")
	}

	c.start(leader) // same data dir: the killed plugin's socket is stale
	waitHealthy := func() {
		deadline := time.Now().Add(20 * time.Second)
		for {
			code := 0
			if resp, err := httpClient.Get(c.clients[leader] + "/readyz"); err == nil {
				resp.Body.Close()
				code = resp.StatusCode
			}
			if code == http.StatusOK {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %d not ready within 20s of its restart (last /readyz %d)", leader, code)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitHealthy()
	if got := socketsIn(t, filepath.Join(c.dataDir(leader), "plugin")); len(got) != 1 {
		t.Fatalf("plugin sockets after the restart: %v, want only the new plugin's", got)
	}
	c.kill(leader) // SIGKILL: the plugin dies with it (Pdeathsig) and leaves its socket
	c.start(leader)
	waitHealthy()
	if got := socketsIn(t, filepath.Join(c.dataDir(leader), "plugin")); len(got) != 1 {
		t.Fatalf("plugin sockets after SIGKILL and restart: %v, want only the new plugin's", got)
	}
	if !ackedAfter(time.Now(), 15*time.Second) {
		t.Fatal("no write acknowledged after the restarts")
	}
	cancel()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	sort.Strings(acked)
	t.Logf("%d acknowledged writes", len(acked))
	for i := range c.clients {
		missing := 0
		for _, key := range acked {
			code, body := httpDo(t, "GET", c.clients[i]+"/kvstore/get/"+key, "")
			if code != 200 || body["value"] != key {
				if missing < 5 {
					t.Errorf("replica %d: acknowledged %s, read %d %v", i, key, code, body)
				}
				missing++
			}
		}
		if missing > 0 {
			t.Fatalf("replica %d: %d of %d acknowledged writes missing", i, missing, len(acked))
		}
	}

	// With no write in flight, a follower whose plugin dies notices by
	// itself (it watches the plugin process) and stops too.
	follower := (c.leader() + 1) % 3
	plugin = pluginPID(t, c.procs[follower].cmd.Process.Pid)
	if plugin == 0 {
		t.Fatalf("no plugin process under replica %d", follower)
	}
	if err := syscall.Kill(plugin, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := c.waitExit(follower, 10*time.Second); code == 0 {
		t.Fatalf("idle replica %d exited 0 after its plugin died", follower)
	}
}

// TestE2EStalledStoreFailStop stops (SIGSTOP) a follower's badger plugin
// under writes, as a disk that stops answering leaves it: the follower's
// /readyz turns 503 ("store write slow") so that traffic goes elsewhere,
// and once the write has hung for --store-stall-timeout the replica stops
// (fail-stop) and exits non-zero, killing the stopped plugin on its way out;
// the other two keep acknowledging writes, and the restarted replica is
// ready again. Before, such a replica stayed up and "ready", unable to apply
// or to serve a read, and did not even exit on SIGTERM.
func TestE2EStalledStoreFailStop(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("finds the plugin process through /proc")
	}
	c := startCluster(t, 3, "badger", "--store-stall-timeout", "5s")
	leader := c.leader()
	if leader < 0 {
		t.Fatal("no leader")
	}
	follower := (leader + 1) % 3
	httpClient := &http.Client{Timeout: 3 * time.Second}
	var acked atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for w := range 2 {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				resp, err := httpClient.Post(c.clients[leader]+"/kvstore/put", "application/json",
					strings.NewReader(fmt.Sprintf(`{"key":"w%d-%d","value":"v"}`, w, n)))
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					acked.Add(1)
				}
			}
		})
	}
	plugin := pluginPID(t, c.procs[follower].cmd.Process.Pid)
	if plugin == 0 {
		t.Fatalf("no plugin process under replica %d", follower)
	}
	if err := syscall.Kill(plugin, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	slow := false
	for deadline := time.Now().Add(10 * time.Second); !slow && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := httpClient.Get(c.clients[follower] + "/readyz"); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			slow = resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), "store write slow")
		}
	}
	if !slow {
		t.Fatalf("replica %d's /readyz never said its store write is slow", follower)
	}
	if code := c.waitExit(follower, 40*time.Second); code == 0 {
		t.Fatalf("replica %d exited 0 after its store hung; want non-zero so systemd restarts it", follower)
	}
	t.Logf("replica %d exited %v after its plugin was stopped", follower, time.Since(stoppedAt).Round(time.Millisecond))
	if log := c.procs[follower].log.String(); !strings.Contains(log, "a write of the raft log or a snapshot has not returned for") {
		t.Fatalf("replica %d's log does not say its store hung:\n%s", follower, tail(log, 2048))
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", plugin)); err == nil {
		if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", plugin)); !strings.Contains(string(st), ") Z ") {
			t.Errorf("the stopped plugin %d outlived its replica", plugin)
		}
	}
	before := acked.Load()
	waitFor(t, "writes acknowledged by the other two", 15*time.Second, func() bool { return acked.Load() > before+10 })

	c.start(follower)
	waitFor(t, "the restarted replica ready", 30*time.Second, func() bool {
		resp, err := httpClient.Get(c.clients[follower] + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
