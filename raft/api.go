package raft

import (
	"context"

	"github.com/ruaft/ruaft/persist"
)

// This file is the library's surface toward transports and applications. The
// Node type (node.go) implements the methods described at the end.

// Entry is a log entry; the type is shared with the storage contract.
type Entry = persist.Entry

// Replica ids are the indexes 0..n-1 of a cluster's members, the same number
// durio takes as --id and as the position in --peers.

// AppendEntriesRequest is sent by the leader to replicate entries or as a
// heartbeat (no entries). Raft paper, figure 2.
type AppendEntriesRequest struct {
	Term         uint64
	LeaderID     int
	PrevLogIndex uint64
	PrevLogTerm  uint64
	// Entries are consecutive, starting at PrevLogIndex+1. The receiver must not
	// retain the slice or the Data buffers after the handler returns.
	Entries      []Entry
	LeaderCommit uint64
}

// AppendEntriesResponse answers an AppendEntriesRequest, with the fast log
// backup hints on a mismatch.
type AppendEntriesResponse struct {
	Term    uint64
	Success bool
	// MatchIndex is, on success, the last index known to match the leader's
	// log (PrevLogIndex + len(Entries)).
	MatchIndex uint64
	// ConflictTerm is, on failure, the term of the receiver's entry at
	// PrevLogIndex, or 0 if its log is shorter than that.
	ConflictTerm uint64
	// ConflictIndex is, on failure, the first index of ConflictTerm in the
	// receiver's log, or its last index + 1 if ConflictTerm is 0.
	ConflictIndex uint64
	// LastLogIndex is the receiver's last log index.
	LastLogIndex uint64
	// AppVersion is the receiver's Config.AppVersion (0 from a replica
	// that predates the field).
	AppVersion uint32
}

// RequestVoteRequest asks for a vote, or with PreVote for a pre-vote.
type RequestVoteRequest struct {
	// Term is the candidate's term; for a pre-vote, the term it would campaign
	// in, which the receiver does not adopt.
	Term         uint64
	CandidateID  int
	LastLogIndex uint64
	LastLogTerm  uint64
	PreVote      bool
	// LeadershipTransfer marks an election started by TimeoutNow; it is granted
	// even by a receiver that heard from a leader recently.
	LeadershipTransfer bool
}

// RequestVoteResponse answers a RequestVoteRequest.
type RequestVoteResponse struct {
	Term        uint64
	VoteGranted bool
	// RemovedAt, if above 0, says the candidate is no member of the
	// responder's committed configuration that took effect at this log
	// index. A candidate whose own configuration is older than that was
	// removed while cut off and stops campaigning; one that knows a
	// configuration at or past that index (a member the responder has not
	// heard of yet) ignores it.
	RemovedAt uint64
}

// InstallSnapshotRequest carries one chunk (at most Config's chunk size) of a
// snapshot.
type InstallSnapshotRequest struct {
	Term              uint64
	LeaderID          int
	LastIncludedIndex uint64
	LastIncludedTerm  uint64
	// Offset is the byte offset of Data within the snapshot.
	Offset uint64
	Data   []byte
	// Done marks the last chunk.
	Done bool
	// TotalSize is the length of the whole snapshot in bytes.
	TotalSize uint64
	// Checksum is the CRC-32C (Castagnoli) of the whole snapshot, the same
	// in every chunk. The receiver installs the snapshot only if the bytes
	// it assembled have this checksum.
	Checksum uint32
	// Config is the cluster configuration in force at LastIncludedIndex
	// (raft-encoded Membership), the same in every chunk.
	Config []byte
}

// InstallSnapshotResponse answers one chunk.
type InstallSnapshotResponse struct {
	Term uint64
	// NextOffset is the offset the receiver expects next; the leader resumes
	// from there.
	NextOffset uint64
	// Installed is true once the receiver holds the whole snapshot (or a log
	// that already covers it).
	Installed bool
}

// TimeoutNowRequest asks the receiver to start an election at once.
type TimeoutNowRequest struct {
	Term     uint64
	LeaderID int
	// LastLogIndex is the leader's last log index when it sent the request,
	// which the receiver has matched. Together with Term it identifies the
	// transfer: a leader appends nothing while a transfer runs and appends
	// an entry when it ends one without stepping down, so a receiver whose
	// log holds an entry of Term past LastLogIndex knows the transfer is
	// over and ignores the request. (A request delayed past the end of its
	// transfer that still reaches the target before that entry does cannot
	// be told from a timely one, and is honoured.)
	LastLogIndex uint64
}

