package kvraft

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/ruaft/ruaft/raft"
)

// raiseTo applies an opLevel entry.
func raiseTo(s *state, level uint64) {
	s.Apply(1, encodeOp(op{kind: opLevel, limit: level}))
}

// The refusals a write gets from the state: a failed condition (Put,
// Delete, Txn), an Append over the cap, a missing lease and too many
// leases. At level 0 none is remembered, and a delayed copy of the request
// applies once the state lets it; from level 1 each is remembered with its
// answer, and every copy gets that answer again, the state unchanged.
func TestStateRemembersRefusalsFromLevel1(t *testing.T) {
	for _, level := range []uint64{0, 1} {
		t.Run(fmt.Sprintf("level=%d", level), func(t *testing.T) {
			s := newState(testLimits)
			raiseTo(s, level)
			if s.applyLevel() != uint32(level) {
				t.Fatalf("level %d after raising to %d", s.applyLevel(), level)
			}
			openSession(s, 7)
			seq := uint64(0)
			// write applies o as the next write of session 7, acknowledging
			// nothing after the first refused one (ack), so its result
			// stays in the table.
			const ack = 1
			write := func(o op) (op, writeResult) {
				seq++
				o.id = WriteID{ClientID: 7, Seq: seq, Ack: ack}
				return o, applyOp(s, o)
			}
			again := func(o op) writeResult { return applyOp(s, o) }
			applyOp(s, op{kind: rPut, key: "k", value: "a"})

			// A Put whose condition fails, then comes true.
			cas, res := write(op{kind: rPut, key: "k", value: "b", cond: condition{kind: condValue, value: "x"}})
			var cf *ConditionFailedError
			if !errors.As(res.refused, &cf) || cf.Current == nil || cf.Current.Value != "a" {
				t.Fatalf("CAS: %+v", res)
			}
			first := *cf
			firstCur := *cf.Current
			cf.Current.Value = "changed by the caller" // the answer is the caller's to change
			// A failed Txn, a Delete, an Append over the cap, a Put with a
			// missing lease and a grant past the most leases.
			tx, txRes := write(op{kind: opTxn | opChecked | opRevisioned, txn: &txn{
				conds:  []txnCond{{key: "k2", cond: condition{kind: condValue, value: "x"}}, {key: "new", cond: condition{kind: condAbsent}}},
				writes: []txnWrite{{key: "t", value: "1"}}}})
			var tf *txnFailedError
			if !errors.As(txRes.refused, &tf) || !reflect.DeepEqual(tf.failed, []int{0}) {
				t.Fatalf("txn: %+v", txRes)
			}
			firstTxn := *tf
			del, delRes := write(op{kind: rDelete, key: "k", cond: condition{kind: condValue, value: "x"}})
			big, bigRes := write(op{kind: rAppend, key: "k", value: "0123456789", limit: 10})
			lp, lpRes := write(op{kind: rPut, key: "l", value: "v", lease: 99})
			applyOp(s, op{kind: opLeaseGrant, lease: 1, ttl: 60_000, limit: 10})
			applyOp(s, op{kind: opLeaseGrant, lease: 3, ttl: 60_000, limit: 10})
			grant, grantRes := write(op{kind: opLeaseGrant, lease: 2, ttl: 60_000, limit: 2})
			if !errors.As(delRes.refused, new(*ConditionFailedError)) || !errors.Is(bigRes.refused, ErrTooLarge) ||
				!errors.Is(lpRes.refused, ErrLeaseNotFound) || !errors.Is(grantRes.refused, ErrTooManyLeases) {
				t.Fatalf("refusals: %v, %v, %v, %v", delRes.refused, bigRes.refused, lpRes.refused, grantRes.refused)
			}

			// Everything that refused them changes: the value matches
			// (and is short), lease 99 exists, and there is room for a
			// lease.
			applyOp(s, op{kind: rPut, key: "k", value: "x"})
			applyOp(s, op{kind: rPut, key: "k2", value: "x"})
			applyOp(s, op{kind: opLeaseRevoke, lease: 1})
			applyOp(s, op{kind: opLeaseRevoke, lease: 3})
			applyOp(s, op{kind: opLeaseGrant, lease: 99, ttl: 60_000, limit: 10})
			rev := s.rev

			// The delayed copies arrive, in an order that lets each apply
			// if it is not remembered (the delete last: it would remove k).
			casAgain, txAgain, bigAgain, lpAgain, grantAgain := again(cas), again(tx), again(big), again(lp), again(grant)
			if level == 0 {
				if casAgain.refused != nil || txAgain.refused != nil || lpAgain.refused != nil || grantAgain.refused != nil {
					t.Fatalf("at level 0 the copies are checked again and apply: %v, %v, %v, %v",
						casAgain.refused, txAgain.refused, lpAgain.refused, grantAgain.refused)
				}
				if v, _ := s.getValue("t"); v != "1" {
					t.Fatalf("at level 0 the txn's copy did not apply: t=%q", v)
				}
				return
			}
			delAgain := again(del)
			if s.rev != rev {
				t.Fatalf("a delayed copy of a refused write changed the store: revision %d -> %d", rev, s.rev)
			}
			if v, _ := s.getValue("k"); v != "x" {
				t.Fatalf("k = %q, want x", v)
			}
			if _, ok := s.leases[2]; ok {
				t.Fatal("the refused grant's copy created lease 2")
			}
			var cf2 *ConditionFailedError
			if !errors.As(casAgain.refused, &cf2) || cf2.Revision != first.Revision || cf2.Current == nil || *cf2.Current != firstCur {
				t.Fatalf("CAS copy answered %+v, want the first answer %+v (current %+v)", casAgain.refused, first, firstCur)
			}
			cf2.Current.Value = "changed by the caller of the copy"
			if res := again(cas); !errors.As(res.refused, &cf2) || *cf2.Current != firstCur {
				t.Fatalf("after the caller changed an answer from the table, the next is %+v, want current %+v", res.refused, firstCur)
			}
			var tf2 *txnFailedError
			if !errors.As(txAgain.refused, &tf2) || !reflect.DeepEqual(*tf2, firstTxn) {
				t.Fatalf("txn copy answered %+v, want %+v", txAgain.refused, firstTxn)
			}
			if !errors.As(delAgain.refused, new(*ConditionFailedError)) || !errors.Is(bigAgain.refused, ErrTooLarge) ||
				!errors.Is(lpAgain.refused, ErrLeaseNotFound) || !errors.Is(grantAgain.refused, ErrTooManyLeases) {
				t.Fatalf("copies: %v, %v, %v, %v", delAgain.refused, bigAgain.refused, lpAgain.refused, grantAgain.refused)
			}
			// The table answers a lookup (a follower's, before proposing)
			// the same way.
			if res, ok := s.lookup(cas.id); !ok || !errors.As(res.refused, new(*ConditionFailedError)) {
				t.Fatalf("lookup of the CAS: %+v, %v", res, ok)
			}

			// A snapshot keeps the level and every remembered answer;
			// a replica restored from it answers the copies alike.
			snap := s.Snapshot()
			if snap[0] != snapshotVersion {
				t.Fatalf("a level-1 state wrote a version %d snapshot", snap[0])
			}
			r := newState(testLimits)
			if err := r.Restore(snap); err != nil {
				t.Fatal(err)
			}
			if r.applyLevel() != 1 {
				t.Fatalf("restored level %d", r.applyLevel())
			}
			if !bytes.Equal(r.Snapshot(), snap) {
				t.Fatal("the restored state encodes to other bytes")
			}
			for id, rec := range s.clients {
				if !reflect.DeepEqual(r.clients[id].done, rec.done) || !reflect.DeepEqual(r.clients[id].refused, rec.refused) {
					t.Fatalf("client %d: restored results %+v and refusals %+v, want %+v and %+v", id,
						r.clients[id].done, r.clients[id].refused, rec.done, rec.refused)
				}
			}
			if res := applyOp(r, tx); !errors.As(res.refused, &tf2) || !reflect.DeepEqual(*tf2, firstTxn) {
				t.Fatalf("restored replica answered the txn's copy %+v", res.refused)
			}

			// Once the client acknowledges them, they are gone.
			seq++
			applyOp(s, op{kind: rPut, id: WriteID{ClientID: 7, Seq: seq, Ack: seq}, key: "z", value: "z"})
			if n, m := len(s.clients[7].done), len(s.clients[7].refused); n != 1 || m != 0 {
				t.Fatalf("%d results and %d refusals kept after the ack, want 1 and 0", n, m)
			}
		})
	}
}

