package plugin_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/persisttest"
	"github.com/ruaft/ruaft/persist/plugin"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv("PERSIST_TEST_HOST"); dir != "" && os.Getenv(plugin.EnvBuiltin) == "" {
		hostMain(dir) // never returns
	}
	if os.Getenv(envFaultPlugin) != "" {
		faultPluginMain() // never returns
	}
	persisttest.Main(m)
}

// envFaultPlugin makes the test binary, started as a third-party persister
// plugin, serve faultStore.
const envFaultPlugin = "PERSIST_TEST_FAULT_PLUGIN"

func faultPluginMain() {
	err := plugin.Serve(func(plugin.Params) (persist.Store, string, error) {
		return faultStore{persist.NewMemory()}, "fault", nil
	})
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

// faultStore is a memory store whose Append dies as badger does on a full
// disk: by a fault writing to a mapped page (SIGSEGV here: a read-only page;
// badger's is SIGBUS, a page its file has no disk block for).
type faultStore struct{ persist.Store }

func (faultStore) Append(context.Context, persist.HardState, []persist.Entry) error {
	b, err := syscall.Mmap(-1, 0, os.Getpagesize(), syscall.PROT_READ, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return err
	}
	b[0] = 1
	return errors.New("unreachable: the write above faults")
}

// A plugin that crashes is reported with its own last words: the error of
// the call it died in names how the process ended and the Go runtime's
// fatal error and signal, and the crash is in the log once (go-plugin passes
// every stderr line both to the Stderr writer and, for a crash, to its
// logger: both were logged).
func TestCrashedPluginSaysWhy(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(envFaultPlugin, "1")
	var logs lockedBuffer
	s, err := plugin.Open(ctx, plugin.Config{Persister: exe, DataDir: t.TempDir(), SocketDir: shortSocketDir(t),
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Append(ctx, persist.HardState{Term: 1}, persisttest.Entries(1, 1, 1))
	if !errors.Is(err, persist.ErrUnavailable) {
		t.Fatalf("Append: %v, want ErrUnavailable", err)
	}
	why := s.ExitReason()
	for _, want := range []string{"exited (exit status 2)", "fatal error: fault", "[signal SIGSEGV"} {
		if !strings.Contains(why, want) {
			t.Errorf("ExitReason() = %q, want it to say %q", why, want)
		}
	}
	if n := strings.Count(logs.String(), "fatal error: fault"); n != 1 {
		t.Errorf("the crash is logged %d times, want once:\n%s", n, logs.String())
	}
}

// A plugin that hangs (here: SIGSTOP, as a disk that stops answering
// leaves it) does not hang its host's Close: the store's Close call times
// out and the process is killed. go-plugin's own Kill asks the plugin to
// shut down and waits for its answer forever, so a replica whose store hung
// never exited, not even on SIGTERM.
func TestStoppedPluginClose(t *testing.T) {
	defer plugin.SetCloseTimeouts(300*time.Millisecond, 300*time.Millisecond)()
	s, err := plugin.Open(ctx, plugin.Config{Persister: "file", DataDir: t.TempDir(), SocketDir: shortSocketDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	pid := s.PID()
	t.Cleanup(func() {
		if !s.Exited() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// SIGSTOP takes effect asynchronously: a plugin that still runs may
	// answer the Close call (rarely, on a busy machine), and Close then
	// rightly returns nil.
	for deadline := time.Now().Add(5 * time.Second); runtime.GOOS == "linux"; time.Sleep(time.Millisecond) {
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if f := strings.Fields(string(st)); len(f) > 2 && f[2] == "T" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the plugin did not stop")
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Close of a stopped plugin: nil, want the store's Close call to fail")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close of a stopped plugin has not returned after 20s")
	}
	if !s.Exited() {
		t.Fatal("the stopped plugin process still runs after Close")
	}
}

// hostMain is a host process for TestPluginDiesWithHost: it starts a file
// plugin, prints its pid and waits to be killed.
func hostMain(dir string) {
	s, err := plugin.Open(context.Background(), plugin.Config{Persister: "file", DataDir: dir})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(s.PID())
	select {}
}

// TestPluginDiesWithHost kills a host process with SIGKILL (no chance to
// clean up) and checks that its plugin process dies too (Pdeathsig).
func TestPluginDiesWithHost(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Pdeathsig is Linux only")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "rh") // short: the socket lives under it
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
	if err != nil {
		_ = host.Process.Kill()
		t.Fatalf("host output: %q, %v", line, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		_ = host.Process.Kill()
		t.Fatalf("host said %q", line)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("plugin %d not running: %v", pid, err)
	}
	_ = host.Process.Kill()
	_ = host.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		// A dead child of init is reaped at once; a zombie counts as dead.
		if err := syscall.Kill(pid, 0); err != nil || isZombie(pid) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	t.Fatalf("plugin %d outlived its host", pid)
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] == "Z"
}

var ctx = context.Background()

func TestConformanceInProcess(t *testing.T) {
	for _, kind := range plugin.Builtins() {
		t.Run(kind, func(t *testing.T) { persisttest.Run(t, persisttest.InProcessPlugin(kind)) })
	}
}

func TestConformanceSubprocess(t *testing.T) {
	for _, kind := range plugin.Builtins() {
		t.Run(kind, func(t *testing.T) { persisttest.Run(t, persisttest.Plugin(kind)) })
	}
}

func shortSocketDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "rp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// TestKilledPlugin kills the plugin process and checks that every call fails
// with ErrUnavailable (no panic), and that a new plugin on the same folder
// has everything that was acknowledged.
func TestKilledPlugin(t *testing.T) {
	for _, kind := range []string{"file", "badger"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			cfg := plugin.Config{Persister: kind, DataDir: dir, SocketDir: shortSocketDir(t)}
			s, err := plugin.Open(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			hs := persist.HardState{Term: 3, VotedFor: 1, Commit: 2}
			if err := s.Append(ctx, hs, persisttest.Entries(1, 20, 3)); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Kill(s.PID(), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			// Calls fail at once, whether or not the host has noticed the exit.
			if err := s.Append(ctx, hs, persisttest.Entries(21, 21, 3)); !errors.Is(err, persist.ErrUnavailable) {
				t.Fatalf("Append after kill: %v, want ErrUnavailable", err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for !s.Exited() && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if !s.Exited() {
				t.Fatal("host did not notice the plugin's exit")
			}
			if _, err := s.Load(ctx); !errors.Is(err, persist.ErrUnavailable) {
				t.Fatalf("Load after kill: %v, want ErrUnavailable", err)
			}
			if err := s.SaveSnapshot(ctx, persist.Snapshot{Index: 5, Term: 3, Data: make([]byte, 3<<20)}); !errors.Is(err, persist.ErrUnavailable) {
				t.Fatalf("SaveSnapshot after kill: %v, want ErrUnavailable", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close after kill: %v", err)
			}
			s2, err := plugin.Open(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			st, err := s2.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.HardState != hs || st.LastIndex() != 20 {
				t.Fatalf("after restart: hs %+v last %d", st.HardState, st.LastIndex())
			}
		})
	}
}

// TestKilledDuringCalls kills the plugin while a goroutine appends in a loop:
// each call either succeeds or fails with ErrUnavailable.
func TestKilledDuringCalls(t *testing.T) {
	s, err := plugin.Open(ctx, plugin.Config{Persister: "file", DataDir: t.TempDir(), SocketDir: shortSocketDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	done := make(chan error, 1)
	go func() {
		for i := uint64(1); ; i++ {
			if err := s.Append(ctx, persist.HardState{Term: 1}, persisttest.Entries(i, i, 1)); err != nil {
				done <- err
				return
			}
			if i == 50 {
				_ = syscall.Kill(s.PID(), syscall.SIGKILL)
			}
		}
	}()
	select {
	case err := <-done:
		if !errors.Is(err, persist.ErrUnavailable) {
			t.Fatalf("Append during kill: %v, want ErrUnavailable", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("appends kept succeeding after the plugin was killed")
	}
}

func TestConfigValidate(t *testing.T) {
	exe, _ := os.Executable()
	notExec := t.TempDir() + "/not-executable"
	if err := os.WriteFile(notExec, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cfg   plugin.Config
		field string
	}{
		{plugin.Config{}, "Persister"},
		{plugin.Config{Persister: "rocks", DataDir: "/x"}, "Persister"},
		{plugin.Config{Persister: "file"}, "DataDir"},
		{plugin.Config{Persister: "badger"}, "DataDir"},
		{plugin.Config{Persister: "/no/such/plugin", DataDir: "/x"}, "Persister"},
		{plugin.Config{Persister: notExec, DataDir: "/x"}, "Persister"},
		{plugin.Config{Persister: "file", DataDir: "/x", Options: map[string]string{"segment_bytes": "12"}}, "SegmentBytes"},
		{plugin.Config{Persister: "file", DataDir: "/x", Options: map[string]string{"colour": "red"}}, "Options[colour]"},
		{plugin.Config{Persister: "badger", DataDir: "/x", Options: map[string]string{"memtable_bytes": "x"}}, "Options[memtable_bytes]"},
		{plugin.Config{Persister: "noop", Options: map[string]string{"a": "b"}}, "Options[a]"},
		{plugin.Config{Persister: exe, DataDir: "/x", StartTimeout: -1}, "StartTimeout"},
	} {
		err := c.cfg.Validate()
		if !errors.Is(err, plugin.ErrInvalidConfig) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidConfig naming %s", c.cfg, err, c.field)
		}
		if _, err := plugin.Open(ctx, c.cfg); !errors.Is(err, plugin.ErrInvalidConfig) {
			t.Errorf("Open(%+v) = %v, want ErrInvalidConfig", c.cfg, err)
		}
	}
	if err := (plugin.Config{Persister: "noop"}).Validate(); err != nil {
		t.Errorf("noop without DataDir: %v", err)
	}
}

// TestNotAPlugin runs a plugin binary that is not one (this test binary
// without the built-in variable): Open must fail, not hang.
func TestHandshakeFailure(t *testing.T) {
	start := time.Now()
	_, err := plugin.Open(ctx, plugin.Config{Persister: "/bin/true", DataDir: t.TempDir(),
		SocketDir: shortSocketDir(t), StartTimeout: 5 * time.Second})
	if err == nil {
		t.Fatal("Open of /bin/true succeeded")
	}
	// Not hanging is the point: bounded by StartTimeout, with room for a
	// loaded machine (no speed target here).
	if time.Since(start) > 15*time.Second {
		t.Fatalf("Open took %v", time.Since(start))
	}
}

func TestServeOutsideHost(t *testing.T) {
	if err := plugin.ServeBuiltin("file"); !errors.Is(err, plugin.ErrNotPlugin) {
		t.Fatalf("ServeBuiltin outside a host: %v, want ErrNotPlugin", err)
	}
}

// TestCorruptStoreThroughPlugin damages a file store's segment and checks
// that Open through the plugin fails with an error matching ErrCorrupt that
// names the file and offset.
func TestCorruptStoreThroughPlugin(t *testing.T) {
	dir := t.TempDir()
	cfg := plugin.Config{Persister: "file", DataDir: dir, SocketDir: shortSocketDir(t)}
	s, err := plugin.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 3; i++ {
		if err := s.Append(ctx, persist.HardState{Term: 1}, persisttest.Entries(i, i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	seg := dir + "/0000000000000001.wal"
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	b[20] ^= 0xff // inside the first record's payload
	if err := os.WriteFile(seg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = plugin.Open(ctx, cfg)
	if !errors.Is(err, persist.ErrCorrupt) || !strings.Contains(err.Error(), "0000000000000001.wal at offset 0") {
		t.Fatalf("Open of a damaged store: %v, want ErrCorrupt naming the segment and offset", err)
	}
}

// TestDefaultSocketDir opens each durable store with the socket folder
// inside its data folder (the default), reopens it, and checks that the
// socket folder is gone after Close.
func TestDefaultSocketDir(t *testing.T) {
	for _, kind := range []string{"file", "badger"} {
		dir := t.TempDir()
		for range 2 {
			s, err := plugin.Open(ctx, plugin.Config{Persister: kind, DataDir: dir})
			if err != nil {
				t.Fatalf("%s: %v", kind, err)
			}
			if err := s.Append(ctx, persist.HardState{Term: 1}, nil); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
		left, _ := os.ReadDir(dir + "/plugin")
		if len(left) != 0 {
			t.Errorf("%s: %d entries left in the socket folder", kind, len(left))
		}
	}
}

// TestLargeBatchThroughPlugin appends one batch far above gRPC's default
// 4 MiB message limit and loads it back.
func TestLargeBatchThroughPlugin(t *testing.T) {
	s, err := plugin.Open(ctx, plugin.Config{Persister: "file", DataDir: t.TempDir(), SocketDir: shortSocketDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	es := persisttest.Entries(1, 300, 1)
	for i := range es {
		es[i].Data = make([]byte, 32<<10)
		es[i].Data[0] = byte(i)
	}
	if err := s.Append(ctx, persist.HardState{Term: 1}, es); err != nil {
		t.Fatalf("Append of %d MiB: %v", 300*32>>10, err)
	}
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Entries) != 300 || st.Entries[299].Data[0] != byte(299%256) || s.Size() != persist.LogSize(es) {
		t.Fatalf("loaded %d entries, size %d", len(st.Entries), s.Size())
	}
}

func TestOpenPersister(t *testing.T) {
	for _, inProcess := range []bool{true, false} {
		cfg := plugin.Config{Persister: "file", DataDir: t.TempDir(), SocketDir: shortSocketDir(t), InProcess: inProcess}
		st, err := plugin.OpenPersister(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, isPlugin := st.(*plugin.Store)
		if isPlugin == inProcess {
			t.Errorf("InProcess=%v gave a %T", inProcess, st)
		}
		if err := st.Append(ctx, persist.HardState{Term: 1}, persisttest.Entries(1, 2, 1)); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
	exe, _ := os.Executable()
	_, err := plugin.OpenPersister(ctx, plugin.Config{Persister: exe, InProcess: true})
	if !errors.Is(err, plugin.ErrInvalidConfig) || !strings.Contains(err.Error(), "InProcess") {
		t.Fatalf("InProcess with a plugin path: %v", err)
	}
}

// TestDirectAppendChosen checks that built-in plugins take Append on the
// direct channel, that NoDirectAppend keeps it on gRPC, and that both paths
// store the same thing.
func TestDirectAppendChosen(t *testing.T) {
	for _, noDirect := range []bool{false, true} {
		dir := t.TempDir()
		cfg := plugin.Config{Persister: "file", DataDir: dir, SocketDir: shortSocketDir(t), NoDirectAppend: noDirect}
		s, err := plugin.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if s.DirectAppend() == noDirect {
			t.Errorf("NoDirectAppend=%v: DirectAppend() = %v", noDirect, s.DirectAppend())
		}
		es := persisttest.Entries(1, 40, 2)
		hs := persist.HardState{Term: 2, VotedFor: 1, Commit: 3}
		if err := s.Append(ctx, hs, es); err != nil {
			t.Fatal(err)
		}
		if err := s.Append(ctx, hs, persisttest.Entries(50, 50, 2)); !errors.Is(err, persist.ErrNonContiguous) {
			t.Fatalf("NoDirectAppend=%v: a gap gave %v, want ErrNonContiguous", noDirect, err)
		}
		st, err := s.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := persisttest.DiffState(st, persist.State{HardState: hs, Entries: es}); diff != "" || s.Size() != persist.LogSize(es) {
			t.Fatalf("NoDirectAppend=%v: %s, size %d", noDirect, diff, s.Size())
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// waitStopped waits until every thread of process pid is stopped: kill
// returns once the signal is queued, and a thread running on another CPU
// stops only when it takes the interrupt (on a loaded virtual machine, long
// enough for a plugin waiting in the netpoller to answer one more call).
// Where there is no /proc it returns at once.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return
		}
		running := 0
		for _, task := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
			if err != nil {
				continue
			}
			// The state follows the command name in parentheses.
			if f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:])); len(f) > 0 && f[0] != "T" && f[0] != "t" {
				running++
			}
		}
		if running == 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("process %d did not stop", pid)
}

// TestDirectAppendStoppedPlugin stops the plugin (SIGSTOP): an Append with
// a deadline returns when it expires, with ErrUnavailable, and later calls
// fail at once rather than reading a stale answer.
func TestDirectAppendStoppedPlugin(t *testing.T) {
	s, err := plugin.Open(ctx, plugin.Config{Persister: "file", DataDir: t.TempDir(), SocketDir: shortSocketDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Append(ctx, persist.HardState{Term: 1}, persisttest.Entries(1, 1, 1)); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(s.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(s.PID(), syscall.SIGCONT) }()
	waitStopped(t, s.PID())
	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Append(tctx, persist.HardState{Term: 1}, persisttest.Entries(2, 2, 1)) }()
	select {
	case err := <-done:
		if !errors.Is(err, persist.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Append to a stopped plugin: %v, want ErrUnavailable and DeadlineExceeded", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Append to a stopped plugin did not return after its deadline")
	}
	_ = syscall.Kill(s.PID(), syscall.SIGCONT)
	if err := s.Append(ctx, persist.HardState{Term: 1}, persisttest.Entries(2, 2, 1)); !errors.Is(err, persist.ErrUnavailable) {
		t.Fatalf("Append after an interrupted one: %v, want ErrUnavailable", err)
	}
}
