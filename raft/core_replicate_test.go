package raft

import (
	"bytes"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

// cloneEntries copies the data of a message's entries into one allocation:
// the copies equal the originals (nil data staying nil, empty staying
// empty), share nothing with them, and appending to one copy's data never
// writes into the next one's.
func TestCloneEntries(t *testing.T) {
	for _, tc := range []struct {
		name string
		ents []Entry
	}{
		{"none", nil},
		{"nil data", []Entry{{Index: 1, Term: 1}}},
		{"empty data", []Entry{{Index: 1, Term: 1, Data: []byte{}}}},
		{"mixed", []Entry{
			{Index: 3, Term: 2, Data: []byte("abc")},
			{Index: 4, Term: 2},
			{Index: 5, Term: 2, Data: []byte{}},
			{Index: 6, Term: 3, Type: persist.EntryConfig, Data: bytes.Repeat([]byte{7}, 300)},
			{Index: 7, Term: 3, Data: []byte("z")},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := cloneEntries(tc.ents)
			if len(got) != len(tc.ents) {
				t.Fatalf("%d entries, want %d", len(got), len(tc.ents))
			}
			for i, e := range tc.ents {
				g := got[i]
				if g.Index != e.Index || g.Term != e.Term || g.Type != e.Type || !bytes.Equal(g.Data, e.Data) ||
					(g.Data == nil) != (e.Data == nil) {
					t.Fatalf("entry %d: %+v, want %+v", i, g, e)
				}
			}
			for i := range tc.ents {
				for j := range tc.ents[i].Data {
					tc.ents[i].Data[j]++
				}
			}
			for i, e := range tc.ents {
				for j := range e.Data {
					if got[i].Data[j] != e.Data[j]-1 {
						t.Fatalf("entry %d shares its data with the original", i)
					}
				}
			}
			want := make([][]byte, len(got))
			for i, g := range got {
				want[i] = bytes.Clone(g.Data)
			}
			for i := range got {
				_ = append(got[i].Data, 0xff, 0xff, 0xff, 0xff)
			}
			for i, g := range got {
				if !bytes.Equal(g.Data, want[i]) {
					t.Fatalf("entry %d: data %q after appending to the others, want %q", i, g.Data, want[i])
				}
			}
		})
	}
}
