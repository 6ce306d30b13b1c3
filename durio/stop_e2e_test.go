package durio_test

import (
	"bytes"
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
