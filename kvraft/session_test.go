package kvraft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

func open(s *state, id uint64, stamp int64, limit uint64) bool {
	return s.Apply(0, encodeOp(op{kind: opOpenSession, id: WriteID{ClientID: id}, stamp: stamp, limit: limit})).(sessionResult).opened
}

func checkedPut(id WriteID, key, value string) op {
	return op{kind: opPut | opChecked, id: id, key: key, value: value}
}

// Another caller cannot write under an id the cluster did not issue, and
// one that guesses nothing cannot break an issued session: the hijack of
// issue 14 (client 4242, sequence 2^64-1) is refused and changes nothing.
func TestStateRefusesWritesOutsideSessions(t *testing.T) {
	s := newState(testLimits)
	hijack := checkedPut(WriteID{ClientID: 4242, Seq: math.MaxUint64, Ack: math.MaxUint64}, "k", "evil")
	if res := applyOp(s, hijack); !errors.Is(res.refused, ErrNoSession) {
		t.Fatalf("write in a session nobody opened: %+v, want ErrNoSession", res)
	}
	if _, ok := s.getValue("k"); ok || len(s.clients) != 0 {
		t.Fatalf("the refused write left state behind: %d sessions", len(s.clients))
	}
	if !open(s, 77, 1000, 10) {
		t.Fatal("open failed")
	}
	if open(s, 77, 1000, 10) {
		t.Fatal("an id was issued twice")
	}
	if res := applyOp(s, checkedPut(WriteID{ClientID: 77, Seq: 1, Ack: 1}, "k", "v")); res.refused != nil {
		t.Fatalf("write in the session: %+v", res)
	}
	// A write in an old log (before sessions) still applies as it did.
	if res := applyOp(s, op{kind: opPut, id: WriteID{ClientID: 5, Seq: 1, Ack: 1}, key: "old", value: "x"}); res.refused != nil {
		t.Fatalf("old-format write: %+v", res)
	}
	if v, _ := s.getValue("old"); v != "x" {
		t.Fatalf("old-format write not applied: %q", v)
	}
}

// The table never holds more than the cap: opening more evicts the least
// recently used sessions, and a write refreshes its session.
func TestStateSessionTableBounded(t *testing.T) {
	s := newState(testLimits)
	const limit = 100
	for id := uint64(1); id <= 20000; id++ {
		if id == 150 {
			// Session 120 writes: it becomes the most recently used.
			if res := applyOp(s, checkedPut(WriteID{ClientID: 120, Seq: 1, Ack: 1}, "k", "v")); res.refused != nil {
				t.Fatalf("write in session 120: %+v", res)
			}
		}
		if !open(s, id, int64(id), limit) {
			t.Fatalf("open %d failed", id)
		}
		if len(s.clients) > limit {
			t.Fatalf("%d sessions after opening %d, cap %d", len(s.clients), id, limit)
		}
	}
	if _, ok := s.clients[20000-limit+1]; !ok {
		t.Fatal("the newest sessions were evicted")
	}
	if _, ok := s.clients[1]; ok {
		t.Fatal("the oldest session survived")
	}
	res := applyOp(s, checkedPut(WriteID{ClientID: 1, Seq: 2, Ack: 2}, "k", "v"))
	if !errors.Is(res.refused, ErrNoSession) {
		t.Fatalf("write in an evicted session: %+v, want ErrNoSession", res)
	}
}

