// Command durio runs and talks to a durio replicated key-value cluster.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ruaft/ruaft/durio"
	"github.com/ruaft/ruaft/persist/plugin"
)

func main() {
	if err := run(); err != nil {
		msg := err.Error()
		if !strings.HasPrefix(msg, "durio") {
			msg = "durio: " + msg
		}
		fmt.Fprintln(os.Stderr, msg)
		if errors.Is(err, durio.ErrUsage) || errors.Is(err, durio.ErrConfig) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run() error {
	// Re-executed by a replica to serve its persister plugin (see
	// persist/plugin): serve it and nothing else.
	if served, err := plugin.ServeIfChild(); served {
		return err
	}
	defer plugin.CleanupClients()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, durio.Usage())
		return fmt.Errorf("%w: no command", durio.ErrUsage)
	}
	cmd, args := os.Args[1], os.Args[2:]
	switch cmd {
	case "serve":
		cfg, err := durio.ParseServeFlags(args)
		if err != nil {
			return err
		}
		return durio.Serve(ctx, cfg, os.Stderr)
	case "dev":
		opts, err := durio.ParseDevFlags(args)
		if err != nil {
			return err
		}
		return durio.RunDev(ctx, opts, os.Stdout)
	case "bench":
		opts, asJSON, err := durio.ParseBenchFlags(args)
		if err != nil {
			return err
		}
		res, err := durio.RunBench(ctx, opts, os.Stderr)
		if err != nil {
			return err
		}
		return durio.PrintBench(os.Stdout, res, asJSON)
	case "certs":
		opts, err := durio.ParseCertsFlags(args)
		if err != nil {
			return err
		}
		written, err := durio.WriteCerts(opts)
		for _, p := range written {
			fmt.Println("wrote", p)
		}
		return err
	case "get", "put", "append", "delete", "status":
		return durio.RunClientCommand(ctx, cmd, args, os.Stdout)
	case "help", "-h", "--help":
		fmt.Print(durio.Usage())
		return nil
	default:
		return fmt.Errorf("%w: unknown command %q (durio help lists them)", durio.ErrUsage, cmd)
	}
}
