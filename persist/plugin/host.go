package plugin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/ruaft/ruaft/persist"
)

// ErrInvalidConfig is returned by Config.Validate and Open for a bad
// configuration; the message names the field.
var ErrInvalidConfig = errors.New("persist/plugin: invalid config")

// Config chooses and configures a replica's persister plugin.
type Config struct {
	// Persister is a built-in store name (noop, memory, file, badger: a
	// store registered with persist.Register, so linked into this binary;
	// import persist/builtin for all of them), served by re-executing
	// Executable, or the path of a plugin binary (anything containing a
	// path separator), such as plugins/file or a third-party one.
	Persister string
	// DataDir is the folder the store keeps its data in; the replica owns
	// it. Required except for noop and memory.
	DataDir string
	// SocketDir is the folder the plugin creates its Unix socket in; this
	// host must be its only user: Open removes the sockets in it that a
	// killed plugin left behind. Empty means DataDir/plugin. If DataDir
	// is empty too, or the socket path would pass the Unix limit (103 bytes,
	// so SocketDir up to 86), a private temporary folder is used instead
	// (removed by Close).
	SocketDir string
	// NoSync turns off fsync in the store. For tests and benchmarks only.
	NoSync bool
	// Options are store-specific settings passed through to the plugin
	// (for file: segment_bytes; for badger: memtable_bytes,
	// value_log_file_bytes, value_threshold_bytes, block_cache_bytes,
	// index_cache_bytes).
	Options map[string]string
	// StartTimeout bounds the plugin's start and handshake. Zero means 10 s.
	StartTimeout time.Duration
	// Executable is the binary re-executed to serve a built-in store; empty
	// means this process's own binary (os.Executable), whose main must call
	// ServeIfChild.
	Executable string
	// Logger receives the plugin's warnings and errors (and its stderr);
	// nil discards them.
	Logger *slog.Logger
	// InProcess makes OpenPersister open a built-in store inside this
	// process instead of a plugin subprocess (no isolation, no RPC cost).
	InProcess bool
	// NoDirectAppend sends every Append as a gRPC call even to a plugin
	// that serves the direct Append channel (see DirectAppend). For
	// comparison benchmarks and for ruling the channel out.
	NoDirectAppend bool
	// Inherit are open files the plugin process inherits (as descriptors
	// 3 and on, in order) and keeps, untouched, until it exits: durio
	// passes its data folder's lock, which then lasts until the plugin
	// that writes the store has exited too. This process's own copies
	// stay its to close.
	Inherit []*os.File
}

// DefaultConfig returns a configuration for the durable file store in
// dataDir.
func DefaultConfig(dataDir string) Config {
	return Config{Persister: "file", DataDir: dataDir, StartTimeout: 10 * time.Second}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Persister == "":
		return fmt.Errorf("%w: Persister is empty; want one of %s or a plugin path", ErrInvalidConfig, strings.Join(Builtins(), ", "))
	case IsBuiltin(c.Persister):
		if err := checkBuiltin(c.Persister, c.params()); err != nil {
			return err
		}
	case strings.ContainsRune(c.Persister, filepath.Separator) || strings.ContainsRune(c.Persister, '/'):
		fi, err := os.Stat(c.Persister)
		if err != nil {
			return fmt.Errorf("%w: Persister %q: %v", ErrInvalidConfig, c.Persister, err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%w: Persister %q is not an executable file", ErrInvalidConfig, c.Persister)
		}
	default:
		return fmt.Errorf("%w: Persister %q is neither a built-in store (%s) nor a path to a plugin binary",
			ErrInvalidConfig, c.Persister, strings.Join(Builtins(), ", "))
	}
	if c.StartTimeout < 0 {
		return fmt.Errorf("%w: StartTimeout %v is negative", ErrInvalidConfig, c.StartTimeout)
	}
	return nil
}

func (c Config) params() Params {
	return Params{DataDir: c.DataDir, Sync: !c.NoSync, Options: c.Options}
}

// Store is a persist.Store served by a plugin subprocess. Close stops the
// process. If the process dies, calls fail with persist.ErrUnavailable.
type Store struct {
	*Client
	pc        *goplugin.Client
	cmd       *exec.Cmd // its ProcessState is set once pc.Exited()
	crash     *crashReport
	pid       int
	removeDir string // a private socket folder to remove on Close, or ""

	closeOnce sync.Once
	closeErr  error
}