// A level-0 state writes version-3 snapshots, which versions from before
// levels read; a version-4 snapshot must carry a level this version
// supports, and each truncation fails.
func TestStateSnapshotLevels(t *testing.T) {
	s := newState(testLimits)
	openSession(s, 1)
	applyOp(s, op{kind: rPut, id: WriteID{ClientID: 1, Seq: 1, Ack: 1}, key: "k", value: "v"})
	if snap := s.Snapshot(); snap[0] != snapshotVersion3 {
		t.Fatalf("a level-0 state wrote a version %d snapshot", snap[0])
	}
	raiseTo(s, 1)
	applyOp(s, op{kind: rPut, id: WriteID{ClientID: 1, Seq: 2, Ack: 2}, key: "k", value: "w", cond: condition{kind: condAbsent}})
	applyOp(s, op{kind: opTxn | opChecked | opRevisioned, id: WriteID{ClientID: 1, Seq: 3, Ack: 2}, txn: &txn{
		conds: []txnCond{{key: "k", cond: condition{kind: condAbsent}}}, writes: []txnWrite{{key: "t", value: "1"}}}})
	snap := s.Snapshot()
	if snap[0] != snapshotVersion || snap[len(snap)-1] != 1 {
		t.Fatalf("snapshot version %d, last byte %d", snap[0], snap[len(snap)-1])
	}
	for i := 1; i < len(snap); i++ {
		if err := newState(testLimits).Restore(snap[:i]); err == nil {
			t.Fatalf("restore of %d/%d bytes succeeded", i, len(snap))
		}
	}
	newer := append(snap[:len(snap)-1:len(snap)-1], byte(ApplyLevel+1))
	if err := newState(testLimits).ValidateSnapshot(newer); err == nil || !strings.Contains(err.Error(), "upgrade this replica") {
		t.Fatalf("a snapshot at a level above this version's: %v", err)
	}
	zero := append(snap[:len(snap)-1:len(snap)-1], 0)
	if err := newState(testLimits).ValidateSnapshot(zero); !errors.Is(err, errCorrupt) {
		t.Fatalf("a version-4 snapshot at level 0: %v", err)
	}
}

