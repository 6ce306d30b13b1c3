package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/ruaft/ruaft/durio"
	"github.com/ruaft/ruaft/durio/client"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// devEndpoints are the client URLs of the cluster `durio dev` starts.
var devEndpoints = []string{"http://127.0.0.1:8001", "http://127.0.0.1:8002", "http://127.0.0.1:8003"}

// devOptions configure `durio dev`.
type devOptions struct {
	// Dir holds one data folder per replica.
	Dir string
	// Persister is passed to every replica.
	Persister string
	// ClientPort and PeerPort are the first ports; replica i uses port + i.
	ClientPort, PeerPort int
	// Replicas is the cluster size.
	Replicas int
	// Executable is the durio binary to run; default: this process's binary.
	Executable string
	// LogLevel is passed to every replica.
	LogLevel string
	// ClientAuthFile, if set, is passed to every replica (client tokens);
	// durio dev polls the replicas with the file's first token.
	ClientAuthFile string
	// ServeArgs are more `durio serve` flags for every replica (what
	// follows -- on the command line), such as --election-timeout; not
	// those durio dev sets itself (devOwnedServeFlags).
	ServeArgs []string
	// Commands, if not nil, is read for typed commands (kill 1, start 1,
	// status, ...); `durio dev` passes its standard input.
	Commands io.Reader
}

// devOwnedServeFlags are the `durio serve` flags durio dev sets for each
// replica, or that would take a replica out of its loopback cluster or out
// of reach of durio dev's plain-HTTP polling: refused after --.
var devOwnedServeFlags = []string{
	"id", "peers", "client-urls", "join", "peer-url", "client-url", "listen-peer", "listen-client",
	"data-dir", "persister", "log-level", "client-auth-file", "tls-cert", "tls-key",
}

