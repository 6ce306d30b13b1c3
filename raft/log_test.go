package raft

import (
	"testing"

	"github.com/ruaft/ruaft/internal/chunked"
	"github.com/ruaft/ruaft/persist"
)

// TestLogAcrossChunks checks the log's reads and cuts around the boundaries
// of its chunks: limitedSlice stops at a boundary (and the next call goes
// on from there), slice and entry read across them, and truncation and
// compaction leave slices handed out before intact.
func TestLogAcrossChunks(t *testing.T) {
	l := newLog(persist.State{})
	n := uint64(2*chunked.ChunkLen + chunked.ChunkLen/2)
	for i := uint64(1); i <= n; i++ {
		l.append(Entry{Index: i, Term: 1, Type: persist.EntryCommand, Data: []byte{byte(i)}})
	}
	check := func(what string, es []Entry, lo, hi uint64, term uint64) {
		t.Helper()
		if uint64(len(es)) != hi-lo {
			t.Fatalf("%s: %d entries, want %d", what, len(es), hi-lo)
		}
		for k, e := range es {
			if e.Index != lo+uint64(k) || e.Term != term || e.Data[0] != byte(e.Index) {
				t.Fatalf("%s: entry %d is %+v", what, k, e)
			}
		}
	}

	// From just before the first boundary: up to it, then on from it.
	lo := uint64(chunked.ChunkLen - 3)
	es, size := l.limitedSlice(lo, 100, 1<<20)
	check("limitedSlice before a boundary", es, lo, chunked.ChunkLen+1, 1)
	if size != int64(len(es)) {
		t.Errorf("size %d, want %d", size, len(es))
	}
	es, _ = l.limitedSlice(chunked.ChunkLen+1, 100, 1<<20)
	check("limitedSlice after a boundary", es, chunked.ChunkLen+1, chunked.ChunkLen+101, 1)
	// The limits still apply.
	es, _ = l.limitedSlice(10, 5, 1<<20)
	check("limitedSlice by count", es, 10, 15, 1)
	es, _ = l.limitedSlice(10, 100, 3)
	check("limitedSlice by bytes", es, 10, 13, 1)

	across := l.slice(lo, chunked.ChunkLen+10)
	check("slice across a boundary", across, lo, chunked.ChunkLen+10, 1)
	late := l.slice(2*chunked.ChunkLen+5, 2*chunked.ChunkLen+20)
	if e := l.entry(chunked.ChunkLen + 1); e.Index != chunked.ChunkLen+1 {
		t.Errorf("entry(%d) = %+v", chunked.ChunkLen+1, e)
	}

	// A new leader's entries replace the log from inside the last chunk.
	cut := uint64(2*chunked.ChunkLen + 8)
	var repl []Entry
	for i := cut; i < cut+30; i++ {
		repl = append(repl, Entry{Index: i, Term: 2, Type: persist.EntryCommand, Data: []byte{byte(i)}})
	}
	l.truncateAndAppend(repl)
	check("handed out before truncation", late, 2*chunked.ChunkLen+5, 2*chunked.ChunkLen+20, 1)
	check("after truncation, old part", l.slice(cut-3, cut), cut-3, cut, 1)
	check("after truncation, new part", l.slice(cut, cut+30), cut, cut+30, 2)
	if l.lastIndex() != cut+29 || l.lastTerm() != 2 {
		t.Errorf("last %d/%d, want %d/2", l.lastIndex(), l.lastTerm(), cut+29)
	}

	// Compaction inside the second chunk.
	l.durable, l.applied = l.lastIndex(), l.lastIndex()
	snap := persist.Snapshot{Index: chunked.ChunkLen + 100, Term: 1}
	if err := l.compact(snap); err != nil {
		t.Fatal(err)
	}
	check("handed out before compaction", across, lo, chunked.ChunkLen+10, 1)
	if l.firstIndex() != snap.Index+1 || l.lastIndex() != cut+29 {
		t.Errorf("log [%d, %d] after compaction, want [%d, %d]", l.firstIndex(), l.lastIndex(), snap.Index+1, cut+29)
	}
	check("after compaction", l.slice(snap.Index+1, 2*chunked.ChunkLen), snap.Index+1, 2*chunked.ChunkLen, 1)
	for i := l.firstIndex(); i <= l.lastIndex(); i++ {
		if e := l.entry(i); e.Index != i {
			t.Fatalf("entry(%d) after compaction is %+v", i, e)
		}
	}
}