// An opLevel above what this version supports stops the replica (it was
// proposed because this replica once reported supporting it: it has been
// downgraded since); levels never go down.
func TestStateLevelEntries(t *testing.T) {
	s := newState(testLimits)
	o := op{kind: opLevel, limit: 1}
	if got, err := decodeOp(encodeOp(o)); err != nil || !reflect.DeepEqual(got, o) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	raiseTo(s, 1)
	raiseTo(s, 0)
	if s.applyLevel() != 1 {
		t.Fatalf("level %d after raising to 1 then 0", s.applyLevel())
	}
	defer func() {
		if msg := fmt.Sprint(recover()); !strings.Contains(msg, "index 9") || !strings.Contains(msg, "upgrade this replica") {
			t.Fatalf("recovered %q", msg)
		}
	}()
	s.ApplyDiscard(9, encodeOp(op{kind: opLevel, limit: uint64(ApplyLevel) + 1}))
	t.Fatal("a level above ApplyLevel was applied")
}

// levelFor raises only to what every member of the configuration, voters
// and learners, reported to a leader.
func TestLevelFor(t *testing.T) {
	members := raft.Membership{Members: []raft.Member{{ID: 0}, {ID: 1}, {ID: 2, Learner: true}}}
	leader := func(versions map[int]uint32) raft.Status {
		st := raft.Status{Role: raft.Leader, Membership: members, Progress: map[int]raft.MemberProgress{}}
		for id, v := range versions {
			st.Progress[id] = raft.MemberProgress{AppVersion: v}
		}
		return st
	}
	for _, tc := range []struct {
		st   raft.Status
		want uint32
	}{
		{leader(map[int]uint32{0: 1, 1: 1, 2: 1}), 1},
		{leader(map[int]uint32{0: 3, 1: 2, 2: 5}), 1}, // never above this version's
		{leader(map[int]uint32{0: 1, 1: 1, 2: 0}), 0}, // an old learner
		{leader(map[int]uint32{0: 1, 1: 1}), 0},       // a member not yet heard from
		{raft.Status{Role: raft.Follower, Membership: members}, 0},
		{raft.Status{Role: raft.Leader}, 0},
	} {
		if got := levelFor(tc.st, 1); got != tc.want {
			t.Errorf("levelFor(%+v) = %d, want %d", tc.st.Progress, got, tc.want)
		}
	}
}
