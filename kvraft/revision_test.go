package kvraft

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The revisioned ops of a leader that keeps revisions.
const (
	rPut    = opPut | opChecked | opRevisioned
	rAppend = opAppend | opChecked | opRevisioned
	rDelete = opDelete | opChecked | opRevisioned
)

func kvOf(t *testing.T, s *state, key string) KeyValue {
	t.Helper()
	r, _ := s.get(key)
	if r == nil {
		t.Fatalf("%q is absent", key)
	}
	return *r.keyValue(key)
}

func TestStateRevisionsAndVersions(t *testing.T) {
	s := newState(testLimits)
	applyOp(s, op{kind: rPut, key: "a", value: "1"})
	applyOp(s, op{kind: rPut, key: "b", value: "x"})
	applyOp(s, op{kind: rPut, key: "a", value: "2"})
	res := applyOp(s, op{kind: rAppend, key: "a", value: "3"})
	if res.rev != 4 || s.rev != 4 {
		t.Fatalf("append result rev %d, store %d; want 4", res.rev, s.rev)
	}
	if got, want := kvOf(t, s, "a"), (KeyValue{Key: "a", Value: "23", CreateRevision: 1, ModRevision: 4, Version: 3}); got != want {
		t.Fatalf("a = %+v, want %+v", got, want)
	}
	// A delete of a missing key changes nothing and takes no revision.
	if res := applyOp(s, op{kind: rDelete, key: "zz"}); res.existed || res.rev != 4 || s.rev != 4 {
		t.Fatalf("delete of a missing key: %+v, store rev %d", res, s.rev)
	}
	if res := applyOp(s, op{kind: rDelete, key: "a"}); !res.existed || res.rev != 5 {
		t.Fatalf("delete: %+v", res)
	}
	// Re-created: a new create revision, version 1.
	applyOp(s, op{kind: rPut, key: "a", value: "new"})
	if got, want := kvOf(t, s, "a"), (KeyValue{Key: "a", Value: "new", CreateRevision: 6, ModRevision: 6, Version: 1}); got != want {
		t.Fatalf("a = %+v, want %+v", got, want)
	}
	// One event per revision, each with the previous record.
	if len(s.events) != 6 || s.compactRev != 0 {
		t.Fatalf("%d events, compact %d", len(s.events), s.compactRev)
	}
	if e := s.events[4]; !e.deleted || e.key != "a" || string(e.prev.value) != "23" || e.kv.mod != 5 {
		t.Fatalf("event 5: %+v", e)
	}
}

