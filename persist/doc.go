// Package persist is the storage contract between a Raft replica and the
// place it keeps its state, and the small stores that ship with it.
//
// A Store is incremental: the replica appends hard state and log entries in
// batches and replaces a log prefix with a snapshot; it never rewrites the
// whole state. One Store belongs to one replica and is used by one goroutine
// at a time unless an implementation says otherwise.
//
// Where things live:
//
//   - persist.go: the contract (Store, State, Entry, HardState, Snapshot, the
//     sentinel errors), the optional SnapshotLoader (a store that reads its
//     snapshot back, so a replica need not keep it in memory) and
//     BackgroundSnapshots (a store that stores a compaction's snapshot while
//     its log goes on being appended), and the Size figure every store
//     reports (LogSize).
//   - tracker.go: Tracker, the bookkeeping every built-in store keeps beside
//     its data (closed and failed states, the contract's checks, the term and
//     size of each entry, the Size figure, the state recovered at open).
//   - base.go: Base, the Store methods over a Backend, with a Tracker. The
//     built-in stores embed a Base and differ only in their Backend, the
//     part that reads and writes (and, as a SnapshotStager, writes a
//     snapshot's data without the lock its appends take).
//   - memory.go, noop.go: Memory (for tests; Clone simulates a crash that
//     keeps what was stored) and Noop (keeps nothing; a Base without a
//     Backend), plus CheckAppend and EntriesAfterSnapshot.
//
// Elsewhere: the durable stores in persist/filestore (plain files) and
// persist/badgerstore (badger); persist/persistwire, the one conversion and
// validation of entries, hard states and snapshots to and from their
// protobuf forms; persist/plugin, which runs a store as a go-plugin
// subprocess, with the registry of built-in stores (each registers itself,
// so a plugin binary links only its own store); persist/persisttest, the
// conformance suite every store passes.
package persist
