// Command durio runs and talks to a durio replicated key-value cluster; see
// `durio --help`. The command tree lives in package durio/cli, the replica in
// package durio.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ruaft/ruaft/durio/cli"
	"github.com/ruaft/ruaft/persist/plugin"
)

func main() {
	// Re-executed by a replica to serve its persister plugin (see
	// persist/plugin): serve it and nothing else.
	if served, err := plugin.ServeIfChild(); served {
		if err != nil {
			fmt.Fprintln(os.Stderr, "durio:", err)
			os.Exit(cli.ExitFailure)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	plugin.CleanupClients()
	os.Exit(code)
}
