// Package kvraft is a replicated, linearizable string key-value store built on
// package raft, with exactly-once writes per client request and snapshots.
package kvraft