func TestStateConditions(t *testing.T) {
	s := newState(testLimits)
	openSession(s, 7)
	seq := uint64(0)
	put := func(cond condition, v string) writeResult {
		seq++
		return applyOp(s, op{kind: rPut, id: WriteID{ClientID: 7, Seq: seq}, key: "k", value: v, cond: cond})
	}
	mustFail := func(res writeResult, wantCur *KeyValue) {
		t.Helper()
		var cf *ConditionFailedError
		if !errors.As(res.refused, &cf) || !errors.Is(res.refused, ErrConditionFailed) {
			t.Fatalf("refused = %v, want a failed condition", res.refused)
		}
		if cf.Revision != s.rev || (cf.Current == nil) != (wantCur == nil) || wantCur != nil && *cf.Current != *wantCur {
			t.Fatalf("failure %+v (current %+v), want rev %d current %+v", cf, cf.Current, s.rev, wantCur)
		}
	}
	mustFail(put(condition{kind: condModRevision, modRev: 0}, "x"), nil)
	mustFail(put(condition{kind: condValue, value: ""}, "x"), nil)
	mustFail(put(condition{kind: condVersion, version: 1}, "x"), nil)
	if s.rev != 0 {
		t.Fatalf("failed conditions took revisions: %d", s.rev)
	}
	if res := put(condition{kind: condAbsent}, "v1"); res.refused != nil || res.rev != 1 {
		t.Fatalf("create: %+v", res)
	}
	cur := kvOf(t, s, "k")
	mustFail(put(condition{kind: condAbsent}, "x"), &cur)
	mustFail(put(condition{kind: condModRevision, modRev: 2}, "x"), &cur)
	mustFail(put(condition{kind: condVersion, version: 0}, "x"), &cur)
	mustFail(put(condition{kind: condValue, value: "v2"}, "x"), &cur)
	for _, c := range []condition{{kind: condModRevision, modRev: 1}, {kind: condVersion, version: 2}, {kind: condValue, value: "v3"}} {
		if res := put(c, fmt.Sprint("v", s.rev+1)); res.refused != nil {
			t.Fatalf("%+v: %v", c, res.refused)
		}
	}
	// A failed condition is not remembered: a retry of the same write
	// evaluates it again (nothing was applied the first time).
	id := WriteID{ClientID: 7, Seq: 100}
	cond := condition{kind: condVersion, version: 5}
	mustFail(applyOp(s, op{kind: rPut, id: id, key: "k", value: "late", cond: cond}), ptr(kvOf(t, s, "k")))
	applyOp(s, op{kind: rPut, key: "k", value: "bump"}) // version 5 now
	if res := applyOp(s, op{kind: rPut, id: id, key: "k", value: "late", cond: cond}); res.refused != nil {
		t.Fatalf("retry: %v", res.refused)
	}
	// ...and a success is: the retry gets the same revision, applied once.
	rev := s.rev
	if res := applyOp(s, op{kind: rPut, id: id, key: "k", value: "late", cond: cond}); res.refused != nil || res.rev != rev || s.rev != rev {
		t.Fatalf("duplicate: %+v, store rev %d, want %d", res, s.rev, rev)
	}
	// Conditional delete.
	if res := applyOp(s, op{kind: rDelete, key: "k", cond: condition{kind: condModRevision, modRev: 1}}); res.refused == nil {
		t.Fatal("delete on an old mod revision applied")
	}
	if res := applyOp(s, op{kind: rDelete, key: "k", cond: condition{kind: condModRevision, modRev: rev}}); res.refused != nil || !res.existed {
		t.Fatalf("delete: %+v", res)
	}
}

func ptr[T any](v T) *T { return &v }

func openSession(s *state, id uint64) {
	s.Apply(0, encodeOp(op{kind: opOpenSession, id: WriteID{ClientID: id}, limit: 100}))
}

// randomStore applies n random revisioned writes over a few keys and
// returns the store's contents after each revision (index = revision).
func randomStore(t *testing.T, s *state, rng *rand.Rand, n int) []map[string]KeyValue {
	t.Helper()
	history := []map[string]KeyValue{{}}
	for range n {
		key := fmt.Sprintf("%c/%d", "abc"[rng.IntN(3)], rng.IntN(6))
		switch r := rng.IntN(10); {
		case r < 5:
			applyOp(s, op{kind: rPut, key: key, value: strings.Repeat("v", rng.IntN(20))})
		case r < 7:
			applyOp(s, op{kind: rAppend, key: key, value: "+"})
		default:
			applyOp(s, op{kind: rDelete, key: key})
		}
		for uint64(len(history)) <= s.rev {
			snap := make(map[string]KeyValue, len(s.data))
			for k := range s.data {
				snap[k] = kvOf(t, s, k)
			}
			history = append(history, snap)
		}
	}
	return history
}

// listAll lists q page by page at one revision.
func listAll(t *testing.T, s *state, q listQuery) ([]KeyValue, uint64) {
	t.Helper()
	var all []KeyValue
	for {
		kvs, more, at, _, err := s.list(q)
		if err != nil {
			t.Fatalf("list %+v: %v", q, err)
		}
		if q.rev != 0 && at != q.rev {
			t.Fatalf("page at %d, asked %d", at, q.rev)
		}
		all = append(all, kvs...)
		if !more {
			return all, at
		}
		if len(kvs) == 0 {
			t.Fatal("empty page with more set")
		}
		q.after, q.rev = kvs[len(kvs)-1].Key, at
	}
}

