package badgerstore

import (
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/ruaft/ruaft/persist"
)

// The log is stored in runs: one badger key per run of consecutive entries
// (written by one Append, split so that each value stays below the value
// threshold), not one per entry. A Raft log is written once and deleted
// after the next snapshot, so what badger spends on it is almost all per
// key: the transaction's pending-writes map, a skiplist node and a
// write-ahead-log record per key, then per key again in every memtable
// flush and compaction (table index, bloom filter, merge iteration), and a
// tombstone per key when a snapshot drops it. With 64 entries per Append
// that is 64 times fewer keys written and deleted.
//
// Keys, all under "e" so that both kinds sort by first index together:
//
//	"e" + first (big-endian u64) + 'r'   a run (format 2, written now)
//	"e" + index (big-endian u64)         one entry (format 1, read only)
//
// A run's value: u8 version (runVersion) | per entry: u64 term | u8 type |
// u32 data length | data (little-endian). A format-1 value: u64 term |
// u8 type | data. Stores written by the earlier layout open as they are:
// their entries read as runs of one and are deleted as the log moves on
// (truncated or covered by a snapshot), new entries go in runs. The 10-byte
// run keys make an earlier binary refuse a store written in runs
// (persist.ErrCorrupt, "bad entry key") rather than read it without its log.
//
// Stored runs never overlap: replacing a log suffix that starts inside a
// run rewrites that run's head (WriteAppend), so deleting any run never
// brings back entries another one replaced. Along the log, runs' badger
// versions never decrease (each write deletes or rewrites the runs after
// it); the reader drops a run older than the one before it, which is a
// replaced run that badger's value-log GC wrote back (TestReview6ValueLogRuns).

// runVersion is the first byte of a run's value.
const runVersion = 1

// runHeaderWire is the bytes a run spends per entry besides its data.
const runHeaderWire = 13

// run is one stored key of the log: entries first..first+n-1.
type run struct {
	first, n uint64
	legacy   bool // a format-1 key of one entry
}

func (r run) last() uint64 { return r.first + r.n - 1 }

func (r run) key() []byte {
	k := binary.BigEndian.AppendUint64(append(make([]byte, 0, 10), 'e'), r.first)
	if r.legacy {
		return k
	}
	return append(k, 'r')
}

// maxRunBytes is the largest run value the store writes: below the value
// threshold, so that runs stay in the LSM tree and an Append syncs the
// write-ahead log only, and half a table block, so that a run never makes
// badger grow a block's buffer (see blockBytes). An entry larger than that
// goes alone in a run.
func maxRunBytes(threshold int64) int { return int(min(threshold-1, blockBytes/2)) }

// splitRuns cuts entries into runs of at most max value bytes each (an
// entry larger than that gets a run of its own).
func splitRuns(entries []persist.Entry, max int) [][]persist.Entry {
	var out [][]persist.Entry
	start, size := 0, 1
	for i, e := range entries {
		n := runHeaderWire + len(e.Data)
		if i > start && size+n > max {
			out = append(out, entries[start:i])
			start, size = i, 1
		}
		size += n
	}
	if start < len(entries) {
		out = append(out, entries[start:])
	}
	return out
}

func encodeRun(entries []persist.Entry) []byte {
	n := 1
	for _, e := range entries {
		n += runHeaderWire + len(e.Data)
	}
	v := make([]byte, 0, n)
	v = append(v, runVersion)
	for _, e := range entries {
		v = binary.LittleEndian.AppendUint64(v, e.Term)
		v = append(v, byte(e.Type))
		v = binary.LittleEndian.AppendUint32(v, uint32(len(e.Data)))
		v = append(v, e.Data...)
	}
	return v
}

// decodeRun decodes the value v of the run at first (key k, for errors);
// the entries' Data alias v.
func decodeRun(k []byte, first uint64, v []byte, es []persist.Entry) ([]persist.Entry, error) {
	if len(v) < 1 || v[0] != runVersion {
		return es, fmt.Errorf("%w: badger key %x: run of unknown version", persist.ErrCorrupt, k)
	}
	v = v[1:]
	for i := first; len(v) > 0; i++ {
		if len(v) < runHeaderWire {
			return es, fmt.Errorf("%w: badger key %x: run entry %d cut short", persist.ErrCorrupt, k, i)
		}
		n := binary.LittleEndian.Uint32(v[9:])
		if uint64(n) > uint64(len(v)-runHeaderWire) {
			return es, fmt.Errorf("%w: badger key %x: run entry %d of %d bytes with %d left", persist.ErrCorrupt, k, i, n, len(v)-runHeaderWire)
		}
		end := runHeaderWire + int(n)
		es = append(es, persist.Entry{Index: i, Term: binary.LittleEndian.Uint64(v),
			Type: persist.EntryType(v[8]), Data: v[runHeaderWire:end:end]})
		v = v[end:]
	}
	return es, nil
}

// decodeKey parses a log key: the first index and whether it is a
// format-1 key.
func decodeKey(k []byte) (first uint64, legacy bool, err error) {
	switch {
	case len(k) == 9:
		return binary.BigEndian.Uint64(k[1:]), true, nil
	case len(k) == 10 && k[9] == 'r':
		return binary.BigEndian.Uint64(k[1:]), false, nil
	}
	return 0, false, fmt.Errorf("%w: badger key %x: bad entry key", persist.ErrCorrupt, k)
}

// runAt returns the position in runs of the run holding index i, or
// len(runs) if none does.
func runAt(runs []run, i uint64) int {
	p := sort.Search(len(runs), func(j int) bool { return runs[j].last() >= i })
	if p < len(runs) && runs[p].first > i {
		return len(runs)
	}
	return p
}
