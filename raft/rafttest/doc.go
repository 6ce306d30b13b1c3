// Package rafttest runs Raft clusters on the simulated network of
// internal/simnet for tests, in the manner of the MIT 6.5840 lab's config.go:
// a Transport that carries raft's RPCs as protobuf bytes, and a Cluster
// harness with the lab's checks (one leader per term, agreement of applied
// values at every index, in-order application, commits on at least n
// servers) and fault controls (disconnect, crash and restart from a copy of
// the persisted state, unreliable network, long reordering).
//
// The fault API is the same in kvraft/kvtest, with the same meaning (Links
// states it): Partition(groups...), Heal(), Disconnect(i), Connect(i),
// SetLink(i, j, on), SetUnreliable(on), Crash(i) and Restart(i) (which
// leaves the server disconnected until Connect, as the lab's start1).
//
// The harness's files, one concept each: cluster.go (options, start and
// teardown), lifecycle.go (crash, restart), network.go and links.go
// (faults, counters), checks.go (the lab's checks), app.go (the checking,
// snapshotting application), log.go, membership.go, transport.go.
//
// The lab's Raft tests (3A–3D) and the project's own cluster tests live in
// this package's _test files. Every Cluster logs its random seed; set
// RAFTTEST_SEED to replay a run's random choices (scheduling still varies),
// RAFTTEST_LOG=1 to send the nodes' logs to the test log, and RAFTTEST_TRACE=1
// to log every RPC a server serves (AppendEntries in detail).
//
// The lab's tests are timing-sensitive, so the ones that count RPCs or
// check that terms stay stable (TestCount3B, TestInitialElection3A,
// TestCheckQuorum, ...) run alone, first. Only long tests that spend most of
// their time waiting (Figure 8, churn, the snapshot-install tests, Backup,
// Persist2, chunked snapshots) call t.Parallel, so that with go test's
// default -parallel (GOMAXPROCS) two of them share the machine after the
// sequential ones finish. Stress them with scripts/stress.sh.
package rafttest
