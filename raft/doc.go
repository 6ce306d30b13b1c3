// Package raft is a Raft consensus library: a deterministic core (messages and
// ticks in, one batch of work out) driven by a small set of daemon goroutines
// that persist, replicate and apply.
//
// # Using it
//
// Build a Config from DefaultConfig (set ID and Peers), give New a Transport
// (how to reach the other replicas), a persist.Store (where to keep the hard
// state, the log and snapshots) and an Application (the replicated state
// machine), and serve the four Handle* methods to the other replicas:
//
//	n, err := raft.New(cfg, transport, store, app)
//	index, term, isLeader := n.Start(cmd) // propose; app.Apply sees it once committed
//	readAt, err := n.ReadIndex(ctx)       // linearizable read point, no log write; leader or follower
//	events, cancel := n.Subscribe()       // role, term and leader changes, never blocking the node
//	err = n.TransferLeadership(ctx, 2)
//	err = n.Kill()                        // stops everything; reports broken invariants
//
// # Reads
//
// ReadIndex needs no log write. The leader confirms its leadership with a
// heartbeat round started after the read arrived (and only once its no-op of
// the term committed); at most one round is in flight, every read that
// arrives meanwhile shares the next one, and a round goes to just enough of
// the most responsive peers for a majority (one RPC with three replicas),
// widening to all of them if those do not answer within two ticks.
// Status().ReadRounds counts rounds. A follower serves reads too: it asks the
// leader for a read index with one ReadIndex RPC for every read waiting on it
// (at most one in flight; Status().ReadIndexRequests counts them), waits
// until it has applied that index, and the caller reads its local state. The
// leader answers under the same rules as for its own reads, so a deposed
// leader cannot hand out an index; the request itself, sent in the leader's
// term after the reads began, counts as the follower's acknowledgement, so
// with three replicas the leader answers it without a round. A follower
// whose leader changes re-sends its waiting reads to the new leader, and
// fails them (ErrNotLeader) once it knows no leader. Under load
// (Config.ReadBatchWindow, default 1 ms) a round or request for reads that
// arrived while the previous one was in flight starts no sooner than the
// window after that one started, so that more reads share it; a read that
// finds nothing in flight starts one at once.
//
// # Events
//
// Subscribe publishes role, term and leader changes on a channel that keeps
// only the newest state (see its contract): the node never waits for a
// subscriber, and Event.Seq and Event.LeaderChanges let a slow one count what
// it skipped.
//
// # Layout
//
// The core (core.go, log.go, progress.go, quorum.go) is the protocol: roles
// follower, pre-candidate, candidate and leader; pre-vote and a leader lease
// (a node that heard from a leader within the minimum election timeout
// neither grants votes nor pre-votes, except for a leadership transfer);
// check-quorum; log matching with fast backup (ConflictTerm/ConflictIndex);
// commit of current-term entries only, by counting a majority (more than
// half, for any cluster size); a no-op entry at the start of each term;
// per-follower probe/replicate/snapshot states with a bounded window of
// pipelined AppendEntries; chunked InstallSnapshot, resumable only with the
// same leader, term and snapshot and installed only once its CRC-32C checks
// (and the application's SnapshotValidator, if any, accepts it); coalesced
// ReadIndex rounds and follower read-index requests; TimeoutNow, ignored
// once its transfer has ended; terms bounded by MaxTerm and by how far ahead
// of the node's own a term may be (term.go). It has no goroutines, no clock,
// no I/O; time is ticks and randomness comes from a seeded source, so its
// tests are exact (core*_test.go, testdata/).
//
// The node (node.go) owns the core behind one mutex, never held across a
// store call, an RPC or an application callback, and runs:
//
//   - a ticker, one core tick per Config.TickInterval;
//   - the replication loop, which takes each batch from the core, stores it
//     with one Store.Append (after Store.SaveSnapshot for an installed or
//     compacted snapshot), sends its messages and hands committed entries to
//     the applier. A leader's AppendEntries go out before its own write
//     completes; it counts itself in a majority only once the write is
//     durable. A follower answers an RPC only once what the answer claims is
//     stored;
//   - per-peer senders (Config.RPCWorkersPerPeer goroutines each, with a
//     per-RPC timeout), so a slow or dead peer never delays the others;
//   - the applier, which calls Application.Apply in log order and may block
//     without stalling consensus, and asks for snapshots
//     (Application.SnapshotNeeded) when the store passes
//     Config.SnapshotThresholdBytes.
//
// A failed store call stops the node from acknowledging anything: it steps
// down, Start returns isLeader false, handlers return errors, and
// Status().Err holds the cause.
package raft