var _ persist.Store = (*Store)(nil)

// Open starts the plugin cfg names, opens its store and returns it. The
// caller must Close it.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	var cmd *exec.Cmd
	if IsBuiltin(cfg.Persister) {
		exe := cfg.Executable
		if exe == "" {
			var err error
			if exe, err = os.Executable(); err != nil {
				return nil, fmt.Errorf("persist/plugin: find own binary to serve %s: %w", cfg.Persister, err)
			}
		}
		cmd = exec.Command(exe)
		cmd.Env = append(runtimeEnv(true), EnvBuiltin+"="+cfg.Persister)
	} else {
		cmd = exec.Command(cfg.Persister)
		cmd.Env = runtimeEnv(false)
	}
	dieWithParent(cmd)
	cmd.ExtraFiles = append([]*os.File(nil), cfg.Inherit...)
	var offer endpoint // the host's end of the direct Append channel
	if !cfg.NoDirectAppend {
		conn, child, err := directPair()
		if err != nil {
			return nil, err
		}
		if conn != nil {
			offer = conn
			defer child.Close() // the child has its copy once started
			cmd.ExtraFiles = append(cmd.ExtraFiles, child)
			cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", EnvAppendFD, 3+len(cmd.ExtraFiles)-1))
		}
	}

	s := &Store{cmd: cmd, crash: &crashReport{}}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	sockDir, removeDir, err := socketDir(cfg, logger)
	if err != nil {
		return nil, err
	}
	s.removeDir = removeDir
	cmd.Env = append(cmd.Env, goplugin.EnvUnixSocketDir+"="+sockDir)
	s.pc = goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          goplugin.PluginSet{PluginName: &GRPCPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		Managed:          true,
		SkipHostEnv:      true, // runtimeEnv chose what the plugin gets
		StartTimeout:     cfg.StartTimeout,
		Logger:           hclogFor(cfg.Logger, filepath.Base(cmd.Path)),
		Stderr:           &lineLogger{log: logger, msg: "persister plugin stderr", crash: s.crash},
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes))},
	})
	fail := func(err error) (*Store, error) {
		if offer != nil {
			_ = offer.Close()
		}
		if errors.Is(err, persist.ErrUnavailable) || s.pc.Exited() {
			if why := s.ExitReason(); why != "" {
				err = fmt.Errorf("%w (the plugin process %s)", err, why)
			}
		}
		s.kill()
		s.cleanup()
		return nil, err
	}
	rpcClient, err := s.pc.Client()
	if err != nil {
		return fail(fmt.Errorf("persist/plugin: start %s: %w", cfg.Persister, err))
	}
	raw, err := rpcClient.Dispense(PluginName)
	if err != nil {
		return fail(fmt.Errorf("persist/plugin: dispense %s: %w", cfg.Persister, err))
	}
	c, ok := raw.(*Client)
	if !ok {
		return fail(fmt.Errorf("persist/plugin: %s dispensed %T, not a persister", cfg.Persister, raw))
	}
	c.down = s.pc.Exited
	c.offer = offer
	offer = nil // OpenStore takes it or closes it
	if rc := s.pc.ReattachConfig(); rc != nil {
		s.pid = rc.Pid
	}
	if err := c.OpenStore(ctx, cfg.params()); err != nil {
		return fail(err)
	}
	s.Client = c
	if c.announcedBeside && !c.sequenced {
		logger.Warn("persister plugin: the store announces snapshots beside appends but the plugin does not number its size figures (an older plugin protocol); its snapshots are stored with no append beside them: rebuild the plugin",
			"persister", cfg.Persister, "store", c.StoreName())
	}
	logger.Debug("persister plugin started", "persister", cfg.Persister, "store", c.StoreName(), "pid", s.pid)
	return s, nil
}

// runtimeVars are the environment variables that tune the Go runtime.
var runtimeVars = []string{"GOGC", "GOMEMLIMIT", "GOMAXPROCS", "GODEBUG", "GOTRACEBACK", "GORACE"}

// EnvPluginPrefix prefixes a Go runtime variable meant for the plugin
// process only: RUAFT_PLUGIN_GOMAXPROCS=2 in the host's environment starts
// its plugin with GOMAXPROCS=2 whatever the host itself runs with (see
// runtimeEnv).
const EnvPluginPrefix = "RUAFT_PLUGIN_"