// Ticks carry the leader's clock and idle timeout through the log; sessions
// idle longer are dropped, on every replica alike.
func TestStateSessionsExpire(t *testing.T) {
	replicas := []*state{newState(testLimits), newState(testLimits)}
	for _, s := range replicas {
		open(s, 1, 1_000, 10)
		open(s, 2, 2_000, 10)
		applyOp(s, checkedPut(WriteID{ClientID: 1, Seq: 1, Ack: 1}, "k", "v")) // session 1 used at clock 2000
		s.Apply(0, encodeOp(op{kind: opTick, stamp: 61_500, limit: 60_000}))
		if len(s.clients) != 2 {
			t.Fatalf("%d sessions at 59.5 s idle, want 2", len(s.clients))
		}
		s.Apply(0, encodeOp(op{kind: opTick, stamp: 62_001, limit: 60_000}))
		if len(s.clients) != 0 {
			t.Fatalf("%d sessions after 60 s idle, want 0", len(s.clients))
		}
		// A leader whose clock is behind cannot move the log's clock back.
		s.Apply(0, encodeOp(op{kind: opTick, stamp: 5, limit: 60_000}))
		if s.clock != 62_001 {
			t.Fatalf("clock %d, want 62001", s.clock)
		}
	}
	if !bytes.Equal(replicas[0].Snapshot(), replicas[1].Snapshot()) {
		t.Fatal("replicas that applied the same log differ")
	}
}

// A session with too many unacknowledged writes is refused more until it
// acknowledges some.
func TestStateBoundsPendingResults(t *testing.T) {
	s := newState(testLimits)
	open(s, 3, 0, 10)
	for seq := uint64(1); seq <= maxPendingResults; seq++ {
		if res := applyOp(s, checkedPut(WriteID{ClientID: 3, Seq: seq, Ack: 1}, "k", "v")); res.refused != nil {
			t.Fatalf("write %d: %+v", seq, res)
		}
	}
	res := applyOp(s, checkedPut(WriteID{ClientID: 3, Seq: maxPendingResults + 1, Ack: 1}, "k", "v"))
	if !errors.Is(res.refused, ErrTooManyPending) {
		t.Fatalf("write past the cap: %+v, want ErrTooManyPending", res)
	}
	res = applyOp(s, checkedPut(WriteID{ClientID: 3, Seq: maxPendingResults + 1, Ack: maxPendingResults}, "k", "v"))
	if res.refused != nil {
		t.Fatalf("write with a higher ack: %+v", res)
	}
}

// The cap recorded in a checked Append bounds what the value grows to.
func TestStateAppendCap(t *testing.T) {
	s := newState(testLimits)
	open(s, 4, 0, 10)
	app := func(seq uint64, v string) writeResult {
		return applyOp(s, op{kind: opAppend | opChecked, id: WriteID{ClientID: 4, Seq: seq, Ack: seq}, key: "k", value: v, limit: 10})
	}
	if res := app(1, "12345"); res.refused != nil {
		t.Fatal(res.refused)
	}
	if res := app(2, "67890"); res.refused != nil {
		t.Fatal(res.refused)
	}
	if res := app(3, "x"); !errors.Is(res.refused, ErrTooLarge) {
		t.Fatalf("append past the cap: %+v, want ErrTooLarge", res)
	}
	if v, _ := s.getValue("k"); v != "1234567890" {
		t.Fatalf("value %q", v)
	}
	// Refused, not remembered as applied: a retry is refused again.
	if res := app(3, "x"); !errors.Is(res.refused, ErrTooLarge) {
		t.Fatalf("retry: %+v", res)
	}
}

// Snapshots keep the sessions, their use order and the clock; a version 1
// snapshot (before sessions) still restores.
func TestStateSnapshotKeepsSessions(t *testing.T) {
	s := newState(testLimits)
	open(s, 1, 100, 10)
	open(s, 2, 200, 10)
	applyOp(s, checkedPut(WriteID{ClientID: 1, Seq: 1, Ack: 1}, "k", "v"))
	r := newState(testLimits)
	if err := r.Restore(s.Snapshot()); err != nil {
		t.Fatal(err)
	}
	if r.clock != 200 || r.oldest.id != 2 || r.newest.id != 1 || !bytes.Equal(r.Snapshot(), s.Snapshot()) {
		t.Fatalf("restored clock %d order %d..%d", r.clock, r.oldest.id, r.newest.id)
	}
	// Same order on both: opening one more evicts session 2 on both.
	open(s, 3, 300, 2)
	open(r, 3, 300, 2)
	if _, ok := r.clients[2]; ok || !bytes.Equal(r.Snapshot(), s.Snapshot()) {
		t.Fatal("restored replica evicted differently")
	}
	v1 := []byte{snapshotVersion1, 1, 1, 'a', 1, 'b', 2, 9, 0, 0, 5, 1, 1, 6, 1}
	if err := r.Restore(v1); err != nil {
		t.Fatal(err)
	}
	if v, _ := r.getValue("a"); v != "b" || len(r.clients) != 2 || r.oldest.id != 5 || !r.clients[5].done[6].existed {
		t.Fatalf("v1 restore: %v %+v", v, r.clients)
	}
}

