// Package cli is the durio command: the cobra command tree, its flags and
// environment variables, and its exit codes. cmd/durio's main calls Main;
// NewCommand returns the tree for documentation generators and tests.
//
// The command is a client of the replicas it talks to (through package
// durio/client) and a launcher of replicas (durio serve runs durio.Serve);
// it holds no replica logic. Package durio imports nothing of it.
//
// # Where each command lives
//
//   - cli.go: Main, the root command, the DURIO_* environment (envPrefix),
//     ExitCode and the exit codes, the flags every client command shares
//     (--endpoints, --timeout, --json, --cacert), get/put/append/delete,
//     status, serve, dev and bench.
//   - cli_kv.go: list, watch and lease, and how keys and events print.
//   - cli_member.go: member list/add/promote/remove and their exit codes.
//   - cli_snapshot.go: snapshot save/inspect/restore over package
//     durio/backup (Save, ReadFile, Restore).
//   - cli_certs.go: certs, over durio.WriteCerts.
//   - version.go: version and the buildInfo it reports.
//   - dev.go (with dev_linux.go, dev_other.go): `durio dev`, a local cluster
//     of `durio serve` child processes on loopback that it supervises,
//     restarts and lets the user kill, stop and start; devEndpoints are its
//     client URLs and the client commands' default endpoints.
//   - bench.go, bench_watch.go: `durio bench`, a closed-loop load generator
//     (put, get, mixed, list, and watch fan-out) with latency quantiles.
//
// # Tests
//
// The unit tests here run the commands in process, against a one-replica
// cluster started with durio.StartReplica where they need a server
// (bench_test.go's startReplica). The end-to-end tests of the built binary
// (durio's cli_e2e_test.go and dev_e2e_test.go) live in package durio with
// its process harness.
package cli
