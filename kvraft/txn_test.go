package kvraft

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestTxnCodecRoundTrip(t *testing.T) {
	o := op{kind: opTxn | opChecked | opRevisioned, id: WriteID{ClientID: 3, Seq: 9, Ack: 8}, txn: &txn{
		conds: []txnCond{{key: "a", cond: condition{kind: condModRevision, modRev: 7}}, {key: "b", cond: condition{kind: condAbsent}},
			{key: "c", cond: condition{kind: condValue, value: "x\x00y"}}, {key: "d", cond: condition{kind: condVersion}}},
		writes: []txnWrite{{key: "a", value: "1", lease: 42}, {del: true, key: "b"}, {key: "e", value: ""}},
	}}
	got, err := decodeOp(encodeOp(o))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, o) {
		t.Fatalf("decoded %+v (txn %+v), want %+v (txn %+v)", got, got.txn, o, o.txn)
	}
	// Every truncation fails to decode, and so does a count larger than
	// the bytes left (it would otherwise size an allocation).
	b := encodeOp(o)
	for n := range len(b) {
		if _, err := decodeOp(b[:n]); !errors.Is(err, errCorrupt) {
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
	}
	huge := encodeOp(op{kind: opTxn | opChecked | opRevisioned})
	huge = append(huge[:len(huge)-2], 0xff, 0xff, 0xff, 0xff, 0x0f, 0)
	if _, err := decodeOp(huge); !errors.Is(err, errCorrupt) {
		t.Fatalf("huge count: %v", err)
	}
	bad := encodeOp(op{kind: opTxn | opChecked | opRevisioned, txn: &txn{writes: []txnWrite{{key: "k"}}}})
	bad[len(bad)-5] = 9 // the write's kind byte
	if _, err := decodeOp(bad); !errors.Is(err, errCorrupt) {
		t.Fatalf("unknown write kind: %v", err)
	}
}

func TestStateTxnAppliesAllOrNothing(t *testing.T) {
	s := newState(testLimits)
	openSession(s, 5)
	applyOp(s, op{kind: rPut, key: "from", value: "100"})
	applyOp(s, op{kind: rPut, key: "gone", value: "x"})
	from := kvOf(t, s, "from")
	tx := func(seq uint64, conds []txnCond, writes ...txnWrite) writeResult {
		return applyOp(s, op{kind: opTxn | opChecked | opRevisioned, id: WriteID{ClientID: 5, Seq: seq}, txn: &txn{conds: conds, writes: writes}})
	}

	// Two conditions fail: nothing changes, and the answer names them with
	// the compared keys that exist, each once.
	before := s.rev
	res := tx(1, []txnCond{{key: "from", cond: condition{kind: condModRevision, modRev: 99}}, {key: "to", cond: condition{kind: condAbsent}},
		{key: "gone", cond: condition{kind: condAbsent}}, {key: "from", cond: condition{kind: condValue, value: "100"}}},
		txnWrite{key: "from", value: "90"}, txnWrite{key: "to", value: "10"}, txnWrite{del: true, key: "gone"})
	var f *txnFailedError
	if !errors.As(res.refused, &f) {
		t.Fatalf("refused = %v, want a failed txn", res.refused)
	}
	if f.rev != before || !reflect.DeepEqual(f.failed, []int{0, 2}) || len(f.current) != 2 || f.current[0] != from || f.current[1].Key != "gone" {
		t.Fatalf("failure %+v", f)
	}
	if s.rev != before || kvOf(t, s, "from").Value != "100" {
		t.Fatalf("a failed txn changed the store: rev %d, from %+v", s.rev, kvOf(t, s, "from"))
	}
	if _, ok := s.getValue("to"); ok {
		t.Fatal("a failed txn created a key")
	}

	// All hold: every write, in order, at consecutive revisions.
	res = tx(2, []txnCond{{key: "from", cond: condition{kind: condModRevision, modRev: from.ModRevision}}, {key: "to", cond: condition{kind: condAbsent}}},
		txnWrite{key: "from", value: "90"}, txnWrite{key: "to", value: "10"}, txnWrite{del: true, key: "gone"}, txnWrite{del: true, key: "never"})
	if res.refused != nil || res.rev != before+3 || s.rev != before+3 {
		t.Fatalf("txn: %+v, store rev %d, want rev %d", res, s.rev, before+3)
	}
	if got := kvOf(t, s, "from"); got.Value != "90" || got.ModRevision != before+1 || got.Version != 2 {
		t.Fatalf("from = %+v", got)
	}
	if got := kvOf(t, s, "to"); got.Value != "10" || got.ModRevision != before+2 || got.CreateRevision != before+2 {
		t.Fatalf("to = %+v", got)
	}
	if _, ok := s.getValue("gone"); ok {
		t.Fatal("gone was not deleted")
	}
	n := len(s.events)
	if e := s.events[n-1]; !e.deleted || e.key != "gone" || e.kv.mod != before+3 {
		t.Fatalf("last event %+v", e)
	}

	// A retry of the applied txn is answered from the session, not applied
	// again (its conditions no longer hold, which must not matter).
	again := tx(2, []txnCond{{key: "from", cond: condition{kind: condModRevision, modRev: from.ModRevision}}},
		txnWrite{key: "from", value: "90"})
	if again.refused != nil || again.rev != before+3 || s.rev != before+3 {
		t.Fatalf("retry: %+v, store rev %d", again, s.rev)
	}
	// A failed txn is not remembered: its retry is checked again.
	if res := tx(1, nil, txnWrite{key: "late", value: "1"}); res.refused != nil || s.rev != before+4 {
		t.Fatalf("retry of a failed txn: %+v, store rev %d", res, s.rev)
	}
}

