package raft

import "testing"

// Scripted tests of read coalescing and follower reads in the core.

// holdPending takes the queued messages out of the network.
func (cn *coreNet) holdPending() []envelope {
	q := cn.pending
	cn.pending = nil
	return q
}

func readIDs(rs []readState) []uint64 {
	var ids []uint64
	for _, r := range rs {
		ids = append(ids, r.id)
	}
	return ids
}

// TestCoreReadRoundsCoalesce: while a round is in flight no other starts;
// reads that arrive meanwhile wait for the next round (not the one in
// flight, which proves nothing about leadership after they arrived) and
// share it.
func TestCoreReadRoundsCoalesce(t *testing.T) {
	cn := newCoreNet(t, 3)
	cn.campaign(0)
	c := cn.cores[0]
	rounds := c.readRounds

	c.readIndex(1)
	cn.processReady(0)
	held := cn.holdPending()
	if len(held) != 1 || held[0].m.ae == nil || held[0].m.round != c.round {
		t.Fatalf("round 1 sent %d messages (%+v), want one heartbeat", len(held), held)
	}
	c.readIndex(2)
	c.readIndex(3)
	cn.processReady(0)
	if len(cn.pending) != 0 {
		t.Fatalf("a second round started while one was in flight: %d messages", len(cn.pending))
	}
	for _, e := range held {
		cn.deliver(e)
	}
	cn.processReady(0)
	if got := readIDs(cn.reads[0]); len(got) != 1 || got[0] != 1 {
		t.Fatalf("after round 1, answered %v, want only read 1", got)
	}
	if len(cn.pending) != 1 {
		t.Fatalf("round 2 sent %d messages, want 1", len(cn.pending))
	}
	cn.stabilize()
	if got := readIDs(cn.reads[0]); len(got) != 3 {
		t.Fatalf("answered %v, want reads 1, 2, 3", got)
	}
	if got := c.readRounds - rounds; got != 2 {
		t.Fatalf("%d rounds for three reads in two waves, want 2", got)
	}
	cn.checkNoViolations()
}

// TestCoreReadRoundWidens: a round asks the most responsive peers first;
// if they do not confirm it within roundWidenTicks it asks the others.
func TestCoreReadRoundWidens(t *testing.T) {
	cn := newCoreNet(t, 3, func(c *coreConfig) { c.heartbeatTicks = 5 })
	cn.campaign(0)
	cn.tick(1) // the followers learn the commit index: nothing is left to send
	c := cn.cores[0]
	// Peer 1 (the first choice on a tie) stops answering.
	cn.dropFn = func(from int, m message) bool { return m.to == 1 }
	c.readIndex(1)
	cn.stabilize()
	if len(cn.reads[0]) != 0 {
		t.Fatalf("read answered without a majority: %+v", cn.reads[0])
	}
	cn.tick(roundWidenTicks - 1)
	if len(cn.reads[0]) != 0 {
		t.Fatalf("read answered without a majority: %+v", cn.reads[0])
	}
	cn.tick(1)
	if got := cn.reads[0]; len(got) != 1 || got[0].err != nil {
		t.Fatalf("after widening: reads %+v, want one answer", got)
	}
	// The next round goes straight to the peer that answered.
	cn.reads[0] = nil
	before := cn.sent
	c.readIndex(2)
	cn.stabilize()
	if got := cn.reads[0]; len(got) != 1 || got[0].err != nil || cn.sent-before != 1 {
		t.Fatalf("next read: %+v after %d messages, want one answer after one", got, cn.sent-before)
	}
}

// TestCoreFollowerReadOneRequest: a follower asks the leader once for every
// read waiting on it, at most one request in flight, and gets the leader's
// commit index.
func TestCoreFollowerReadOneRequest(t *testing.T) {
	cn := newCoreNet(t, 3)
	cn.campaign(0)
	idx := cn.propose(0, "x")
	f := cn.cores[1]
	f.readIndex(1)
	f.readIndex(2)
	cn.processReady(1)
	held := cn.holdPending()
	if len(held) != 1 || held[0].m.ri == nil || held[0].m.to != 0 {
		t.Fatalf("follower sent %+v, want one ReadIndex to the leader", held)
	}
	f.readIndex(3)
	cn.processReady(1)
	if len(cn.pending) != 0 {
		t.Fatalf("second request while one is in flight: %+v", cn.pending)
	}
	for _, e := range held {
		cn.deliver(e)
	}
	cn.stabilize()
	got := cn.reads[1]
	if len(got) != 3 {
		t.Fatalf("follower reads %+v, want three answers", got)
	}
	for _, r := range got {
		if r.err != nil || r.index != idx || r.term != cn.cores[0].term {
			t.Fatalf("follower read %+v, want index %d in term %d", r, idx, cn.cores[0].term)
		}
	}
	if f.fwdRequests != 2 {
		t.Fatalf("%d requests, want 2 (reads 1-2, then 3)", f.fwdRequests)
	}
	cn.checkNoViolations()
}

