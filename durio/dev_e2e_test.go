package durio_test

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ruaft/ruaft/internal/freeport"
)

// devRun is a running `durio dev` with its output as lines.
type devRun struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	mu    sync.Mutex // guards out
	out   []string
	done  chan struct{}
}

func startDev(t *testing.T, args ...string) *devRun {
	t.Helper()
	cmd := exec.Command(durioBin, append([]string{"dev"}, args...)...)
	cmd.Env = cleanEnv()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	dieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &devRun{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 1024), done: make(chan struct{})}
	go func() {
		defer close(d.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			d.mu.Lock()
			d.out = append(d.out, sc.Text())
			d.mu.Unlock()
			d.lines <- sc.Text()
		}
	}()
	go func() { _ = cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-d.done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			d.mu.Lock()
			t.Logf("durio dev output:\n%s", strings.Join(d.out, "\n"))
			d.mu.Unlock()
		}
	})
	return d
}

// want waits for a line matching re and returns its submatches.
func (d *devRun) want(re string, timeout time.Duration) []string {
	d.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-d.lines:
			if !ok {
				d.t.Fatalf("durio dev ended before printing %q", re)
			}
			if m := rx.FindStringSubmatch(line); m != nil {
				return m
			}
		case <-deadline:
			d.t.Fatalf("durio dev did not print %q within %v", re, timeout)
		}
	}
}

func (d *devRun) send(line string) {
	d.t.Helper()
	if _, err := io.WriteString(d.stdin, line+"\n"); err != nil {
		d.t.Fatal(err)
	}
}

// durio dev keeps serving when a replica dies: it says when a leader is
// elected, kills and starts replicas on request, restarts one that crashes,
// and stops every replica on Ctrl-C.
func TestDevFailover(t *testing.T) {
	base := freeport.Range(t, 6)
	d := startDev(t, "--dir", t.TempDir(), "--persister", "file", "--client-port", strconv.Itoa(base),
		"--peer-port", strconv.Itoa(base+3), "--log-level", "info",
		"--", "--election-timeout", "300ms", "--heartbeat-interval", "60ms")
	client := func(i int) string { return "http://127.0.0.1:" + strconv.Itoa(base+i) }
	d.want(`^  every replica also gets: --election-timeout 300ms --heartbeat-interval 60ms$`, 30*time.Second)
	pids := map[string]int{}
	for range 3 {
		m := d.want(`^replica (\d): started \(pid (\d+)\)`, 30*time.Second)
		pids[m[1]], _ = strconv.Atoi(m[2])
		if runtime.GOOS == "linux" { // the serve flags after -- reach the replica
			cmdline, err := os.ReadFile("/proc/" + m[2] + "/cmdline")
			if err == nil && !strings.HasSuffix(string(cmdline), "\x00--election-timeout\x00300ms\x00--heartbeat-interval\x0060ms\x00") {
				t.Fatalf("replica %s runs %q, without the serve flags given after --", m[1], strings.ReplaceAll(string(cmdline), "\x00", " "))
			}
		}
	}
	leader, _ := strconv.Atoi(d.want(`^leader: replica (\d) \(term \d+\)`, 30*time.Second)[1])
	d.want(`^cluster ready`, 30*time.Second) // once every replica answers
	if code, body := httpDo(t, "POST", client((leader+1)%3)+"/kvstore/put", `{"key":"config/db/host","value":"db.local"}`); code != 200 {
		t.Fatalf("put: %d %v", code, body)
	}

	// Kill the leader: the others elect a new one and still serve the key.
	d.send("kill " + strconv.Itoa(leader))
	d.want(`^replica `+strconv.Itoa(leader)+`: killed`, 15*time.Second)
	next, _ := strconv.Atoi(d.want(`^leader: replica ([0-9]) \(term \d+\)`, 30*time.Second)[1])
	if next == leader {
		t.Fatalf("replica %d was killed but is reported as leader", leader)
	}
	if code, body := httpDo(t, "GET", client(next)+"/kvstore/get/config/db/host", ""); code != 200 || body["value"] != "db.local" {
		t.Fatalf("get after failover: %d %v", code, body)
	}
	d.send("status")
	d.want(`^replica `+strconv.Itoa(leader)+`: down$`, 5*time.Second)
	d.send("start " + strconv.Itoa(leader))
	pids[strconv.Itoa(leader)], _ = strconv.Atoi(d.want(`^replica `+strconv.Itoa(leader)+`: started \(pid (\d+)\)`, 15*time.Second)[1])

	// A replica that dies by itself is restarted.
	victim := strconv.Itoa((next + 1) % 3)
	if err := syscall.Kill(pids[victim], syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Fatal(err)
	}
	d.want(`^replica `+victim+`: exited \(signal: killed\); restarting it`, 15*time.Second)
	pids[victim], _ = strconv.Atoi(d.want(`^replica `+victim+`: started \(pid (\d+)\)`, 15*time.Second)[1])
	d.send("kill 7")
	d.want(`^no replica "7"`, 5*time.Second)

	// Ctrl-C stops everything, exit status 0.
	if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatal("durio dev did not stop within 30s of SIGINT")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("durio dev exited %d after SIGINT", code)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("replica pid %d still running after durio dev stopped", pid)
		}
	}
}