// A listing at any retained revision, paged at random, is the store as it
// was at that revision, in order, with the right metadata.
func TestStateListAtRevisions(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := newState(stateLimits{historyEvents: 150, historyBytes: 1 << 20})
	history := randomStore(t, s, rng, 400)
	if s.compactRev == 0 {
		t.Fatal("the history was never trimmed")
	}
	for range 200 {
		rev := s.compactRev + rng.Uint64N(s.rev-s.compactRev+1)
		prefix := []string{"", "a/", "b/", "c/1"}[rng.IntN(4)]
		q := listQuery{prefix: prefix, limit: 1 + rng.IntN(4), maxBytes: 1 << 20, rev: rev}
		got, at := listAll(t, s, q)
		var want []KeyValue
		for _, k := range slices.Sorted(maps.Keys(history[at])) {
			if strings.HasPrefix(k, prefix) {
				want = append(want, history[at][k])
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("list %q at %d:\n got %v\nwant %v", prefix, at, got, want)
		}
	}
	if _, _, _, _, err := s.list(listQuery{limit: 1, rev: s.compactRev - 1}); !errors.Is(err, ErrCompacted) {
		t.Fatalf("list below the compact revision: %v", err)
	}
	if _, _, _, _, err := s.list(listQuery{limit: 1, rev: s.rev + 1}); !errors.Is(err, ErrFutureRevision) {
		t.Fatalf("list past the store revision: %v", err)
	}
}

func TestStateListLimitsAndKeysOnly(t *testing.T) {
	s := newState(testLimits)
	for i := range 10 {
		applyOp(s, op{kind: rPut, key: fmt.Sprintf("k%d", i), value: strings.Repeat("x", 100)})
	}
	kvs, more, _, _, _ := s.list(listQuery{limit: 100, maxBytes: 250})
	if len(kvs) != 3 || !more {
		t.Fatalf("byte cap: %d keys, more %v; want 3 and more", len(kvs), more)
	}
	kvs, more, _, _, _ = s.list(listQuery{limit: 100, maxBytes: 1})
	if len(kvs) != 1 || !more {
		t.Fatalf("tiny byte cap: %d keys, more %v; want one key", len(kvs), more)
	}
	kvs, more, _, _, _ = s.list(listQuery{limit: 10, maxBytes: 1 << 20, keysOnly: true})
	if len(kvs) != 10 || more || kvs[9].Value != "" || kvs[9].Version != 1 {
		t.Fatalf("keys only: %v, more %v", kvs, more)
	}
	kvs, _, _, _, _ = s.list(listQuery{after: "k7", limit: 10, maxBytes: 1 << 20})
	if len(kvs) != 2 || kvs[0].Key != "k8" {
		t.Fatalf("after k7: %v", kvs)
	}
}

func TestStateWatchScan(t *testing.T) {
	s := newState(stateLimits{historyEvents: 5, historyBytes: 1 << 20})
	for i := range 8 {
		applyOp(s, op{kind: rPut, key: fmt.Sprintf("p/%d", i%2), value: fmt.Sprint(i)})
	}
	// Revisions 4..8 are retained.
	if res, _ := s.watch(watchQuery{key: "p/", prefix: true, after: 2, limit: 10}, nil); !res.compacted || res.compactRev != 3 {
		t.Fatalf("after 2: %+v", res)
	}
	res, _ := s.watch(watchQuery{key: "p/1", after: 3, limit: 10, prevKV: true}, nil)
	if len(res.events) != 3 || res.next != 8 || res.events[0].KV.ModRevision != 4 || res.events[0].PrevKV.Value != "1" {
		t.Fatalf("p/1 after 3: %+v", res)
	}
	res, _ = s.watch(watchQuery{key: "p/", prefix: true, after: 3, limit: 2}, nil)
	if len(res.events) != 2 || res.next != 5 {
		t.Fatalf("cut at 2 events: %+v", res)
	}
	res, _ = s.watch(watchQuery{key: "p/", prefix: true, after: 50, limit: 2}, nil)
	if len(res.events) != 0 || res.next != 50 {
		t.Fatalf("after the future revision 50: %+v", res)
	}
	applyOp(s, op{kind: rDelete, key: "p/0"})
	res, _ = s.watch(watchQuery{key: "p/0", after: 8, limit: 2, prevKV: true}, nil)
	if len(res.events) != 1 || res.events[0].Type != EventDelete || res.events[0].KV != (KeyValue{Key: "p/0", ModRevision: 9}) ||
		res.events[0].PrevKV.Value != "6" {
		t.Fatalf("delete event: %+v", res)
	}
	// A waiter registered by an empty scan is woken by a matching event
	// only.
	w := newWaiter("q", false)
	if _, registered := s.watch(watchQuery{key: "q", after: s.rev, limit: 1}, w); !registered {
		t.Fatal("not registered")
	}
	applyOp(s, op{kind: rPut, key: "qq", value: "no"})
	select {
	case <-w.ch:
		t.Fatal("woken by another key")
	default:
	}
	applyOp(s, op{kind: rPut, key: "q", value: "yes"})
	select {
	case <-w.ch:
	default:
		t.Fatal("not woken")
	}
}

func TestStateHistoryBytesBound(t *testing.T) {
	s := newState(stateLimits{historyEvents: 1000, historyBytes: 4096})
	for range 100 {
		applyOp(s, op{kind: rPut, key: "k", value: strings.Repeat("v", 500)})
	}
	if s.bytes > 4096 || len(s.events) == 0 || s.compactRev+uint64(len(s.events)) != s.rev {
		t.Fatalf("history of %d bytes, %d events, compact %d, rev %d", s.bytes, len(s.events), s.compactRev, s.rev)
	}
	off := newState(stateLimits{})
	applyOp(off, op{kind: rPut, key: "k", value: "v"})
	if len(off.events) != 0 || off.compactRev != 1 {
		t.Fatalf("history off: %d events, compact %d", len(off.events), off.compactRev)
	}
}

// A write whose events alone pass the byte bound (an overwrite of a large
// value counts both values; a transaction or an ended lease makes several
// events) is kept until the next write: a watcher that had seen every
// change before it gets its events, not "compacted". Older watchers are
// still told.
func TestStateHistoryBytesBoundSparesTheLastWrite(t *testing.T) {
	s := newState(stateLimits{historyEvents: 1000, historyBytes: 4096})
	big := strings.Repeat("v", 3000)
	caughtUp := func(what string, after uint64, events int) {
		t.Helper()
		res, _ := s.watch(watchQuery{key: "", prefix: true, after: after, limit: 100}, nil)
		if res.compacted || len(res.events) != events || res.next != s.rev {
			t.Fatalf("%s: a watcher up to date at %d got %+v (compact revision %d, rev %d)", what, after, res, s.compactRev, s.rev)
		}
	}
	applyOp(s, op{kind: rPut, key: "k", value: big})
	rev := s.rev
	applyOp(s, op{kind: rPut, key: "k", value: big}) // 6000+ bytes with its previous value
	caughtUp("overwrite", rev, 1)
	if res, _ := s.watch(watchQuery{key: "k", after: rev - 1, limit: 10}, nil); !res.compacted {
		t.Fatalf("a watcher before the dropped event was not told: %+v", res)
	}
	rev = s.rev
	applyOp(s, op{kind: opTxn | opChecked | opRevisioned, txn: &txn{writes: []txnWrite{{key: "a", value: big}, {key: "b", value: big}, {key: "k", del: true}}}})
	caughtUp("transaction", rev, 3)
	applyOp(s, op{kind: opLeaseGrant, lease: 7, ttl: 5000, limit: 10})
	for _, k := range []string{"a", "b", "c"} {
		applyOp(s, op{kind: rPut, key: k, value: big, lease: 7})
	}
	rev = s.rev
	applyOp(s, op{kind: opLeaseExpire, lease: 7})
	caughtUp("lease expiry", rev, 3)
	// The next write drops them: the bound holds but for the newest write.
	applyOp(s, op{kind: rPut, key: "small", value: "1"})
	if s.bytes > 4096 || s.compactRev+uint64(len(s.events)) != s.rev {
		t.Fatalf("after a small write: %d events of %d bytes, compact revision %d, rev %d", len(s.events), s.bytes, s.compactRev, s.rev)
	}
	// A restored history keeps its newest event over the bound too.
	applyOp(s, op{kind: rPut, key: "k", value: big})
	applyOp(s, op{kind: rPut, key: "k", value: big})
	r := newState(stateLimits{historyEvents: 1000, historyBytes: 4096})
	if err := r.Restore(s.Snapshot()); err != nil {
		t.Fatal(err)
	}
	if r.compactRev != r.rev-1 || len(r.events) != 1 {
		t.Fatalf("restored: compact revision %d, rev %d, %d events", r.compactRev, r.rev, len(r.events))
	}
}

func TestStateLeases(t *testing.T) {
	s := newState(testLimits)
	grant := func(id uint64) writeResult {
		return applyOp(s, op{kind: opLeaseGrant, lease: id, ttl: 5000, limit: 2})
	}
	if res := grant(11); res.refused != nil || res.lease != 11 {
		t.Fatalf("grant: %+v", res)
	}
	if res := grant(11); !errors.Is(res.refused, errLeaseIDTaken) {
		t.Fatalf("grant of a taken id: %v", res.refused)
	}
	grant(12)
	if res := grant(13); !errors.Is(res.refused, ErrTooManyLeases) {
		t.Fatalf("third lease with a limit of 2: %v", res.refused)
	}
	if res := applyOp(s, op{kind: rPut, key: "x", value: "1", lease: 99}); !errors.Is(res.refused, ErrLeaseNotFound) || s.rev != 0 {
		t.Fatalf("put with a missing lease: %v", res.refused)
	}
	for _, k := range []string{"b", "a", "c"} {
		applyOp(s, op{kind: rPut, key: k, value: "v", lease: 11})
	}
	applyOp(s, op{kind: rPut, key: "c", value: "detached"}) // no lease: detached
	applyOp(s, op{kind: rPut, key: "d", value: "other", lease: 12})
	rev := s.rev
	if res := applyOp(s, op{kind: opLeaseExpire, lease: 11}); !res.existed {
		t.Fatal("expire: the lease did not exist")
	}
	// a and b deleted, in key order, one revision each.
	if s.rev != rev+2 || s.events[len(s.events)-2].key != "a" || s.events[len(s.events)-1].key != "b" {
		t.Fatalf("rev %d (from %d), events %v", s.rev, rev, s.events[len(s.events)-2:])
	}
	if _, ok := s.data["c"]; !ok || len(s.leases) != 1 {
		t.Fatalf("c should stay and lease 12 only remain: %v", s.leases)
	}
	if res := applyOp(s, op{kind: opLeaseRevoke, lease: 11}); res.existed {
		t.Fatal("revoke of an ended lease: existed")
	}
	applyOp(s, op{kind: rDelete, key: "d"})
	if l := s.leases[12]; len(l.keys) != 0 {
		t.Fatalf("a deleted key stayed attached: %v", l.keys)
	}
}

// Everything the state holds survives a snapshot, and equal states encode
// to equal bytes.
func TestStateSnapshotRoundTripEverything(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	s := newState(stateLimits{historyEvents: 50, historyBytes: 1 << 20})
	openSession(s, 5)
	applyOp(s, op{kind: opLeaseGrant, id: WriteID{ClientID: 5, Seq: 1}, lease: 77, ttl: 3000, limit: 10})
	applyOp(s, op{kind: rPut, id: WriteID{ClientID: 5, Seq: 2}, key: "l/1", value: "leased", lease: 77})
	randomStore(t, s, rng, 120)
	snap := s.Snapshot()
	r := newState(stateLimits{historyEvents: 50, historyBytes: 1 << 20})
	applyOp(r, op{kind: rPut, key: "gone", value: "x"})
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.Snapshot(), snap) {
		t.Fatal("restored state encodes differently")
	}
	if r.rev != s.rev || r.compactRev != s.compactRev || len(r.events) != len(s.events) || r.leases[77] == nil ||
		len(r.leases[77].keys) != len(s.leases[77].keys) || r.clients[5].done[1].lease != 77 {
		t.Fatalf("restored: rev %d/%d compact %d/%d events %d/%d leases %v", r.rev, s.rev, r.compactRev, s.compactRev,
			len(r.events), len(s.events), r.leases)
	}
	for rev := s.compactRev; rev <= s.rev; rev += 7 {
		a, _ := listAll(t, s, listQuery{limit: 3, maxBytes: 1 << 20, rev: rev})
		b, _ := listAll(t, r, listQuery{limit: 3, maxBytes: 1 << 20, rev: rev})
		if !slices.Equal(a, b) {
			t.Fatalf("list at %d differs after restore", rev)
		}
		wa, _ := s.watch(watchQuery{key: "", prefix: true, after: rev, limit: 1000, prevKV: true}, nil)
		wb, _ := r.watch(watchQuery{key: "", prefix: true, after: rev, limit: 1000, prevKV: true}, nil)
		if !reflect.DeepEqual(wa, wb) {
			t.Fatalf("watch after %d differs after restore", rev)
		}
	}
	// Both go on the same way.
	applyOp(s, op{kind: opLeaseExpire, lease: 77})
	applyOp(r, op{kind: opLeaseExpire, lease: 77})
	if !bytes.Equal(r.Snapshot(), s.Snapshot()) {
		t.Fatal("states diverge after the same command")
	}
	for _, bad := range [][]byte{snap[:len(snap)-1], append(slices.Clone(snap), 0), {9}} {
		if err := r.ValidateSnapshot(bad); err == nil {
			t.Fatalf("a corrupt snapshot (%d bytes) validated", len(bad))
		}
	}
}

