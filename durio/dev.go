package durio

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

// DevOptions configure `durio dev`.
type DevOptions struct {
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
}

func (o *DevOptions) register(fs *pflag.FlagSet) {
	fs.StringVar(&o.Dir, "dir", "durio-dev", "`folder` for the replicas' data (one sub-folder each)")
	fs.StringVar(&o.Persister, "persister", "badger", "store for every replica: noop, file, badger, or a plugin `path`")
	fs.IntVar(&o.ClientPort, "client-port", 8001, "client `port` of replica 0; replica i listens on port+i")
	fs.IntVar(&o.PeerPort, "peer-port", 9001, "peer `port` of replica 0; replica i listens on port+i")
	fs.IntVar(&o.Replicas, "replicas", 3, "number of replicas")
	fs.StringVar(&o.LogLevel, "log-level", "warn", "replicas' log `level`: debug, info, warn or error")
}

func (o *DevOptions) check() error {
	if o.Replicas < 1 {
		return fmt.Errorf("%w: --replicas must be at least 1", ErrUsage)
	}
	for _, p := range []int{o.ClientPort, o.PeerPort} {
		if p < 1 || p+o.Replicas-1 > 65535 {
			return fmt.Errorf("%w: --client-port and --peer-port must leave room for %d ports below 65536", ErrUsage, o.Replicas)
		}
	}
	return nil
}

// RunDev starts a local cluster of `durio serve` processes on loopback and
// stops them when ctx ends (Ctrl-C in the durio command).
func RunDev(ctx context.Context, o DevOptions, stdout io.Writer) error {
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
	peers := make([]string, o.Replicas)
	clients := make([]string, o.Replicas)
	for i := range o.Replicas {
		peers[i] = "http://127.0.0.1:" + strconv.Itoa(o.PeerPort+i)
		clients[i] = "http://127.0.0.1:" + strconv.Itoa(o.ClientPort+i)
	}
	fmt.Fprintf(stdout, "durio dev: %d replicas, persister %s, data in %s\n", o.Replicas, o.Persister, dir)
	procs := make([]devProc, 0, o.Replicas)
	defer func() { stopAll(procs, 10*time.Second) }()
	exited := make(chan error, o.Replicas)
	for i := range o.Replicas {
		dataDir := filepath.Join(dir, "replica-"+strconv.Itoa(i))
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			return err
		}
		logFile, err := os.OpenFile(filepath.Join(dir, "replica-"+strconv.Itoa(i)+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		cmd := exec.Command(exe, "serve",
			"--id", strconv.Itoa(i),
			"--peers", strings.Join(peers, ","),
			"--client-urls", strings.Join(clients, ","),
			"--listen-client", strings.TrimPrefix(clients[i], "http://"),
			"--data-dir", dataDir,
			"--persister", o.Persister,
			"--log-level", o.LogLevel)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			logFile.Close()
			return fmt.Errorf("durio dev: start replica %d: %w", i, err)
		}
		logFile.Close() // the child holds its own descriptor
		p := devProc{cmd: cmd, done: make(chan struct{})}
		procs = append(procs, p)
		go func() {
			err := cmd.Wait()
			close(p.done)
			exited <- fmt.Errorf("replica %d exited: %v", i, err)
		}()
		fmt.Fprintf(stdout, "  replica %d: client %s  peer %s  log %s\n", i, clients[i], peers[i], logFile.Name())
	}
	fmt.Fprintf(stdout, "try: curl -s -XPOST %s/kvstore/put -H 'Content-Type: application/json' -d '{\"key\":\"hello\",\"value\":\"world\"}'; curl -s %s/kvstore/get/hello\n", clients[0], clients[o.Replicas-1])
	fmt.Fprintln(stdout, "Ctrl-C stops the cluster.")
	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "durio dev: stopping")
		return nil
	case err := <-exited:
		return fmt.Errorf("durio dev: %w (see the replica's log in %s)", err, dir)
	}
}

// devProc is a replica process; done closes once it has been waited for.
type devProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// stopAll sends SIGTERM to every process, waits up to grace for them to exit,
// then kills the rest and waits for them too.
func stopAll(procs []devProc, grace time.Duration) {
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	expired := false
	for _, p := range procs {
		if !expired {
			select {
			case <-p.done:
				continue
			case <-timer.C:
				expired = true
			}
		}
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
