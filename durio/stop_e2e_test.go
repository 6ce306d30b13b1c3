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
	start := func() (*exec.Cmd, func() string, chan struct{}) {
		cmd := exec.Command(durioBin, "serve", "--id", "0", "--peers", "http://127.0.0.1:"+strconv.Itoa(ports[0]),
			"--listen-client", strings.TrimPrefix(clientURL, "http://"), "--data-dir", dataDir, "--persister", "file",
			"--log-level", "info")
		dieWithTest(cmd)
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.Setpgid = true
		var log bytes.Buffer
		out := &syncWriter{w: &log}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
		logText := func() string {
			out.mu.Lock()
			defer out.mu.Unlock()
			return log.String()
		}
		return cmd, logText, done
	}
	cmd, out, done := start()
	cl, err := client.New([]string{clientURL}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for cl.Put(t.Context(), "k", "v") != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the replica does not take a write:\n%s", tail(out(), 4096))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the replica did not stop within 30 s of its group's SIGTERM:\n%s", tail(out(), 4096))
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 || strings.Contains(out(), `"level":"ERROR"`) {
		t.Fatalf("a group SIGTERM: exit %d, log:\n%s", code, tail(out(), 4096))
	}

	_, out, _ = start()
	deadline = time.Now().Add(time.Minute)
	for {
		if v, err := cl.Get(t.Context(), "k"); err == nil && v == "v" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart the key does not read back:\n%s", tail(out(), 4096))
		}
		time.Sleep(50 * time.Millisecond)
	}
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
	cmd := exec.Command(durioBin, "serve", "--id", "0", "--peers", "http://127.0.0.1:"+strconv.Itoa(ports[0]),
		"--listen-client", strings.TrimPrefix(clientURL, "http://"), "--data-dir", t.TempDir(), "--persister", "file",
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
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	out := func() string {
		w.mu.Lock()
		defer w.mu.Unlock()
		return log.String()
	}
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
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the replica did not stop within 30 s of SIGTERM:\n%s", tail(out(), 4096))
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 || strings.Contains(out(), `"level":"ERROR"`) {
		t.Fatalf("after a group SIGHUP and a SIGTERM: exit %d, log:\n%s", code, tail(out(), 4096))
	}
}
