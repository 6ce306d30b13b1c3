package kvraft

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
)

func TestOpRoundTrip(t *testing.T) {
	for _, o := range []op{
		{kind: opPut, id: WriteID{ClientID: 1 << 62, Seq: 7, Ack: 3}, key: "k", value: "v"},
		{kind: opAppend, key: "", value: string(make([]byte, 300))},
		{kind: opDelete, id: WriteID{ClientID: 5, Seq: 1, Ack: 1}, key: "x"},
		{kind: opGet, key: "y"},
	} {
		b := encodeOp(o)
		got, err := decodeOp(b)
		if err != nil || got != o {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", o, got, err)
		}
		for i := range len(b) {
			if _, err := decodeOp(b[:i]); !errors.Is(err, errCorrupt) {
				t.Fatalf("decode of %d/%d bytes: err %v, want errCorrupt", i, len(b), err)
			}
		}
	}
	if _, err := decodeOp([]byte{9, 0, 0, 0, 0, 0}); !errors.Is(err, errCorrupt) {
		t.Fatalf("unknown kind: err %v", err)
	}
}

func TestPutOpIsCompact(t *testing.T) {
	b := encodeOp(op{kind: opPut, id: WriteID{ClientID: 1 << 62, Seq: 1000, Ack: 1000}, key: "0123456789", value: "0123456789"})
	if len(b) > 40 {
		t.Fatalf("Put of 10+10 bytes encodes to %d bytes, want at most 40", len(b))
	}
}

func applyOp(s *state, o op) writeResult {
	return s.Apply(0, encodeOp(o)).(writeResult)
}

func TestStateExactlyOnceWithWindow(t *testing.T) {
	s := newState(testLimits)
	w := func(seq, ack uint64, v string) op {
		return op{kind: opAppend, id: WriteID{ClientID: 9, Seq: seq, Ack: ack}, key: "k", value: v}
	}
	// Three writes in flight, applied out of order, each retried.
	applyOp(s, w(2, 1, "b"))
	applyOp(s, w(1, 1, "a"))
	applyOp(s, w(2, 1, "b"))
	applyOp(s, w(3, 1, "c"))
	applyOp(s, w(1, 1, "a"))
	if v, _ := s.getValue("k"); v != "bac" {
		t.Fatalf("value %q, want bac", v)
	}
	if n := len(s.clients[9].done); n != 3 {
		t.Fatalf("%d results remembered, want 3", n)
	}
	// The client has finished 1..3; write 4 says so.
	applyOp(s, w(4, 4, "d"))
	if rec := s.clients[9]; rec.floor != 4 || len(rec.done) != 1 {
		t.Fatalf("after ack 4: floor %d, %d results, want 4 and 1", rec.floor, len(rec.done))
	}
	if res := applyOp(s, w(2, 1, "b")); res.refused != ErrStale {
		t.Fatalf("late retry of 2: %+v, want stale", res)
	}
	if v, _ := s.getValue("k"); v != "bacd" {
		t.Fatalf("value %q, want bacd", v)
	}
	if res, ok := s.lookup(WriteID{ClientID: 9, Seq: 4}); !ok || res.refused != nil {
		t.Fatalf("lookup 4: %+v %v", res, ok)
	}
	if _, ok := s.lookup(WriteID{ClientID: 9, Seq: 5}); ok {
		t.Fatal("lookup of an unapplied write found it")
	}
	// Delete reports existence, and a retry reports the first answer.
	del := op{kind: opDelete, id: WriteID{ClientID: 9, Seq: 5, Ack: 5}, key: "k"}
	if res := applyOp(s, del); !res.existed {
		t.Fatal("delete of existing key: existed false")
	}
	if res := applyOp(s, del); !res.existed {
		t.Fatal("retried delete: existed false, want the first answer")
	}
	// Unidentified writes are applied every time.
	anon := op{kind: opAppend, key: "a", value: "x"}
	applyOp(s, anon)
	applyOp(s, anon)
	if v, _ := s.getValue("a"); v != "xx" {
		t.Fatalf("anonymous appends: %q, want xx", v)
	}
}