// checkServeArgs refuses extra serve flags that durio dev sets itself and
// validates replica 0's whole command line as durio serve would, so that a
// bad value stops durio dev before any replica starts (instead of every
// replica failing five times).
func checkServeArgs(extra, replica0 []string) error {
	// Parsed as durio serve parses them: its Go flags under pflag.
	parse := func(args []string) (*pflag.FlagSet, func(func(string) bool) (durio.Config, error), error) {
		goFlags := flag.NewFlagSet("durio serve", flag.ContinueOnError)
		build := durio.RegisterServeFlags(goFlags)
		fs := pflag.NewFlagSet("durio serve", pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.AddGoFlagSet(goFlags)
		if err := fs.Parse(args); err != nil {
			return nil, nil, fmt.Errorf("%w: durio serve flags after --: %v", durio.ErrUsage, err)
		}
		if fs.NArg() > 0 {
			return nil, nil, fmt.Errorf("%w: durio serve flags after --: unexpected argument %q", durio.ErrUsage, fs.Arg(0))
		}
		return fs, build, nil
	}
	fs, _, err := parse(extra)
	if err != nil {
		return err
	}
	var owned []string
	fs.Visit(func(f *pflag.Flag) {
		if slices.Contains(devOwnedServeFlags, f.Name) {
			owned = append(owned, "--"+f.Name)
		}
	})
	if len(owned) > 0 {
		return fmt.Errorf("%w: durio dev sets %s for each replica itself; use its own flags (durio dev --help)",
			durio.ErrUsage, strings.Join(owned, ", "))
	}
	fs, build, err := parse(append(slices.Clip(replica0), extra...))
	if err != nil {
		return err
	}
	if _, err := build(fs.Changed); err != nil {
		return fmt.Errorf("durio serve flags after --: %w", err)
	}
	return nil
}

func (o *devOptions) register(fs *pflag.FlagSet) {
	fs.StringVar(&o.Dir, "dir", "durio-dev", "`folder` for the replicas' data (one sub-folder each)")
	fs.StringVar(&o.Persister, "persister", "badger", "store for every replica: noop, file, badger, or a plugin `path`")
	fs.IntVar(&o.ClientPort, "client-port", 8001, "client `port` of replica 0; replica i listens on port+i")
	fs.IntVar(&o.PeerPort, "peer-port", 9001, "peer `port` of replica 0; replica i listens on port+i")
	fs.IntVar(&o.Replicas, "replicas", 3, "number of replicas")
	fs.StringVar(&o.LogLevel, "log-level", "warn", "replicas' log `level`: debug, info, warn or error")
	fs.StringVar(&o.ClientAuthFile, "client-auth-file", "", "`file` of client tokens for every replica (see durio serve); clients then need --token-file")
}

func (o *devOptions) check() error {
	if o.Replicas < 1 {
		return fmt.Errorf("%w: --replicas must be at least 1", durio.ErrUsage)
	}
	for _, p := range []int{o.ClientPort, o.PeerPort} {
		if p < 1 || p+o.Replicas-1 > 65535 {
			return fmt.Errorf("%w: --client-port and --peer-port must leave room for %d ports below 65536", durio.ErrUsage, o.Replicas)
		}
	}
	return nil
}

// devHelp lists the commands `durio dev` reads from its standard input.
const devHelp = `commands (type them and press Enter):
  kill N      SIGKILL replica N (it stays down until start N): watch the others elect a leader
  stop N      stop replica N gracefully (SIGTERM); it stays down until start N
  start N     start replica N again
  restart N   stop replica N gracefully, then start it
  status      one line per replica
  reload      SIGHUP every running replica: it re-reads --client-auth-file and its certificates
              (a SIGHUP sent to durio dev does the same)
  help        this list`

// Timing of `durio dev`'s supervision.
const (
	devRestartDelay = time.Second      // before restarting a replica that exited by itself
	devMaxDelay     = 30 * time.Second // the delay doubles while a replica keeps failing
	devStableAfter  = 10 * time.Second // a replica up this long is no longer failing
	devGiveUpAfter  = 5                // quick failures in a row before giving up on a replica
	devStopGrace    = 10 * time.Second // SIGTERM to SIGKILL
	devPollEvery    = 250 * time.Millisecond
)

// runDev starts a local cluster of `durio serve` processes on loopback and
// supervises it until ctx ends (Ctrl-C in the durio command): a replica that
// exits is restarted (after a growing delay, giving up after several quick
// failures in a row), leader changes are printed, and typed commands kill,
// stop and start replicas so failover can be watched.
func runDev(ctx context.Context, o devOptions, stdout io.Writer) error {
	exe := o.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return err
		}
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	// One durio dev per folder: a second one would share the replicas'
	// logs with the first, and each of its replicas would be refused the
	// data folder the first one's holds (LockDataDir), five times over.
	lock, err := durio.LockDataDir(dir)
	if errors.Is(err, durio.ErrDataDirInUse) {
		return fmt.Errorf("%w; another durio dev runs on it: stop it, or give this one another --dir", err)
	}
	if err != nil {
		return err
	}
	defer lock.Release()
	d := &devCluster{o: o, exe: exe, dir: dir, out: &lockedWriter{w: stdout}, env: devEnv(), hc: devHTTP}
	if o.ClientAuthFile != "" {
		if d.o.ClientAuthFile, err = filepath.Abs(o.ClientAuthFile); err != nil {
			return err
		}
		if d.hc, err = devTokenClient(d.o.ClientAuthFile); err != nil {
			return err
		}
	}
	for i := range o.Replicas {
		d.peers = append(d.peers, "http://127.0.0.1:"+strconv.Itoa(o.PeerPort+i))
		d.clients = append(d.clients, "http://127.0.0.1:"+strconv.Itoa(o.ClientPort+i))
		d.replicas = append(d.replicas, &devReplica{id: i, ctl: make(chan string, 1)})
	}
	if err := checkServeArgs(o.ServeArgs, d.serveArgs(0)); err != nil {
		return err
	}
	for i := range o.Replicas {
		if err := os.MkdirAll(d.dataDir(i), 0o755); err != nil {
			return err
		}
	}
	d.printf("durio dev: %d replicas, persister %s, data in %s\n", o.Replicas, o.Persister, dir)
	if len(o.ServeArgs) > 0 {
		d.printf("  every replica also gets: %s\n", strings.Join(o.ServeArgs, " "))
	}
	for i := range o.Replicas {
		d.printf("  replica %d: client %s  peer %s  log %s\n", i, d.clients[i], d.peers[i], d.logPath(i))
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	d.giveUp = cancel
	var wg sync.WaitGroup
	for _, r := range d.replicas {
		wg.Go(func() { d.supervise(ctx, r) })
	}
	wg.Go(func() { d.watchLeader(ctx) })
	// SIGHUP to durio dev reloads its replicas, as it would a replica
	// run by itself (kill -HUP of durio dev alone does not reach them).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				d.reload()
			}
		}
	})
	if o.Commands != nil {
		// The reader cannot be interrupted while it waits for a line, so it
		// is not waited for: it ends at EOF or with the process.
		lines := make(chan string)
		go readLines(o.Commands, lines)
		wg.Go(func() { d.commands(ctx, lines) })
	}
	<-ctx.Done()
	d.printf("durio dev: stopping\n")
	wg.Wait()
	var gaveUp allFailedError
	if errors.As(context.Cause(ctx), &gaveUp) {
		return gaveUp
	}
	return nil
}

