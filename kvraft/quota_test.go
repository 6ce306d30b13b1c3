package kvraft

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ruaft/ruaft/kvraft/rsm"
	"github.com/ruaft/ruaft/raft"
)

// Quota'd revisioned writes, as a leader at level 2 with a quota proposes
// them.
const (
	qPut    = rPut | opQuota
	qAppend = rAppend | opQuota
	qTxn    = opTxn | opChecked | opRevisioned | opQuota
)

// recount returns the state's size computed from its data and its
// sessions' remembered refusals.
func recount(s *state) uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var n uint64
	for k, r := range s.data {
		n += uint64(len(k)) + uint64(len(r.value)) + stateKeyOverhead
	}
	for _, rec := range s.clients {
		for _, err := range rec.refused {
			var cf *ConditionFailedError
			var tf *txnFailedError
			switch {
			case errors.As(err, &cf) && cf.Current != nil:
				n += uint64(len(cf.Current.Key)) + uint64(len(cf.Current.Value)) + stateKeyOverhead
			case errors.As(err, &tf):
				for _, kv := range tf.current {
					n += uint64(len(kv.Key)) + uint64(len(kv.Value)) + stateKeyOverhead
				}
			}
		}
	}
	return n
}

// The quota rule: a write that would grow the state past the quota it
// carries is refused with ErrNoSpace and changes nothing; a write that
// does not grow the state (a delete, a shorter value, a txn that frees as
// much as it adds) applies even above the quota.
func TestStateQuota(t *testing.T) {
	s := newState(testLimits)
	raiseTo(s, 2)
	size := func() uint64 { return s.sizeBytes() }
	must := func(o op) {
		t.Helper()
		if res := applyOp(s, o); res.refused != nil {
			t.Fatalf("%+v refused: %v", o, res.refused)
		}
	}
	noSpace := func(o op) {
		t.Helper()
		before, rev := size(), s.revision()
		if res := applyOp(s, o); !errors.Is(res.refused, ErrNoSpace) {
			t.Fatalf("%+v: %v, want ErrNoSpace", o, res.refused)
		}
		if size() != before || s.revision() != rev {
			t.Fatalf("a refused write changed the state: size %d -> %d, revision %d -> %d", before, size(), rev, s.revision())
		}
	}
	const q = 3*stateKeyOverhead + 30 // three keys of 10 bytes of name and value
	must(op{kind: qPut, key: "a", value: "123456789", quota: q})
	must(op{kind: qPut, key: "b", value: "123456789", quota: q})
	if got, want := size(), uint64(2*stateKeyOverhead+20); got != want {
		t.Fatalf("size %d, want %d", got, want)
	}
	noSpace(op{kind: qPut, key: "c", value: "1234567890", quota: q}) // 11 bytes: one too many
	must(op{kind: qPut, key: "c", value: "123456789", quota: q})     // exactly at the quota
	if size() != q {
		t.Fatalf("size %d, want the quota %d", size(), q)
	}
	noSpace(op{kind: qPut, key: "d", quota: q})
	noSpace(op{kind: qAppend, key: "a", value: "x", quota: q})
	noSpace(op{kind: qTxn, txn: &txn{writes: []txnWrite{{key: "a", value: "1"}, {key: "e", value: "1"}}}, quota: q})
	// Not growing: a same-size and a shorter value, an empty append, a
	// delete, and a txn that frees what it adds.
	must(op{kind: qPut, key: "a", value: "abcdefghi", quota: q})
	must(op{kind: qPut, key: "b", value: "1", quota: q})
	must(op{kind: qAppend, key: "a", quota: q})
	must(op{kind: qTxn, txn: &txn{writes: []txnWrite{{key: "c", del: true}, {key: "d", value: "12345678"}}}, quota: q})
	must(op{kind: rDelete, key: "d"})
	// A lower quota (another leader's) than the state's size: nothing
	// grows, everything else applies.
	must(op{kind: qPut, key: "x", value: "1", quota: q})
	noSpace(op{kind: qPut, key: "y", value: "1", quota: 10})
	must(op{kind: qPut, key: "x", value: "", quota: 10})
	// No quota carried (a leader without one, or a write from before level
	// 2): never refused.
	must(op{kind: rPut, key: "big", value: strings.Repeat("v", 1000)})
	if size() != recount(s) {
		t.Fatalf("size %d, data says %d", size(), recount(s))
	}
}

