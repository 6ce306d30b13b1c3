package raft

import (
	"fmt"
	"hash/crc32"

	"github.com/ruaft/ruaft/internal/chunked"
	"github.com/ruaft/ruaft/persist"
)

// raftLog is the core's view of the log: a snapshot covering [1, snap.Index]
// followed by entries. It tracks three cursors besides the commit index:
//
//   - unstable: the first index not yet handed out in a Ready for storing.
//     Ready batches are stored in order, so everything below it is stored
//     once the batches handed out so far are.
//   - durable: the last index known to be stored (the leader counts itself
//     in a quorum only up to here; entries are applied only up to here).
//   - applied: the last index handed out in a Ready for applying.
//
// The entries live in chunks (internal/chunked), so that appending to a long
// log never copies it: in one slice, every doubling of a million-entry log
// copied it under the node's lock, and every commit in flight waited
// milliseconds. Truncation and compaction never write into memory that a
// handed-out slice may still read (they copy the chunk they cut into), so
// messages in flight stay intact.
type raftLog struct {
	// snap is the latest snapshot. Its Data is kept so a leader can send it
	// unless snapStored: then the store holds it (and the application has
	// it), and a leader's sender reads it from the store (dropSnapData).
	snap       persist.Snapshot
	snapStored bool
	// snapSize is len(snap.Data) when snapStored.
	snapSize uint64
	// snapCRC is the CRC-32C of snap.Data if snapCRCKnown (computed on
	// first use: only a leader sending the snapshot needs it; always known
	// when snapStored).
	snapCRC      uint32
	snapCRCKnown bool
	// ents.At(i).Index == snap.Index + 1 + i.
	ents chunked.Seq[Entry]

	unstable uint64
	// snapUnstable is set when snap was installed from a leader and must be
	// stored (and applied) through the next Ready.
	snapUnstable bool
	durable      uint64
	commit       uint64
	applied      uint64
}

func newLog(st persist.State) *raftLog {
	l := &raftLog{snap: st.Snapshot, ents: chunked.From(st.Entries)}
	last := l.lastIndex()
	l.unstable = last + 1
	l.durable = last
	l.commit = max(st.HardState.Commit, st.Snapshot.Index)
	if l.commit > last {
		l.commit = last
	}
	l.applied = st.Snapshot.Index
	return l
}

func (l *raftLog) firstIndex() uint64 { return l.snap.Index + 1 }

func (l *raftLog) lastIndex() uint64 { return l.snap.Index + uint64(l.ents.Len()) }

func (l *raftLog) lastTerm() uint64 {
	t, _ := l.term(l.lastIndex())
	return t
}

// term returns the term of the entry at i; ok is false if i is compacted
// away (below the snapshot index) or beyond the last index.
func (l *raftLog) term(i uint64) (t uint64, ok bool) {
	switch {
	case i == l.snap.Index:
		return l.snap.Term, true
	case i < l.snap.Index || i > l.lastIndex():
		return 0, false
	}
	return l.ents.At(int(i - l.snap.Index - 1)).Term, true
}

// matchTerm reports whether the log holds an entry at i with term t.
func (l *raftLog) matchTerm(i, t uint64) bool {
	lt, ok := l.term(i)
	return ok && lt == t
}

// entry returns the entry at i, which must be in [firstIndex, lastIndex].
func (l *raftLog) entry(i uint64) Entry { return l.ents.At(int(i - l.snap.Index - 1)) }

// slice returns the entries [lo, hi), which must lie within [firstIndex,
// lastIndex+1). The result shares the log's memory (or is a copy, if the
// range spans two chunks); callers only read it.
func (l *raftLog) slice(lo, hi uint64) []Entry {
	if lo >= hi {
		return nil
	}
	off := l.snap.Index + 1
	return l.ents.Slice(int(lo-off), int(hi-off))
}

// limitedSlice returns entries from lo on, at most maxEntries of them and at
// most maxBytes of data (but at least one entry if any exists). It stops at
// the end of a chunk, so that it never copies: the next call continues
// from there.
func (l *raftLog) limitedSlice(lo uint64, maxEntries int, maxBytes int64) ([]Entry, int64) {
	last := l.lastIndex()
	if lo > last {
		return nil, 0
	}
	first, end := int(lo-l.snap.Index-1), int(last-l.snap.Index)
	ents := l.ents.Slice(first, l.ents.Contiguous(first, end))
	var size int64
	for i, e := range ents {
		s := int64(len(e.Data))
		if i == maxEntries || (i > 0 && size+s > maxBytes) {
			return ents[:i:i], size
		}
		size += s
	}
	return ents, size
}

