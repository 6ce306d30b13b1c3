package kvraft

import (
	"bytes"
	"testing"
	"time"

	"github.com/ruaft/ruaft/kvraft/rsm"
	"github.com/ruaft/ruaft/raft"
)

// reviewLevelSnapshotSeeds returns version-3 and version-4 snapshots with
// every kind of remembered refusal, for FuzzReviewLevelDecodeSnapshot.
func reviewLevelSnapshotSeeds() [][]byte {
	s := newState(testLimits)
	openSession(s, 7)
	applyOp(s, op{kind: rPut, key: "k", value: "a"})
	v3 := s.Snapshot()
	raiseTo(s, 1)
	seq := uint64(0)
	write := func(o op) {
		seq++
		o.id = WriteID{ClientID: 7, Seq: seq, Ack: 1}
		applyOp(s, o)
	}
	write(op{kind: rPut, key: "k", value: "b", cond: condition{kind: condValue, value: "x"}})
	write(op{kind: rPut, key: "absent", value: "b", cond: condition{kind: condVersion, version: 3}})
	write(op{kind: opTxn | opChecked | opRevisioned, txn: &txn{
		conds:  []txnCond{{key: "k", cond: condition{kind: condValue, value: "x"}}, {key: "new", cond: condition{kind: condAbsent}}},
		writes: []txnWrite{{key: "t", value: "1"}}}})
	write(op{kind: rAppend, key: "k", value: "0123456789", limit: 10})
	write(op{kind: rPut, key: "l", value: "v", lease: 99})
	applyOp(s, op{kind: opLeaseGrant, lease: 1, ttl: 60_000, limit: 10})
	write(op{kind: opLeaseGrant, lease: 2, ttl: 60_000, limit: 1})
	write(op{kind: rPut, key: "ok", value: "v"})
	return [][]byte{v3, s.Snapshot()}
}

// FuzzReviewLevelDecodeSnapshot: whatever the bytes, decodeSnapshot
// returns (no panic) and a state it accepts encodes to bytes that decode
// to a state encoding to the same bytes again (so two replicas that
// restore it agree). Run longer with
// go test -run '^$' -fuzz FuzzReviewLevelDecodeSnapshot ./kvraft/.
func FuzzReviewLevelDecodeSnapshot(f *testing.F) {
	for _, b := range reviewLevelSnapshotSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeSnapshot(b, testLimits)
		if err != nil {
			return
		}
		enc := st.Snapshot()
		again, err := decodeSnapshot(enc, testLimits)
		if err != nil {
			t.Fatalf("re-encoded snapshot does not decode: %v", err)
		}
		if enc2 := again.Snapshot(); !bytes.Equal(enc, enc2) {
			t.Fatalf("re-encoding is not stable:\n%x\n%x", enc, enc2)
		}
		if again.level.Load() != st.level.Load() {
			t.Fatalf("level %d, re-decoded %d", st.level.Load(), again.level.Load())
		}
	})
}

// TestReviewLevelLookupAllocs (fails on 68fbdfe; Low, performance): every
// write a replica serves first looks its WriteID up in the session table
// (startWrite), and the answer of a hit is a copy of the remembered
// refusal (cloneRefusal). cloneRefusal ran its two errors.As, whose
// targets escape, even for the nil refusal of a miss or of an applied
// write: two allocations on the path of every write, at every level,
// where the lookup allocated nothing before.
func TestReviewLevelLookupAllocs(t *testing.T) {
	s := newState(testLimits)
	openSession(s, 7)
	applyOp(s, op{kind: rPut, id: WriteID{ClientID: 7, Seq: 1, Ack: 1}, key: "k", value: "v"})
	miss, hit := WriteID{ClientID: 7, Seq: 2, Ack: 1}, WriteID{ClientID: 7, Seq: 1, Ack: 1}
	if n := testing.AllocsPerRun(100, func() { s.lookup(miss) }); n != 0 {
		t.Errorf("a lookup that misses allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { s.lookup(hit) }); n != 0 {
		t.Errorf("a lookup of an applied write allocates %v times, want 0", n)
	}
}

// levelFakeRaft is a fakeRaft whose leader status shows a one-member
// configuration that reports ApplyLevel, so raiseLevel proposes.
type levelFakeRaft struct{ *fakeRaft }

func (f levelFakeRaft) Status() raft.Status {
	st := f.fakeRaft.Status()
	st.Membership = raft.Membership{Members: []raft.Member{{ID: 0}}}
	if st.Role == raft.Leader {
		st.Progress = map[int]raft.MemberProgress{0: {AppVersion: ApplyLevel}}
	}
	return st
}

// levelEntries counts the opLevel entries in f's log.
func levelEntries(t *testing.T, f *fakeRaft) int {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, m := range f.log {
		if o, err := decodeOp(m.Command); err == nil && o.kind == opLevel {
			n++
		}
	}
	return n
}

// TestReviewLevelOneProposalAtATime (fails on 68fbdfe; Low): raiseLevel
// proposed an opLevel entry every LeaseTick until the leader's state
// applied one, without looking at the one it had proposed. A leader whose
// entries do not commit (no quorum reachable; CheckQuorum off) or whose
// state lags far behind its log (a new leader applying a backlog) kept
// appending one more entry per tick, for as long as that lasted: 10 a
// second with the default LeaseTick, each replicated, applied and kept by
// every replica. One pending proposal per term is enough: a lost one
// (leadership lost, entry overwritten) is proposed again.
func TestReviewLevelOneProposalAtATime(t *testing.T) {
	cfg := DefaultConfig(0)
	cfg.LeaseTick = time.Millisecond
	var fr *fakeRaft
	s, err := NewServer(cfg, func(app raft.Application) (rsm.Raft, error) {
		fr = newFakeRaft(app)
		return levelFakeRaft{fr}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Kill()
	fr.setHold(true)
	time.Sleep(200 * time.Millisecond)
	if n := levelEntries(t, fr); n != 1 {
		t.Errorf("%d opLevel entries proposed while the first was pending, want 1", n)
	}
	// The pending entry is lost with the leadership; the next term's
	// leader proposes again, and once it commits the level is raised.
	fr.loseLeadership()
	fr.mu.Lock()
	fr.leader = true
	fr.publishLocked()
	fr.mu.Unlock()
	fr.setHold(false)
	deadline := time.Now().Add(10 * time.Second)
	for s.ApplyLevel() != ApplyLevel {
		if time.Now().After(deadline) {
			t.Fatalf("level %d after the leader's entries commit, want %d (%d entries)", s.ApplyLevel(), ApplyLevel, levelEntries(t, fr))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