func TestStateTxnLeases(t *testing.T) {
	s := newState(testLimits)
	applyOp(s, op{kind: opLeaseGrant, lease: 77, ttl: 60_000, limit: 10})
	applyOp(s, op{kind: rPut, key: "old", value: "v", lease: 77})
	before := s.rev
	// A lease that does not exist refuses the whole txn, even after a
	// write that could have applied.
	res := applyOp(s, op{kind: opTxn | opChecked | opRevisioned, txn: &txn{writes: []txnWrite{{key: "a", value: "1"}, {key: "b", value: "2", lease: 78}}}})
	if !errors.Is(res.refused, ErrLeaseNotFound) || s.rev != before {
		t.Fatalf("missing lease: %+v, rev %d", res, s.rev)
	}
	res = applyOp(s, op{kind: opTxn | opChecked | opRevisioned, txn: &txn{writes: []txnWrite{{key: "a", value: "1", lease: 77}, {key: "old", value: "w"}}}})
	if res.refused != nil {
		t.Fatal(res.refused)
	}
	if _, keys, _, _ := s.leaseInfo(77, 100); !reflect.DeepEqual(keys, []string{"a"}) {
		t.Fatalf("lease keys %v, want [a] (old was put without the lease)", keys)
	}
	applyOp(s, op{kind: opLeaseRevoke, lease: 77})
	if _, ok := s.getValue("a"); ok {
		t.Fatal("revoking the lease kept its key")
	}
}

func TestServerTxn(t *testing.T) {
	s, _ := newFake16(t, nil)
	ctx := context.Background()
	openSessionID(t, s, 1)
	put, err := s.Put(ctx, &PutRequest{Key: "a", Value: "1"})
	if err != nil {
		t.Fatal(err)
	}
	id := WriteID{ClientID: 1, Seq: 1}
	req := &TxnRequest{Write: id, Conditions: []Compare{{Key: "a", Condition: IfModRevision(put.Header.Revision)}, {Key: "b", Condition: IfAbsent()}},
		Writes: []TxnWrite{TxnPut("a", "2"), TxnPut("b", "3")}}
	resp, err := s.Txn(ctx, req)
	if err != nil || !resp.Succeeded || resp.Header.Revision != put.Header.Revision+2 {
		t.Fatalf("Txn = %+v, %v", resp, err)
	}
	// The retry is answered as the first, from the session.
	if again, err := s.Txn(ctx, req); err != nil || !again.Succeeded || again.Header.Revision != resp.Header.Revision {
		t.Fatalf("retry = %+v, %v", again, err)
	}
	// The same conditions now fail: an answer, not an error.
	req.Write.Seq = 2
	failed, err := s.Txn(ctx, req)
	if err != nil || failed.Succeeded || !reflect.DeepEqual(failed.Failed, []int{0, 1}) || len(failed.Current) != 2 ||
		failed.Current[0].Value != "2" || failed.Header.Revision != resp.Header.Revision {
		t.Fatalf("failed Txn = %+v, %v", failed, err)
	}
	// Through StartTxn, as a forwarded batch runs it.
	req.Write.Seq = 3
	req.Conditions = nil
	if r, err := s.StartTxn(ctx, req)(); err != nil || !r.Succeeded {
		t.Fatalf("StartTxn = %+v, %v", r, err)
	}
	if _, err := s.Txn(ctx, &TxnRequest{Writes: []TxnWrite{{Key: "c", Lease: 12345}}}); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("Txn with a missing lease: %v", err)
	}
}