// pluginRuntimeDefaults are the Go runtime settings a built-in plugin
// starts with when the host's environment sets neither the variable nor its
// RUAFT_PLUGIN_ form (docs/benchmarks.md, "The plugin process", has the measurements):
//
//   - GOMAXPROCS=1: a plugin serves one call at a time, and its store's
//     background work (badger's flushes and compactions) can wait; with
//     one P a hand-off between the serving goroutine and the store's
//     goroutines is a switch on the same thread, not a wake-up of another,
//     and no thread spins looking for work to steal.
//   - GOMEMLIMIT=40MiB: the collector runs before the heap doubles once
//     it nears 40 MiB; badger's live heap is 15-30 MiB, and with the default
//     GOGC alone its plugin held 47-62 MiB of anonymous memory in
//     BenchmarkPluginMemory (31-34 with the limit). A soft limit:
//     a larger live heap (a big snapshot in flight) only makes the
//     collector run more often, at most half the CPU.
//   - GOGC=25: the collector runs when the heap has grown by a quarter
//     since the last one, not doubled, which the limit alone allowed while
//     the live heap stayed under 20 MiB (badger's table-builder buffers,
//     ~12 MiB, and its memtable, ~3). Badger's live heap is almost all
//     large byte buffers with no pointers to scan, so a collection is
//     cheap: with the workload of BenchmarkPluginMemory in one process
//     (GOMAXPROCS=1, the limit above), collections cost 13-24 us per
//     Append at GOGC 100 and 19-39 at 25, against ~1,300 us per Append;
//     a badger plugin under a 64-client put load held 18-23 MiB of
//     anonymous memory instead of 25-31. Relative to the live heap, so
//     it scales with a large snapshot where a lower fixed limit would
//     make the collector run back to back.
var pluginRuntimeDefaults = map[string]string{
	"GOMAXPROCS": "1",
	"GOMEMLIMIT": "40MiB",
	"GOGC":       "25",
}

// runtimeEnv is a plugin's environment before the variables of the plugin
// protocol. A built-in plugin (builtin) is this binary again and gets only
// the Go runtime variables (GOGC, GOMEMLIMIT, GOMAXPROCS, GODEBUG,
// GOTRACEBACK, GORACE) and TMPDIR and GOCOVERDIR; for each runtime variable
// the first of these wins: the host's RUAFT_PLUGIN_ form of it (empty:
// unset), the host's own value (the operator's runtime settings — a memory
// limit above all — reach the plugin too), pluginRuntimeDefaults. Another
// plugin binary gets the host's whole environment, with the RUAFT_PLUGIN_
// forms applied over it but no defaults: what suits it is its author's call.
func runtimeEnv(builtin bool) []string {
	var env []string
	if !builtin {
		env = os.Environ()
	}
	for _, k := range runtimeVars {
		if v, ok := os.LookupEnv(EnvPluginPrefix + k); ok {
			env = slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, k+"=") })
			if v != "" {
				env = append(env, k+"="+v)
			}
			continue
		}
		if !builtin {
			continue // already there if the host has it
		}
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		} else if v, ok := pluginRuntimeDefaults[k]; ok {
			env = append(env, k+"="+v)
		}
	}
	if builtin {
		for _, k := range []string{"TMPDIR", "GOCOVERDIR"} {
			if v, ok := os.LookupEnv(k); ok {
				env = append(env, k+"="+v)
			}
		}
	}
	return env
}

// OpenPersister opens the store cfg describes: a built-in store in this
// process if cfg.InProcess, else a plugin subprocess (Open). It is the one
// call a replica needs.
func OpenPersister(ctx context.Context, cfg Config) (persist.Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.InProcess {
		return Open(ctx, cfg)
	}
	if !IsBuiltin(cfg.Persister) {
		return nil, fmt.Errorf("%w: InProcess needs a built-in Persister, not %q", ErrInvalidConfig, cfg.Persister)
	}
	return OpenBuiltin(cfg.Persister, cfg.params(), cfg.Logger)
}

// PID is the plugin process's id (for diagnostics and tests).
func (s *Store) PID() int { return s.pid }

// Exited reports whether the plugin process has exited.
func (s *Store) Exited() bool { return s.pc.Exited() }

// exitWait bounds how long ExitReason waits for a dying plugin to exit: a
// call fails on the broken connection moments before the process is reaped.
var exitWait = time.Second