// A version-2 snapshot (before revisions) still restores: keys get create
// and mod revision 0 and version 1, as replaying the writes of that era
// gives, so a replica restoring the old snapshot and one replaying the old
// log agree; new writes then take revisions from 1.
func TestStateDecodeV2Snapshot(t *testing.T) {
	// Version 2: version, clock, keys, clients (id, floor, lastUsed,
	// results (seq, existed)).
	v2 := []byte{snapshotVersion2, 4, 2, 1, 'a', 1, '1', 1, 'b', 2, 'x', 'y', 1, 9, 3, 4, 1, 3, 1}
	r := newState(testLimits)
	if err := r.Restore(v2); err != nil {
		t.Fatal(err)
	}
	if got := kvOf(t, r, "b"); got != (KeyValue{Key: "b", Value: "xy", Version: 1}) || r.rev != 0 || r.clock != 2 {
		t.Fatalf("b = %+v, rev %d, clock %d", got, r.rev, r.clock)
	}
	if d, ok := r.clients[9].done[3]; !ok || !d.existed {
		t.Fatalf("client 9: %+v", r.clients[9])
	}
	// The same writes replayed from an old log (without opRevisioned).
	replay := newState(testLimits)
	replay.Apply(0, encodeOp(op{kind: opTick, stamp: 2, limit: 1 << 40}))
	applyOp(replay, op{kind: opPut, key: "a", value: "1"})
	applyOp(replay, op{kind: opPut, key: "b", value: "x"})
	applyOp(replay, op{kind: opAppend, key: "b", value: "y"})
	for _, st := range []*state{r, replay} {
		applyOp(st, op{kind: rPut, key: "a", value: "2"})
		if got := kvOf(t, st, "a"); got != (KeyValue{Key: "a", Value: "2", CreateRevision: 0, ModRevision: 1, Version: 2}) {
			t.Fatalf("a after an upgrade write: %+v", got)
		}
	}
	if !reflect.DeepEqual(r.data, replay.data) || r.rev != replay.rev || !reflect.DeepEqual(r.events, replay.events) {
		t.Fatal("restored and replayed states differ")
	}
}

