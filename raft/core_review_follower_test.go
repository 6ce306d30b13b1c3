package raft

import "testing"

// TestCoreFollowerReadNotConfirmedByEarlierRound: five replicas; leader 0's
// round for its own read 1 reaches 1 and 2, whose answers are held. 1, 2
// and 3 then elect a new leader, which commits "b". A read then arrives at
// follower 4, still following 0 (same side of the partition): its request
// (term of 0) counts as 4's acknowledgement, and with 0 itself that is two
// of the three needed. The held answers of the earlier round must not make
// the third.
func TestCoreFollowerReadNotConfirmedByEarlierRound(t *testing.T) {
	cn := newCoreNet(t, 5, func(c *coreConfig) { c.checkQuorum = false })
	cn.campaign(0)
	cn.propose(0, "a")
	cn.tick(cn.cfgs[0].heartbeatTicks)
	old := cn.cores[0]
	oldTerm := old.term
	old.readIndex(1)
	cn.processReady(0)
	held := cn.deliverHoldingAnswers(0)
	// Make sure 1 and 2 both acknowledged the round (the leader may have
	// asked only a quorum's worth of peers).
	got := map[int]bool{}
	for _, h := range held {
		got[h.m.to] = true
	}
	for _, p := range []int{1, 2} {
		if !got[p] {
			old.heartbeat(p)
		}
	}
	rd := old.ready()
	for _, m := range rd.messages {
		if m.ae != nil && (m.to == 1 || m.to == 2) && !got[m.to] {
			held = append(held, heldAppend{m: m, resp: cn.cores[m.to].handleAppendEntries(m.ae)})
			got[m.to] = true
		}
	}
	old.advance(rd)
	if !got[1] || !got[2] {
		t.Fatalf("setup: round acknowledged by %v, want 1 and 2", got)
	}
	cn.partition([]int{0, 4}, []int{1, 2, 3})
	nl := cn.tickOnly(10*cn.cfgs[0].electionTicksMax, 1, 2, 3)
	if nl == NoLeader {
		t.Fatal("the majority elected no leader")
	}
	ib := cn.propose(nl, "b")
	cn.tickOnly(cn.cfgs[0].heartbeatTicks, 1, 2, 3)
	if old.role != Leader || old.term != oldTerm || cn.cores[4].lead != 0 {
		t.Fatalf("setup: 0 is %v in term %d, 4 follows %d", old.role, old.term, cn.cores[4].lead)
	}
	cn.cores[4].readIndex(2)
	cn.stabilize() // 4's request reaches 0
	if len(old.reads) == 0 {
		t.Fatal("setup: the follower's read is not pending at the old leader")
	}
	for _, h := range held {
		old.handleAppendResponse(h.m, h.resp)
	}
	cn.stabilize()
	if rs, ok := cn.readAnswer(4, 2); ok && rs.err == nil {
		t.Fatalf("follower read answered at %d after %q committed at %d in a later term", rs.index, "b", ib)
	}
	cn.checkNoViolations()
}