// A txn is counted as its writes leave the state, in order: a key written
// twice counts once, as its last write leaves it.
func TestStateQuotaTxnCountsLastWrite(t *testing.T) {
	s := newState(testLimits)
	raiseTo(s, 2)
	applyOp(s, op{kind: rPut, key: "k", value: strings.Repeat("v", 100)})
	before := s.sizeBytes()
	tx := &txn{writes: []txnWrite{{key: "k", value: strings.Repeat("w", 200)}, {key: "k", del: true}, {key: "k", value: "1"}}}
	if got, want := s.txnSizeLocked(tx), before-99; got != want {
		t.Fatalf("txn size %d, want %d", got, want)
	}
	if res := applyOp(s, op{kind: qTxn, txn: tx, quota: 1}); res.refused != nil {
		t.Fatalf("a txn that shrinks the state was refused: %v", res.refused)
	}
}

// A write refused for the quota is remembered in its session: a retry,
// after room was made, gets the same answer and does not apply, before
// and after a snapshot; once acknowledged, a new write may apply.
func TestStateQuotaRefusalRemembered(t *testing.T) {
	s := newState(testLimits)
	raiseTo(s, 2)
	openSession(s, 7)
	const q = 2 * (stateKeyOverhead + 2)
	applyOp(s, op{kind: qPut, key: "a", value: "1", quota: q, id: WriteID{ClientID: 7, Seq: 1, Ack: 1}})
	applyOp(s, op{kind: qPut, key: "b", value: "1", quota: q, id: WriteID{ClientID: 7, Seq: 2, Ack: 2}})
	w := op{kind: qPut, key: "c", value: "1", quota: q, id: WriteID{ClientID: 7, Seq: 3, Ack: 3}}
	if res := applyOp(s, w); !errors.Is(res.refused, ErrNoSpace) {
		t.Fatalf("over the quota: %v", res.refused)
	}
	applyOp(s, op{kind: rDelete, key: "a"})
	for _, st := range []*state{s, restored(t, s)} {
		if res := applyOp(st, w); !errors.Is(res.refused, ErrNoSpace) {
			t.Fatalf("the retry got %v, want the first answer", res.refused)
		}
		if r, _ := st.get("c"); r != nil {
			t.Fatal("the retry of a refused write applied")
		}
		if st.sizeBytes() != recount(st) {
			t.Fatalf("size %d, data says %d", st.sizeBytes(), recount(st))
		}
	}
	next := op{kind: qPut, key: "c", value: "1", quota: q, id: WriteID{ClientID: 7, Seq: 4, Ack: 4}}
	if res := applyOp(s, next); res.refused != nil {
		t.Fatalf("a new write with room: %v", res.refused)
	}
}

// restored returns a new state restored from s's snapshot, which it
// checks encodes the same again.
func restored(t *testing.T, s *state) *state {
	t.Helper()
	snap := s.Snapshot()
	st := newState(testLimits)
	if err := st.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if string(st.Snapshot()) != string(snap) {
		t.Fatal("the restored state snapshots differently")
	}
	return st
}

// The size the quota counts follows every way the data changes: puts,
// appends, deletes, txns, lease revocations and writes from old logs.
func TestStateSizeFollowsData(t *testing.T) {
	s := newState(testLimits)
	raiseTo(s, 2)
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"a", "bb", "ccc", "dddd", "e/1", "e/2"}
	val := func() string { return strings.Repeat("v", rng.IntN(40)) }
	for i := range 3000 {
		k := keys[rng.IntN(len(keys))]
		switch rng.IntN(9) {
		case 0, 1:
			applyOp(s, op{kind: rPut, key: k, value: val()})
		case 2:
			applyOp(s, op{kind: qPut, key: k, value: val(), quota: uint64(rng.IntN(600))})
		case 3:
			applyOp(s, op{kind: rAppend, key: k, value: val(), limit: 100})
		case 4:
			applyOp(s, op{kind: rDelete, key: k})
		case 5:
			applyOp(s, op{kind: opPut, key: k, value: val()}) // a write from an old log
		case 6:
			applyOp(s, op{kind: opDelete, key: k})
		case 7:
			other := keys[rng.IntN(len(keys))]
			applyOp(s, op{kind: qTxn, quota: uint64(rng.IntN(600)), txn: &txn{writes: []txnWrite{
				{key: k, value: val()}, {key: other, del: rng.IntN(2) == 0, value: val()}}}})
		case 8:
			id := uint64(rng.IntN(3) + 1)
			applyOp(s, op{kind: opLeaseGrant, lease: id, ttl: 60_000, limit: 10})
			applyOp(s, op{kind: rPut, key: k, value: val(), lease: id})
			if rng.IntN(3) == 0 {
				applyOp(s, op{kind: opLeaseRevoke, lease: id})
			}
		}
		if got, want := s.sizeBytes(), recount(s); got != want {
			t.Fatalf("after step %d: size %d, data says %d", i, got, want)
		}
	}
	if st := restored(t, s); st.sizeBytes() != s.sizeBytes() {
		t.Fatalf("restored size %d, want %d", st.sizeBytes(), s.sizeBytes())
	}
}

