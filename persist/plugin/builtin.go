package plugin

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/badgerstore"
	"github.com/ruaft/ruaft/persist/filestore"
)

// EnvBuiltin is the environment variable that tells a re-executed host
// binary which built-in store to serve (see ServeIfChild).
const EnvBuiltin = "RUAFT_PERSISTER_BUILTIN"

// ErrNotPlugin is returned by Serve functions when the process was not
// started by a plugin host.
var ErrNotPlugin = errors.New("persist/plugin: not started by a plugin host (this binary is a persister plugin)")

// Builtins lists the built-in store names.
func Builtins() []string { return []string{"noop", "memory", "file", "badger"} }

// IsBuiltin reports whether name is a built-in store.
func IsBuiltin(name string) bool { return slices.Contains(Builtins(), name) }

// OpenBuiltin opens the built-in store name in-process with p; the plugin
// side of every built-in plugin calls it. The logger gets store notices.
func OpenBuiltin(name string, p Params, logger *slog.Logger) (persist.Store, error) {
	switch name {
	case "noop":
		return persist.NewNoop(), checkNoOptions(name, p.Options)
	case "memory":
		return persist.NewMemory(), checkNoOptions(name, p.Options)
	case "file":
		o, err := fileOptions(p)
		if err != nil {
			return nil, err
		}
		o.Logger = logger
		return filestore.Open(p.DataDir, o)
	case "badger":
		o, err := badgerOptions(p)
		if err != nil {
			return nil, err
		}
		o.Logger = logger
		return badgerstore.Open(p.DataDir, o)
	}
	return nil, fmt.Errorf("%w: Persister %q is not a built-in store (%s)", ErrInvalidConfig, name, strings.Join(Builtins(), ", "))
}

func checkNoOptions(name string, opts map[string]string) error {
	for k := range opts {
		return fmt.Errorf("%w: Options[%s]: the %s store takes no options", ErrInvalidConfig, k, name)
	}
	return nil
}

func fileOptions(p Params) (filestore.Options, error) {
	o := filestore.DefaultOptions()
	o.NoSync = !p.Sync
	for k, v := range p.Options {
		if err := o.Set(k, v); err != nil {
			return o, fmt.Errorf("%w: Options[%s]: %w", ErrInvalidConfig, k, err)
		}
	}
	if err := o.Validate(); err != nil {
		return o, fmt.Errorf("%w: Options: %w", ErrInvalidConfig, err)
	}
	return o, nil
}

func badgerOptions(p Params) (badgerstore.Options, error) {
	o := badgerstore.DefaultOptions()
	o.NoSync = !p.Sync
	for k, v := range p.Options {
		if err := o.Set(k, v); err != nil {
			return o, fmt.Errorf("%w: Options[%s]: %w", ErrInvalidConfig, k, err)
		}
	}
	if err := o.Validate(); err != nil {
		return o, fmt.Errorf("%w: Options: %w", ErrInvalidConfig, err)
	}
	return o, nil
}

// checkBuiltinOptions validates a built-in store's options on the host, so
// a bad option fails at startup with the field's name.
func checkBuiltinOptions(name string, p Params) error {
	switch name {
	case "noop", "memory":
		return checkNoOptions(name, p.Options)
	case "file":
		_, err := fileOptions(p)
		return err
	case "badger":
		_, err := badgerOptions(p)
		return err
	}
	return nil
}

// ServeIfChild serves the built-in store named by EnvBuiltin if this process
// was started as one by Open, and reports whether it did; the host binary's
// main calls it first and returns when it reports true. It blocks until the
// host stops the plugin.
func ServeIfChild() (bool, error) {
	name := os.Getenv(EnvBuiltin)
	if name == "" {
		return false, nil
	}
	return true, ServeBuiltin(name)
}

// ServeBuiltin serves the built-in store name as a plugin until the host
// stops it. The built-in plugin binaries' mains call it.
func ServeBuiltin(name string) error {
	if !IsBuiltin(name) {
		return fmt.Errorf("%w: Persister %q is not a built-in store (%s)", ErrInvalidConfig, name, strings.Join(Builtins(), ", "))
	}
	logger := pluginLogger()
	return Serve(func(p Params) (persist.Store, string, error) {
		st, err := OpenBuiltin(name, p, logger)
		return st, name, err
	})
}

// Serve serves the store open opens as a persister plugin until the host
// stops it. A third-party plugin's main calls it. It returns ErrNotPlugin if
// the process was not started by a host.
func Serve(open OpenFunc) error {
	if os.Getenv(Handshake.MagicCookieKey) != Handshake.MagicCookieValue {
		return ErrNotPlugin
	}
	direct, err := directFromEnv()
	if err != nil {
		// The host offered a channel we cannot use: serve Append over gRPC.
		pluginLogger().Warn("persister plugin: no direct Append channel", "err", err)
	}
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

// pluginLogger is the store's logger inside a plugin process: warnings and
// errors as text on stderr, which the host forwards to its own logger.
func pluginLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
