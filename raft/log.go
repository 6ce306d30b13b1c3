package raft

import (
	"fmt"
	"hash/crc32"

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
// Truncation never writes into a backing array that a handed-out slice may
// still read: it always reallocates, so messages in flight stay intact.
type raftLog struct {
	// snap is the latest snapshot; Data is kept so a leader can send it.
	snap persist.Snapshot
	// snapCRC is the CRC-32C of snap.Data if snapCRCKnown (computed on
	// first use: only a leader sending the snapshot needs it).
	snapCRC      uint32
	snapCRCKnown bool
	// entries[i].Index == snap.Index + 1 + i.
	entries []Entry

	unstable uint64
	// snapUnstable is set when snap was installed from a leader and must be
	// stored (and applied) through the next Ready.
	snapUnstable bool
	durable      uint64
	commit       uint64
	applied      uint64
}

func newLog(st persist.State) *raftLog {
	l := &raftLog{snap: st.Snapshot, entries: st.Entries}
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

func (l *raftLog) lastIndex() uint64 { return l.snap.Index + uint64(len(l.entries)) }

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
	return l.entries[i-l.snap.Index-1].Term, true
}

// matchTerm reports whether the log holds an entry at i with term t.
func (l *raftLog) matchTerm(i, t uint64) bool {
	lt, ok := l.term(i)
	return ok && lt == t
}

// entry returns the entry at i, which must be in [firstIndex, lastIndex].
func (l *raftLog) entry(i uint64) Entry { return l.entries[i-l.snap.Index-1] }

// slice returns the entries [lo, hi), which must lie within [firstIndex,
// lastIndex+1). The result shares the log's backing array; callers only read
// it.
func (l *raftLog) slice(lo, hi uint64) []Entry {
	if lo >= hi {
		return nil
	}
	off := l.snap.Index + 1
	return l.entries[lo-off : hi-off : hi-off]
}

// limitedSlice returns entries from lo on, at most maxEntries of them and at
// most maxBytes of data (but at least one entry if any exists).
func (l *raftLog) limitedSlice(lo uint64, maxEntries int, maxBytes int64) ([]Entry, int64) {
	last := l.lastIndex()
	if lo > last {
		return nil, 0
	}
	hi := lo
	var size int64
	for hi <= last && int(hi-lo) < maxEntries {
		s := int64(len(l.entry(hi).Data))
		if hi > lo && size+s > maxBytes {
			break
		}
		size += s
		hi++
	}
	return l.slice(lo, hi), size
}

// isUpToDate reports whether a log ending at (lastIdx, lastTerm) is at least
// as up to date as this one (Raft paper, 5.4.1).
func (l *raftLog) isUpToDate(lastIdx, lastTerm uint64) bool {
	mt := l.lastTerm()
	return lastTerm > mt || (lastTerm == mt && lastIdx >= l.lastIndex())
}

// append adds entries after the last one (a leader's proposals).
func (l *raftLog) append(es ...Entry) {
	l.entries = append(l.entries, es...)
}

// truncateAndAppend replaces everything from es[0].Index on with es.
// es[0].Index must be in [firstIndex, lastIndex+1].
func (l *raftLog) truncateAndAppend(es []Entry) {
	first := es[0].Index
	if first <= l.lastIndex() {
		keep := int(first - l.snap.Index - 1)
		// Reallocate: a handed-out slice may still read the old entries.
		ne := make([]Entry, keep, keep+len(es))
		copy(ne, l.entries[:keep])
		l.entries = ne
		l.unstable = min(l.unstable, first)
		l.durable = min(l.durable, first-1)
	}
	l.entries = append(l.entries, es...)
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

// restore replaces the whole log with snap, whose data has checksum crc.
func (l *raftLog) restore(snap persist.Snapshot, crc uint32) {
	l.snap = snap
	l.snapCRC, l.snapCRCKnown = crc, true
	l.entries = nil
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
	// Copy what is kept so the compacted prefix can be freed.
	rest := l.entries[snap.Index-l.snap.Index:]
	l.entries = append(make([]Entry, 0, len(rest)+len(rest)/4+16), rest...)
	l.snap = snap
	l.snapCRCKnown = false
	return nil
}
