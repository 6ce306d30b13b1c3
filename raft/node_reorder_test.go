package raft

import (
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
)

// reorderNode is a follower (replica 1 of 3) with a slow clock, that has
// taken entry 1 from leader 0 in term 5.
func reorderNode(t *testing.T) *Node {
	t.Helper()
	cfg := testConfig(1, 3)
	// Ticks long enough that the test sees an append waiting before its
	// tick is over, even on a loaded machine.
	cfg.TickInterval, cfg.HeartbeatInterval = 500*time.Millisecond, time.Second
	cfg.ElectionTimeoutMin, cfg.ElectionTimeoutMax = 20*time.Second, 40*time.Second
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
	return n
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
	n := reorderNode(t)
	type result struct {
		resp *AppendEntriesResponse
		err  error
	}
	early := make(chan result, 1)
	go func() {
		r, err := n.HandleAppendEntries(t.Context(), appendAt(3))
		early <- result{r, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n.mu.Lock()
		waiting := n.logGrewCh != nil
		n.mu.Unlock()
		if waiting {
			break
		}
		select {
		case r := <-early:
			t.Fatalf("the append of entry 3 was answered before entry 2 arrived: %+v, %v", r.resp, r.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the append of entry 3 never waited")
		}
		time.Sleep(time.Millisecond)
	}
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

// An append whose predecessor never comes is refused after about a tick,
// as it would have been at once, so the leader backs up as before.
func TestNodeAppendWithLostPredecessorIsRefused(t *testing.T) {
	n := reorderNode(t)
	start := time.Now()
	r, err := n.HandleAppendEntries(t.Context(), appendAt(3))
	if err != nil || r.Success {
		t.Fatalf("append after a gap: %+v, %v; want a refusal", r, err)
	}
	if r.LastLogIndex != 1 {
		t.Fatalf("refusal hints last index %d, want 1", r.LastLogIndex)
	}
	if took := time.Since(start); took < n.cfg.TickInterval/2 {
		t.Fatalf("refused after %v, before waiting for its predecessor", took)
	}
}
