// Package persist is the storage contract between a Raft replica and the
// place it keeps its state, and the small stores that ship with it.
//
// A Store is incremental: the replica appends hard state and log entries in
// batches and replaces a log prefix with a snapshot; it never rewrites the
// whole state. One Store belongs to one replica and is used by one goroutine
// at a time unless an implementation says otherwise.
//
// Built-in stores: Noop (keeps nothing; a restart is a fresh replica) and
// Memory (for tests; Clone simulates a crash that keeps what was stored) live
// here. The file and badger stores live in sub-packages, and package
// persist/plugin runs any store as a go-plugin subprocess.
package persist