// allFailedError ends durio dev when none of its replicas is left to run.
// It is a configuration error (exit 2) when every replica refused its
// configuration or data folder.
type allFailedError struct{ refused bool }

func (e allFailedError) Error() string {
	if e.refused {
		return "durio dev: every replica refused to start (see its log above); stopped"
	}
	return "durio dev: no replica is left running (each refused to start or kept failing; see its log above); stopped"
}

func (e allFailedError) Is(target error) bool { return e.refused && target == durio.ErrConfig }

// giveUpIfAllFailed ends durio dev once every replica has failed for good
// (refused its configuration or data folder, or exited too often in a row)
// and none is merely down on request: nothing is left to supervise, and a
// script that started durio dev learns so from its exit status. The status
// is 2 when every replica refused its configuration or folder.
func (d *devCluster) giveUpIfAllFailed() {
	refused := true
	for _, r := range d.replicas {
		r.mu.Lock()
		state, usage := r.state, r.refused
		r.mu.Unlock()
		if state != "failed" {
			return
		}
		refused = refused && usage
	}
	d.giveUp(allFailedError{refused: refused})
}

// devCluster is the state of one `durio dev` run.
type devCluster struct {
	o               devOptions
	exe, dir        string
	env             []string
	peers, clients  []string
	replicas        []*devReplica
	out             io.Writer
	hc              *http.Client // asks the replicas for their status
	giveUp          context.CancelCauseFunc
	lastLeader      int    // watchLeader's; -1 when none
	lastLeaderTerm  uint64 // watchLeader's
	announcedLeader bool   // watchLeader's: printed at least once
}

// devReplica is one replica's supervision: its current process and the
// commands sent to it.
type devReplica struct {
	id  int
	ctl chan string // "kill", "stop", "start", "restart"

	mu    sync.Mutex // guards state, pid and refused
	state string     // running, down (on request), restarting, failed
	pid   int
	// refused: failed because it refused its configuration or data folder
	// (exit 2), not by exiting too often.
	refused bool
}

func (r *devReplica) set(state string, pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state, r.pid, r.refused = state, pid, false
}

// fail marks the replica failed for good; refused says it refused its
// configuration or data folder.
func (r *devReplica) fail(refused bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state, r.pid, r.refused = "failed", 0, refused
}

func (r *devReplica) get() (string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state, r.pid
}

// lastLine returns the last line of the file at path (of its last 4 KiB),
// for a replica's own last word in its log.
func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log)"
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > 4096 {
		_, _ = f.Seek(st.Size()-4096, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, 4096))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func (d *devCluster) dataDir(i int) string { return filepath.Join(d.dir, "replica-"+strconv.Itoa(i)) }
func (d *devCluster) logPath(i int) string {
	return filepath.Join(d.dir, "replica-"+strconv.Itoa(i)+".log")
}

func (d *devCluster) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

// devEnv is this process's environment without DURIO_* variables: the
// replicas get their settings from dev's flags only.
func devEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) {
			env = append(env, kv)
		}
	}
	return env
}

// serveArgs are the `durio serve` flags durio dev gives replica i (before
// the user's ServeArgs).
func (d *devCluster) serveArgs(i int) []string {
	args := []string{
		"--id", strconv.Itoa(i),
		"--peers", strings.Join(d.peers, ","),
		"--client-urls", strings.Join(d.clients, ","),
		"--listen-client", strings.TrimPrefix(d.clients[i], "http://"),
		"--data-dir", d.dataDir(i),
		"--persister", d.o.Persister,
		"--log-level", d.o.LogLevel,
	}
	if d.o.ClientAuthFile != "" {
		args = append(args, "--client-auth-file", d.o.ClientAuthFile)
	}
	return args
}

