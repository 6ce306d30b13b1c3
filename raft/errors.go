package raft

import "errors"

// Errors returned by Node methods; match them with errors.Is.
var (
	// ErrNotLeader is returned by ReadIndex and TransferLeadership on a node
	// that is not the leader, or that lost leadership before it could answer.
	ErrNotLeader = errors.New("raft: not the leader")
	// ErrKilled is returned by methods called on, or interrupted by, a killed
	// node, and by RPC handlers of a killed node.
	ErrKilled = errors.New("raft: node killed")
	// ErrStoreFailed is returned once a store call failed: the node no longer
	// acknowledges writes or answers RPCs. Status().Err holds the cause.
	ErrStoreFailed = errors.New("raft: store failed")
	// ErrTransferFailed is returned by TransferLeadership when the transfer
	// was aborted (the target did not take over within an election timeout).
	ErrTransferFailed = errors.New("raft: leadership transfer failed")
	// ErrBadSnapshot is returned by SaveSnapshot for an index the node cannot
	// compact to: not yet applied, or not above the current snapshot.
	ErrBadSnapshot = errors.New("raft: snapshot index out of range")
	// ErrBadPeer is returned for a replica id outside the cluster.
	ErrBadPeer = errors.New("raft: no such peer")
	// ErrSnapshotRejected is returned by New when the application's
	// SnapshotValidator refuses the stored snapshot: the replica cannot
	// restore its state and must not start.
	ErrSnapshotRejected = errors.New("raft: snapshot rejected by the application")
	// ErrBadTerm is returned by New when the stored term is beyond MaxTerm,
	// a term no correct cluster reaches.
	ErrBadTerm = errors.New("raft: term out of range")
)

// Errors joined into what Kill returns.
var (
	// ErrInvariant wraps each invariant violation the node recorded.
	ErrInvariant = errors.New("raft: invariant violated")
	// ErrPanic wraps each panic recovered in a daemon goroutine.
	ErrPanic = errors.New("raft: daemon panicked")
)