// TimeoutNowResponse acknowledges a TimeoutNowRequest.
type TimeoutNowResponse struct {
	Term     uint64
	Accepted bool
}

// ReadIndexRequest asks the leader for a read index on behalf of a
// follower. It carries no read ids: one request stands for every read
// waiting on the follower, which keeps them.
type ReadIndexRequest struct {
	// Term is the follower's term; a leader in an older term refuses.
	Term       uint64
	FollowerID int
}

// ReadIndexResponse answers a ReadIndexRequest.
type ReadIndexResponse struct {
	Term uint64
	// OK is true if the receiver, as leader of Term with its no-op of Term
	// committed, confirmed with a majority that it still led as of a time
	// after the request was sent (a request of the leader's term counts as
	// the sender's acknowledgement). ReadIndex is then its commit index at
	// the request's arrival: every write acknowledged before the request
	// was sent is at or below it.
	OK        bool
	ReadIndex uint64
}

// Transport sends RPCs to peers, addressed by replica id. Implementations are
// safe for concurrent use and honour ctx's deadline. An error means no
// response arrived: the request may or may not have been delivered and
// executed. A transport must not retain a request after the call returns.
type Transport interface {
	AppendEntries(ctx context.Context, peer int, req *AppendEntriesRequest) (*AppendEntriesResponse, error)
	RequestVote(ctx context.Context, peer int, req *RequestVoteRequest) (*RequestVoteResponse, error)
	InstallSnapshot(ctx context.Context, peer int, req *InstallSnapshotRequest) (*InstallSnapshotResponse, error)
	TimeoutNow(ctx context.Context, peer int, req *TimeoutNowRequest) (*TimeoutNowResponse, error)
	// ReadIndex carries a follower's read-index request to the leader
	// (Node.HandleReadIndex on the other side). The leader answers only
	// after a heartbeat round, so the call takes about two round trips.
	ReadIndex(ctx context.Context, peer int, req *ReadIndexRequest) (*ReadIndexResponse, error)
}

// ApplyMsg is one committed command, or an installed snapshot, handed to the
// application in log order.
type ApplyMsg struct {
	// Index and Term locate the command's entry, or the last entry the
	// snapshot covers.
	Index uint64
	Term  uint64
	// Command is the data passed to Start, for a command. The node keeps
	// the slice in its log (on the leader it is the very slice passed to
	// Start): the application reads it, or copies what it keeps, but never
	// writes into it.
	Command []byte
	// Snapshot is set (and Command is nil) when the node installed a snapshot
	// received from the leader, or loaded one at start-up: the application
	// must replace its state with it. The application owns the slice: it is
	// a copy that the node does not use again.
	Snapshot []byte
	// IsSnapshot distinguishes a snapshot (possibly empty) from a command.
	IsSnapshot bool
}

// Application is the replicated state machine a Node drives. Its methods are
// called from one goroutine, one at a time, never after Kill returns.
type Application interface {
	// Apply is called once per committed command and per installed snapshot, in
	// log order, with no gaps: after a snapshot at index i the next command is
	// i+1. Apply may block; consensus goes on meanwhile. No-op and
	// configuration entries are not passed to Apply.
	Apply(msg ApplyMsg)

	// SnapshotNeeded is called between Apply calls when the persisted log
	// exceeds Config's snapshot threshold, or when the node needs the data
	// of a snapshot it no longer holds to send it (its store announced it
	// could read snapshots back but cannot). lastApplied is the index of the last
	// message passed to Apply, so the application's state right now is the
	// state at lastApplied. The application answers, now or later and from any
	// goroutine, with Node.SaveSnapshot(index, data) for an index it has
	// applied; it is not called again for the same threshold crossing until it
	// answers or the log has grown further.
	SnapshotNeeded(lastApplied uint64)
}