// TestCoreFollowerReadWaitsForLeaderNoop: the leader answers a follower
// only once its no-op of the term committed, as for its own reads.
func TestCoreFollowerReadWaitsForLeaderNoop(t *testing.T) {
	cn := newCoreNet(t, 3)
	block := true
	cn.dropFn = func(from int, m message) bool { return block && from == 0 && m.ae != nil }
	cn.campaign(0)
	c := cn.cores[0]
	if c.role != Leader || c.log.commit >= c.noopIndex {
		t.Fatalf("setup: role %v commit %d noop %d", c.role, c.log.commit, c.noopIndex)
	}
	// Follower 1 learns of the leader from an empty append.
	cn.cores[1].handleAppendEntries(&AppendEntriesRequest{Term: c.term, LeaderID: 0})
	cn.cores[1].readIndex(1)
	cn.stabilize()
	if len(cn.reads[1]) != 0 {
		t.Fatalf("follower read answered before the leader's no-op committed: %+v", cn.reads[1])
	}
	block = false
	for range 3 * cn.cfgs[0].heartbeatTicks {
		if len(cn.reads[1]) > 0 {
			break
		}
		cn.tick(1)
	}
	if got := cn.reads[1]; len(got) != 1 || got[0].err != nil || got[0].index < c.noopIndex {
		t.Fatalf("follower reads %+v, want one at or after the no-op %d", got, c.noopIndex)
	}
}

// TestCoreFollowerReadDeposedLeader: a follower still following a leader
// that lost its majority never gets a read index from it that misses a
// write the new leader committed.
func TestCoreFollowerReadDeposedLeader(t *testing.T) {
	// Without check-quorum the old leader never steps down on its own: the
	// read rules alone must keep it from answering.
	cn := newCoreNet(t, 5, func(c *coreConfig) { c.checkQuorum = false })
	cn.campaign(0)
	cn.propose(0, "a")
	cn.partition([]int{0, 1}, []int{2, 3, 4})
	cn.campaign(2)
	if cn.cores[2].role != Leader || cn.cores[0].role != Leader || cn.cores[1].lead != 0 {
		t.Fatalf("setup: roles %v %v, follower 1 follows %d", cn.cores[0].role, cn.cores[2].role, cn.cores[1].lead)
	}
	ib := cn.propose(2, "b")
	f := cn.cores[1]
	f.readIndex(1)
	for range 3 * cn.cfgs[0].electionTicks {
		cn.tick(1)
		if f.lead != 0 {
			break // the follower timed out; it refuses the read
		}
	}
	for _, r := range cn.reads[1] {
		if r.err == nil {
			t.Fatalf("deposed leader gave read index %d (new leader committed %d)", r.index, ib)
		}
	}
	// Once healed, reads work again and see b.
	cn.heal()
	cn.tick(cn.cfgs[0].electionTicksMax)
	cn.reads[1] = nil
	f.readIndex(2)
	for range 3 * cn.cfgs[0].electionTicks {
		if len(cn.reads[1]) > 0 {
			break
		}
		cn.tick(1)
	}
	if got := cn.reads[1]; len(got) != 1 || got[0].err != nil || got[0].index < ib {
		t.Fatalf("after healing: reads %+v, want one at or after %d", got, ib)
	}
	cn.checkNoViolations()
}

