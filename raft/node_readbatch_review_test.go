package raft

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// Review tests of read batching (Config.ReadBatchWindow) at the node, on a
// fake clock (the window's time passes only when the test advances it).

// TestReadBatchReviewLoneReadAfterTransfer: a follower with a read-index
// request in flight and a read queued behind it (the backlog) is handed the
// leadership. Its forwarded reads fail; at the new leader nothing is in
// flight, so a lone read must be answered with the clock stopped ("a read
// that finds nothing in flight starts one at once"). The backlog flag left
// over from its follower days holds it for the rest of the window of its
// last read-index request instead (here until the clock moves).
func TestReadBatchReviewLoneReadAfterTransfer(t *testing.T) {
	cl, fc, l := readBatchCluster(t)
	f := (l + 1) % 3
	n := cl.nodes[f]
	// Hold the first RPC the follower sends (its read-index request) until
	// released; let every other one through.
	var calls atomic.Int32
	gate := gateRPCs(t, cl, f, func() bool { return calls.Add(1) == 1 })
	defer fc.Advance(t, cl.cfg(0).ReadBatchWindow) // whatever is held
	defer gate.open()

	first := readAsync(n)
	if !pollUntil(time.Now().Add(10*time.Second), func() bool { return gate.blocked.Load() > 0 }) {
		t.Fatal("setup: the read-index request was not sent")
	}
	second := readAsync(n)
	if !pollUntil(time.Now().Add(10*time.Second), func() bool { return waitedReads(n) == 2 }) {
		t.Fatalf("setup: %d reads waiting, want 2", waitedReads(n))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.nodes[l].TransferLeadership(ctx, f); err != nil {
		t.Fatalf("setup: transfer to %d: %v", f, err)
	}
	for k, ch := range []<-chan error{first, second} {
		select {
		case err := <-ch:
			if err == nil {
				t.Fatalf("setup: forwarded read %d answered after the transfer", k)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("setup: forwarded read %d neither answered nor failed", k)
		}
	}
	if !pollUntil(time.Now().Add(10*time.Second), func() bool {
		_, lead := n.State()
		return lead
	}) {
		t.Fatal("setup: the transferee does not lead")
	}
	select {
	case err := <-readAsync(n):
		if err != nil {
			t.Fatalf("lone read at the new leader: %v", err)
		}
	case <-time.After(5 * time.Second):
		n.mu.Lock()
		backlog, held := n.core.readBacklog, n.core.readsHeld
		n.mu.Unlock()
		t.Fatalf("lone read at the new leader held with the clock stopped (readBacklog %v, readsHeld %v)", backlog, held)
	}
}

// TestReadBatchReviewWindowAfterWindow: the leader holds a backlog for a
// window, and then again for the next one: the wake-up of the first window
// must leave the node able to arm another (readWake reset), or the second
// backlog waits for something else to kick the loop (on the fake clock,
// forever). The existing tests hold only once. The round is known to be in
// flight from Status (ReadRounds), not from a blocked RPC (a heartbeat may
// be the one blocked).
func TestReadBatchReviewWindowAfterWindow(t *testing.T) {
	cl, fc, l := readBatchCluster(t)
	n := cl.nodes[l]
	for w := range 3 {
		gate := gateRPCs(t, cl, l, nil)
		rounds := n.Status().ReadRounds
		first := readAsync(n)
		if !pollUntil(time.Now().Add(10*time.Second), func() bool { return n.Status().ReadRounds == rounds+1 }) {
			t.Fatalf("window %d: the first read's round did not start", w)
		}
		more := []<-chan error{readAsync(n), readAsync(n)}
		if !pollUntil(time.Now().Add(10*time.Second), func() bool { return waitedReads(n) == 3 }) {
			t.Fatalf("window %d: %d reads waiting, want 3", w, waitedReads(n))
		}
		timers := fc.timers()
		gate.open()
		cl.net.gate.Store(nil)
		select {
		case err := <-first:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("window %d: the first read was not answered", w)
		}
		if !pollUntil(time.Now().Add(10*time.Second), func() bool { return fc.timers() > timers }) {
			n.mu.Lock()
			held, wake := n.core.readsHeld, n.readWake
			n.mu.Unlock()
			t.Fatalf("window %d: no wake-up set for the held reads (readsHeld %v, readWake %v)", w, held, wake)
		}
		fc.Advance(t, cl.cfg(0).ReadBatchWindow)
		for k, ch := range more {
			select {
			case err := <-ch:
				if err != nil {
					t.Fatalf("window %d: held read %d: %v", w, k, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("window %d: held read %d not answered after the window", w, k)
			}
		}
		if got := n.Status().ReadRounds - rounds; got != 2 {
			t.Fatalf("window %d: %d rounds for 1 + 2 reads, want 2", w, got)
		}
	}
}
