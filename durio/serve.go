package durio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ruaft/ruaft/persist"
	_ "github.com/ruaft/ruaft/persist/builtin" // every store, served by re-executing this binary
	"github.com/ruaft/ruaft/persist/plugin"
)

// Serve runs one replica until ctx ends (SIGTERM or SIGINT in the durio
// command), then shuts it down gracefully. Logs go to logOut as JSON lines.
func Serve(ctx context.Context, cfg Config, logOut io.Writer) error {
	level, err := parseLogLevel(cfg.LogLevel)
	if err != nil {
		return configErr("log-level", "%v", err)
	}
	logger := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: level})).With("replica", cfg.ID)
	// SIGHUP re-reads --client-auth-file and the certificates (systemd's
	// ExecReload, or kill -HUP), so that a token can be added or revoked,
	// or a certificate renewed, without a restart.
	// Caught from here on: one that comes while the store opens or the
	// replica joins is acted on once it serves (the default would end
	// the process).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return configErr("data-dir", "%v", err)
	}
	lock, err := LockDataDir(cfg.DataDir)
	if errors.Is(err, ErrDataDirInUse) {
		return fmt.Errorf("%w; two replicas must never share a data folder: give each its own --data-dir", err)
	}
	if err != nil {
		return err
	}
	defer lock.Release()
	setRuntime(cfg, os.Getenv, logger)
	store, err := OpenStore(ctx, cfg, logger, WithDataDirLock(lock))
	if err != nil {
		return err
	}
	r, err := StartReplicaContext(ctx, cfg, store, logger)
	if err != nil {
		store.Close()
		if ctx.Err() != nil {
			// Stopped (SIGTERM, Ctrl-C) while joining: a clean stop.
			logger.Info("stopped before serving", "err", err)
			return nil
		}
		return err
	}
	releaseStartPages(logger)
	var runErr error
wait:
	for {
		select {
		case <-hup:
			reload(r, cfg, logger)
		case <-ctx.Done():
			logger.Info("shutting down")
			break wait
		case runErr = <-r.Failed():
			// Fail-stop: answer what is in flight, then exit non-zero so
			// that the service manager restarts the replica
			// (Restart=on-failure).
			logger.Error("replica failed; shutting down", "err", runErr)
			break wait
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Close(shutdownCtx); err != nil {
		logger.Error("shutdown", "err", err)
		if runErr == nil {
			runErr = err
		}
	}
	logger.Info("stopped")
	return runErr
}

// OpenStore opens the configured persister: noop in-process (it keeps
// nothing, so a subprocess would only add latency), every other store as a
// go-plugin subprocess — built-ins served by this same binary, or a
// third-party plugin binary by path. The subprocess dies with this process.
// It refuses (ErrConfig) a data folder whose store another persister
// wrote (checkPersister).
func OpenStore(ctx context.Context, cfg Config, logger *slog.Logger, opts ...StoreOption) (persist.Store, error) {
	if err := checkPersister(cfg.DataDir, filepath.Join(cfg.DataDir, "store"), cfg.Persister); err != nil {
		return nil, err
	}
	if cfg.Persister == "noop" {
		return &persist.Noop{}, nil
	}
	var o storeOptions
	for _, opt := range opts {
		opt(&o)
	}
	pc := plugin.Config{
		Persister:    cfg.Persister,
		DataDir:      storeDir(cfg),
		SocketDir:    filepath.Join(cfg.DataDir, "plugin"),
		Options:      cfg.PersisterOptions,
		StartTimeout: 10 * time.Second,
		Logger:       logger.With("layer", "persister"),
	}
	if o.lock != nil && o.lock.f != nil {
		pc.Inherit = []*os.File{o.lock.f}
	}
	if err := os.MkdirAll(pc.DataDir, 0o750); err != nil {
		return nil, configErr("data-dir", "%v", err)
	}
	store, err := plugin.Open(ctx, pc)
	if errors.Is(err, plugin.ErrInvalidConfig) {
		return nil, configErr("persister", "%v", err)
	}
	if errors.Is(err, persist.ErrCorrupt) {
		return nil, fmt.Errorf("durio: refusing to start: the %s store in %s is damaged, and serving it could "+
			"silently lose acknowledged writes (see the README, \"Storage integrity\"): %w", cfg.Persister, pc.DataDir, err)
	}
	if err != nil {
		return nil, diskFull(pc.DataDir, fmt.Errorf("durio: open persister %s: %w", cfg.Persister, err))
	}
	return store, nil
}

// storeDir is the folder a replica's persister keeps its store in ("" for
// a replica without a data folder).
func storeDir(cfg Config) string {
	if cfg.DataDir == "" {
		return ""
	}
	return filepath.Join(cfg.DataDir, "store")
}

// StoreOption changes how OpenStore opens the store.
type StoreOption func(*storeOptions)

type storeOptions struct {
	lock *DataDirLock
}

// WithDataDirLock makes the persister plugin inherit lock (the data
// folder's, from LockDataDir), so that the folder stays locked until the
// plugin, which writes the store, has exited too, even when this process
// is killed first.
func WithDataDirLock(lock *DataDirLock) StoreOption {
	return func(o *storeOptions) { o.lock = lock }
}

// reload is what SIGHUP does: read the client tokens and the certificates
// again; what does not load keeps what is in force, and the log says so.
func reload(r *Replica, cfg Config, logger *slog.Logger) {
	if err := r.ReloadClientAuth(); err != nil {
		logger.Error("SIGHUP: client tokens not reloaded; the ones in force stay", "err", err)
	} else if cfg.ClientAuthFile != "" {
		logger.Info("SIGHUP: client tokens reloaded", "file", cfg.ClientAuthFile)
	}
	reloaded, err := r.ReloadTLS()
	if err != nil {
		logger.Error("SIGHUP: a certificate was not reloaded; the one in force stays", "err", err)
	}
	for _, file := range reloaded {
		logger.Info("SIGHUP: certificate reloaded", "file", file)
	}
	if cfg.ClientAuthFile == "" && cfg.TLSCert == "" && !cfg.PeerTLS() {
		logger.Info("SIGHUP: nothing to reload (no --client-auth-file, --tls-cert or --peer-cert)")
	}
}
