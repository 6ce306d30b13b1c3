package plugin

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/ruaft/ruaft/persist"
)

// EnvBuiltin is the environment variable that tells a re-executed host
// binary which built-in store to serve (see ServeIfChild).
const EnvBuiltin = "RUAFT_PERSISTER_BUILTIN"

// ErrNotPlugin is returned by Serve functions when the process was not
// started by a plugin host.
var ErrNotPlugin = errors.New("persist/plugin: not started by a plugin host (this binary is a persister plugin)")

// Builtins lists the names of the stores linked into this binary (see
// persist.Register), sorted. A binary that imports persist/builtin has all
// of them: noop, memory, file, badger.
func Builtins() []string { return persist.Drivers() }

// IsBuiltin reports whether name is a store linked into this binary.
func IsBuiltin(name string) bool {
	_, ok := persist.LookupDriver(name)
	return ok
}

// driver returns the registered Driver name, or ErrInvalidConfig.
func driver(name string) (persist.Driver, error) {
	d, ok := persist.LookupDriver(name)
	if !ok {
		return d, fmt.Errorf("%w: Persister %q is not a built-in store linked into this binary (%s)",
			ErrInvalidConfig, name, strings.Join(Builtins(), ", "))
	}
	return d, nil
}

// OpenBuiltin opens the built-in store name in-process with p; the plugin
// side of every built-in plugin calls it. The logger gets store notices.
func OpenBuiltin(name string, p Params, logger *slog.Logger) (persist.Store, error) {
	d, err := driver(name)
	if err != nil {
		return nil, err
	}
	st, err := d.Open(p.open(logger))
	if errors.Is(err, persist.ErrInvalidParams) {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return st, err
}

// checkBuiltin validates a built-in store's configuration on the host, so
// a bad option fails at startup with the field's name.
func checkBuiltin(name string, p Params) error {
	d, err := driver(name)
	if err != nil {
		return err
	}
	if d.NeedsDataDir && p.DataDir == "" {
		return fmt.Errorf("%w: DataDir is empty; the %s store needs a folder", ErrInvalidConfig, name)
	}
	if err := d.Check(p.open(nil)); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

func (p Params) open(logger *slog.Logger) persist.OpenParams {
	return persist.OpenParams{DataDir: p.DataDir, Sync: p.Sync, Options: p.Options, Logger: logger}
}

// releaseAfterOpen makes the server call exepages.Release once its store is
// open and then run releaseLoop; ServeIfChild sets it, for a plugin that is
// its host's binary.
var releaseAfterOpen bool

// ServeIfChild serves the built-in store named by EnvBuiltin if this process
// was started as one by Open, and reports whether it did; the host binary's
// main calls it first and returns when it reports true. It blocks until the
// host stops the plugin.
func ServeIfChild() (bool, error) {
	name := os.Getenv(EnvBuiltin)
	if name == "" {
		return false, nil
	}
	// This binary's pages that the host's package inits (and the plugin's
	// start) touched are shared with the host: once the store is open, keep
	// in the plugin's resident set only what serving uses (exepages).
	releaseAfterOpen = true
	return true, ServeBuiltin(name)
}

// ServeBuiltin serves the built-in store name as a plugin until the host
// stops it. The store must be linked into the binary (persist.Register).
func ServeBuiltin(name string) error {
	if _, err := driver(name); err != nil {
		return err
	}
	logger := pluginLogger()
	return Serve(func(p Params) (persist.Store, string, error) {
		st, err := OpenBuiltin(name, p, logger)
		return st, name, err
	})
}

// Serve serves the store open opens as a persister plugin until the host
// stops it. A third-party plugin's main calls it. It returns ErrNotPlugin if
// the process was not started by a host. The process ignores SIGINT,
// SIGTERM and SIGHUP from then on: the host stops it after its own
// shutdown (see leaveStopToHost), and it ends with its host in any case.
// This replaces any handler of those signals the plugin set up before,
// and processes the plugin starts inherit them ignored.
func Serve(open OpenFunc) error {
	if os.Getenv(Handshake.MagicCookieKey) != Handshake.MagicCookieValue {
		return ErrNotPlugin
	}
	direct, err := directFromEnv()
	if err != nil {
		// The host offered a channel we cannot use: serve Append over gRPC.
		pluginLogger().Warn("persister plugin: no direct Append channel", "err", err)
	}
	leaveStopToHost()
	gp := &GRPCPlugin{Open: open, direct: direct}
	defer func() {
		if gp.srv != nil {
			gp.srv.stopDirect()
		}
		if direct != nil {
			_ = direct.Close()
		}
	}()
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         goplugin.PluginSet{PluginName: gp},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(maxMessageBytes), grpc.MaxSendMsgSize(maxMessageBytes))...)
		},
		Logger: hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Warn, JSONFormat: true}),
	})
	return nil
}

// Main is the whole main of a built-in plugin binary: it serves the store
// name (which the binary links by importing its package) and exits the
// process, with status 1 and a message on stderr if serving failed.
func Main(name string) {
	if err := ServeBuiltin(name); err != nil {
		fmt.Fprintf(os.Stderr, "%s plugin: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// pluginLogger is the store's logger inside a plugin process: warnings and
// errors as text on stderr, which the host forwards to its own logger.
func pluginLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
