package raft

import (
	"bytes"
	"hash/crc32"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

// Adversarial review scenarios for the read, snapshot-receive and term-bound
// rules: each scripts the interleaving that would break the rule if the code
// got it wrong.

// heldAppend is an AppendEntries the test delivered to its target but whose
// answer it holds back from the sender.
type heldAppend struct {
	m    message
	resp *AppendEntriesResponse
}

// deliverHoldingAnswers delivers the AppendEntries in cn.pending from core
// `from` (dropping the rest) and returns their answers unstepped.
func (cn *coreNet) deliverHoldingAnswers(from int) []heldAppend {
	var held []heldAppend
	for _, e := range cn.pending {
		if e.from == from && e.m.ae != nil {
			held = append(held, heldAppend{m: e.m, resp: cn.cores[e.m.to].handleAppendEntries(e.m.ae)})
		}
	}
	cn.pending = nil
	return held
}

// tickOnly ticks only the given cores, stabilizing after each tick, until
// one of them leads (or k ticks passed); it returns the leader or NoLeader.
func (cn *coreNet) tickOnly(k int, ids ...int) int {
	for range k {
		for _, i := range ids {
			cn.cores[i].tick()
		}
		cn.stabilize()
		for _, i := range ids {
			if cn.cores[i].role == Leader {
				return i
			}
		}
	}
	return NoLeader
}

// readAnswer returns core i's answer to read id, if it produced one.
func (cn *coreNet) readAnswer(i int, id uint64) (readState, bool) {
	for _, rs := range cn.reads[i] {
		if rs.id == id {
			return rs, true
		}
	}
	return readState{}, false
}

// TestCoreReadNotConfirmedByEarlierRound: a read is answered only by
// acknowledgements of a round that started after it arrived. Leader 0 starts
// a round for read 1; the followers acknowledge it, but the answers are held.
// Meanwhile the followers elect a new leader, which commits "b". Read 2 then
// arrives at the deposed leader 0, which still believes it leads; the held
// answers of the earlier round reach it. Read 1 may be answered (it began
// before "b" was written), read 2 must not: it began after "b" was
// acknowledged, and 0's commit index does not cover "b".
func TestCoreReadNotConfirmedByEarlierRound(t *testing.T) {
	cn := newCoreNet(t, 3)
	cn.campaign(0)
	cn.propose(0, "a")
	cn.tick(cn.cfgs[0].heartbeatTicks)
	old := cn.cores[0]
	oldTerm := old.term

	old.readIndex(1)
	cn.processReady(0) // starts the round for read 1
	held := cn.deliverHoldingAnswers(0)
	if len(held) == 0 { // a coalescing leader may ask only a quorum's worth
		t.Fatal("the round for read 1 sent no AppendEntries")
	}

	cn.partition([]int{0}, []int{1, 2})
	nl := cn.tickOnly(10*cn.cfgs[0].electionTicksMax, 1, 2)
	if nl == NoLeader {
		t.Fatal("the majority elected no leader")
	}
	bIndex := cn.propose(nl, "b")
	cn.tickOnly(cn.cfgs[0].heartbeatTicks, 1, 2)
	if c := cn.cores[nl].log.commit; c < bIndex {
		t.Fatalf("new leader %d committed %d, want at least %d", nl, c, bIndex)
	}
	if old.role != Leader || old.term != oldTerm {
		t.Fatalf("old leader is %v in term %d; the scenario needs it to still lead term %d", old.role, old.term, oldTerm)
	}

	old.readIndex(2)
	for _, h := range held {
		old.handleAppendResponse(h.m, h.resp)
	}
	cn.stabilize()

	if rs, ok := cn.readAnswer(0, 1); ok && rs.err == nil && rs.index >= bIndex {
		t.Errorf("read 1 answered at %d, past the deposed leader's log", rs.index)
	}
	if rs, ok := cn.readAnswer(0, 2); ok && rs.err == nil {
		t.Fatalf("read 2 arrived after %q committed at %d in term %d, yet the deposed leader of term %d answered it at %d "+
			"(stale) with the acknowledgements of a round that started before it", "b", bIndex, cn.cores[nl].term, oldTerm, rs.index)
	}
	// Once the old leader hears of the new term, it fails read 2.
	cn.heal()
	cn.tick(cn.cfgs[0].heartbeatTicks)
	if rs, ok := cn.readAnswer(0, 2); !ok || rs.err == nil {
		t.Fatalf("read 2 at the deposed leader: %+v (answered %v), want ErrNotLeader", rs, ok)
	}
	cn.checkNoViolations()
}

// TestCoreReadDuringTransfer: leader 0 hands leadership to 1; 1 takes it
// (TimeoutNow) and commits "b" in the next term while 0 has not heard of it
// yet. A read that arrives at 0 after "b" committed must not be answered
// from 0's log: it waits, and fails once 0 learns of the new term.
func TestCoreReadDuringTransfer(t *testing.T) {
	cn := newCoreNet(t, 3)
	cn.campaign(0)
	cn.propose(0, "a")
	cn.tick(cn.cfgs[0].heartbeatTicks)
	old := cn.cores[0]
	oldTerm := old.term
	if err := old.transferLeadership(1); err != nil {
		t.Fatal(err)
	}
	cn.processReady(0)
	var sent bool
	for _, e := range cn.pending {
		if e.from == 0 && e.m.tn != nil && e.m.to == 1 {
			cn.cores[1].handleTimeoutNow(e.m.tn) // the answer never reaches 0
			sent = true
		}
	}
	cn.pending = nil
	if !sent {
		t.Fatal("the transfer sent no TimeoutNow to 1")
	}
	cn.partition([]int{0}, []int{1, 2})
	cn.stabilize()
	if cn.cores[1].role != Leader {
		nl := cn.tickOnly(10*cn.cfgs[0].electionTicksMax, 1, 2)
		if nl == NoLeader {
			t.Fatal("the majority elected no leader")
		}
	}
	nl := cn.leaders()
	var bIndex uint64
	for _, l := range nl {
		if l != 0 {
			bIndex = cn.propose(l, "b")
		}
	}
	if old.role != Leader || old.term != oldTerm {
		t.Fatalf("old leader is %v in term %d; the scenario needs it to still lead term %d", old.role, old.term, oldTerm)
	}
	old.readIndex(7)
	// A tick short of the check-quorum bound: 0 still leads and retries its
	// round, in vain.
	old.tick()
	cn.stabilize()
	if rs, ok := cn.readAnswer(0, 7); ok && rs.err == nil {
		t.Fatalf("the leader handing over answered a read at %d after %q committed at %d in the next term", rs.index, "b", bIndex)
	}
	cn.heal()
	cn.tick(cn.cfgs[0].heartbeatTicks)
	if rs, ok := cn.readAnswer(0, 7); !ok || rs.err == nil {
		t.Fatalf("read at the old leader: %+v (answered %v), want ErrNotLeader", rs, ok)
	}
	cn.checkNoViolations()
}

// TestCoreCheckQuorumFailsPendingReads: reads waiting on a leader that loses
// its majority fail when check-quorum makes it step down, both those waiting
// for a round and those waiting for the term's no-op.
func TestCoreCheckQuorumFailsPendingReads(t *testing.T) {
	cn := newCoreNet(t, 3)
	cn.partition([]int{0}, []int{1, 2})
	c := cn.cores[0]
	c.becomeCandidate(false)
	c.votes[1] = 1
	c.becomeLeader() // its no-op cannot commit
	c.readIndex(1)   // waits for the no-op
	cn.tick(1)
	if len(cn.reads[0]) != 0 {
		t.Fatalf("answered before the no-op committed: %+v", cn.reads[0])
	}
	cn.tick(2 * cn.cfgs[0].electionTicks)
	if c.role == Leader {
		t.Fatal("the leader without a majority did not step down")
	}
	if rs, ok := cn.readAnswer(0, 1); !ok || rs.err == nil {
		t.Fatalf("read waiting for the no-op: %+v (answered %v), want an error", rs, ok)
	}
}

// TestCoreTermsWithoutPreVote: with pre-vote off, an isolated node runs an
// election every timeout and its term grows; the bound on term jumps must
// not keep it out when it rejoins, and the cluster goes on committing.
func TestCoreTermsWithoutPreVote(t *testing.T) {
	cn := newCoreNet(t, 3, func(c *coreConfig) { c.preVote = false })
	cn.campaign(0)
	cn.propose(0, "a")
	cn.isolate(2)
	cn.tick(300 * cn.cfgs[0].electionTicksMax)
	if d := cn.cores[2].term - cn.cores[0].term; d < 100 {
		t.Fatalf("the isolated node's term is only %d ahead; the scenario needs many elections", d)
	}
	cn.heal()
	cn.tick(4 * cn.cfgs[0].electionTicksMax)
	ls := cn.leaders()
	if len(ls) != 1 {
		t.Fatalf("leaders %v after the rejoin, want one", ls)
	}
	cn.propose(ls[0], "b")
	cn.tick(cn.cfgs[0].heartbeatTicks)
	for i := range 3 {
		if got := cn.appliedCommands(i); len(got) != 2 || got[1] != "b" {
			t.Errorf("core %d applied %v, want [a b]", i, got)
		}
		if cn.cores[i].term != cn.cores[ls[0]].term {
			t.Errorf("core %d in term %d, leader in %d", i, cn.cores[i].term, cn.cores[ls[0]].term)
		}
	}
	cn.checkNoViolations()
}

// TestCoreSnapshotCompletedAfterLogOvertookIt: a follower receives the
// first chunk of a snapshot at index 6, then (a retry of) the leader's
// AppendEntries brings its log and commit index past 6; the snapshot's last
// chunk arrives afterwards. The snapshot must not replace the longer log or
// roll the commit index back; a duplicate of the last chunk changes nothing
// either.
func TestCoreSnapshotCompletedAfterLogOvertookIt(t *testing.T) {
	c := emptyFollower(2)
	data := filled('s', 16)
	s := &snapSender{term: 5, leader: 0, index: 6, snapTerm: 5, data: data, chunk: 8}
	if s.send(c, 1) {
		t.Fatal("one chunk of two installed the snapshot")
	}
	var ents []persist.Entry
	for i := uint64(1); i <= 9; i++ {
		ents = append(ents, persist.Entry{Index: i, Term: 5, Type: persist.EntryCommand, Data: []byte{byte('0' + i)}})
	}
	resp := c.handleAppendEntries(&AppendEntriesRequest{Term: 5, LeaderID: 0, Entries: ents, LeaderCommit: 8})
	if !resp.Success || c.log.commit != 8 {
		t.Fatalf("AppendEntries: %+v, commit %d", resp, c.log.commit)
	}
	for range 2 { // the last chunk, then a duplicate of it
		last := c.handleInstallSnapshot(s.request(8))
		if !last.Installed {
			t.Fatalf("last chunk answered %+v, want Installed (the log covers the snapshot)", last)
		}
		if c.log.commit != 8 || c.log.lastIndex() != 9 || c.log.snap.Index != 0 {
			t.Fatalf("after the last chunk: commit %d, last %d, snapshot %d; want 8, 9, 0", c.log.commit, c.log.lastIndex(), c.log.snap.Index)
		}
		if c.toCheck != nil || c.recv != nil {
			t.Fatal("a snapshot the log covers is kept for installing")
		}
	}
}

// TestCoreSnapshotChunkCorruptedInFlight: one flipped byte in a middle chunk
// (the offsets and sizes intact) is caught by the checksum of the whole
// snapshot: nothing is installed, the buffer is dropped, and the resent
// snapshot installs with the right bytes.
func TestCoreSnapshotChunkCorruptedInFlight(t *testing.T) {
	c := emptyFollower(2)
	data := []byte("0123456789abcdefghijklmnopqrstuv")
	s := &snapSender{term: 5, leader: 0, index: 10, snapTerm: 4, data: data, chunk: 8}
	sum := crc32.Checksum(data, castagnoli)
	for off := uint64(0); off < uint64(len(data)); off += 8 {
		req := s.request(off)
		if off == 16 {
			bad := append([]byte(nil), req.Data...)
			bad[3] ^= 0x40
			req.Data = bad
		}
		resp := c.handleInstallSnapshot(req)
		if resp.Installed {
			t.Fatalf("a snapshot with a corrupted chunk was installed (checksum %08x)", sum)
		}
	}
	if c.recv != nil || c.toCheck != nil || c.log.snap.Index != 0 {
		t.Fatal("the corrupted snapshot was kept")
	}
	s.offset = 0
	if !s.send(c, 4) {
		t.Fatal("the resent snapshot was not installed")
	}
	if c.toCheck != nil {
		if c.finishSnapshot(c.toCheck, nil); c.log.snap.Index != 10 {
			t.Fatalf("snapshot index %d after validation, want 10", c.log.snap.Index)
		}
	}
	if string(c.log.snap.Data) != string(data) {
		t.Fatalf("installed %q, want %q", c.log.snap.Data, data)
	}
}

// TestCoreSnapshotReceiveRestart: a follower crashes after receiving some
// chunks of a snapshot. The partial buffer is gone after the restart (it was
// never stored); the next chunk, at a later offset, is answered with offset
// 0, the leader starts the transfer over, and the follower installs the
// whole snapshot and catches up.
func TestCoreSnapshotReceiveRestart(t *testing.T) {
	cn := newCoreNet(t, 3, func(c *coreConfig) { c.chunkBytes = 4 })
	cn.campaign(0)
	cn.isolate(2)
	for i := range 20 {
		cn.propose(0, string(rune('a'+i)))
	}
	l := cn.cores[0]
	data := []byte("the application state, 31 bytes")
	if err := l.compact(persist.Snapshot{Index: 15, Term: l.term, Data: data}); err != nil {
		t.Fatal(err)
	}
	// Let three chunks through, then crash the follower while it receives.
	var chunks int
	cn.dropFn = func(from int, m message) bool {
		if m.is != nil {
			chunks++
			if chunks == 4 {
				cn.crash(2)
				return true
			}
		}
		return false
	}
	cn.heal()
	for range 10 * cn.cfgs[0].heartbeatTicks {
		if cn.cores[2] == nil {
			break
		}
		cn.tick(1)
	}
	if cn.cores[2] != nil {
		t.Fatal("setup: the follower never crashed mid-transfer")
	}
	cn.dropFn = nil
	cn.restart(2)
	f := cn.cores[2]
	if f.recv != nil || f.log.snap.Index != 0 {
		t.Fatalf("restarted follower: buffer %v, snapshot %d; want neither", f.recv != nil, f.log.snap.Index)
	}
	cn.tick(20 * cn.cfgs[0].heartbeatTicks)
	if f.log.snap.Index != 15 || !bytes.Equal(f.log.snap.Data, data) {
		t.Fatalf("follower snapshot %d %q, want 15 %q", f.log.snap.Index, f.log.snap.Data, data)
	}
	if f.log.commit != l.log.commit || f.log.lastIndex() != l.log.lastIndex() {
		t.Fatalf("follower commit %d last %d, leader %d %d", f.log.commit, f.log.lastIndex(), l.log.commit, l.log.lastIndex())
	}
	cn.checkNoViolations()
}
