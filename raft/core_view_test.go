package raft

import (
	"testing"

	"github.com/ruaft/ruaft/persist"
)

// TestCoreEntryOutcome: an entry of the leader's term is pending while it
// cannot commit, committed once a majority has it, overwritten on the old
// leader once another leader took its index, and of unknown fate once the
// log is compacted past it.
func TestCoreEntryOutcome(t *testing.T) {
	cn := newCoreNet(t, 3)
	cn.campaign(0)
	c0 := cn.cores[0]
	if c0.role != Leader {
		t.Fatalf("core 0 is %v after campaigning", c0.role)
	}
	ok := cn.propose(0, "committed")
	if fate := c0.entryOutcome(ok, c0.term); fate != entryCommitted {
		t.Fatalf("replicated entry: fate %d, want committed", fate)
	}

	cn.isolate(0)
	oldTerm := c0.term
	lost := cn.propose(0, "lost")
	if fate := c0.entryOutcome(lost, oldTerm); fate != entryPending {
		t.Fatalf("entry of a cut-off leader: fate %d, want pending", fate)
	}
	if fate := c0.entryOutcome(lost+1, oldTerm); fate != entryPending {
		t.Fatalf("an index past the log of the leader of its term: fate %d, want pending", fate)
	}

	// 1 and 2 stop hearing from 0 and elect one of them.
	next := -1
	for range 4 * cn.cfgs[1].electionTicksMax {
		cn.tick(1)
		if cn.cores[1].role == Leader {
			next = 1
		} else if cn.cores[2].role == Leader {
			next = 2
		}
		if next >= 0 {
			break
		}
	}
	if next < 0 {
		t.Fatal("no new leader among the connected cores")
	}
	cn.propose(next, "winner") // the new leader's no-op is at index lost already
	cn.heal()
	cn.tick(cn.cfgs[next].heartbeatTicks) // a heartbeat brings 0 into line
	if c0.role != Follower {
		t.Fatalf("old leader is %v after the heal", c0.role)
	}
	if fate := c0.entryOutcome(lost, oldTerm); fate != entryOverwritten {
		t.Fatalf("overwritten entry: fate %d, want overwritten", fate)
	}
	// Once the log is compacted past it, what was there is lost.
	cn.propose(next, "more")
	s := &persist.Snapshot{Index: c0.log.commit, Data: []byte("state")}
	if !c0.prepareCompaction(s) {
		t.Fatal("compaction of the committed log refused")
	}
	if err := c0.compact(*s); err != nil {
		t.Fatal(err)
	}
	if fate := c0.entryOutcome(lost, oldTerm); fate != entryCompacted {
		t.Fatalf("entry compacted away: fate %d, want compacted", fate)
	}
	cn.checkNoViolations()
}

// TestCoreUnsaved: the core has unsaved state exactly until a ready batch
// hands it out, whether entries or a new term.
func TestCoreUnsaved(t *testing.T) {
	cn := newCoreNet(t, 3)
	cn.campaign(0)
	c := cn.cores[0]
	if c.unsaved() {
		t.Fatal("unsaved state after the batches were processed")
	}
	if _, _, ok := c.propose([]byte("x")); !ok {
		t.Fatal("leader refused a proposal")
	}
	if !c.unsaved() {
		t.Fatal("a proposed entry does not count as unsaved")
	}
	if rd := c.ready(); !rd.save || len(rd.entries) != 1 {
		t.Fatalf("ready after a proposal: save %v, %d entries", rd.save, len(rd.entries))
	}
	if c.unsaved() {
		t.Fatal("unsaved state after ready handed the entry out")
	}
	f := cn.cores[1]
	cn.stabilize()
	f.becomeFollower(f.term+1, NoLeader)
	if !f.unsaved() {
		t.Fatal("a new term does not count as unsaved")
	}
	if rd := f.ready(); !rd.save || rd.hardState.Term != f.term {
		t.Fatalf("ready after a new term: save %v, hard state %+v", rd.save, rd.hardState)
	}
	if f.unsaved() {
		t.Fatal("unsaved state after ready handed the term out")
	}
}

// TestCorePrepareCompaction: a snapshot the application took is completed
// with the entry's term and the configuration in force there, and refused
// once a snapshot covers its index.
func TestCorePrepareCompaction(t *testing.T) {
	cn := newCoreNet(t, 3)
	cn.campaign(0)
	c := cn.cores[0]
	idx := cn.propose(0, "a")
	cn.propose(0, "b")
	s := &persist.Snapshot{Index: idx, Data: []byte("state")}
	if !c.prepareCompaction(s) {
		t.Fatal("snapshot of a logged index refused")
	}
	if s.Term != c.term || len(s.Config) == 0 {
		t.Fatalf("prepared snapshot: term %d (want %d), %d bytes of configuration", s.Term, c.term, len(s.Config))
	}
	if err := c.compact(*s); err != nil {
		t.Fatal(err)
	}
	if again := (&persist.Snapshot{Index: idx}); c.prepareCompaction(again) {
		t.Fatal("snapshot at the snapshot index accepted again")
	}
	if past := (&persist.Snapshot{Index: c.log.lastIndex() + 1}); c.prepareCompaction(past) {
		t.Fatal("snapshot past the log accepted")
	}
}
