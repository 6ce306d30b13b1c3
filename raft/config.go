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

// Config configures a Node. Start from DefaultConfig and set ID and either
// Peers or Bootstrap (or neither, for a replica that joins a cluster).
type Config struct {
	// ID is this replica's stable id, in [0, MaxMemberID]: chosen by the
	// operator, never reused for another replica.
	ID int
	// Peers is shorthand for a Bootstrap of Peers voters with ids
	// 0..Peers-1 and no addresses. At most one of Peers and Bootstrap is
	// set.
	Peers int
	// Bootstrap is the initial configuration, used only when the store
	// holds none: no snapshot with a configuration and no configuration
	// entry (a new cluster, or a store written before configurations were
	// stored). Once the cluster runs, its configuration lives in the log
	// and snapshots, and Bootstrap is ignored. A replica started with
	// neither Peers nor Bootstrap and an empty store waits, with an empty
	// configuration, never campaigning, for a leader to add it and send it
	// the log or a snapshot.
	Bootstrap []Member
	// MaxPromoteLag is how many entries a learner's log may be behind the
	// leader's last index for Promote to accept it (it must also have
	// answered within ElectionTimeoutMin).
	MaxPromoteLag uint64

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
	// StallHeartbeats is how long, at most, the ticker sends a leader's
	// heartbeats and appends itself while the node's loop is held in one
	// store call (a slow disk's write, a store collecting its garbage): a
	// pause shorter than this costs no leadership, and a store that hangs
	// longer lets the followers elect another leader (after this and an
	// election timeout). 0 turns these sends off: a store call held longer
	// than an election timeout then costs the leadership.
	StallHeartbeats time.Duration
	// ReadBatchWindow spaces linearizable reads' confirmations under load:
	// while reads arrive faster than a leadership-confirmation round (on a
	// follower, a read-index request to the leader) completes, the next one
	// starts no sooner than this after the previous one started, so that
	// more reads share it. A read that arrives with none in flight starts
	// one at once, so a lone reader waits no longer. 0 starts them back to
	// back. Must be below HeartbeatInterval.
	ReadBatchWindow time.Duration

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
	// SnapshotStateRatio, if positive, raises the threshold with the
	// application's state: the node asks only once the stored log is also
	// larger than SnapshotStateRatio times the size of the last snapshot
	// (saved or installed since the node started). A snapshot writes the
	// whole state, so with a fixed threshold a large state is written
	// again every few writes (a 100 MB state with a 4 MiB threshold and
	// 1 MB writes: 100 MB written every 4 MB); with a ratio of 1, at most
	// about one byte of snapshot per byte of log, at the cost of a log up
	// to the state's size. 0 keeps the fixed threshold.
	SnapshotStateRatio float64
	// SnapshotChunkBytes is the size of one InstallSnapshot chunk, at most
	// MaxSnapshotChunkBytes.
	SnapshotChunkBytes int

	// AppVersion is the application's protocol level that this replica
	// supports: the highest level of commands and semantics its
	// application can apply. The node sends it with every AppendEntries
	// answer, and a leader reports what each member sent in
	// Status.Progress, so an application can switch to a new level only
	// once every member supports it (a rolling upgrade). Raft itself
	// ignores it; 0, the default, is also what replicas from before this
	// field report.
	AppVersion uint32

	// Seed seeds the core's random source (election timeouts). 0 picks a
	// seed from the clock and the ID.
	Seed uint64

	// Logger receives the node's logs; nil discards them.
	Logger *slog.Logger

	// clock, if set, replaces real time for the node's ticker and timers
	// (clock.go); only this package's tests set it, to a fake clock they
	// advance instead of sleeping.
	clock clock
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
		StallHeartbeats:        time.Second,
		ReadBatchWindow:        time.Millisecond,
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
		MaxPromoteLag:          1000,
	}
}

// bootstrapMembership returns the configuration Peers or Bootstrap
// describe (empty for neither), sorted.
func (c Config) bootstrapMembership() Membership {
	if c.Peers > 0 {
		return Membership{Members: BootstrapMembers(c.Peers)}
	}
	return Membership{Members: c.Bootstrap}.normalized()
}

// Validate reports the first invalid field, naming it.
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Peers < 0 || c.Peers > MaxMembers:
		return bad("Peers", "is %d, want in [0, %d]", c.Peers, MaxMembers)
	case c.Peers > 0 && len(c.Bootstrap) > 0:
		return bad("Peers", "is %d with a Bootstrap of %d members, want only one of them", c.Peers, len(c.Bootstrap))
	case c.ID < 0 || c.ID > MaxMemberID:
		return bad("ID", "is %d, want in [0, %d]", c.ID, MaxMemberID)
	case c.Peers > 0 && c.ID >= c.Peers:
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
	case c.StallHeartbeats < 0:
		return bad("StallHeartbeats", "is %v, want >= 0", c.StallHeartbeats)
	case c.ReadBatchWindow < 0 || c.ReadBatchWindow >= c.HeartbeatInterval:
		return bad("ReadBatchWindow", "is %v, want in [0, HeartbeatInterval (%v))", c.ReadBatchWindow, c.HeartbeatInterval)
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
	case !(c.SnapshotStateRatio >= 0 && c.SnapshotStateRatio <= 1e6):
		return bad("SnapshotStateRatio", "is %v, want in [0, 1e6]", c.SnapshotStateRatio)
	case c.SnapshotChunkBytes < 1 || c.SnapshotChunkBytes > MaxSnapshotChunkBytes:
		return bad("SnapshotChunkBytes", "is %d, want in [1, %d]", c.SnapshotChunkBytes, MaxSnapshotChunkBytes)
	}
	if len(c.Bootstrap) > 0 {
		m := Membership{Members: c.Bootstrap}
		if err := m.Validate(); err != nil {
			return bad("Bootstrap", "is invalid: %v", err)
		}
		if len(m.Voters()) == 0 {
			return bad("Bootstrap", "has no voter")
		}
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