func TestStateSnapshotRoundTrip(t *testing.T) {
	s := newState(testLimits)
	for i := range 20 {
		applyOp(s, op{kind: opPut, id: WriteID{ClientID: uint64(i%3 + 1), Seq: uint64(i + 1), Ack: uint64(i/2 + 1)}, key: string(rune('a' + i)), value: "v"})
	}
	snap := s.Snapshot()
	r := newState(testLimits)
	applyOp(r, op{kind: opPut, key: "gone", value: "x"})
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if !maps.EqualFunc(r.data, s.data, func(a, b *record) bool { return bytes.Equal(a.value, b.value) && *a.keyValue("") == *b.keyValue("") }) {
		t.Fatalf("data differs: %v vs %v", r.data, s.data)
	}
	if len(r.clients) != len(s.clients) {
		t.Fatalf("%d clients, want %d", len(r.clients), len(s.clients))
	}
	for id, rec := range s.clients {
		got := r.clients[id]
		if got == nil || got.floor != rec.floor || !maps.Equal(got.done, rec.done) {
			t.Fatalf("client %d: %+v, want %+v", id, got, rec)
		}
	}
	if err := r.Restore(nil); err != nil || len(r.data) != 0 {
		t.Fatalf("restore of empty snapshot: %v, %d keys", err, len(r.data))
	}
	for i := 1; i < len(snap); i++ {
		if err := newState(testLimits).Restore(snap[:i]); err == nil {
			t.Fatalf("restore of %d/%d bytes succeeded", i, len(snap))
		}
	}
}

// TestStateSnapshotDeterministic: equal states encode to equal bytes, however
// Go orders map iteration and however the state was reached (applied
// commands or a restored snapshot), so that the snapshots of two replicas at
// the same index are byte-identical.
func TestStateSnapshotDeterministic(t *testing.T) {
	build := func() *state {
		s := newState(testLimits)
		for i := range 200 {
			applyOp(s, op{kind: opAppend, id: WriteID{ClientID: uint64(i%17 + 1), Seq: uint64(i + 1), Ack: uint64(i/3 + 1)},
				key: fmt.Sprintf("key-%03d", (i*7)%97), value: fmt.Sprint(i)})
		}
		return s
	}
	want := build().Snapshot()
	for range 20 {
		if got := build().Snapshot(); !bytes.Equal(got, want) {
			t.Fatal("two equal states encoded to different bytes")
		}
	}
	r := newState(testLimits)
	if err := r.Restore(want); err != nil {
		t.Fatal(err)
	}
	if got := r.Snapshot(); !bytes.Equal(got, want) {
		t.Fatal("a restored state encodes to other bytes than its snapshot")
	}
}

// TestStateValidateSnapshot: ValidateSnapshot accepts exactly what Restore
// accepts and changes nothing.
func TestStateValidateSnapshot(t *testing.T) {
	s := newState(testLimits)
	applyOp(s, op{kind: opPut, id: WriteID{ClientID: 1, Seq: 1, Ack: 1}, key: "k", value: "v"})
	snap := s.Snapshot()
	for _, tc := range []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"empty", nil, true},
		{"valid", snap, true},
		{"garbage", []byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4}, false},
		{"truncated", snap[:len(snap)-1], false},
		{"trailing", append(slices.Clone(snap), 0), false},
		{"other version", append([]byte{9}, snap[1:]...), false},
	} {
		verr := s.ValidateSnapshot(tc.b)
		rerr := newState(testLimits).Restore(tc.b)
		if (verr == nil) != tc.ok || (rerr == nil) != tc.ok {
			t.Errorf("%s: validate %v, restore %v, want ok=%v", tc.name, verr, rerr, tc.ok)
		}
	}
	if v, ok := s.getValue("k"); !ok || v != "v" {
		t.Fatalf("validation changed the state: %q %v", v, ok)
	}
}

// decodeOp's value aliases the command: the state must keep a copy, for
// the raft log still holds (and sends) those bytes, and may hand the same
// slice to Apply again on another replica in this process.
func TestStateCopiesValueOutOfCommand(t *testing.T) {
	s := newState(testLimits)
	s.Apply(0, encodeOp(op{kind: opOpenSession, id: WriteID{ClientID: 1}, limit: 10}))
	const checked = opChecked | opRevisioned
	for i, o := range []op{
		{kind: opPut, key: "legacy-put", value: "v1"},
		{kind: opAppend, key: "legacy-append", value: "v2"},
		{kind: opPut | checked, id: WriteID{ClientID: 1, Seq: 1, Ack: 1}, key: "put", value: "v3"},
		{kind: opAppend | checked, id: WriteID{ClientID: 1, Seq: 2, Ack: 2}, key: "append", value: "v4"},
		{kind: opAppend | checked, id: WriteID{ClientID: 1, Seq: 3, Ack: 3}, key: "append", value: "v5"},
	} {
		cmd := encodeOp(o)
		if res, ok := s.Apply(uint64(i+1), cmd).(writeResult); !ok || res.refused != nil {
			t.Fatalf("%+v: result %+v", o, res)
		}
		for j := range cmd {
			cmd[j] = 'X'
		}
	}
	for key, want := range map[string]string{"legacy-put": "v1", "legacy-append": "v2", "put": "v3", "append": "v4v5"} {
		if v, _ := s.getValue(key); v != want {
			t.Errorf("%s = %q after the command's bytes changed, want %q", key, v, want)
		}
	}
}