// start starts replica i's process; done is closed once it has exited and
// been waited for.
func (d *devCluster) start(i int) (*exec.Cmd, <-chan struct{}, error) {
	logFile, err := os.OpenFile(d.logPath(i), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(d.exe, append([]string{"serve"}, append(d.serveArgs(i), d.o.ServeArgs...)...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = d.env
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }() // ends when the child does; supervise waits on done
	return cmd, done, nil
}

// supervise runs replica r until ctx ends: starts it, restarts it when it
// exits by itself, and obeys the commands sent to it.
func (d *devCluster) supervise(ctx context.Context, r *devReplica) {
	delay, quickFailures := devRestartDelay, 0
	for {
		cmd, done, err := d.start(r.id)
		if err != nil {
			d.printf("replica %d: cannot start: %v\n", r.id, err)
			r.fail(false)
			d.giveUpIfAllFailed()
			if !d.waitForStart(ctx, r, 0) {
				return
			}
			continue
		}
		started := time.Now()
		r.set("running", cmd.Process.Pid)
		d.printf("replica %d: started (pid %d)\n", r.id, cmd.Process.Pid)
		select {
		case <-ctx.Done():
			stopProcess(cmd, done, devStopGrace)
			return
		case <-done:
			if cmd.ProcessState.ExitCode() == ExitUsage {
				// Refused its configuration or its data folder: starting
				// it again would be refused the same way.
				d.printf("replica %d: refused to start: %s\nreplica %d: not restarting it (see %s; `start %d` tries again)\n",
					r.id, lastLine(d.logPath(r.id)), r.id, d.logPath(r.id), r.id)
				r.fail(true)
				d.giveUpIfAllFailed()
				if !d.waitForStart(ctx, r, 0) {
					return
				}
				delay, quickFailures = devRestartDelay, 0
				continue
			}
			if time.Since(started) > devStableAfter {
				delay, quickFailures = devRestartDelay, 0
			}
			quickFailures++
			if quickFailures >= devGiveUpAfter {
				d.printf("replica %d: exited (%v) %d times in a row; not restarting it (see %s; `start %d` tries again)\n",
					r.id, cmd.ProcessState, quickFailures, d.logPath(r.id), r.id)
				r.fail(false)
				d.giveUpIfAllFailed()
				if !d.waitForStart(ctx, r, 0) {
					return
				}
				delay, quickFailures = devRestartDelay, 0
				continue
			}
			d.printf("replica %d: exited (%v); restarting it in %v (log: %s)\n", r.id, cmd.ProcessState, delay, d.logPath(r.id))
			r.set("restarting", 0)
			if !d.waitForStart(ctx, r, delay) {
				return
			}
			delay = min(2*delay, devMaxDelay)
		case c := <-r.ctl:
			switch c {
			case "kill":
				_ = cmd.Process.Kill()
				<-done
				d.printf("replica %d: killed (SIGKILL); the others carry on. `start %d` brings it back\n", r.id, r.id)
			case "stop":
				stopProcess(cmd, done, devStopGrace)
				d.printf("replica %d: stopped. `start %d` brings it back\n", r.id, r.id)
			case "restart":
				stopProcess(cmd, done, devStopGrace)
				d.printf("replica %d: stopped; restarting it\n", r.id)
				delay, quickFailures = devRestartDelay, 0
				continue
			default: // start: already running
				d.printf("replica %d: already running (pid %d)\n", r.id, cmd.Process.Pid)
				continue
			}
			r.set("down", 0)
			if !d.waitForStart(ctx, r, 0) {
				return
			}
			delay, quickFailures = devRestartDelay, 0
		}
	}
}

// waitForStart waits for a start or restart command, or, if after is
// positive, at most that long. It reports false once ctx has ended.
func (d *devCluster) waitForStart(ctx context.Context, r *devReplica, after time.Duration) bool {
	var timer <-chan time.Time
	if after > 0 {
		t := time.NewTimer(after)
		defer t.Stop()
		timer = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer:
			return true
		case c := <-r.ctl:
			if c == "start" || c == "restart" {
				return true
			}
			d.printf("replica %d: not running\n", r.id)
		}
	}
}

// stopProcess sends SIGTERM, waits up to grace, then kills.
func stopProcess(cmd *exec.Cmd, done <-chan struct{}, grace time.Duration) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		_ = cmd.Process.Kill()
		<-done
	}
}

func readLines(r io.Reader, lines chan<- string) {
	defer close(lines)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		lines <- sc.Text()
	}
}

// commands obeys typed commands until ctx ends or the input does.
func (d *devCluster) commands(ctx context.Context, lines <-chan string) {
	for {
		var line string
		select {
		case <-ctx.Done():
			return
		case l, ok := <-lines:
			if !ok {
				return // no more input (e.g. </dev/null): keep serving
			}
			line = l
		}
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case len(f) == 1 && f[0] == "help":
			d.printf("%s\n", devHelp)
		case len(f) == 1 && f[0] == "status":
			d.printStatus()
		case len(f) == 1 && f[0] == "reload":
			d.reload()
		case len(f) == 2 && (f[0] == "kill" || f[0] == "stop" || f[0] == "start" || f[0] == "restart"):
			id, err := strconv.Atoi(f[1])
			if err != nil || id < 0 || id >= len(d.replicas) {
				d.printf("no replica %q (0..%d)\n", f[1], len(d.replicas)-1)
				continue
			}
			select {
			case d.replicas[id].ctl <- f[0]:
			default:
				d.printf("replica %d: busy with the previous command\n", id)
			}
		default:
			d.printf("unknown command %q; %s\n", line, devHelp)
		}
	}
}

