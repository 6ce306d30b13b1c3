// Package kvraft is a replicated, linearizable string key-value store built on
// package raft, with exactly-once writes per client request and snapshots.
//
// # Layers
//
// Package kvraft/rsm turns a raft node and a deterministic state machine into
// Submit(ctx, cmd): propose, then wait for the result of that entry or for a
// reason the attempt failed. Server is the key-value state machine and the
// client RPC handlers (Get, Put, Append, Delete) on top of it; Clerk is the
// client library; package kvraft/kvtest is the test harness over the
// simulated network.
//
// A server is assembled in three steps, so the raft node is created in plain
// sight (statemachine.go): NewStateMachine (the state and its rsm, the
// node's raft.Application), raft.New with it, then StartServer on both.
// NewServer does the same through a NodeFactory, for tests and fakes.
//
// # Commands and snapshots
//
// Commands are encoded compactly with encoding/binary (a kind byte, uvarint
// client id, sequence and ack, length-prefixed key and value). A snapshot is a
// version byte, the key-value pairs and the duplicate table. Raft asks for a
// snapshot when its stored log passes Config.SnapshotThresholdBytes (the lab's
// maxraftstate); the server answers at once from the apply goroutine. A
// restarted node hands its stored snapshot to the server before any command,
// and a follower hands over a snapshot installed from the leader; either
// replaces the state, and fails every pending request of this replica.
//
// # Exactly once, with many requests in flight per client
//
// A client numbers its writes 1, 2, 3, ... and may have any number in flight
// at once. Each write carries WriteID{ClientID, Seq, Ack}, where Ack is the
// client's lowest sequence number still in flight: every write below it has
// finished for the client (it got an answer or gave up). The replicated
// table keeps, per client, a floor (the highest Ack seen) and the results of
// the writes at or above the floor that were applied. A write below the
// floor, or already in the table, is not applied again; a retry of an
// applied write gets the remembered result; raising the floor drops the
// results below it. The table therefore holds about one entry per write in
// flight (one for a sequential client, whose Ack is its Seq) and travels in
// snapshots. The alternative, one client id per in-flight slot, needs no
// window but makes the table grow with the number of slots ever used and
// couples unrelated requests' retries; the window keeps one id per client.
// Entries for clients that went away are never dropped (as in the lab).
//
// # One proposal per request per term
//
// A replica remembers the pending proposal of each (client, sequence). A
// retry that arrives while it is pending in the current term waits for it
// instead of proposing again; a retry in a later term proposes again, and the
// table makes sure only one of the entries takes effect.
//
// # Reads
//
// Get is served with raft's ReadIndex by default: no log entry, linearizable,
// and only on a leader whose leadership a majority confirmed after the call.
// Consistency Stale reads the local state without asking anyone.
// Config.LogReads sends Gets through the log instead (for comparison).
//
// # Revisions, history, listing and watches
//
// Every change (a Put, an Append, a Delete of a present key, each key an
// ended lease takes) increases the store revision by one and is recorded
// as an event with the key's previous record (history.go). Records are
// immutable once stored, so events share them with the data. The state
// keeps the newest events within Config.HistoryMaxEvents and
// HistoryMaxBytes; they travel in snapshots (format version 3; versions 1
// and 2 still decode). A List at an older retained revision replays the
// events after it backwards over the ordered key index; a Watch scans the
// events after its revision and, finding none, registers with the watch
// hub under the state's lock, so the next matching event applied wakes it.
// Writes from logs older than revisions (no opRevisioned flag) apply as
// before and take no revision, exactly as decoding a version-2 snapshot
// gives, so replicas that restored such a snapshot and replicas that
// replay the old log agree.
//
// # Conditions and leases
//
// A Put's or Delete's condition is part of its log entry and evaluated in
// Apply, so every replica decides the same. A failed condition is not
// remembered in the session table: it applied nothing, and a retry is a
// new attempt. Leases are granted and revoked through the log; only the
// leader keeps deadlines (server_ops.go), starting each lease at its full
// TTL when it takes over, and proposes an expiry entry when one passes.
//
// # Errors
//
// Handlers return *WrongLeaderError (errors.Is ErrWrongLeader) with a leader
// hint and whether the write had been proposed, ErrTimeout when the outcome
// is unknown, ErrKilled, ErrInvalid, or ErrStale. The Clerk retries all but
// ErrInvalid and ErrStale until its context ends, following hints, moving on
// after each AttemptTimeout, backing off after each round of replicas; it
// then returns ErrNoLeader if no attempt could have applied the write, and
// ErrTimeout otherwise. Get of a missing key is ErrNoKey from the Clerk and
// GetResponse.Found false from the Server.
package kvraft