func TestServerTxnRefusesBadRequests(t *testing.T) {
	s, _ := newFake16(t, func(c *Config) { c.MaxValueBytes = 100 })
	ctx := context.Background()
	many := make([]TxnWrite, MaxTxnOps+1)
	for i := range many {
		many[i] = TxnPut(strings.Repeat("k", i+1), "")
	}
	manyConds := make([]Compare, MaxTxnOps+1)
	for i := range manyConds {
		manyConds[i] = Compare{Key: "k", Condition: IfAbsent()}
	}
	for name, tc := range map[string]struct {
		req  TxnRequest
		want error
	}{
		"no writes":               {TxnRequest{Conditions: []Compare{{Key: "a", Condition: IfAbsent()}}}, ErrInvalid},
		"too many writes":         {TxnRequest{Writes: many}, ErrInvalid},
		"too many conditions":     {TxnRequest{Conditions: manyConds, Writes: many[:1]}, ErrInvalid},
		"empty write key":         {TxnRequest{Writes: []TxnWrite{TxnPut("", "v")}}, ErrInvalid},
		"empty condition key":     {TxnRequest{Conditions: []Compare{{Condition: IfAbsent()}}, Writes: many[:1]}, ErrInvalid},
		"condition without kind":  {TxnRequest{Conditions: []Compare{{Key: "a"}}, Writes: many[:1]}, ErrInvalid},
		"unknown condition kind":  {TxnRequest{Conditions: []Compare{{Key: "a", Condition: Condition{Kind: 99}}}, Writes: many[:1]}, ErrInvalid},
		"a key written twice":     {TxnRequest{Writes: []TxnWrite{TxnPut("a", "1"), TxnDelete("a")}}, ErrInvalid},
		"too large":               {TxnRequest{Writes: []TxnWrite{TxnPut("a", strings.Repeat("v", 60)), TxnPut("b", strings.Repeat("v", 60))}}, ErrTooLarge},
		"sequence without client": {TxnRequest{Writes: many[:1], Write: WriteID{Seq: 1}}, ErrInvalid},
	} {
		rev := s.state.revision()
		if _, err := s.Txn(ctx, &tc.req); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
		if s.state.revision() != rev {
			t.Errorf("%s: the store changed", name)
		}
	}
}

// A watcher of a prefix sees every write of a txn, one event per revision.
func TestServerTxnWakesWatchers(t *testing.T) {
	s, _ := newFake16(t, nil)
	ctx := context.Background()
	rev := s.state.revision()
	got := make(chan *WatchResponse, 1)
	go func() {
		resp, err := s.Watch(ctx, &WatchRequest{Key: "t/", Prefix: true, AfterRevision: rev, Wait: time.Minute})
		if err != nil {
			t.Error(err)
		}
		got <- resp
	}()
	if _, err := s.Txn(ctx, &TxnRequest{Writes: []TxnWrite{TxnPut("t/a", "1"), TxnPut("other", "x"), TxnPut("t/b", "2")}}); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-got:
		// The watch may have woken after the whole txn (it is applied
		// under one lock): both events, in order.
		if len(resp.Events) != 2 || resp.Events[0].KV.Key != "t/a" || resp.Events[1].KV.Key != "t/b" ||
			resp.Events[1].KV.ModRevision != resp.Events[0].KV.ModRevision+2 {
			t.Fatalf("events %+v", resp.Events)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not wake")
	}
}

// A command of a kind this version does not know (a newer replica wrote
// it) stops the state machine rather than being skipped, which would make
// this replica's state differ from the newer ones'; a command of a known
// kind that does not decode is still skipped, by every replica alike.
func TestStateStopsOnUnknownCommandKind(t *testing.T) {
	s := newState(testLimits)
	for _, bad := range [][]byte{nil, {byte(rPut)}, append(encodeOp(op{kind: rPut, key: "k"}), 0)} {
		if _, ok := s.Apply(1, bad).(error); !ok {
			t.Fatalf("a corrupt command %v was not refused", bad)
		}
		s.ApplyDiscard(1, bad)
	}
	for _, apply := range []func(uint64, []byte){
		func(i uint64, b []byte) { s.Apply(i, b) },
		s.ApplyDiscard,
	} {
		func() {
			defer func() {
				msg := fmt.Sprint(recover())
				if !strings.Contains(msg, "index 42") || !strings.Contains(msg, "upgrade this replica") {
					t.Fatalf("recovered %q, want a stop naming the index and the upgrade", msg)
				}
			}()
			apply(42, []byte{0x3f, 1, 2, 3}) // kind 63: none this version knows
			t.Fatal("an unknown command kind was skipped")
		}()
	}
	if _, err := decodeOp([]byte{0x3f}); !errors.Is(err, errUnknownKind) || !errors.Is(err, errCorrupt) {
		t.Fatalf("decodeOp of an unknown kind: %v", err)
	}
}
