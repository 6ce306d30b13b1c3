package persist

import (
	"context"
	"errors"
	"fmt"
)

// EntryType says how a log entry is to be interpreted.
type EntryType uint8

const (
	// EntryCommand carries an application command.
	EntryCommand EntryType = 1
	// EntryNoop is the empty entry a leader appends at the start of its term.
	EntryNoop EntryType = 2
	// EntryConfig carries a cluster membership change.
	EntryConfig EntryType = 3
)

// String names the entry type for logs.
func (t EntryType) String() string {
	switch t {
	case EntryCommand:
		return "command"
	case EntryNoop:
		return "noop"
	case EntryConfig:
		return "config"
	default:
		return fmt.Sprintf("EntryType(%d)", uint8(t))
	}
}

// Entry is one Raft log entry. Indexes start at 1.
type Entry struct {
	Index uint64
	Term  uint64
	Type  EntryType
	Data  []byte
}

// entryOverheadBytes approximates the framing an entry costs beside its data
// (index, term, type and a length); used by size figures so that a log of
// empty entries still has a size.
const entryOverheadBytes = 24

// Size is the number of bytes the entry accounts for in a store's size figure.
func (e Entry) Size() int64 { return int64(len(e.Data)) + entryOverheadBytes }

// HardStateBytes is what the hard state accounts for in a store's size
// figure.
const HardStateBytes = 24

// LogSize is the size figure (Store.Size) of a store whose log after the
// snapshot holds entries: HardStateBytes plus the Size of each entry.
func LogSize(entries []Entry) int64 {
	n := int64(HardStateBytes)
	for _, e := range entries {
		n += e.Size()
	}
	return n
}

// NoVote is the HardState.VotedFor value that means no vote was cast.
const NoVote = -1

// HardState is what a replica must have stored before it answers any RPC.
type HardState struct {
	// Term is the latest term the replica has seen.
	Term uint64
	// VotedFor is the replica id voted for in Term, or NoVote.
	VotedFor int
	// Commit is the highest index known to be committed. It may lag the
	// truth (it is persisted lazily); it never exceeds the last stored entry
	// or snapshot index.
	Commit uint64
}

// EmptyHardState is the hard state of a replica that has stored nothing.
var EmptyHardState = HardState{VotedFor: NoVote}

// Snapshot replaces the log prefix [1, Index] with the application state
// after applying it. Index 0 means no snapshot.
type Snapshot struct {
	// Index is the last log index the snapshot covers.
	Index uint64
	// Term is the term of the entry at Index.
	Term uint64
	// Data is the application's serialized state.
	Data []byte
	// Config is the cluster configuration in force at Index, encoded by
	// raft (opaque to stores, which keep it with the snapshot). Empty in a
	// snapshot written before configurations were stored: raft then uses
	// its bootstrap configuration.
	Config []byte
}

// State is everything a store holds, as returned by Load.
type State struct {
	HardState HardState
	// Snapshot is the latest snapshot; Snapshot.Index is 0 if there is none.
	Snapshot Snapshot
	// Entries are the stored entries after Snapshot.Index, consecutive and in
	// index order.
	Entries []Entry
}

// LastIndex is the index of the last entry in the state, or the snapshot
// index if the log is empty.
func (s State) LastIndex() uint64 {
	if n := len(s.Entries); n > 0 {
		return s.Entries[n-1].Index
	}
	return s.Snapshot.Index
}

// Errors returned by stores. Implementations wrap them with %w so callers can
// match them with errors.Is.
var (
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("persist: store closed")
	// ErrNonContiguous is returned by Append when the entries are not
	// consecutive, or would leave a gap after the stored log, or start at or
	// below the snapshot index.
	ErrNonContiguous = errors.New("persist: entries not contiguous with the stored log")
	// ErrStaleSnapshot is returned by SaveSnapshot for a snapshot that does not
	// cover more than the stored one; the stored snapshot never rolls back.
	ErrStaleSnapshot = errors.New("persist: snapshot older than the stored one")
	// ErrCorrupt is returned by Load (or Open) when stored data fails its
	// checks somewhere other than a torn tail. The store cannot be used.
	ErrCorrupt = errors.New("persist: corrupt data")
	// ErrUnavailable is returned when the store cannot be reached: a
	// persister plugin process that crashed, was killed or stopped answering.
	// Whether the failed call took effect is unknown; the caller must treat
	// the store as failed and Close it.
	ErrUnavailable = errors.New("persist: store unavailable")
	// ErrFailed is returned by every method of a store after an earlier
	// write or sync failed: the store no longer knows what is durable (an
	// fsync error may have dropped dirty pages) and refuses further use. The
	// replica must Close it and reopen, which recovers what is durable.
	ErrFailed = errors.New("persist: store failed earlier")
)

