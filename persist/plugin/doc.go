// Package plugin runs a persist.Store as a hashicorp/go-plugin subprocess
// speaking the gRPC PersisterService (rpc/persist/v1), and gives the host a
// persist.Store that forwards to it.
//
// Host side: Open(ctx, Config) starts the plugin chosen by Config.Persister —
// a built-in store by name (noop, memory, file, badger), served by
// re-executing the host's own binary, or a path to a third-party plugin
// binary — and returns a *Store. Every Append is one binary frame on a
// Unix socket pair the host hands the plugin when it starts it (the direct
// Append channel, direct.go: no HTTP/2, protobuf or goroutine hand-offs, so
// crossing costs tens of microseconds rather than hundreds); a plugin that
// does not offer the channel gets one Append RPC per call instead. Open,
// Load, SaveSnapshot and Close are gRPC calls; Load and SaveSnapshot stream
// the snapshot in chunks of at most 1 MiB, so snapshots of any size pass
// gRPC's message limit. If the plugin process dies, every call fails with an
// error matching persist.ErrUnavailable; nothing panics.
//
// A host binary that wants to serve the built-ins calls ServeIfChild first
// thing in main:
//
//	func main() {
//		if served, err := plugin.ServeIfChild(); served {
//			if err != nil { fmt.Fprintln(os.Stderr, err); os.Exit(1) }
//			return
//		}
//		...
//	}
//
// Lifetime: the plugin gets SIGKILL when the host dies (Pdeathsig, Linux;
// elsewhere it exits within a second of its parent's end), and ignores
// SIGINT, SIGTERM and SIGHUP, which reach it with its host when they are sent to a
// whole process group or systemd unit: the host stops it once the host's
// own shutdown has written its last entry. Closing, the host gives the
// store's Close call 10 s and then kills the process (SIGKILL if it does
// not answer go-plugin's shutdown request within 3 s): a store served as a
// plugin must survive being killed at any point, as it survives a crash. Its Unix socket lives under
// Config.SocketDir, a folder the replica owns.
// A main should Close its stores on shutdown and, for abnormal exits, call
// CleanupClients on SIGINT/SIGTERM, e.g.
//
//	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
//	defer stop()
//	defer plugin.CleanupClients()
//
// Plugin side: a third-party plugin's main calls Serve with a function that
// opens its store; the built-in plugin binaries under plugins/ call Main
// with their store's name and import only that store's package, which
// registers it (persist.Register), so plugins/file links no badger.
//
// Where things live: host.go (Config, Open, the subprocess), client.go (the
// host's persist.Store), server.go (the plugin's PersisterService), direct.go
// (the direct Append channel and its frames), builtin.go (stores by name,
// Serve, Main), errors.go (persist sentinels across the boundary). Entries,
// hard states and snapshots are converted and validated by
// persist/persistwire, the same code raft/wire uses for peer messages.
package plugin