// The quota rides in the log entry of a Put, Append or Txn; a kind the
// flag does not go with is unknown (a newer version's).
func TestCodecQuota(t *testing.T) {
	for _, o := range []op{
		{kind: qPut, id: WriteID{ClientID: 1, Seq: 2, Ack: 2}, key: "k", value: "v", lease: 3, cond: condition{kind: condVersion, version: 4}, quota: 1 << 40},
		{kind: qAppend, key: "k", value: "v", limit: 9, quota: 77},
		{kind: qTxn, txn: &txn{writes: []txnWrite{{key: "k", value: "v"}}}, quota: 5},
	} {
		got, err := decodeOp(encodeOp(o))
		if err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		if got.kind != o.kind || got.quota != o.quota || got.limit != o.limit || got.lease != o.lease || got.cond != o.cond || got.key != o.key {
			t.Fatalf("decoded %+v, want %+v", got, o)
		}
	}
	for _, k := range []opKind{rDelete | opQuota, opLeaseGrant | opQuota, opPut | opChecked | opQuota, opLevel | opQuota} {
		if _, err := decodeOp(encodeOp(op{kind: k, key: "k", quota: 1})); !errors.Is(err, errUnknownKind) {
			t.Errorf("kind %#x: %v, want errUnknownKind", k, err)
		}
	}
}

// startLevelServer starts a server on a fake raft whose leader hears
// every member support ApplyLevel, and waits until its state is at that
// level; the server is killed when the test ends.
func startLevelServer(t *testing.T, cfg Config) (*Server, *fakeRaft) {
	t.Helper()
	var fr *fakeRaft
	s, err := NewServer(cfg, func(app raft.Application) (rsm.Raft, error) {
		fr = newFakeRaft(app)
		return levelFakeRaft{fr}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Kill() })
	deadline := time.Now().Add(10 * time.Second)
	for s.ApplyLevel() < ApplyLevel {
		if time.Now().After(deadline) {
			t.Fatalf("level %d after 10s, want %d", s.ApplyLevel(), ApplyLevel)
		}
		time.Sleep(time.Millisecond)
	}
	return s, fr
}

// quotaEntries counts the entries in f's log that carry a quota.
func quotaEntries(f *fakeRaft) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, m := range f.log {
		if o, err := decodeOp(m.Command); err == nil && o.kind&opQuota != 0 {
			n++
		}
	}
	return n
}

// A server with a quota records it in its writes once the state is at
// level 2, and answers a write over it with ErrNoSpace naming the key
// and the quota; deletes go on. Below level 2 no write carries it.
func TestServerQuota(t *testing.T) {
	cfg := DefaultConfig(0)
	cfg.LeaseTick = time.Millisecond
	cfg.MaxStateBytes = 2 * (stateKeyOverhead + 10)
	t.Run("level 0", func(t *testing.T) {
		s, fr, err := newFakeServerConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Kill()
		openSessionID(t, s, 5)
		for i := range 5 {
			_, err := s.Put(context.Background(), &PutRequest{Key: "key" + string(rune('a'+i)), Value: "value",
				Write: WriteID{ClientID: 5, Seq: uint64(i + 1)}})
			if err != nil {
				t.Fatalf("put %d at level 0: %v", i, err)
			}
		}
		if n := quotaEntries(fr); n != 0 {
			t.Fatalf("%d entries carry a quota at level 0", n)
		}
	})
	t.Run("level 2", func(t *testing.T) {
		s, fr := startLevelServer(t, cfg)
		openSessionID(t, s, 5)
		ctx := context.Background()
		put := func(seq uint64, key string) error {
			_, err := s.Put(ctx, &PutRequest{Key: key, Value: "value", Write: WriteID{ClientID: 5, Seq: seq}})
			return err
		}
		if err := put(1, "key1"); err != nil {
			t.Fatal(err)
		}
		if err := put(2, "key2"); err != nil {
			t.Fatal(err)
		}
		err := put(3, "key3")
		if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), `"key3"`) || !strings.Contains(err.Error(), "quota is 148 bytes") {
			t.Fatalf("over the quota: %v", err)
		}
		if size, quota := s.StateBytes(); size != 2*(stateKeyOverhead+9) || quota != 148 {
			t.Fatalf("StateBytes %d, %d", size, quota)
		}
		// The retry is answered from the session, the same.
		if err := put(3, "key3"); !errors.Is(err, ErrNoSpace) {
			t.Fatalf("the retry: %v", err)
		}
		if _, err := s.Delete(ctx, &DeleteRequest{Key: "key1", Write: WriteID{ClientID: 5, Seq: 4}}); err != nil {
			t.Fatalf("delete over the quota: %v", err)
		}
		if err := put(5, "key3"); err != nil {
			t.Fatalf("after the delete: %v", err)
		}
		if n := quotaEntries(fr); n != 4 {
			t.Fatalf("%d entries carry the quota, want the 4 puts", n)
		}
	})
}