// durio dev --client-auth-file: every replica checks the tokens, and durio
// dev still follows the cluster (it asks with the file's first token).
func TestDevClientAuth(t *testing.T) {
	const read, write = "r-0123456789abcdef", "w-0123456789abcdef"
	authFile := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(authFile, []byte("# tokens\nread "+read+"\nwrite "+write+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := freeport.Range(t, 4)
	d := startDev(t, "--dir", t.TempDir(), "--persister", "noop", "--replicas", "2", "--client-port", strconv.Itoa(base),
		"--peer-port", strconv.Itoa(base+2), "--client-auth-file", authFile)
	d.want(`^leader: replica \d \(term \d+\)`, 30*time.Second)
	d.want(`^cluster ready`, 30*time.Second)
	d.want(`^the replicas require client tokens: add -H 'Authorization: Bearer TOKEN'`, 5*time.Second)
	for token, want := range map[string]int{"": 401, read: 403, write: 200} {
		if got := putWithToken(t, "http://127.0.0.1:"+strconv.Itoa(base+1), token); got != want {
			t.Errorf("put with %q: %d, want %d", token, got, want)
		}
	}
	d.send("status")
	d.want(`^replica 1: running \(pid \d+\), (leader|follower) in term`, 5*time.Second)

	// Reloading the tokens: SIGHUP to durio dev, then its reload command.
	url := "http://127.0.0.1:" + strconv.Itoa(base+1)
	waitPut := func(token string, want int, how string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for got := putWithToken(t, url, token); got != want; got = putWithToken(t, url, token) {
			if time.Now().After(deadline) {
				t.Fatalf("after %s: put with %q answers %d, want %d", how, token, got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := os.WriteFile(authFile, []byte("write "+read+"\nwrite "+write+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	d.want(`^reload: SIGHUP sent to replica 0, 1 `, 10*time.Second)
	waitPut(read, 200, "SIGHUP to durio dev")
	if err := os.WriteFile(authFile, []byte("write "+write+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.send("reload")
	d.want(`^reload: SIGHUP sent to replica 0, 1 `, 10*time.Second)
	waitPut(read, 401, "the reload command")
	waitPut(write, 200, "the reload command")
}

// A replica that refuses its configuration or data folder (exit 2: here
// the folder holds a file store and durio dev runs badger) is not started
// again and again: durio dev prints the replica's own reason once and
// leaves it down until `start N`. Here every replica refuses, so nothing
// is left to run and durio dev itself ends with exit status 2.
func TestDevReplicaRefusedNotRestarted(t *testing.T) {
	dir := t.TempDir()
	for i := range 3 {
		store := filepath.Join(dir, "replica-"+strconv.Itoa(i), "store")
		if err := os.MkdirAll(store, 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(store, "0000000000000001.wal"), nil, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	base := freeport.Range(t, 6)
	d := startDev(t, "--dir", dir, "--persister", "badger", "--client-port", strconv.Itoa(base),
		"--peer-port", strconv.Itoa(base+3))
	refused := map[string]bool{}
	for len(refused) < 3 {
		m := d.want(`^replica (\d): refused to start: .*holds the store of persister \\?"file\\?"`, 30*time.Second)
		refused[m[1]] = true
	}
	// Nothing is started again (a restart would come after 1 s): with no
	// replica left to run, durio dev ends, with exit status 2.
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatal("durio dev still runs with every replica refused")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 2 {
		t.Errorf("durio dev exited with %d, want 2", code)
	}
	d.mu.Lock()
	out := strings.Join(d.out, "\n")
	d.mu.Unlock()
	if n := strings.Count(out, ": started (pid"); n != 3 {
		t.Fatalf("%d starts, want the first 3 only:\n%s", n, out)
	}
}