func TestOpEncodingRoundTrip(t *testing.T) {
	for _, o := range []op{
		{kind: rPut, id: WriteID{ClientID: 1, Seq: 2, Ack: 1}, key: "k", value: "v", lease: 9, cond: condition{kind: condValue, value: "old"}},
		{kind: rPut, key: "k", cond: condition{kind: condModRevision, modRev: 77}},
		{kind: rDelete, key: "k", cond: condition{kind: condVersion, version: 3}},
		{kind: rAppend, key: "k", value: "v", limit: 10},
		{kind: opLeaseGrant, id: WriteID{ClientID: 1, Seq: 3, Ack: 3}, lease: 5, ttl: 1000, limit: 7},
		{kind: opLeaseRevoke, lease: 5},
		{kind: opLeaseExpire, lease: 5},
	} {
		got, err := decodeOp(encodeOp(o))
		if err != nil || got != o {
			t.Fatalf("%+v decoded as %+v, %v", o, got, err)
		}
	}
	bad := encodeOp(op{kind: rPut, key: "k", cond: condition{kind: condAbsent}})
	bad[len(bad)-1] = byte(condKinds)
	if _, err := decodeOp(bad); !errors.Is(err, errCorrupt) {
		t.Fatalf("unknown condition kind: %v", err)
	}
}

