// Package rsm is the way to build your own replicated service on this
// module's Raft: give it a deterministic state machine and a raft.Node, and
// Submit proposes a command and waits until it has been committed and
// applied, returning the state machine's result to the caller that proposed
// it, or an error saying why not (ErrNotLeader: nothing was proposed;
// ErrLostLeadership or ErrKilled: the command may or may not have been
// applied, so make commands idempotent or number them, as kvraft does).
//
// Wiring, for each replica i of n (see the example):
//
//	r, _ := rsm.New(rsm.DefaultConfig(), myStateMachine)
//	cfg := raft.DefaultConfig()
//	cfg.ID, cfg.Peers = i, n
//	node, _ := raft.New(cfg, transport, store, r) // r is the node's raft.Application
//	r.Attach(node)
//	result, err := r.Submit(ctx, command)         // on the leader
//
// The transport carries raft's four RPCs between replicas: an in-process one
// is a few lines (the example has one); durio's Twirp transport works over
// HTTP. Reads that must be linearizable call ReadIndex first, then read the
// state machine. Snapshot returns the state with the log index it covers
// (for backups).
//
// This package is the public face of kvraft/rsm, which the key-value service
// is built on; the names here are aliases of that package's, so values of
// either can be used with the other.
package rsm

import krsm "github.com/ruaft/ruaft/kvraft/rsm"

type (
	// RSM is a replicated state machine; see kvraft/rsm.RSM.
	RSM = krsm.RSM
	// StateMachine is the deterministic application an RSM replicates:
	// Apply(index, cmd) any, Snapshot() []byte, Restore([]byte) error.
	StateMachine = krsm.StateMachine
	// Raft is the part of *raft.Node an RSM drives.
	Raft = krsm.Raft
	// Config tunes an RSM.
	Config = krsm.Config
	// Future is a proposed command's outcome (Propose), for callers that
	// wait on many at once.
	Future = krsm.Future
)

// Errors returned by Submit, Propose and Future.Wait.
var (
	// ErrNotLeader means this replica is not the leader: nothing was proposed.
	ErrNotLeader = krsm.ErrNotLeader
	// ErrLostLeadership means the command was proposed but leadership was
	// lost before it was seen applied: it may or may not have been applied.
	ErrLostLeadership = krsm.ErrLostLeadership
	// ErrKilled means the RSM was killed; a proposed command may or may not
	// have been applied.
	ErrKilled = krsm.ErrKilled
)

// New returns an RSM around sm. Create the raft node with it as the node's
// application, then call Attach before anything else.
func New(cfg Config, sm StateMachine) (*RSM, error) { return krsm.New(cfg, sm) }

// DefaultConfig returns the configuration used when none is given.
func DefaultConfig() Config { return krsm.DefaultConfig() }
