package durio

import (
	"context"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/badgerstore"
	"github.com/ruaft/ruaft/persist/filestore"
)

// Serve runs one replica until ctx ends (SIGTERM or SIGINT in the durio
// command), then shuts it down gracefully. Logs go to logOut as JSON lines.
func Serve(ctx context.Context, cfg Config, logOut io.Writer) error {
	level, err := parseLogLevel(cfg.LogLevel)
	if err != nil {
		return configErr("log-level", "%v", err)
	}
	logger := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: level})).With("replica", cfg.ID)
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return configErr("data-dir", "%v", err)
	}
	store, err := openStore(ctx, cfg, logger)
	if err != nil {
		return err
	}
	r, err := StartReplica(cfg, store, logger)
	if err != nil {
		store.Close()
		return err
	}
	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case runErr = <-r.Failed():
		logger.Error("listener failed", "err", runErr)
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

// openStore opens the configured persister.
func openStore(_ context.Context, cfg Config, logger *slog.Logger) (persist.Store, error) {
	switch cfg.Persister {
	case "noop":
		return &persist.Noop{}, nil
	case "file":
		o := filestore.DefaultOptions()
		o.Logger = logger.With("layer", "filestore")
		return filestore.Open(cfg.DataDir, o)
	case "badger":
		o := badgerstore.DefaultOptions()
		o.Logger = logger.With("layer", "badger")
		return badgerstore.Open(cfg.DataDir, o)
	default:
		return nil, configErr("persister", "%q is not noop, file or badger", cfg.Persister)
	}
}