// isWoken reports whether w was woken (its channel closed).
func isWoken(w *waiter) bool {
	select {
	case <-w.ch:
		return true
	default:
		return false
	}
}

func TestWatchHub(t *testing.T) {
	h := newWatchHub()
	a1, a2, b, pre, all := newWaiter("a", false), newWaiter("a", false), newWaiter("b", false), newWaiter("a", true), newWaiter("", true)
	for _, w := range []*waiter{a1, a2, b, pre, all} {
		h.add(w)
	}
	h.remove(a2)
	h.notify("ab", 1)
	if isWoken(a1) || isWoken(a2) || isWoken(b) || !isWoken(pre) || !isWoken(all) {
		t.Fatal("notify(ab) woke the wrong waiters")
	}
	h.notify("a", 1)
	if !isWoken(a1) || isWoken(a2) || isWoken(b) {
		t.Fatal("notify(a) woke the wrong waiters")
	}
	h.remove(a1) // after it was woken: harmless
	h.notifyAll()
	if !isWoken(b) || isWoken(a2) || len(h.keys) != 0 || len(h.prefixes) != 0 || len(h.prefixLens) != 0 {
		t.Fatal("notifyAll left waiters")
	}
}

// TestWatchHubPrefixIndex: prefix watchers are found by the prefixes of the
// changed key, whatever their number: each is woken exactly when the key
// starts with its prefix, prefixes of equal length do not wake each other,
// and the index keeps no empty entries once its watchers are woken or gone.
func TestWatchHubPrefixIndex(t *testing.T) {
	h := newWatchHub()
	var users, user1, usa, orders []*waiter
	for range 100 {
		u, u1, us, o := newWaiter("user/", true), newWaiter("user/1", true), newWaiter("usa", true), newWaiter("order/", true)
		users, user1, usa, orders = append(users, u), append(user1, u1), append(usa, us), append(orders, o)
		for _, w := range []*waiter{u, u1, us, o} {
			h.add(w)
		}
	}
	gone := newWaiter("user/", true)
	h.add(gone)
	h.remove(gone)
	if len(h.prefixes) != 4 || h.prefixLens[5] != 1 || h.prefixLens[6] != 2 || h.prefixLens[3] != 1 {
		t.Fatalf("index: %d prefixes, lengths %v", len(h.prefixes), h.prefixLens)
	}
	h.notify("user/2", 1)
	for i := range 100 {
		if !isWoken(users[i]) || isWoken(user1[i]) || isWoken(usa[i]) || isWoken(orders[i]) {
			t.Fatalf("notify(user/2): watcher %d: user/ %v, user/1 %v, usa %v, order/ %v; want only user/",
				i, isWoken(users[i]), isWoken(user1[i]), isWoken(usa[i]), isWoken(orders[i]))
		}
	}
	if isWoken(gone) {
		t.Fatal("a removed watcher was woken")
	}
	h.notify("user/17", 1)
	h.notify("us", 1) // shorter than every prefix but one: wakes none
	for i := range 100 {
		if !isWoken(user1[i]) || isWoken(usa[i]) || isWoken(orders[i]) {
			t.Fatalf("notify(user/17): watcher %d woken wrongly", i)
		}
	}
	if _, ok := h.prefixes["user/"]; ok || len(h.prefixes) != 2 || h.prefixLens[5] != 0 || h.prefixLens[6] != 1 {
		t.Fatalf("after waking: %d prefixes, lengths %v", len(h.prefixes), h.prefixLens)
	}
	for _, w := range usa {
		h.remove(w)
	}
	for _, w := range orders {
		h.remove(w)
	}
	if len(h.prefixes) != 0 || len(h.prefixLens) != 0 {
		t.Fatalf("after removing every watcher: %d prefixes, lengths %v", len(h.prefixes), h.prefixLens)
	}
}

