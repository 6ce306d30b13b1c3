package filestore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/filestore"
	"github.com/ruaft/ruaft/persist/persisttest"
)

var ctx = context.Background()

const dir = "/data/replica"

func openMem(t *testing.T, fs *filestore.MemFS, segBytes int64) *filestore.Store {
	t.Helper()
	o := filestore.DefaultOptions()
	o.FS = fs
	o.SegmentBytes = segBytes
	s, err := filestore.Open(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func load(t *testing.T, s persist.Store) persist.State {
	t.Helper()
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return st
}

func segments(fs *filestore.MemFS) []string {
	var out []string
	for _, f := range fs.Files() {
		if strings.HasSuffix(f, ".wal") {
			out = append(out, f)
		}
	}
	return out
}

func TestOptionsValidate(t *testing.T) {
	o := filestore.DefaultOptions()
	o.SegmentBytes = 10
	_, err := filestore.Open(t.TempDir(), o)
	if !errors.Is(err, filestore.ErrInvalidOptions) || !strings.Contains(err.Error(), "SegmentBytes") {
		t.Fatalf("Open with tiny segments: %v, want ErrInvalidOptions naming SegmentBytes", err)
	}
}

// TestRotationAndCompaction checks that segments rotate at the size limit
// and that a snapshot drops whole segments below it, and that a reopened
// store still has everything after the snapshot.
func TestRotationAndCompaction(t *testing.T) {
	fs := filestore.NewMemFS()
	s := openMem(t, fs, 4<<10)
	for i := uint64(0); i < 100; i++ {
		es := persisttest.Entries(i*10+1, i*10+10, 1)
		if err := s.Append(ctx, persist.HardState{Term: 1, VotedFor: 0}, es); err != nil {
			t.Fatal(err)
		}
	}
	before := len(segments(fs))
	if before < 5 {
		t.Fatalf("%d segments after 1000 entries, want rotation", before)
	}
	if err := s.SaveSnapshot(ctx, persist.Snapshot{Index: 900, Term: 1, Data: []byte("s")}); err != nil {
		t.Fatal(err)
	}
	after := len(segments(fs))
	if after >= before/2 {
		t.Fatalf("%d segments after a snapshot at 900 of 1000, had %d: compaction dropped too little", after, before)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openMem(t, fs, 4<<10)
	defer s.Close()
	st := load(t, s)
	if st.Snapshot.Index != 900 || len(st.Entries) != 100 || st.Entries[0].Index != 901 {
		t.Fatalf("after reopen: snapshot %d, %d entries from %d", st.Snapshot.Index, len(st.Entries), st.Entries[0].Index)
	}
	if got, want := s.Size(), persist.LogSize(st.Entries); got != want {
		t.Fatalf("Size %d, want %d", got, want)
	}
}

// TestTornTail cuts the last segment at every offset inside its last record
// and checks that recovery drops exactly that record.
func TestTornTail(t *testing.T) {
	fs := filestore.NewMemFS()
	s := openMem(t, fs, 1<<20)
	if err := s.Append(ctx, persist.HardState{Term: 1, VotedFor: 1}, persisttest.Entries(1, 5, 1)); err != nil {
		t.Fatal(err)
	}
	seg := segments(fs)[0]
	good := fs.Size(seg)
	if err := s.Append(ctx, persist.HardState{Term: 2, VotedFor: 2}, persisttest.Entries(6, 8, 2)); err != nil {
		t.Fatal(err)
	}
	full := fs.Size(seg)
	s.Close()
	for cut := good; cut < full; cut++ {
		c := fs.Crash(nil)
		if err := c.Truncate(seg, cut); err != nil {
			t.Fatal(err)
		}
		s := openMem(t, c, 1<<20)
		st := load(t, s)
		if st.LastIndex() != 5 || st.HardState.Term != 1 {
			t.Fatalf("cut at %d: last %d, term %d; want the first batch only", cut, st.LastIndex(), st.HardState.Term)
		}
		if got := c.Size(seg); got != good {
			t.Fatalf("cut at %d: segment is %d bytes after recovery, want truncated to %d", cut, got, good)
		}
		// The store keeps working after the truncation.
		if err := s.Append(ctx, persist.HardState{Term: 3}, persisttest.Entries(6, 6, 3)); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s = openMem(t, c, 1<<20)
		if st := load(t, s); st.LastIndex() != 6 || st.Entries[5].Term != 3 {
			t.Fatalf("cut at %d: after appending and reopening: last %d", cut, st.LastIndex())
		}
		s.Close()
	}
	// Zeros past the end (a file system that extended the file but did not
	// write the data) are a torn tail too.
	c := fs.Crash(nil)
	if err := c.Truncate(seg, full+4096); err != nil {
		t.Fatal(err)
	}
	s = openMem(t, c, 1<<20)
	if st := load(t, s); st.LastIndex() != 8 {
		t.Fatalf("zero tail: last %d, want 8", st.LastIndex())
	}
	s.Close()
}

// TestMidFileCorruption flips a byte in every record but the last and
// checks that Open refuses with an error naming the file and offset.
func TestMidFileCorruption(t *testing.T) {
	fs := filestore.NewMemFS()
	s := openMem(t, fs, 1<<20)
	var offsets []int64
	seg := ""
	for i := uint64(0); i < 5; i++ {
		if seg != "" {
			offsets = append(offsets, fs.Size(seg))
		} else {
			offsets = append(offsets, 0)
		}
		if err := s.Append(ctx, persist.HardState{Term: 1}, persisttest.Entries(i*4+1, i*4+4, 1)); err != nil {
			t.Fatal(err)
		}
		seg = segments(fs)[0]
	}
	s.Close()
	for i, off := range offsets[:len(offsets)-1] {
		for _, delta := range []int64{0, 5, 9, 20, 40} { // length, crc, header crc, payload
			c := fs.Crash(nil)
			if err := c.Corrupt(seg, off+delta, 0x10); err != nil {
				t.Fatal(err)
			}
			o := filestore.DefaultOptions()
			o.FS = c
			_, err := filestore.Open(dir, o)
			want := fmt.Sprintf("%s at offset %d", seg, off)
			if !errors.Is(err, persist.ErrCorrupt) || !strings.Contains(err.Error(), want) {
				t.Fatalf("record %d byte +%d flipped: Open = %v, want ErrCorrupt naming %q", i, delta, err, want)
			}
		}
	}
	// Damage in a segment that is not the last one is corruption even at its end.
	fs2 := filestore.NewMemFS()
	s = openMem(t, fs2, 4<<10)
	for i := uint64(0); i < 60; i++ {
		if err := s.Append(ctx, persist.HardState{Term: 1}, persisttest.Entries(i*4+1, i*4+4, 1)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	first := segments(fs2)[0]
	if err := fs2.Truncate(first, fs2.Size(first)-3); err != nil {
		t.Fatal(err)
	}
	o := filestore.DefaultOptions()
	o.FS = fs2
	if _, err := filestore.Open(dir, o); !errors.Is(err, persist.ErrCorrupt) || !strings.Contains(err.Error(), filepath.Base(first)) {
		t.Fatalf("first of several segments cut short: Open = %v, want ErrCorrupt naming it", err)
	}
}

// TestLastRecordCorrupt flips each byte of the last, complete record in
// turn: a complete record that fails its checks is corruption, never a torn
// tail to drop, because it may hold an acknowledged write.
func TestLastRecordCorrupt(t *testing.T) {
	fs := filestore.NewMemFS()
	s := openMem(t, fs, 1<<20)
	if err := s.Append(ctx, persist.HardState{Term: 1, VotedFor: 1}, persisttest.Entries(1, 5, 1)); err != nil {
		t.Fatal(err)
	}
	seg := segments(fs)[0]
	last := fs.Size(seg)
	if err := s.Append(ctx, persist.HardState{Term: 2, VotedFor: 2, Commit: 5}, persisttest.Entries(6, 8, 2)); err != nil {
		t.Fatal(err)
	}
	full := fs.Size(seg)
	s.Close()
	want := fmt.Sprintf("%s at offset %d", seg, last)
	for off := last; off < full; off++ {
		c := fs.Crash(nil)
		if err := c.Corrupt(seg, off, 0x01); err != nil {
			t.Fatal(err)
		}
		o := filestore.DefaultOptions()
		o.FS = c
		st, err := filestore.Open(dir, o)
		if !errors.Is(err, persist.ErrCorrupt) || !strings.Contains(err.Error(), want) {
			if err == nil {
				st.Close()
			}
			t.Fatalf("byte %d of the last record flipped: Open = %v, want ErrCorrupt naming %q", off-last, err, want)
		}
		if got := c.Size(seg); got != full {
			t.Fatalf("byte %d flipped: segment is %d bytes after the refused Open, want it untouched (%d)", off-last, got, full)
		}
	}
	// A zero-filled tail is torn, not corrupt: the last record's sectors
	// from a sector boundary on were never written (the file system extended
	// the file first). Recovery drops the record and truncates it away.
	big := persisttest.Entries(9, 9, 2)
	big[0].Data = bytes.Repeat([]byte{0xAB}, 2000)
	s = openMem(t, fs, 1<<20)
	if err := s.Append(ctx, persist.HardState{Term: 2, VotedFor: 2, Commit: 8}, big); err != nil {
		t.Fatal(err)
	}
	s.Close()
	end := fs.Size(seg)
	for _, zeroFrom := range []int64{(full/512 + 1) * 512, (end/512 - 1) * 512, (end / 512) * 512} {
		c := fs.Crash(nil)
		if err := c.Truncate(seg, zeroFrom); err != nil {
			t.Fatal(err)
		}
		if err := c.Truncate(seg, end); err != nil { // zeros from zeroFrom on
			t.Fatal(err)
		}
		s := openMem(t, c, 1<<20)
		if st := load(t, s); st.LastIndex() != 8 {
			t.Fatalf("last record zero from %d (of %d..%d): last index %d, want 8", zeroFrom, full, end, st.LastIndex())
		}
		s.Close()
		if got := c.Size(seg); got != full {
			t.Fatalf("zero tail from %d: segment is %d bytes after recovery, want %d", zeroFrom, got, full)
		}
	}
	// Zeros that start off a sector boundary are a flipped byte or a
	// damaged record, not unwritten sectors.
	c := fs.Crash(nil)
	if err := c.Truncate(seg, end-10); err != nil {
		t.Fatal(err)
	}
	if err := c.Truncate(seg, end); err != nil {
		t.Fatal(err)
	}
	if end%512 < 10 {
		t.Fatalf("test setup: the record must not end within 10 bytes of a sector boundary (ends at %d)", end)
	}
	o := filestore.DefaultOptions()
	o.FS = c
	if _, err := filestore.Open(dir, o); !errors.Is(err, persist.ErrCorrupt) {
		t.Fatalf("last 10 bytes of the last record zeroed: Open = %v, want ErrCorrupt", err)
	}
}

func TestCorruptSnapshotFile(t *testing.T) {
	fs := filestore.NewMemFS()
	s := openMem(t, fs, 1<<20)
	if err := s.Append(ctx, persist.HardState{Term: 1}, persisttest.Entries(1, 4, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSnapshot(ctx, persist.Snapshot{Index: 2, Term: 1, Data: []byte("snapshot data")}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := fs.Corrupt(filepath.Join(dir, "snapshot"), 50, 1); err != nil {
		t.Fatal(err)
	}
	o := filestore.DefaultOptions()
	o.FS = fs
	if _, err := filestore.Open(dir, o); !errors.Is(err, persist.ErrCorrupt) || !strings.Contains(err.Error(), "snapshot") {
		t.Fatalf("Open = %v, want ErrCorrupt naming the snapshot file", err)
	}
}

// TestFaults fails each kind of operation once and checks that the failing
// call reports it, the store refuses further use, and a reopen after a
// power loss holds at least everything acknowledged and at most the failed
// call's effect.
func TestFaults(t *testing.T) {
	for _, op := range []filestore.Op{filestore.OpWrite, filestore.OpSync, filestore.OpCreate,
		filestore.OpSyncDir, filestore.OpRename} {
		t.Run(string(op), func(t *testing.T) {
			fs := filestore.NewMemFS()
			s := openMem(t, fs, 4<<10)
			model := persist.NewMemory()
			boom := errors.New("injected")
			armed := false
			fs.SetFault(func(o filestore.Op, name string) error {
				if armed && o == op {
					return boom
				}
				return nil
			})
			var failedAt int
			var pre persist.State // acknowledged state before the failing call
			for i := 1; i <= 400; i++ {
				armed = i == 200 || (i > 200 && failedAt == 0)
				pre, _ = model.Load(ctx)
				var err error
				if i%25 == 0 {
					snap := persist.Snapshot{Index: pre.LastIndex() - 10, Term: 1, Data: fmt.Appendf(nil, "s%d", i)}
					if err = s.SaveSnapshot(ctx, snap); err == nil {
						_ = model.SaveSnapshot(ctx, snap)
					}
				} else {
					es := persisttest.Entries(pre.LastIndex()+1, pre.LastIndex()+1, 1)
					if err = s.Append(ctx, persist.HardState{Term: 1, Commit: uint64(i / 2)}, es); err == nil {
						_ = model.Append(ctx, persist.HardState{Term: 1, Commit: uint64(i / 2)}, es)
					}
				}
				if err != nil {
					if !errors.Is(err, boom) {
						t.Fatalf("call %d failed with %v, want the injected error", i, err)
					}
					failedAt = i
					break
				}
			}
			if failedAt == 0 {
				t.Fatalf("no call failed on %s", op)
			}
			fs.SetFault(nil)
			if err := s.Append(ctx, persist.HardState{Term: 1}, nil); !errors.Is(err, persist.ErrFailed) {
				t.Fatalf("Append after a failure: %v, want ErrFailed", err)
			}
			s.Close()
			s = openMem(t, fs.Crash(nil), 4<<10)
			defer s.Close()
			got := load(t, s)
			// Either the failed call took effect or it did not; nothing else.
			if d := persisttest.DiffState(got, pre); d != "" {
				after, _ := model.Load(ctx)
				if d2 := persisttest.DiffState(got, after); d2 != "" {
					t.Fatalf("after failing call %d and a power loss: %s", failedAt, d)
				}
			}
		})
	}
}

// TestRandomPowerLoss interleaves appends, snapshots and power losses that
// keep a random part of what was not synced, and checks that everything
// acknowledged is there after each.
func TestRandomPowerLoss(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	fs := filestore.NewMemFS()
	s := openMem(t, fs, 4<<10)
	model := persist.NewMemory()
	for i := 1; i < 1500; i++ {
		st, _ := model.Load(ctx)
		switch r := rng.IntN(100); {
		case r < 80:
			first := st.LastIndex() + 1
			if rng.IntN(5) == 0 && first > st.Snapshot.Index+1 {
				first -= rng.Uint64N(first - st.Snapshot.Index - 1)
			}
			es := persisttest.Entries(first, first+rng.Uint64N(5), uint64(i))
			hs := persist.HardState{Term: uint64(i), VotedFor: i % 3}
			if err := s.Append(ctx, hs, es); err != nil {
				t.Fatal(err)
			}
			_ = model.Append(ctx, hs, es)
		case r < 90:
			if st.LastIndex() <= st.Snapshot.Index {
				continue
			}
			idx := st.Snapshot.Index + 1 + rng.Uint64N(st.LastIndex()-st.Snapshot.Index)
			term := st.Entries[idx-st.Snapshot.Index-1].Term
			if rng.IntN(4) == 0 {
				term++
			}
			snap := persist.Snapshot{Index: idx, Term: term, Data: fmt.Appendf(nil, "snap%d", i)}
			if err := s.SaveSnapshot(ctx, snap); err != nil {
				t.Fatal(err)
			}
			_ = model.SaveSnapshot(ctx, snap)
		default:
			// A crash during an Append: its write happened but its fsync
			// did not, and the crash keeps a random prefix of it (a torn
			// record). Recovery must give the state before the Append or,
			// if the whole record survived, after it.
			want, _ := model.Load(ctx)
			after := model.Clone()
			es := persisttest.Entries(st.LastIndex()+1, st.LastIndex()+1+rng.Uint64N(20), uint64(i))
			hs := persist.HardState{Term: uint64(i), VotedFor: 2}
			_ = after.Append(ctx, hs, es)
			fs.SetFault(func(op filestore.Op, _ string) error {
				if op == filestore.OpSync || op == filestore.OpSyncDir {
					return errors.New("power cut")
				}
				return nil
			})
			if err := s.Append(ctx, hs, es); err == nil {
				t.Fatal("Append succeeded without fsync")
			}
			fs = fs.Crash(rng)
			s = openMem(t, fs, 4<<10)
			got := load(t, s)
			if d := persisttest.DiffState(got, want); d != "" {
				wantAfter, _ := after.Load(ctx)
				if d2 := persisttest.DiffState(got, wantAfter); d2 != "" {
					t.Fatalf("op %d, after a power loss during an Append: %s", i, d)
				}
				model = after
			}
		}
	}
	s.Close()
}

// TestNoSyncLosesOnlyUnsynced shows that with NoSync a power loss drops
// data (it is for tests only) but the store still opens cleanly.
func TestNoSyncLosesOnlyUnsynced(t *testing.T) {
	fs := filestore.NewMemFS()
	o := filestore.DefaultOptions()
	o.FS = fs
	o.NoSync = true
	s, err := filestore.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 20; i++ {
		if err := s.Append(ctx, persist.HardState{Term: 1}, persisttest.Entries(i, i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	c := fs.Crash(rand.New(rand.NewPCG(1, 1)))
	s2 := openMem(t, c, 16<<20)
	defer s2.Close()
	if st := load(t, s2); st.LastIndex() > 20 {
		t.Fatalf("last %d", st.LastIndex())
	}
}