func TestConfigQuotaNotNegative(t *testing.T) {
	cfg := DefaultConfig(0)
	cfg.MaxStateBytes = -1
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "MaxStateBytes") {
		t.Fatalf("Validate: %v", err)
	}
}

// A session's remembered refusals of writes against a large key share the
// key's value instead of holding a copy each: 64 failed conditional puts
// against a 1 MiB value hold it once (before, 64 MiB).
func TestRememberedRefusalsShareTheValue(t *testing.T) {
	s := newState(testLimits)
	raiseTo(s, 2)
	openSession(s, 7)
	big := strings.Repeat("v", 1<<20)
	applyOp(s, op{kind: rPut, key: "big", value: big})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for seq := uint64(1); seq <= 64; seq++ {
		res := applyOp(s, op{kind: rPut, key: "big", value: "x", cond: condition{kind: condAbsent},
			id: WriteID{ClientID: 7, Seq: seq, Ack: 1}})
		var cf *ConditionFailedError
		if !errors.As(res.refused, &cf) || cf.Current == nil || cf.Current.Value != big {
			t.Fatalf("write %d: %v", seq, res.refused)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 8<<20 {
		t.Fatalf("64 remembered refusals against a 1 MiB value grew the heap by %d MiB", grew>>20)
	}
	// Their answers are still the caller's to change, and right after a
	// snapshot.
	st := restored(t, s)
	res := applyOp(st, op{kind: rPut, key: "big", value: "x", cond: condition{kind: condAbsent},
		id: WriteID{ClientID: 7, Seq: 5, Ack: 1}})
	var cf *ConditionFailedError
	if !errors.As(res.refused, &cf) || cf.Current.Value != big {
		t.Fatalf("after a snapshot: %v", res.refused)
	}
	runtime.KeepAlive(s)
}

// A remembered refusal's answer counts in the state's size (the key and
// value it names), until the client acknowledges it or its session goes;
// a conditional write whose answer would not fit under the quota is
// refused for the quota instead.
func TestStateQuotaCountsRememberedAnswers(t *testing.T) {
	s := newState(testLimits)
	raiseTo(s, 2)
	openSession(s, 7)
	value := strings.Repeat("v", 100)
	entry := uint64(1 + 100 + stateKeyOverhead)
	const q = 1000
	applyOp(s, op{kind: qPut, key: "k", value: value, quota: q, id: WriteID{ClientID: 7, Seq: 1, Ack: 1}})
	cas := func(seq uint64) writeResult {
		return applyOp(s, op{kind: qPut, key: "k", value: "x", cond: condition{kind: condAbsent}, quota: q,
			id: WriteID{ClientID: 7, Seq: seq, Ack: 2}})
	}
	// Each failed CAS names the 100-byte value: five fit in the quota with
	// the key itself (6 x 165 = 990), the sixth does not.
	for seq := uint64(2); seq <= 6; seq++ {
		if res := cas(seq); !errors.Is(res.refused, ErrConditionFailed) {
			t.Fatalf("CAS %d: %v", seq, res.refused)
		}
		if got, want := s.sizeBytes(), (seq)*entry; got != want {
			t.Fatalf("after CAS %d: size %d, want %d", seq, got, want)
		}
	}
	if res := cas(7); !errors.Is(res.refused, ErrNoSpace) {
		t.Fatalf("the CAS whose answer does not fit: %v", res.refused)
	}
	if res := cas(7); !errors.Is(res.refused, ErrNoSpace) || !res.remembered {
		t.Fatalf("its retry: %v (remembered %v)", res.refused, res.remembered)
	}
	if got := s.sizeBytes(); got != 6*entry || got != recount(s) {
		t.Fatalf("size %d, want %d (recount %d)", got, 6*entry, recount(s))
	}
	if st := restored(t, s); st.sizeBytes() != s.sizeBytes() {
		t.Fatalf("restored size %d, want %d", st.sizeBytes(), s.sizeBytes())
	}
	// Acknowledging frees them.
	applyOp(s, op{kind: rDelete, key: "other", id: WriteID{ClientID: 7, Seq: 8, Ack: 8}})
	if got := s.sizeBytes(); got != entry {
		t.Fatalf("after the ack: size %d, want %d", got, entry)
	}
	// So does the session's end.
	for seq := uint64(9); seq <= 11; seq++ {
		cas(seq)
	}
	if s.sizeBytes() == entry {
		t.Fatal("the new refusals were not counted")
	}
	s.Apply(0, encodeOp(op{kind: opOpenSession, id: WriteID{ClientID: 8}, limit: 1})) // evicts session 7
	if got := s.sizeBytes(); got != entry || got != recount(s) {
		t.Fatalf("after the session's eviction: size %d, want %d", got, entry)
	}
}