// SnapshotValidator may be implemented by an Application that can tell
// whether a snapshot is one it can restore. A node whose application
// implements it calls ValidateSnapshot with every snapshot received from a
// leader, after its checksum matched and before the node stores it, and
// refuses the snapshot if it returns an error (the leader sends it again
// later); New calls it with the stored snapshot and fails if it returns an
// error, so a replica never starts from a snapshot it cannot restore.
//
// ValidateSnapshot is called from RPC handler goroutines, concurrently with
// Apply; it must not modify data or keep it after returning. A snapshot it
// accepts must then restore without error.
type SnapshotValidator interface {
	ValidateSnapshot(index uint64, data []byte) error
}

// Role is a node's Raft role.
type Role int

const (
	Follower Role = iota
	PreCandidate
	Candidate
	Leader
)

// String names the role.
func (r Role) String() string {
	switch r {
	case Follower:
		return "follower"
	case PreCandidate:
		return "pre-candidate"
	case Candidate:
		return "candidate"
	case Leader:
		return "leader"
	default:
		return "unknown"
	}
}

// NoLeader is Status.Leader when the node knows of no leader in its term.
const NoLeader = -1

// Status is a point-in-time view of a node, for monitoring and tests.
type Status struct {
	ID     int
	Term   uint64
	Role   Role
	Leader int // replica id, or NoLeader
	// Commit is the highest index known to be committed.
	Commit uint64
	// Applied is the highest index handed to the application.
	Applied uint64
	// LastIndex is the index of the last log entry (or the snapshot index).
	LastIndex uint64
	// SnapshotIndex is the last index covered by the stored snapshot.
	SnapshotIndex uint64
	// LogSizeBytes is the store's size figure (persist.Store.Size).
	LogSizeBytes int64
	// Err is the error that stopped the node from accepting writes (a failed
	// store call), or nil while healthy.
	Err error
	// ReadRounds counts the leadership-confirmation rounds this node started
	// as leader for ReadIndex since it started. Reads coalesce: at most one
	// round is in flight, and every read that arrives meanwhile shares the
	// next one.
	ReadRounds uint64
	// ReadIndexRequests counts the read-index requests this node sent to a
	// leader as a follower; each carries every read waiting on the node.
	ReadIndexRequests uint64

	// Membership is the configuration in force (the latest in the log,
	// committed or not) and MembershipIndex the log index it took effect
	// at (the snapshot index for one restored from a snapshot).
	Membership      Membership
	MembershipIndex uint64
	// Progress is, on a leader, its view of each member's replication
	// (itself included if it is a member); nil elsewhere.
	Progress map[int]MemberProgress
	// Removed is true once this node knows it is no member of the
	// cluster: the configuration in force (non-empty) leaves it out, or a
	// voter answered its campaign that a committed configuration newer
	// than its own does. A removed node never campaigns; an operator stops
	// it (or the cluster adds it again, which it then learns as usual).
	Removed bool
}

// The Node type implements:
//
//	func New(cfg Config, tr Transport, store persist.Store, app Application) (*Node, error)
//	func (n *Node) Start(cmd []byte) (index, term uint64, isLeader bool)
//	func (n *Node) State() (term uint64, isLeader bool)
//	func (n *Node) Status() Status
//	func (n *Node) ReadIndex(ctx context.Context) (uint64, error)   // on the leader or a follower
//	func (n *Node) SaveSnapshot(index uint64, data []byte) error
//	func (n *Node) TransferLeadership(ctx context.Context, to int) error
//	func (n *Node) Kill() error
//	func (n *Node) HandleAppendEntries(ctx context.Context, req *AppendEntriesRequest) (*AppendEntriesResponse, error)
//	func (n *Node) HandleRequestVote(ctx context.Context, req *RequestVoteRequest) (*RequestVoteResponse, error)
//	func (n *Node) HandleInstallSnapshot(ctx context.Context, req *InstallSnapshotRequest) (*InstallSnapshotResponse, error)
//	func (n *Node) HandleTimeoutNow(ctx context.Context, req *TimeoutNowRequest) (*TimeoutNowResponse, error)
//	func (n *Node) HandleReadIndex(ctx context.Context, req *ReadIndexRequest) (*ReadIndexResponse, error)
//	func (n *Node) Subscribe() (events <-chan Event, cancel func())
//
// Handlers return an error only when the node cannot answer (killed, or its
// store failed); a transport turns that into "no response".
