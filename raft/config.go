package raft

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ErrInvalidConfig is wrapped by every error Validate returns.
var ErrInvalidConfig = errors.New("raft: invalid config")

// MaxSnapshotChunkBytes is the largest InstallSnapshot chunk the protocol
// allows (1 MiB).
const MaxSnapshotChunkBytes = 1 << 20

// Config configures a Node. Start from DefaultConfig and set ID and Peers.
type Config struct {
	// ID is this replica's id, in [0, Peers).
	ID int
	// Peers is the number of replicas in the cluster; ids are 0..Peers-1.
	Peers int

	// TickInterval is the length of one logical tick, the unit in which the
	// core measures time. Every duration below is rounded down to whole
	// ticks (at least one).
	TickInterval time.Duration
	// ElectionTimeoutMin and ElectionTimeoutMax bound the randomized election
	// timeout: a follower that hears from no leader for a duration drawn
	// uniformly from [Min, Max) starts an election. Min is also the leader
	// lease used by pre-vote and check-quorum.
	ElectionTimeoutMin time.Duration
	ElectionTimeoutMax time.Duration
	// HeartbeatInterval is how often a leader sends an AppendEntries to a
	// peer it has sent nothing else to meanwhile. Must be below
	// ElectionTimeoutMin.
	HeartbeatInterval time.Duration

	// PreVote makes a node ask for pre-votes before it increments its term,
	// so a node cut off from the cluster cannot disrupt it when it rejoins.
	PreVote bool
	// CheckQuorum makes a leader step down when a majority has not answered
	// it within twice ElectionTimeoutMin, and makes a node that heard from a
	// leader within ElectionTimeoutMin refuse votes and pre-votes.
	CheckQuorum bool

	// RPCTimeout bounds each RPC sent to a peer.
	RPCTimeout time.Duration
	// RPCWorkersPerPeer is the number of goroutines sending RPCs to one
	// peer, hence the most RPCs outstanding to it at once.
	RPCWorkersPerPeer int

	// MaxInflightAppends is the most AppendEntries carrying entries that a
	// leader has outstanding to one peer (pipelining depth).
	MaxInflightAppends int
	// MaxInflightBytes is the most entry bytes a leader has outstanding to
	// one peer.
	MaxInflightBytes int64
	// MaxEntriesPerAppend is the most entries in one AppendEntries.
	MaxEntriesPerAppend int
	// MaxBytesPerAppend is the most entry data bytes in one AppendEntries
	// (one larger entry is still sent alone).
	MaxBytesPerAppend int64

	// SnapshotThresholdBytes is the store size (persist.Store.Size) above
	// which the node asks the application for a snapshot; 0 disables
	// snapshots requested by the node.
	SnapshotThresholdBytes int64
	// SnapshotChunkBytes is the size of one InstallSnapshot chunk, at most
	// MaxSnapshotChunkBytes.
	SnapshotChunkBytes int

	// Seed seeds the core's random source (election timeouts). 0 picks a
	// seed from the clock and the ID.
	Seed uint64

	// Logger receives the node's logs; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns a Config with every field but ID and Peers set to
// values suited to a LAN or a single machine: ticks of 10 ms, election
// timeout 150-300 ms, heartbeats every 50 ms.
func DefaultConfig() Config {
	return Config{
		TickInterval:           10 * time.Millisecond,
		ElectionTimeoutMin:     150 * time.Millisecond,
		ElectionTimeoutMax:     300 * time.Millisecond,
		HeartbeatInterval:      50 * time.Millisecond,
		PreVote:                true,
		CheckQuorum:            true,
		RPCTimeout:             500 * time.Millisecond,
		RPCWorkersPerPeer:      8,
		MaxInflightAppends:     64,
		MaxInflightBytes:       16 << 20,
		MaxEntriesPerAppend:    1024,
		MaxBytesPerAppend:      1 << 20,
		SnapshotThresholdBytes: 0,
		SnapshotChunkBytes:     MaxSnapshotChunkBytes,
	}
}

// Validate reports the first invalid field, naming it.
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Peers < 1:
		return bad("Peers", "is %d, want at least 1", c.Peers)
	case c.ID < 0 || c.ID >= c.Peers:
		return bad("ID", "is %d, want in [0, %d)", c.ID, c.Peers)
	case c.TickInterval <= 0:
		return bad("TickInterval", "is %v, want > 0", c.TickInterval)
	case c.ElectionTimeoutMin < c.TickInterval:
		return bad("ElectionTimeoutMin", "is %v, want at least TickInterval (%v)", c.ElectionTimeoutMin, c.TickInterval)
	case c.ElectionTimeoutMax <= c.ElectionTimeoutMin:
		return bad("ElectionTimeoutMax", "is %v, want above ElectionTimeoutMin (%v)", c.ElectionTimeoutMax, c.ElectionTimeoutMin)
	case c.ElectionTimeoutMax/c.TickInterval <= c.ElectionTimeoutMin/c.TickInterval:
		return bad("ElectionTimeoutMax", "is %v, want at least one TickInterval above ElectionTimeoutMin", c.ElectionTimeoutMax)
	case c.HeartbeatInterval < c.TickInterval:
		return bad("HeartbeatInterval", "is %v, want at least TickInterval (%v)", c.HeartbeatInterval, c.TickInterval)
	case c.HeartbeatInterval >= c.ElectionTimeoutMin:
		return bad("HeartbeatInterval", "is %v, want below ElectionTimeoutMin (%v)", c.HeartbeatInterval, c.ElectionTimeoutMin)
	case c.RPCTimeout <= 0:
		return bad("RPCTimeout", "is %v, want > 0", c.RPCTimeout)
	case c.RPCWorkersPerPeer < 1:
		return bad("RPCWorkersPerPeer", "is %d, want at least 1", c.RPCWorkersPerPeer)
	case c.MaxInflightAppends < 1:
		return bad("MaxInflightAppends", "is %d, want at least 1", c.MaxInflightAppends)
	case c.MaxInflightBytes < 1:
		return bad("MaxInflightBytes", "is %d, want at least 1", c.MaxInflightBytes)
	case c.MaxEntriesPerAppend < 1:
		return bad("MaxEntriesPerAppend", "is %d, want at least 1", c.MaxEntriesPerAppend)
	case c.MaxBytesPerAppend < 1:
		return bad("MaxBytesPerAppend", "is %d, want at least 1", c.MaxBytesPerAppend)
	case c.SnapshotThresholdBytes < 0:
		return bad("SnapshotThresholdBytes", "is %d, want >= 0", c.SnapshotThresholdBytes)
	case c.SnapshotChunkBytes < 1 || c.SnapshotChunkBytes > MaxSnapshotChunkBytes:
		return bad("SnapshotChunkBytes", "is %d, want in [1, %d]", c.SnapshotChunkBytes, MaxSnapshotChunkBytes)
	}
	return nil
}

// ticks converts d to a whole number of ticks, at least one.
func (c Config) ticks(d time.Duration) int {
	t := int(d / c.TickInterval)
	if t < 1 {
		t = 1
	}
	return t
}