// reload sends SIGHUP to every running replica.
func (d *devCluster) reload() {
	var sent []string
	for _, r := range d.replicas {
		state, pid := r.get()
		if state != "running" || pid == 0 {
			continue
		}
		p, err := os.FindProcess(pid)
		if err == nil {
			err = p.Signal(syscall.SIGHUP)
		}
		if err != nil {
			d.printf("replica %d: reload: %v\n", r.id, err)
			continue
		}
		sent = append(sent, strconv.Itoa(r.id))
	}
	if len(sent) == 0 {
		d.printf("reload: no replica is running\n")
		return
	}
	d.printf("reload: SIGHUP sent to replica %s (they re-read --client-auth-file and their certificates)\n", strings.Join(sent, ", "))
}

func (d *devCluster) printStatus() {
	for i, r := range d.replicas {
		state, pid := r.get()
		line := fmt.Sprintf("replica %d: %s", i, state)
		if pid != 0 {
			line += fmt.Sprintf(" (pid %d)", pid)
		}
		if st, err := d.status(d.clients[i]); err == nil {
			line += fmt.Sprintf(", %s in term %d, applied %d", roleName(st.GetRole()), st.GetTerm(), st.GetAppliedIndex())
		}
		d.printf("%s\n", line)
	}
}

var devHTTP = &http.Client{Timeout: time.Second}

func (d *devCluster) status(url string) (*kvv1.StatusResponse, error) {
	return kvv1.NewKVServiceProtobufClient(url, d.hc).Status(context.Background(), &kvv1.StatusRequest{})
}

// devTokenClient is devHTTP sending the first token of a client auth file
// (every role may read the status).
func devTokenClient(file string) (*http.Client, error) {
	token, err := durio.FirstClientToken(file)
	if err != nil {
		return nil, fmt.Errorf("%w: --client-auth-file: %v", durio.ErrUsage, err)
	}
	return client.WithToken(devHTTP, token)
}

// watchLeader polls the replicas and prints when a leader is elected or lost.
func (d *devCluster) watchLeader(ctx context.Context) {
	d.lastLeader = -1
	t := time.NewTicker(devPollEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		leader, term, up := -1, uint64(0), 0
		for i, u := range d.clients {
			st, err := d.status(u)
			if err == nil {
				up++
			}
			if err == nil && st.GetRole() == kvv1.Role_ROLE_LEADER && st.GetTerm() >= term {
				leader, term = i, st.GetTerm()
			}
		}
		if ctx.Err() != nil {
			return
		}
		switch {
		case leader >= 0 && (leader != d.lastLeader || term != d.lastLeaderTerm):
			d.printf("leader: replica %d (term %d)\n", leader, term)
		case leader < 0 && d.lastLeader >= 0:
			d.printf("no leader: waiting for an election (a majority of replicas must be up)\n")
		}
		// Ready once every replica answers too: the suggested commands name
		// the first and the last replica, and two replicas can elect a
		// leader while the third is still starting.
		if leader >= 0 && up == len(d.clients) && !d.announcedLeader {
			d.printf("cluster ready. try: curl -s -XPOST %s/kvstore/put -H 'Content-Type: application/json' -d '{\"key\":\"hello\",\"value\":\"world\"}'; curl -s %s/kvstore/get/hello\n",
				d.clients[0], d.clients[len(d.clients)-1])
			if d.o.ClientAuthFile != "" {
				d.printf("the replicas require client tokens: add -H 'Authorization: Bearer TOKEN' (a token of %s), or durio --token-file\n", d.o.ClientAuthFile)
			}
			if d.o.Commands != nil {
				d.printf("Ctrl-C stops the cluster. Type kill %d to watch failover, help for the commands.\n", leader)
			} else {
				d.printf("Ctrl-C stops the cluster.\n")
			}
			d.announcedLeader = true
		}
		d.lastLeader, d.lastLeaderTerm = leader, term
	}
}

// lockedWriter serialises writes from the supervising goroutines.
type lockedWriter struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
