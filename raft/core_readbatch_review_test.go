package raft

import "testing"

// Review tests of read batching (Config.ReadBatchWindow) in the core.

// TestCoreReadBatchReviewBacklogStaleAfterTransfer: a follower with a
// read-index request in flight, and a read queued behind it (readBacklog
// set), is handed the leadership (a transfer: it wins within a round trip,
// well inside a window of the node's last request). Its forwarded reads
// fail (ErrNotLeader); nothing is in flight at the new leader. A read that
// then arrives finds nothing in flight and must start a round at once
// ("a read that finds nothing in flight starts one at once", doc.go):
// the backlog flag left over from the follower's forwarded reads must not
// hold it.
func TestCoreReadBatchReviewBacklogStaleAfterTransfer(t *testing.T) {
	cn, f, _ := followerBacklog(t)
	// The request in flight is lost; the leader hands its leadership to 1.
	if err := cn.cores[0].transferLeadership(1); err != nil {
		t.Fatal(err)
	}
	cn.stabilize()
	if f.role != Leader {
		t.Fatalf("setup: node 1 is %v, want leader", f.role)
	}
	cn.stabilize() // its no-op committed
	if f.log.commit < f.noopIndex {
		t.Fatal("setup: no-op not committed")
	}
	for _, r := range cn.reads[1] {
		if r.err == nil {
			t.Fatalf("setup: forwarded read %d answered %+v", r.id, r)
		}
	}
	if f.round > f.confirmed {
		t.Fatal("setup: a round is in flight at the new leader")
	}
	// Still inside the window of the follower's last request (the node's
	// readStart is shared by rounds and requests).
	f.holdReads = true
	rounds := f.readRounds
	f.readIndex(3)
	cn.processReady(1)
	if f.readRounds != rounds+1 || f.readsHeld {
		t.Fatalf("lone read at the new leader: %d rounds started, held %v (readBacklog left over from the follower: %v); want one round at once",
			f.readRounds-rounds, f.readsHeld, f.readBacklog)
	}
	cn.stabilize()
	var answered bool
	for _, r := range cn.reads[1] {
		answered = answered || (r.id == 3 && r.err == nil)
	}
	if !answered {
		t.Fatalf("read 3 not answered: %+v", cn.reads[1])
	}
	cn.checkNoViolations()
}

// TestCoreReadBatchReviewBacklogStaleAfterLeaderLost: the same at a
// follower: its reads (one in flight, one queued behind it) fail when it
// hears a candidate of a later term (no leader known); once the new leader
// is known, a read that finds nothing in flight is sent at once.
func TestCoreReadBatchReviewBacklogStaleAfterLeaderLost(t *testing.T) {
	cn, f, _ := followerBacklog(t) // the request is lost
	// A later term with no leader known yet: the reads fail.
	f.becomeFollower(f.term+1, NoLeader)
	cn.processReady(1)
	if len(cn.reads[1]) != 2 {
		t.Fatalf("setup: reads %+v, want 1 and 2 failed", cn.reads[1])
	}
	// The new leader becomes known (its heartbeat).
	f.lead = 2
	f.holdReads = true
	reqs := f.fwdRequests
	f.readIndex(3)
	cn.processReady(1)
	if f.fwdRequests != reqs+1 || f.readsHeld {
		t.Fatalf("lone read: %d requests sent, held %v (stale readBacklog %v); want one at once", f.fwdRequests-reqs, f.readsHeld, f.readBacklog)
	}
}
