// Package raft is a Raft consensus library: a deterministic core (messages and
// ticks in, one batch of work out) driven by a small set of daemon goroutines
// that persist, replicate and apply. See the README for the API.
package raft
