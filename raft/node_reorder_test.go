package raft

import (
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
)

// reorderNode is a follower (replica 1 of 3) on a fake clock, that has
// taken entry 1 from leader 0 in term 5. Time does not pass unless the test
// advances the clock: an append waiting for its predecessor waits until
// then, however slow the machine.
func reorderNode(t *testing.T) (*Node, *fakeClock) {
	t.Helper()
	cfg := testConfig(1, 3)
	fc := newFakeClock()
	cfg.clock = fc
	n, err := New(cfg, &inprocTransport{net: newInprocNet(3), from: 1}, persist.NewMemory(), newTestApp())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Kill(); err != nil {
			t.Error(err)
		}
	})
	if r, err := n.HandleAppendEntries(t.Context(), appendAt(1)); err != nil || !r.Success {
		t.Fatalf("first append: %+v, %v", r, err)
	}
	return n, fc
}

type appendResult struct {
	resp *AppendEntriesResponse
	err  error
}

// appendAsync sends req to n from another goroutine and waits until the
// handler waits for its predecessor: the node has a log-growth channel and
// the fake clock a timer (the tick the handler waits at most).
func appendAsync(t *testing.T, n *Node, fc *fakeClock, req *AppendEntriesRequest) <-chan appendResult {
	t.Helper()
	res := make(chan appendResult, 1)
	go func() {
		r, err := n.HandleAppendEntries(t.Context(), req)
		res <- appendResult{r, err}
	}()
	waiting := func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.logGrewCh != nil && fc.timers() > 0
	}
	if !pollUntil(time.Now().Add(10*time.Second), func() bool { return waiting() || len(res) > 0 }) || !waiting() {
		select {
		case r := <-res:
			t.Fatalf("the append of entry %d was answered without waiting: %+v, %v", req.Entries[0].Index, r.resp, r.err)
		default:
			t.Fatalf("the append of entry %d never waited", req.Entries[0].Index)
		}
	}
	return res
}

// appendAt is leader 0's append of entry i (term 5) after entry i-1.
func appendAt(i uint64) *AppendEntriesRequest {
	req := &AppendEntriesRequest{Term: 5, LeaderID: 0, PrevLogIndex: i - 1,
		Entries: []Entry{{Index: i, Term: 5, Type: persist.EntryCommand, Data: []byte("x")}}}
	if i > 1 {
		req.PrevLogTerm = 5
	}
	return req
}

// Pipelined appends that arrive out of order are both taken: the early one
// waits for its predecessor instead of being refused, which would send the
// leader back to probing one append per round trip.
func TestNodeAppendWaitsForPredecessor(t *testing.T) {
	n, fc := reorderNode(t)
	early := appendAsync(t, n, fc, appendAt(3))
	if r, err := n.HandleAppendEntries(t.Context(), appendAt(2)); err != nil || !r.Success {
		t.Fatalf("append of entry 2: %+v, %v", r, err)
	}
	r := <-early
	if r.err != nil || !r.resp.Success || r.resp.MatchIndex != 3 {
		t.Fatalf("append of entry 3 after its predecessor: %+v, %v; want success at 3", r.resp, r.err)
	}
	if last := n.Status().LastIndex; last != 3 {
		t.Fatalf("last index %d, want 3", last)
	}
}

// An append whose predecessor never comes is refused after a tick, as it
// would have been at once, so the leader backs up as before.
func TestNodeAppendWithLostPredecessorIsRefused(t *testing.T) {
	n, fc := reorderNode(t)
	tick := n.cfg.TickInterval
	res := appendAsync(t, n, fc, appendAt(3))
	fc.Advance(t, tick-time.Nanosecond)
	select {
	case r := <-res:
		t.Fatalf("refused before a tick passed: %+v, %v", r.resp, r.err)
	default:
	}
	fc.Advance(t, time.Nanosecond)
	r := <-res
	if r.err != nil || r.resp.Success {
		t.Fatalf("append after a gap: %+v, %v; want a refusal", r.resp, r.err)
	}
	if r.resp.LastLogIndex != 1 {
		t.Fatalf("refusal hints last index %d, want 1", r.resp.LastLogIndex)
	}
}
