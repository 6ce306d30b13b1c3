package raft

import "testing"

// Scripted tests of read batching (Config.ReadBatchWindow) in the core: the
// node sets holdReads while the window of the last round is open; the core
// holds back only a round (or read-index request) for reads that arrived
// while the previous one was in flight.

// TestCoreReadBatchHoldsBacklog: at the leader, reads that arrived while a
// round was in flight do not start the next round while the window is open
// (flush reports readsHeld); once it closes, one round answers them all.
func TestCoreReadBatchHoldsBacklog(t *testing.T) {
	cn := newCoreNet(t, 3)
	cn.campaign(0)
	c := cn.cores[0]
	rounds := c.readRounds

	c.holdReads = true
	c.readIndex(1) // nothing in flight: starts a round at once, window or not
	cn.processReady(0)
	held := cn.holdPending()
	if c.readRounds != rounds+1 || len(held) != 1 || c.readsHeld {
		t.Fatalf("first read: %d rounds, %d messages, held %v; want one round at once", c.readRounds-rounds, len(held), c.readsHeld)
	}
	c.readIndex(2)
	c.readIndex(3)
	for _, e := range held {
		cn.deliver(e)
	}
	cn.stabilize()
	if got := readIDs(cn.reads[0]); len(got) != 1 || got[0] != 1 {
		t.Fatalf("answered %v, want read 1 only", got)
	}
	if c.readRounds != rounds+1 || !c.readsHeld || !c.needRound {
		t.Fatalf("window open: %d rounds, held %v, need %v; want the backlog held", c.readRounds-rounds, c.readsHeld, c.needRound)
	}
	c.readIndex(4) // joins the held round
	cn.stabilize()
	if len(cn.reads[0]) != 1 {
		t.Fatalf("answered %v while the window is open", readIDs(cn.reads[0]))
	}

	c.holdReads = false // the window closed
	cn.stabilize()
	if got := readIDs(cn.reads[0]); len(got) != 4 {
		t.Fatalf("answered %v, want reads 1-4", got)
	}
	if c.readRounds != rounds+2 || c.readsHeld {
		t.Fatalf("%d rounds (held %v), want 2: one for read 1, one for 2-4", c.readRounds-rounds, c.readsHeld)
	}
	// The backlog went with that round: the next lone read starts its own
	// at once even inside a window.
	c.holdReads = true
	c.readIndex(5)
	cn.stabilize()
	if got := readIDs(cn.reads[0]); len(got) != 5 || c.readRounds != rounds+3 {
		t.Fatalf("lone read in a window: answered %v after %d rounds, want 5 reads, 3 rounds", got, c.readRounds-rounds)
	}
	cn.checkNoViolations()
}

// followerBacklog returns three cores where follower 1, inside a read
// batching window, sent read 1's read-index request at once (held, not
// delivered: returned) and queued read 2 behind it (the backlog).
func followerBacklog(t *testing.T) (*coreNet, *core, []envelope) {
	t.Helper()
	cn := newCoreNet(t, 3)
	cn.campaign(0)
	cn.propose(0, "x")
	f := cn.cores[1]
	f.holdReads = true
	f.readIndex(1) // nothing in flight: sent at once
	cn.processReady(1)
	held := cn.holdPending()
	if len(held) != 1 || held[0].m.ri == nil || f.fwdRequests != 1 || f.fwdBatch == 0 {
		t.Fatalf("setup: follower sent %+v (%d requests), want one ReadIndex at once", held, f.fwdRequests)
	}
	f.readIndex(2) // behind the one in flight
	if !f.readBacklog {
		t.Fatal("setup: read 2 did not set the backlog")
	}
	return cn, f, held
}

// TestCoreReadBatchFollower: a follower holds its next read-index request
// the same way, and only for reads that arrived while one was in flight.
func TestCoreReadBatchFollower(t *testing.T) {
	cn, f, held := followerBacklog(t)
	for _, e := range held {
		cn.deliver(e)
	}
	cn.stabilize()
	if got := readIDs(cn.reads[1]); len(got) != 1 || got[0] != 1 || f.fwdRequests != 1 || !f.readsHeld {
		t.Fatalf("answered %v after %d requests (held %v), want read 1 and read 2 held", got, f.fwdRequests, f.readsHeld)
	}
	f.holdReads = false
	cn.stabilize()
	if got := readIDs(cn.reads[1]); len(got) != 2 || f.fwdRequests != 2 {
		t.Fatalf("answered %v after %d requests, want reads 1-2 after 2", got, f.fwdRequests)
	}
	cn.checkNoViolations()
}

// TestCoreReadBatchLeaderChange: reads held for the window are not lost
// when the leader steps down meanwhile (check-quorum): they fail (ErrNotLeader) so their
// callers go elsewhere, as any pending read does.
func TestCoreReadBatchLeaderChange(t *testing.T) {
	cn := newCoreNet(t, 3)
	cn.campaign(0)
	c := cn.cores[0]
	c.holdReads = true
	c.readIndex(1)
	cn.processReady(0)
	held := cn.holdPending()
	c.readIndex(2)
	for _, e := range held {
		cn.deliver(e)
	}
	cn.stabilize()
	if !c.readsHeld {
		t.Fatal("setup: read 2 not held")
	}
	// Cut off, the leader steps down by check-quorum.
	cn.isolate(0)
	for range 4 * cn.cfgs[0].electionTicksMax {
		if c.role != Leader {
			break
		}
		cn.tick(1)
	}
	if c.role == Leader {
		t.Fatal("setup: node 0 still leads")
	}
	var failed bool
	for _, r := range cn.reads[0] {
		if r.id == 2 {
			failed = r.err == ErrNotLeader
		}
	}
	if !failed {
		t.Fatalf("held read 2 after losing leadership: %+v, want ErrNotLeader", cn.reads[0])
	}
	cn.checkNoViolations()
}
