// Package rafttest runs Raft clusters on the simulated network of
// internal/simnet for tests, in the manner of the MIT 6.5840 lab's config.go:
// a Transport that carries raft's RPCs as protobuf bytes, and a Cluster
// harness with the lab's checks (one leader per term, agreement of applied
// values at every index, in-order application, commits on at least n
// servers) and fault controls (disconnect, crash and restart from a copy of
// the persisted state, unreliable network, long reordering).
//
// The lab's Raft tests (3A–3D) and the project's own cluster tests live in
// this package's _test files. Every Cluster logs its random seed; set
// RAFTTEST_SEED to replay a run's random choices (scheduling still varies),
// and RAFTTEST_LOG=1 to send the nodes' logs to the test log.
package rafttest