// ExitReason says how the plugin process ended, for the error that reports
// its store unavailable: its exit status and, if it crashed, the Go
// runtime's own words from its stderr ("fatal error: fault", then the
// signal: a memory-mapped store whose disk is full dies of SIGBUS). It
// waits up to a second for the process to end, and is "" if it still runs.
func (s *Store) ExitReason() string {
	for end := time.Now().Add(exitWait); !s.pc.Exited(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			return ""
		}
	}
	// pc.Exited is set after the process was waited for and its stderr
	// read to the end, so ProcessState and the crash report are complete.
	why := "exited"
	if ps := s.cmd.ProcessState; ps != nil {
		why += " (" + ps.String() + ")"
	}
	if c := s.crash.String(); c != "" {
		why += ": " + c
	}
	return why
}

// Close closes the store and stops the plugin process. It is idempotent.
// A plugin that does not answer (a hung disk, a stopped process) is killed:
// Close returns within closeTimeout plus killWait.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.Client.Close()
		s.kill()
		s.cleanup()
	})
	return s.closeErr
}

// killWait is how long kill lets go-plugin stop the process gracefully.
var killWait = 3 * time.Second

// kill stops the plugin process. go-plugin's Kill first asks the plugin to
// shut down over gRPC with no deadline, which a plugin that hangs never
// answers; after killWait the process gets SIGKILL, which ends that call.
func (s *Store) kill() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.pc.Kill()
	}()
	select {
	case <-done:
	case <-time.After(killWait):
		if p := s.cmd.Process; p != nil {
			_ = p.Kill()
		}
		<-done
	}
}

func (s *Store) cleanup() {
	if s.removeDir != "" {
		_ = os.RemoveAll(s.removeDir)
	}
}

// CleanupClients stops every plugin process this process started that is
// still running. Mains call it on SIGINT/SIGTERM and before exiting, so no
// plugin outlives the host even where Pdeathsig is not available.
func CleanupClients() { goplugin.CleanupClients() }

// hclogFor gives go-plugin a logger: nothing if l is nil, else warnings and
// errors forwarded to l. go-plugin writes every line of the plugin's stderr
// to ClientConfig.Stderr (which logs it) and logs some again through a
// logger named after the plugin binary (base): that one logs nothing, so
// that a crash's stack trace is in the log once, not twice.
func hclogFor(l *slog.Logger, base string) hclog.Logger {
	if l == nil {
		return hclog.NewNullLogger()
	}
	return skipNamed{Logger: hclog.New(&hclog.LoggerOptions{
		Name:   "persist-plugin",
		Level:  hclog.Warn,
		Output: &lineLogger{log: l, msg: "go-plugin"},
	}), skip: base}
}

// skipNamed is an hclog.Logger whose sub-logger called skip logs nothing.
type skipNamed struct {
	hclog.Logger
	skip string
}

func (l skipNamed) Named(name string) hclog.Logger {
	if name == l.skip {
		return hclog.NewNullLogger()
	}
	return skipNamed{Logger: l.Logger.Named(name), skip: l.skip}
}

// crashReport keeps the lines of a plugin's stderr that say why it died: the
// Go runtime's "panic: ..." or "fatal error: ..." and the "[signal ...]"
// line that follows it.
type crashReport struct {
	mu    sync.Mutex // guards lines
	lines []string
}

// maxCrashLine bounds each line a crashReport keeps (a panic's value may be
// long).
const maxCrashLine = 240

func (c *crashReport) note(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	first := strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ")
	if (first && len(c.lines) == 0) || (len(c.lines) == 1 && strings.HasPrefix(line, "[signal ")) {
		if len(line) > maxCrashLine {
			line = line[:maxCrashLine] + "..."
		}
		c.lines = append(c.lines, line)
	}
}

func (c *crashReport) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, " ")
}

// lineLogger logs each line written to it as a warning, and notes in crash
// (if set) the lines that say why the plugin died.
type lineLogger struct {
	log   *slog.Logger
	msg   string
	crash *crashReport
	mu    sync.Mutex // guards buf
	buf   bytes.Buffer
}

func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		i := bytes.IndexByte(w.buf.Bytes(), '\n')
		if i < 0 {
			return len(p), nil // an unfinished line waits for the rest
		}
		line := strings.TrimSpace(string(w.buf.Next(i + 1)))
		if line != "" {
			w.log.Warn(w.msg, "line", line)
			if w.crash != nil {
				w.crash.note(line)
			}
		}
	}
}

var _ io.Writer = (*lineLogger)(nil)