// Store keeps one replica's Raft state: hard state, a snapshot, and the log
// entries after it.
//
// Durability: Append and SaveSnapshot return only once their effect survives a
// crash of the process and of the machine (for stores that claim
// durability; Noop and Memory do not, and durable stores opened with sync
// off do not survive a machine crash). A method that returns an error may
// have stored all, part or none of its arguments, except that a store never
// leaves a torn entry visible to Load, and whatever a crash leaves is a state
// the store passed through or a prefix of the log it was writing with a hard
// state no older than before the call: the caller must treat the store as
// failed, stop acknowledging writes, and Close it (and reopen it to recover).
// No method is retried by the store itself. ErrNonContiguous and
// ErrStaleSnapshot are the exceptions: they report a caller bug, change
// nothing, and leave the store usable.
//
// Errors: methods return errors matching (errors.Is) ErrClosed,
// ErrNonContiguous, ErrStaleSnapshot, ErrCorrupt, ErrUnavailable (plugin
// stores) or ErrFailed, or an I/O error wrapped with context.
//
// Ownership: a store copies what it is given before it returns; the caller may
// reuse the slices. What Load returns belongs to the caller.
//
// Concurrency: methods are not called concurrently with each other, except
// Size, which may be called at any time from any goroutine, LoadSnapshot
// (SnapshotLoader), and a compaction's SaveSnapshot beside Appends with a
// store that says it takes one (BackgroundSnapshots).
type Store interface {
	// Load returns the stored state. A store that holds nothing returns
	// EmptyHardState, no snapshot and no entries. A replica calls it once,
	// before any other method; stores also answer it later (tests compare
	// what they hold), possibly by reading their files again.
	Load(ctx context.Context) (State, error)

	// Append durably records hs and entries. entries must be consecutive; the
	// first one's index must be above the snapshot index and at most the last
	// stored index plus one (else ErrNonContiguous). If it is at or below the
	// last stored index, every stored entry from that index on is replaced.
	// entries may be empty, to record only hs.
	Append(ctx context.Context, hs HardState, entries []Entry) error

	// SaveSnapshot durably stores snap and drops the entries it covers. If the
	// stored entry at snap.Index has term snap.Term, the entries after it are
	// kept; otherwise the whole log is dropped. A snapshot whose index is not
	// above the stored one's returns ErrStaleSnapshot and changes nothing.
	SaveSnapshot(ctx context.Context, snap Snapshot) error

	// Size is the size in bytes of the persisted Raft state other than the
	// snapshot (hard state plus log entries): the figure a replica compares
	// with its snapshot threshold. Every built-in store computes it the same
	// way, LogSize(entries after the snapshot), whatever its on-disk
	// overhead, so that a replica behaves the same on every store. It is
	// O(1) and never fails; after Close it returns the last figure.
	Size() int64

	// Close releases the store. It is idempotent; every other method returns
	// ErrClosed afterwards.
	Close() error
}

// SnapshotLoader is implemented by a store that can read back its stored
// snapshot on its own, so that a replica need not keep the snapshot's data
// in memory once it is stored: a Raft leader reads it only to send it to a
// lagging follower. It is optional; a replica keeps the data in memory with
// a store that does not implement it or whose CanLoadSnapshot is false.
type SnapshotLoader interface {
	// CanLoadSnapshot reports whether LoadSnapshot returns the stored
	// snapshot: false for a store that keeps nothing (Noop) or a plugin that
	// predates LoadSnapshot. The answer changes only from true to false,
	// once LoadSnapshot has returned an error wrapping
	// errors.ErrUnsupported (a plugin that announced LoadSnapshot but does
	// not serve it).
	CanLoadSnapshot() bool

	// LoadSnapshot returns the stored snapshot (Index 0 if there is none), as
	// the last SaveSnapshot that returned stored it. Unlike the other
	// methods it may be called concurrently with any of them (a leader
	// sending a snapshot does not wait for its log writes to finish, and
	// the built-in stores' writes do not wait for the read either): it
	// answers with the snapshot stored before or after a concurrent
	// SaveSnapshot, whole. What it returns belongs to the caller. It returns
	// the Store errors, or one wrapping errors.ErrUnsupported if
	// CanLoadSnapshot is false or turns false (the caller must then keep
	// snapshot data itself; trying again does not help). An error leaves
	// the store usable (the caller may try again later).
	LoadSnapshot(ctx context.Context) (Snapshot, error)
}

// BackgroundSnapshots is implemented by a store that can store a snapshot of
// what its log already holds while that log goes on being written: a Raft
// replica then compacts its log without holding back its appends (and so its
// commits and heartbeats) for the seconds a large state's snapshot takes to
// write. It is optional; a replica stores its snapshots between its appends
// with a store that does not implement it or whose answer is false.
type BackgroundSnapshots interface {
	// SnapshotsBesideAppends reports whether SaveSnapshot may run while
	// Append calls go on, under rules the caller keeps: the snapshot is a
	// compaction (the store holds an entry at snap.Index with snap.Term),
	// the Appends during it write only entries after snap.Index, and no
	// other method but Append, Size and LoadSnapshot (SnapshotLoader) is
	// called until it returns: not Load, not another SaveSnapshot, not
	// Close. The store may still hold those Appends back for a moment (the
	// switch to the new snapshot at its end), and for the whole of a
	// snapshot that is not a compaction. An Append that breaks the rule
	// makes that SaveSnapshot fail with ErrNonContiguous and change nothing.
	SnapshotsBesideAppends() bool
}

// TakesSnapshotsBesideAppends reports whether st is a BackgroundSnapshots
// that says yes.
func TakesSnapshotsBesideAppends(st Store) bool {
	b, ok := st.(BackgroundSnapshots)
	return ok && b.SnapshotsBesideAppends()
}
