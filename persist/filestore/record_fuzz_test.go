package filestore

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

func seedRecords() [][]byte {
	return [][]byte{
		appendRecord(nil, persist.EmptyHardState, nil),
		appendRecord(nil, persist.HardState{Term: 3, VotedFor: 2, Commit: 7},
			[]persist.Entry{{Index: 8, Term: 3, Type: persist.EntryCommand, Data: []byte("put k v")}}),
		appendRecord(nil, persist.HardState{Term: 1<<63 + 5, VotedFor: 1<<31 - 1, Commit: 1 << 40}, []persist.Entry{
			{Index: 1<<64 - 2, Term: 9, Type: persist.EntryNoop},
			{Index: 1<<64 - 1, Term: 9, Type: persist.EntryConfig, Data: bytes.Repeat([]byte{0xff}, 300)},
		}),
	}
}

// FuzzDecodeRecord feeds arbitrary bytes to the record decoder: it must
// never panic, and whatever it accepts must re-encode to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range seedRecords() {
		f.Add(r)
		f.Add(r[:len(r)-1])
		f.Add(append(append([]byte(nil), r...), r...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, n, err := decodeRecord(data)
		if err != nil {
			if !errors.Is(err, errTruncated) && !errors.Is(err, errBadHeader) && !errors.Is(err, errBadRecord) {
				t.Fatalf("unexpected error kind %v", err)
			}
			return
		}
		if n <= 0 || n > len(data) {
			t.Fatalf("decoded length %d of %d bytes", n, len(data))
		}
		if got := appendRecord(nil, r.hs, r.entries); !bytes.Equal(got, data[:n]) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", got, data[:n])
		}
		if recordBytes(r.entries) != n {
			t.Fatalf("recordBytes %d, decoded %d", recordBytes(r.entries), n)
		}
	})
}

// FuzzOpenSegment opens a store whose only segment holds arbitrary bytes:
// Open must not panic, must either succeed or fail with ErrCorrupt, and a
// store it opens must accept an append and reopen to the same state.
func FuzzOpenSegment(f *testing.F) {
	for _, r := range seedRecords()[:2] {
		f.Add(r)
		f.Add(append(append([]byte(nil), r...), 0, 0, 0))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := NewMemFS()
		dir := "/d"
		_ = fs.MkdirAll(dir)
		w, _ := fs.Create(filepath.Join(dir, segName(1)))
		_, _ = w.Write(data)
		_ = w.Sync()
		_ = fs.SyncDir(dir)
		o := DefaultOptions()
		o.FS = fs
		s, err := Open(dir, o)
		if err != nil {
			if !errors.Is(err, persist.ErrCorrupt) {
				t.Fatalf("Open: %v, want ErrCorrupt or success", err)
			}
			return
		}
		st, err := s.Load(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		next := []persist.Entry{{Index: st.LastIndex() + 1, Term: 1, Type: persist.EntryCommand}}
		if st.LastIndex() == 1<<64-1 {
			next = nil
		}
		if err := s.Append(t.Context(), st.HardState, next); err != nil {
			t.Fatal(err)
		}
		_ = s.Close()
		s, err = Open(dir, o)
		if err != nil {
			t.Fatalf("reopen after append: %v", err)
		}
		defer s.Close()
		st2, err := s.Load(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if st2.LastIndex() != st.LastIndex()+uint64(len(next)) || st2.HardState != st.HardState {
			t.Fatalf("reopen: last %d hs %+v, want %d %+v", st2.LastIndex(), st2.HardState, st.LastIndex()+uint64(len(next)), st.HardState)
		}
	})
}