// isUpToDate reports whether a log ending at (lastIdx, lastTerm) is at least
// as up to date as this one (Raft paper, 5.4.1).
func (l *raftLog) isUpToDate(lastIdx, lastTerm uint64) bool {
	mt := l.lastTerm()
	return lastTerm > mt || (lastTerm == mt && lastIdx >= l.lastIndex())
}

// append adds entries after the last one (a leader's proposals).
func (l *raftLog) append(es ...Entry) {
	l.ents.Append(es...)
}

// truncateAndAppend replaces everything from es[0].Index on with es.
// es[0].Index must be in [firstIndex, lastIndex+1].
func (l *raftLog) truncateAndAppend(es []Entry) {
	first := es[0].Index
	if first <= l.lastIndex() {
		// Truncate copies the chunk it cuts: a handed-out slice may still
		// read the old entries.
		l.ents.Truncate(int(first - l.snap.Index - 1))
		l.unstable = min(l.unstable, first)
		l.durable = min(l.durable, first-1)
	}
	l.ents.Append(es...)
}

// firstIndexOfTerm returns the first index of the run of entries with term t
// that contains i (never below firstIndex).
func (l *raftLog) firstIndexOfTerm(i, t uint64) uint64 {
	for i > l.firstIndex() {
		if pt, _ := l.term(i - 1); pt != t {
			break
		}
		i--
	}
	return i
}

// lastIndexOfTerm returns the last index at or below i holding term t, or 0
// if there is none in the retained log.
func (l *raftLog) lastIndexOfTerm(i, t uint64) uint64 {
	i = min(i, l.lastIndex())
	for ; i >= l.firstIndex(); i-- {
		it, _ := l.term(i)
		if it == t {
			return i
		}
		if it < t {
			return 0
		}
	}
	return 0
}

// snapChecksum returns the CRC-32C of the snapshot's data.
func (l *raftLog) snapChecksum() uint32 {
	if !l.snapCRCKnown {
		l.snapCRC = crc32.Checksum(l.snap.Data, castagnoli)
		l.snapCRCKnown = true
	}
	return l.snapCRC
}

// snapBytes is the size of the snapshot's data, held or stored.
func (l *raftLog) snapBytes() uint64 {
	if l.snapStored {
		return l.snapSize
	}
	return uint64(len(l.snap.Data))
}

// dropSnapData forgets the data of the snapshot at index, whose data has
// checksum crc, if it is the log's snapshot and has been handed out for
// storing: the store now holds it.
func (l *raftLog) dropSnapData(index uint64, crc uint32) {
	if index == 0 || l.snap.Index != index || l.snapStored || l.snapUnstable {
		return
	}
	l.snapSize = uint64(len(l.snap.Data))
	l.snapCRC, l.snapCRCKnown = crc, true
	l.snap.Data = nil
	l.snapStored = true
}

// restoreSnapData undoes dropSnapData for the snapshot at index with data,
// the application's state at index (see core.restoreSnapshotData).
func (l *raftLog) restoreSnapData(index uint64, data []byte) {
	if !l.snapStored || l.snap.Index != index {
		return
	}
	l.snap.Data = data
	l.snapStored = false
	l.snapCRCKnown = false
}

// restore replaces the whole log with snap, whose data has checksum crc.
func (l *raftLog) restore(snap persist.Snapshot, crc uint32) {
	l.snap, l.snapStored = snap, false
	l.snapCRC, l.snapCRCKnown = crc, true
	l.ents = chunked.Seq[Entry]{}
	l.snapUnstable = true
	l.unstable = snap.Index + 1
	l.commit = max(l.commit, snap.Index)
	l.applied = max(l.applied, snap.Index)
	// durable moves to snap.Index once the Ready carrying it is stored.
	l.durable = min(l.durable, snap.Index)
}

// compact drops the entries up to snap.Index, which the caller has stored
// with snap; the entry at snap.Index must have snap.Term.
func (l *raftLog) compact(snap persist.Snapshot) error {
	if snap.Index <= l.snap.Index {
		return nil
	}
	if !l.matchTerm(snap.Index, snap.Term) || snap.Index > l.applied || snap.Index > l.durable {
		return fmt.Errorf("compact to %d/%d: log has [%d, %d], applied %d, durable %d",
			snap.Index, snap.Term, l.firstIndex(), l.lastIndex(), l.applied, l.durable)
	}
	// DropFront copies what it keeps of the chunk it cuts, so the
	// compacted prefix can be freed.
	l.ents.DropFront(int(snap.Index - l.snap.Index))
	l.snap, l.snapStored = snap, false
	l.snapCRCKnown = false
	return nil
}