// TestStateHistoryReusesItsArray: a full history drops one event per write;
// the freed slots are reused, so its array stops growing once the history
// is full (at most four times the event bound: growth happens only while
// more than half of the array is live) however many writes go through,
// every retained event stays the one of its revision, and dropped slots
// hold no values.
func TestStateHistoryReusesItsArray(t *testing.T) {
	const limit = 64
	s := newState(stateLimits{historyEvents: limit, historyBytes: 1 << 20})
	settled := 0
	for i := range 20 * limit {
		applyOp(s, op{kind: rPut, key: fmt.Sprintf("k%d", i%7), value: fmt.Sprint(i)})
		if len(s.events) > limit || s.compactRev+uint64(len(s.events)) != s.rev {
			t.Fatalf("after %d writes: %d events, compact %d, rev %d", i+1, len(s.events), s.compactRev, s.rev)
		}
		if c := cap(s.buf); c > 4*limit || (settled != 0 && c != settled) {
			t.Fatalf("after %d writes the history's array holds %d slots for %d events (%d after %d writes)", i+1, c, limit, settled, 4*limit)
		}
		if i+1 == 4*limit {
			settled = cap(s.buf)
		}
		for j, e := range s.events {
			rev := s.compactRev + 1 + uint64(j)
			if e.kv.mod != rev || string(e.kv.value) != fmt.Sprint(rev-1) {
				t.Fatalf("after %d writes, event %d: mod %d value %q, want revision %d", i+1, j, e.kv.mod, e.kv.value, rev)
			}
		}
		for j, e := range s.buf[:s.start] {
			if e.kv != nil || e.prev != nil {
				t.Fatalf("after %d writes, dropped slot %d still holds an event", i+1, j)
			}
		}
	}
	// A restored history keeps the same order and bound.
	r := newState(stateLimits{historyEvents: limit, historyBytes: 1 << 20})
	if err := r.Restore(s.Snapshot()); err != nil {
		t.Fatal(err)
	}
	applyOp(r, op{kind: rPut, key: "k", value: "last"})
	if len(r.events) != limit || r.events[limit-1].kv.mod != r.rev || r.events[0].kv.mod != r.compactRev+1 {
		t.Fatalf("restored then written: %d events, first %d, last %d, rev %d", len(r.events), r.events[0].kv.mod, r.events[limit-1].kv.mod, r.rev)
	}
}