// Through the server: sessions are opened through the log, writes outside
// them are refused, the value cap covers Append growth, and idle sessions
// expire once the leader's ticks pass the idle timeout.
func TestServerSessionsAndValueCap(t *testing.T) {
	cfg := DefaultConfig(0)
	cfg.MaxValueBytes = 1 << 10
	cfg.SessionIdleTimeout, cfg.SessionTick = time.Second, 20*time.Millisecond
	cfg.MaxSessions = 50
	s, _, err := newFakeServerConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Kill()
	ctx := context.Background()
	_, err = s.Put(ctx, &PutRequest{Key: "k", Value: "v", Write: WriteID{ClientID: 4242, Seq: math.MaxUint64}})
	if !errors.Is(err, ErrNoSession) {
		t.Fatalf("hijack: %v, want ErrNoSession", err)
	}
	sess, err := s.OpenSession(ctx, &OpenSessionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if sess.ClientID == 0 || sess.ClientID >= 1<<53 {
		t.Fatalf("session id %d not in [1, 2^53)", sess.ClientID)
	}
	if _, err := s.Put(ctx, &PutRequest{Key: "k", Value: strings.Repeat("x", 1000), Write: WriteID{ClientID: sess.ClientID, Seq: 1}}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Append(ctx, &AppendRequest{Key: "k", Value: strings.Repeat("y", 100), Write: WriteID{ClientID: sess.ClientID, Seq: 2}})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("append past the cap: %v, want ErrTooLarge", err)
	}
	if _, err := s.Put(ctx, &PutRequest{Key: "k2", Value: strings.Repeat("x", 1025)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("put past the cap: %v, want ErrTooLarge", err)
	}
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			if _, err := s.OpenSession(ctx, &OpenSessionRequest{}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := s.state.sessions(); n > cfg.MaxSessions {
		t.Fatalf("%d sessions, cap %d", n, cfg.MaxSessions)
	}
	waitFor(t, "idle sessions to expire", func() bool { return s.state.sessions() == 0 })
	_, err = s.Put(ctx, &PutRequest{Key: "k", Value: "v", Write: WriteID{ClientID: sess.ClientID, Seq: 3}})
	if !errors.Is(err, ErrNoSession) {
		t.Fatalf("write in an expired session: %v, want ErrNoSession", err)
	}
}

// The Clerk opens its session itself, and opens a new one when the cluster
// forgot it and no attempt of the write could have been applied.
func TestClerkReopensLostSession(t *testing.T) {
	s, _, err := newFakeServer()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Kill()
	ck, err := NewClerk([]Service{s}, DefaultClerkConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := ck.Put(ctx, "a", "1"); err != nil {
		t.Fatal(err)
	}
	first := ck.ClientID()
	// Forget every session, as expiry would.
	s.rsm.Propose(encodeOp(op{kind: opTick, stamp: math.MaxInt64 / 4, limit: 1}))
	waitFor(t, "the sessions to expire", func() bool { return s.state.sessions() == 0 })
	if err := ck.Put(ctx, "a", "2"); err != nil {
		t.Fatal(err)
	}
	if ck.ClientID() == first {
		t.Fatal("the clerk kept writing in a lost session")
	}
	if v, err := ck.Get(ctx, "a"); err != nil || v != "2" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	_ = fmt.Sprint()
}