// TestCoreFollowerReadReaddressed: when the leader changes while a request
// is in flight, the follower re-sends its reads to the new leader and
// ignores the old request's fate.
func TestCoreFollowerReadReaddressed(t *testing.T) {
	cn := newCoreNet(t, 3, func(c *coreConfig) { c.checkQuorum = false })
	cn.campaign(0)
	f := cn.cores[1]
	f.readIndex(1)
	cn.processReady(1)
	held := cn.holdPending()
	if len(held) != 1 || held[0].m.ri == nil {
		t.Fatalf("follower sent %+v, want one ReadIndex", held)
	}
	// Replica 2 takes over with 0's vote; 1 hears of it only from 2's
	// appends, so it goes straight from leader 0 to leader 2.
	cn.partition([]int{0, 2}, []int{1})
	cn.campaign(2)
	cn.heal()
	ic := cn.cores[2].noopIndex // committed with 0's help
	cn.tick(cn.cfgs[2].heartbeatTicks)
	if f.lead != 2 {
		t.Fatalf("setup: follower follows %d", f.lead)
	}
	// The old request reaches 0, no longer the leader: its refusal is
	// ignored.
	for _, e := range held {
		cn.deliver(e)
	}
	cn.stabilize()
	if got := cn.reads[1]; len(got) != 1 || got[0].err != nil || got[0].index < ic || got[0].term != cn.cores[2].term {
		t.Fatalf("reads %+v, want one answer from the new leader", got)
	}
	if f.fwdRequests != 2 {
		t.Fatalf("%d requests, want 2 (to 0, then to 2)", f.fwdRequests)
	}
	cn.checkNoViolations()
}

// TestCoreReadRefusals: nodes that cannot get a read index say so at once.
func TestCoreReadRefusals(t *testing.T) {
	cn := newCoreNet(t, 3)
	// A follower that knows no leader.
	cn.cores[1].readIndex(1)
	cn.processReady(1)
	if got := cn.reads[1]; len(got) != 1 || got[0].err == nil {
		t.Fatalf("leaderless follower: %+v, want an error", got)
	}
	// A candidate, with its reads queued before it campaigned.
	cn.campaign(0)
	f := cn.cores[2]
	f.readIndex(2)
	f.becomeCandidate(false)
	cn.processReady(2)
	if got := cn.reads[2]; len(got) != 1 || got[0].err == nil {
		t.Fatalf("follower turned candidate: %+v, want an error", got)
	}
	f.readIndex(3)
	cn.processReady(2)
	if got := cn.reads[2]; len(got) != 2 || got[1].err == nil {
		t.Fatalf("candidate: %+v, want an error", got)
	}
	// A leader refuses a follower ahead of it (it may be deposed), and a
	// follower refuses to act as leader.
	l := cn.cores[0]
	if l.handleReadIndex(99, &ReadIndexRequest{Term: l.term + 1, FollowerID: 1}) {
		t.Fatal("leader took a request from a higher term")
	}
	if cn.cores[1].handleReadIndex(99, &ReadIndexRequest{Term: l.term, FollowerID: 2}) {
		t.Fatal("follower took a read-index request")
	}
}

// TestCoreFollowerReadAcknowledges: a follower's request in the leader's
// term is its acknowledgement; with three replicas the leader answers it
// without a round. A request from an older term, or a cluster where the
// two do not make a majority, still needs a round.
func TestCoreFollowerReadAcknowledges(t *testing.T) {
	cn := newCoreNet(t, 3)
	cn.campaign(0)
	idx := cn.propose(0, "x")
	cn.tick(1) // the followers learn the commit index
	l := cn.cores[0]
	before := cn.sent
	cn.cores[1].readIndex(1)
	cn.stabilize()
	if got := cn.reads[1]; len(got) != 1 || got[0].err != nil || got[0].index != idx {
		t.Fatalf("follower reads %+v, want one at %d", got, idx)
	}
	if got := cn.sent - before; got != 1 {
		t.Fatalf("a follower read cost %d messages, want 1 (the request; no round)", got)
	}

	// A request from an older term proves nothing about this one.
	rounds := l.readRounds
	if !l.handleReadIndex(77, &ReadIndexRequest{Term: l.term - 1, FollowerID: 1}) {
		t.Fatal("leader refused a request from an older term")
	}
	if len(l.readStates) != 0 {
		t.Fatalf("older-term request answered without a round: %+v", l.readStates)
	}
	cn.stabilize()
	if got := cn.reads[0]; len(got) != 1 || got[0].id != 77 || got[0].err != nil || l.readRounds != rounds+1 {
		t.Fatalf("older-term request: reads %+v after %d rounds, want one answer after one round", got, l.readRounds-rounds)
	}

	// Five replicas: leader and follower are two of three needed.
	cn5 := newCoreNet(t, 5)
	cn5.campaign(0)
	cn5.tick(1)
	before = cn5.sent
	cn5.cores[1].readIndex(1)
	cn5.stabilize()
	if got := cn5.reads[1]; len(got) != 1 || got[0].err != nil {
		t.Fatalf("follower reads %+v, want one answer", got)
	}
	if got := cn5.sent - before; got != 3 {
		t.Fatalf("a follower read with five replicas cost %d messages, want 3 (request, round to two peers)", got)
	}
}
