package durio_test

import (
	"bytes"
	"context"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ruaft/ruaft/durio/client"
	"github.com/ruaft/ruaft/internal/freeport"
)

// groupReplica is a one-replica cluster (file persister) in its own
// process group, so that a test can signal the group as a terminal or
// systemd would.
type groupReplica struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once it exited
	out  func() string // its log so far
}

// startGroupReplica starts replica 0 of a one-replica cluster with the
// peer and client ports and data folder given.
func startGroupReplica(t *testing.T, peerPort, clientPort int, dataDir string) *groupReplica {
	t.Helper()
	cmd := exec.Command(durioBin, "serve", "--id", "0", "--peers", "http://127.0.0.1:"+strconv.Itoa(peerPort),
		"--listen-client", "127.0.0.1:"+strconv.Itoa(clientPort), "--data-dir", dataDir, "--persister", "file",
		"--log-level", "info")
	dieWithTest(cmd)
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	var log bytes.Buffer
	w := &syncWriter{w: &log}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &groupReplica{cmd: cmd, done: make(chan struct{}), out: func() string {
		w.mu.Lock()
		defer w.mu.Unlock()
		return log.String()
	}}
	go func() { _ = cmd.Wait(); close(r.done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-r.done })
	return r
}

// waitExit waits for the replica to exit after what, and fails the test
// unless it exited 0 without logging an error.
func (r *groupReplica) waitExit(t *testing.T, what string) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the replica did not stop within 30 s of %s:\n%s", what, tail(r.out(), 4096))
	}
	if code := r.cmd.ProcessState.ExitCode(); code != 0 || strings.Contains(r.out(), `"level":"ERROR"`) {
		t.Fatalf("after %s: exit %d, log:\n%s", what, code, tail(r.out(), 4096))
	}
}

// SIGTERM sent to a replica's whole process group (Ctrl-C or `timeout` in
// a terminal, systemd's default KillMode=control-group) reaches its
// persister plugin too: the plugin leaves its end to the replica, which
// shuts down gracefully, closes the store and exits 0, and what it wrote is
// there after a restart. (The plugin used to die of the signal at once,
// and the replica exited 1 with "store unavailable".)
func TestE2EGroupSIGTERMStopsCleanly(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no process groups")
	}
	ports := freeport.Ports(t, 2)
	clientURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	dataDir := t.TempDir()
	r := startGroupReplica(t, ports[0], ports[1], dataDir)
	cl, err := client.New([]string{clientURL}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for cl.Put(t.Context(), "k", "v") != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the replica does not take a write:\n%s", tail(r.out(), 4096))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := syscall.Kill(-r.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r.waitExit(t, "its group's SIGTERM")

	r = startGroupReplica(t, ports[0], ports[1], dataDir)
	waitKey(t, cl, "k", "v", "the replica restarted", r.out)
}

// SIGHUP sent to a replica's whole process group (`systemctl kill -s HUP`,
// whose default is every process of the unit, or `kill -HUP -PGID`) is a
// reload for the replica and nothing for its persister plugin: the plugin
// does not die of it, the replica keeps taking writes, and a SIGTERM then
// stops it with exit 0. (The plugin used to die of the hangup, and the
// replica fail-stopped with exit 1 and "store unavailable".)
func TestE2EGroupSIGHUPOnlyReloads(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no process groups")
	}
	ports := freeport.Ports(t, 2)
	clientURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	r := startGroupReplica(t, ports[0], ports[1], t.TempDir())
	cmd, done, out := r.cmd, r.done, r.out
	cl, err := client.New([]string{clientURL}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// put retries until deadline, failing as soon as the replica has exited
	// (a Put to an endpoint that is gone waits for its context).
	put := func(what, v string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			err := cl.Put(ctx, "k", v)
			cancel()
			if err == nil {
				return
			}
			select {
			case <-done:
				t.Fatalf("%s: the replica exited %d:\n%s", what, cmd.ProcessState.ExitCode(), tail(out(), 4096))
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the replica does not take a write:\n%s", what, tail(out(), 4096))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	put("before the SIGHUP", "v1")
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out(), "SIGHUP: nothing to reload") {
		select {
		case <-done:
			t.Fatalf("the replica exited %d on its group's SIGHUP:\n%s", cmd.ProcessState.ExitCode(), tail(out(), 4096))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica did not act on its group's SIGHUP within 30 s:\n%s", tail(out(), 4096))
		}
		time.Sleep(20 * time.Millisecond)
	}
	put("after the group SIGHUP", "v2")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r.waitExit(t, "a group SIGHUP and a SIGTERM")
}

// A replica started with --join waits for the cluster for up to a minute
// before it serves; SIGTERM meanwhile (systemctl stop, Ctrl-C) stops it at
// once, with exit 0. (It used to wait out the minute: the join did not
// watch the signal.)
func TestE2EJoiningReplicaStopsOnSIGTERM(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGTERM")
	}
	ports := freeport.Ports(t, 3) // a cluster that is not there, this replica's peer and client ports
	cmd := exec.Command(durioBin, "serve", "--id", "3", "--join", "http://127.0.0.1:"+strconv.Itoa(ports[0]),
		"--peer-url", "http://127.0.0.1:"+strconv.Itoa(ports[1]), "--listen-client", "127.0.0.1:"+strconv.Itoa(ports[2]),
		"--data-dir", t.TempDir(), "--persister", "file", "--log-level", "info")
	dieWithTest(cmd)
	var log bytes.Buffer
	w := &syncWriter{w: &log}
	cmd.Stdout, cmd.Stderr = w, w
	out := func() string {
		w.mu.Lock()
		defer w.mu.Unlock()
		return log.String()
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })

	// It is joining once it says it retries.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out(), "join: retrying") {
		if time.Now().After(deadline) {
			t.Fatalf("the replica did not start joining:\n%s", tail(out(), 4096))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the joining replica did not stop within 10 s of SIGTERM:\n%s", tail(out(), 4096))
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 || strings.Contains(out(), `"level":"ERROR"`) {
		t.Fatalf("after SIGTERM while joining: exit %d, log:\n%s", code, tail(out(), 4096))
	}
	if n := strings.Count(out(), `"msg":"join: retrying"`); n > 3 {
		t.Errorf("%d retry lines at info before the stop; want a few (one every 5 s)", n)
	}
}
