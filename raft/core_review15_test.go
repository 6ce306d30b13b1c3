package raft

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

// Adversarial scripted tests of membership changes (issue 15 review): exact
// interleavings in the deterministic core. Helpers are prefixed rv so they
// stay apart from the other membership tests' helpers.

// rvNet is a net of n cores (ids = positions) whose bootstrap configuration
// has the voters given; the other cores start empty, as joiners. Cores not
// in live are left out (nil), which gives clusters whose ids are not
// 0..k-1.
func rvNet(t *testing.T, n int, voters []int, live []int, tweak ...func(*coreConfig)) *coreNet {
	boot := Membership{}
	for _, v := range voters {
		boot.Members = append(boot.Members, Member{ID: v, Addr: fmt.Sprintf("addr-%d", v)})
	}
	cn := newCoreNet(t, n, append([]func(*coreConfig){func(c *coreConfig) {
		if slices.Contains(voters, c.id) {
			c.bootstrap = boot
		} else {
			c.bootstrap = Membership{}
		}
		c.maxPromoteLag = 1000
	}}, tweak...)...)
	if live != nil {
		for i := range n {
			if !slices.Contains(live, i) {
				cn.cores[i] = nil
			}
		}
	}
	return cn
}

func rvAdd(id int) confChange {
	return confChange{op: opAddLearner, member: Member{ID: id, Addr: fmt.Sprintf("addr-%d", id)}}
}
func rvPromote(id int) confChange { return confChange{op: opPromote, member: Member{ID: id}} }
func rvRemove(id int) confChange  { return confChange{op: opRemove, member: Member{ID: id}} }

// rvChange proposes ch at core i and stabilizes.
func (cn *coreNet) rvChange(i int, ch confChange) error {
	_, _, err := cn.cores[i].proposeConfChange(ch, cn.cores[i].cfg.maxPromoteLag)
	cn.stabilize()
	return err
}

// rvMustCommit proposes ch at leader i and fails unless it commits.
func (cn *coreNet) rvMustCommit(i int, ch confChange) {
	cn.t.Helper()
	if err := cn.rvChange(i, ch); err != nil {
		cn.t.Fatalf("%v %d at %d: %v", ch.op, ch.member.ID, i, err)
	}
	if c := cn.cores[i]; c.confIndex() > c.log.commit {
		cn.t.Fatalf("%v %d at %d did not commit (conf index %d, commit %d)", ch.op, ch.member.ID, i, c.confIndex(), c.log.commit)
	}
}

// rvOneLeader ticks until exactly one live core leads (at most ticks
// ticks) and returns it, or fails.
func (cn *coreNet) rvOneLeader(ticks int) int {
	cn.t.Helper()
	for range ticks {
		if ls := cn.leaders(); len(ls) == 1 {
			return ls[0]
		}
		cn.tick(1)
	}
	cn.t.Fatalf("no single leader after %d ticks: leaders %v", ticks, cn.leaders())
	return -1
}

// TestReview15VoteForVoterNotYetKnown: a voter that missed a promotion (it
// was cut off) must still vote for the promoted node once no leader is
// heard: refusing every candidate outside its own, stale configuration
// leaves a cluster with a live majority of voters without a leader forever.
//
// Voters {0,1,2}; 1 is cut off; 0 adds and promotes 3, then removes
// itself: voters {1,2,3}, committed by 2 and 3. 2 crashes, 0 is gone, 1
// comes back. 1 and 3 are two of three voters: 3 (with the newest log)
// needs 1's vote, which 1 refused because 3 is a learner in 1's log.
func TestReview15VoteForVoterNotYetKnown(t *testing.T) {
	for _, pre := range []bool{true, false} {
		t.Run(fmt.Sprint("prevote=", pre), func(t *testing.T) {
			cn := rvNet(t, 4, []int{0, 1, 2}, nil, func(c *coreConfig) { c.preVote = pre })
			cn.campaign(0)
			cn.propose(0, "a")
			cn.isolate(1)
			cn.rvMustCommit(0, rvAdd(3))
			cn.tick(2)
			cn.rvMustCommit(0, rvPromote(3))
			cn.rvMustCommit(0, rvRemove(0))
			if cn.cores[0].role == Leader {
				t.Fatal("removed leader still leads")
			}
			if got := cn.cores[3].conf().Voters(); !slices.Equal(got, []int{1, 2, 3}) {
				t.Fatalf("3's voters %v", got)
			}
			if got := cn.cores[1].conf().Voters(); !slices.Equal(got, []int{0, 1, 2}) {
				t.Fatalf("setup: 1 should have missed the changes, has voters %v", got)
			}
			cn.crash(0)
			cn.crash(2)
			cn.heal()
			l := cn.rvOneLeader(20 * cn.cfgs[1].electionTicksMax)
			if l != 3 {
				t.Fatalf("leader %d, want 3 (the only one with the whole log)", l)
			}
			idx := cn.propose(3, "b")
			cn.tick(2)
			if cn.cores[1].log.commit < idx || !slices.Equal(cn.appliedCommands(1), []string{"a", "b"}) {
				t.Fatalf("1 applied %v (commit %d, want %d)", cn.appliedCommands(1), cn.cores[1].log.commit, idx)
			}
			cn.checkNoViolations()
		})
	}
}

// TestReview15NonMemberRefusedWhileLeaderHeard: the other side of the rule
// above: a candidate outside the configuration (a removed node that never
// learned it, with a higher term and a long log) gets no vote and does not
// change anyone's term while the cluster's leader is heard, with pre-vote
// and check-quorum both off.
func TestReview15NonMemberRefusedWhileLeaderHeard(t *testing.T) {
	cn := rvNet(t, 4, []int{0, 1, 2, 3}, nil, func(c *coreConfig) { c.preVote, c.checkQuorum = false, false })
	cn.campaign(0)
	cn.isolate(3)
	cn.rvMustCommit(0, rvRemove(3))
	cn.tick(5 * cn.cfgs[3].electionTicksMax) // 3 campaigns alone: its term grows
	if cn.cores[3].term <= cn.cores[0].term+2 {
		t.Fatalf("setup: 3's term %d, leader's %d", cn.cores[3].term, cn.cores[0].term)
	}
	term := cn.cores[0].term
	cn.heal()
	cn.tick(5 * cn.cfgs[3].electionTicksMax)
	if ls := cn.leaders(); !slices.Equal(ls, []int{0}) || cn.cores[0].term != term {
		t.Fatalf("leaders %v term %d (was %d): the removed node disrupted the cluster", ls, cn.cores[0].term, term)
	}
	for _, i := range []int{0, 1, 2} {
		c := cn.cores[i]
		resp := c.handleRequestVote(&RequestVoteRequest{Term: term + 50, CandidateID: 3,
			LastLogIndex: c.log.lastIndex() + 100, LastLogTerm: term + 49})
		if resp.VoteGranted || c.term != term {
			t.Fatalf("core %d: removed node's vote request %+v, term now %d", i, resp, c.term)
		}
		resp = c.handleRequestVote(&RequestVoteRequest{Term: term + 50, CandidateID: 3, PreVote: true,
			LastLogIndex: c.log.lastIndex() + 100, LastLogTerm: term + 49, LeadershipTransfer: true})
		if resp.VoteGranted || c.term != term {
			t.Fatalf("core %d: removed node's pre-vote request %+v, term now %d", i, resp, c.term)
		}
	}
	cn.checkNoViolations()
}

// TestReview15PromoteBehindCompaction: a learner that needs the leader's
// snapshot (its log ends before the leader's first entry) is not caught up,
// however few entries the log holds past the snapshot: promoting it would
// make a voter that cannot store a single entry until a whole snapshot has
// crossed, and with one other voter down the cluster stops committing.
func TestReview15PromoteBehindCompaction(t *testing.T) {
	// The learner (3) validates snapshots in the application, which this
	// net never finishes: it stays active (it answers every chunk) and
	// behind the compaction.
	cn := rvNet(t, 4, []int{0, 1, 2}, nil, func(c *coreConfig) { c.checkSnapshots = c.id == 3 })
	cn.campaign(0)
	for i := range 5 {
		cn.propose(0, fmt.Sprint(i))
	}
	c := cn.cores[0]
	idx := c.log.commit
	snap := persist.Snapshot{Index: idx, Term: c.term, Data: []byte("state"), Config: c.snapshotConfig(idx)}
	if err := cn.stores[0].SaveSnapshot(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	if err := c.compact(snap); err != nil {
		t.Fatal(err)
	}
	cn.rvMustCommit(0, rvAdd(3))
	cn.tick(3)
	pr := c.prs[3]
	if pr.match >= c.log.snap.Index || pr.silent >= c.cfg.electionTicks {
		t.Fatalf("setup: learner match %d silent %d, snapshot %d", pr.match, pr.silent, c.log.snap.Index)
	}
	if err := cn.rvChange(0, rvPromote(3)); !errors.Is(err, ErrLearnerBehind) {
		t.Fatalf("promote of a learner behind the snapshot: %v, want ErrLearnerBehind", err)
	}
	// Once it has the snapshot, it may be promoted.
	cn.cfgs[3].checkSnapshots = false
	cn.cores[3].cfg.checkSnapshots = false
	cn.cores[3].recv = nil
	cn.tick(3)
	if pr.match < c.log.snap.Index {
		t.Fatalf("learner match %d after the snapshot %d", pr.match, c.log.snap.Index)
	}
	cn.rvMustCommit(0, rvPromote(3))
	cn.checkNoViolations()
}

// rvCheckApplied fails if two cores (or one core before and after a
// restart) applied different entries at an index: committed entries never
// change.
func (cn *coreNet) rvCheckApplied() {
	cn.t.Helper()
	seen := map[uint64]Entry{}
	for i, es := range cn.applied {
		for _, e := range es {
			if o, ok := seen[e.Index]; ok && (o.Term != e.Term || o.Type != e.Type || string(o.Data) != string(e.Data)) {
				cn.t.Fatalf("index %d: core %d applied %d/%v %q, another %d/%v %q", e.Index, i, e.Term, e.Type, e.Data, o.Term, o.Type, o.Data)
			}
			seen[e.Index] = e
		}
	}
}

// TestReview15OngaroBug2015: the interleaving of Ongaro's 2015 report. A
// leader (0) of {0,1,2,3} promotes learner 4 in a minority (uncommitted,
// {0..4} on 0 and 4 only) and crashes; 1 wins term 2 and must not remove 0
// before its own no-op commits. Once it does, it removes 0 with 1 and 2
// ({1,2,3}). 0 comes back with 3 and 4: with {0..4} in its log it would win
// with 0, 3 and 4 and overwrite the committed removal — unless 3 holds an
// entry of term 2, which the no-op rule guarantees.
func TestReview15OngaroBug2015(t *testing.T) {
	cn := rvNet(t, 5, []int{0, 1, 2, 3}, nil)
	cn.campaign(0)
	cn.propose(0, "a")
	cn.rvMustCommit(0, rvAdd(4))
	cn.tick(2)
	cn.partition([]int{0, 4}, []int{1, 2, 3})
	if err := cn.rvChange(0, rvPromote(4)); err != nil {
		t.Fatal(err)
	}
	if c := cn.cores[0]; c.confIndex() <= c.log.commit || !cn.cores[4].conf().IsVoter(4) {
		t.Fatalf("setup: promote committed %v / 4's conf %v", c.confIndex() <= c.log.commit, cn.cores[4].conf())
	}
	cn.crash(0)
	// 1 is elected but its no-op is not replicated yet.
	cn.dropFn = func(from int, m message) bool { return from == 1 && m.ae != nil }
	for _, i := range []int{2, 3} {
		cn.cores[i].electionElapsed = cn.cfgs[i].electionTicks // 0's lease is over
	}
	cn.campaign(1)
	if cn.cores[1].role != Leader {
		t.Fatalf("1 is %v", cn.cores[1].role)
	}
	if err := cn.rvChange(1, rvRemove(0)); !errors.Is(err, ErrChangeInProgress) {
		t.Fatalf("change before the term's no-op commits: %v, want ErrChangeInProgress", err)
	}
	cn.dropFn = nil
	cn.tick(2)
	cn.partition([]int{0, 3, 4}, []int{1, 2})
	cn.rvMustCommit(1, rvRemove(0))
	if got := cn.cores[1].voters; !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("voters %v", got)
	}
	cn.restart(0)
	cn.tick(10 * cn.cfgs[0].electionTicksMax)
	for _, i := range []int{0, 3, 4} {
		if cn.cores[i].role == Leader {
			t.Fatalf("core %d leads in the minority {0,3,4} (term %d)", i, cn.cores[i].term)
		}
	}
	if ls := cn.leaders(); !slices.Equal(ls, []int{1}) {
		t.Fatalf("leaders %v", ls)
	}
	cn.propose(1, "b")
	cn.heal()
	cn.tick(5 * cn.cfgs[0].electionTicksMax)
	l := cn.rvOneLeader(10 * cn.cfgs[0].electionTicksMax)
	if l == 0 || l == 4 {
		t.Fatalf("leader %d", l)
	}
	cn.propose(l, "c")
	cn.tick(2)
	for _, i := range []int{1, 2, 3} {
		if got := cn.appliedCommands(i); !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Fatalf("core %d applied %v", i, got)
		}
	}
	cn.rvCheckApplied()
	cn.checkNoViolations()
}

// TestReview15SnapshotConfigReplacesLogs: a follower holding an uncommitted
// configuration entry of a deposed leader gets a snapshot from the new
// leader whose configuration differs from every one in its log: the
// snapshot's is in force afterwards, and after a restart.
func TestReview15SnapshotConfigReplacesLogs(t *testing.T) {
	cn := rvNet(t, 6, []int{0, 1, 2, 3, 4}, nil)
	cn.campaign(0)
	cn.propose(0, "a")
	cn.partition([]int{0, 1}, []int{2, 3, 4, 5})
	if err := cn.rvChange(0, rvRemove(4)); err != nil {
		t.Fatal(err)
	}
	if cn.cores[1].conf().Contains(4) {
		t.Fatal("setup: 1 did not get the removal")
	}
	cn.crash(0)
	cn.isolate(1)
	cn.tick(3 * cn.cfgs[2].electionTicksMax)
	l := cn.rvOneLeader(10 * cn.cfgs[2].electionTicksMax)
	cn.rvMustCommit(l, rvAdd(5))
	for i := range 5 {
		cn.propose(l, fmt.Sprint(i))
	}
	c := cn.cores[l]
	idx := c.log.commit
	snap := persist.Snapshot{Index: idx, Term: c.term, Data: []byte("state"), Config: c.snapshotConfig(idx)}
	if err := cn.stores[l].SaveSnapshot(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	if err := c.compact(snap); err != nil {
		t.Fatal(err)
	}
	cn.heal()
	cn.tick(3)
	want := "{0 1 2 3 4 5L}"
	if f := cn.cores[1]; f.log.snap.Index != idx || f.conf().String() != want || f.confIndex() != idx {
		t.Fatalf("1: snapshot %d (want %d), configuration %v at %d, want %s", f.log.snap.Index, idx, f.conf(), f.confIndex(), want)
	}
	cn.crash(1)
	cn.restart(1)
	if got := cn.cores[1].conf().String(); got != want {
		t.Fatalf("1 restarted with %s, want %s", got, want)
	}
	cn.tick(3)
	cn.rvCheckApplied()
	cn.checkNoViolations()
}

// TestReview15ReadAckOfRemovedNode: a read pending at a leader is not
// confirmed by the acknowledgement of a node whose removal the leader has
// appended since; it is once a majority of the new configuration acks.
func TestReview15ReadAckOfRemovedNode(t *testing.T) {
	cn := rvNet(t, 5, []int{0, 1, 2, 3, 4}, nil)
	cn.campaign(0)
	cn.propose(0, "a")
	cn.partition([]int{0, 4}, []int{1, 2, 3})
	cn.cores[0].readIndex(7)
	cn.tick(3)
	if len(cn.reads[0]) != 0 {
		t.Fatalf("read confirmed by 2 of 5: %+v", cn.reads[0])
	}
	if err := cn.rvChange(0, rvRemove(4)); err != nil {
		t.Fatal(err)
	}
	cn.partition([]int{0, 4, 3}, []int{1, 2})
	cn.tick(3)
	if len(cn.reads[0]) != 0 {
		t.Fatalf("read confirmed by 0, 3 and removed 4: %+v", cn.reads[0])
	}
	cn.heal()
	cn.tick(3)
	if len(cn.reads[0]) != 1 || cn.reads[0][0].err != nil || cn.reads[0][0].id != 7 {
		t.Fatalf("read after healing: %+v", cn.reads[0])
	}
	cn.checkNoViolations()
}

// TestReview15TransferToNonVoters: leadership goes to voters of the
// configuration in force only: not to a node whose removal is appended, not
// to a learner, not to a stranger; a removed node ignores TimeoutNow; a
// running transfer blocks configuration changes.
func TestReview15TransferToNonVoters(t *testing.T) {
	cn := rvNet(t, 5, []int{0, 1, 2, 3}, nil)
	cn.campaign(0)
	cn.rvMustCommit(0, rvAdd(4))
	cn.rvMustCommit(0, rvRemove(3))
	c := cn.cores[0]
	for _, to := range []int{3, 4, 9} {
		if err := c.transferLeadership(to); !errors.Is(err, ErrBadPeer) {
			t.Errorf("transfer to %d: %v, want ErrBadPeer", to, err)
		}
	}
	// 3 never learned of its removal (the leader stops replicating to it
	// at once): a stale TimeoutNow makes it campaign with the transfer
	// flag, which must not move anyone's term or leader.
	term := c.term
	r := cn.cores[3]
	r.handleTimeoutNow(&TimeoutNowRequest{Term: c.term, LeaderID: 0, LastLogIndex: r.log.lastIndex()})
	cn.stabilize()
	for _, i := range []int{0, 1, 2} {
		if cn.cores[i].term != term {
			t.Fatalf("core %d moved to term %d (was %d) for a removed node's transfer campaign", i, cn.cores[i].term, term)
		}
	}
	if ls := cn.leaders(); !slices.Equal(ls, []int{0}) {
		t.Fatalf("leaders %v", ls)
	}
	cn.isolate(2)
	if err := c.transferLeadership(2); err != nil {
		t.Fatal(err)
	}
	if err := cn.rvChange(0, rvPromote(4)); !errors.Is(err, ErrChangeInProgress) {
		t.Fatalf("change during a transfer: %v, want ErrChangeInProgress", err)
	}
	cn.heal()
	cn.tick(3)
	if ls := cn.leaders(); !slices.Equal(ls, []int{2}) {
		t.Fatalf("leaders after transfer %v", ls)
	}
	cn.checkNoViolations()
}

// TestReview15SparseIDs: a cluster whose ids are not 0..n-1 ({3,7,9}, a
// joiner 5) elects, grows, replaces its leader and shrinks.
func TestReview15SparseIDs(t *testing.T) {
	cn := rvNet(t, 10, []int{3, 7, 9}, []int{3, 5, 7, 9})
	l := cn.rvOneLeader(10 * cn.cfgs[3].electionTicksMax)
	cn.propose(l, "a")
	cn.rvMustCommit(l, rvAdd(5))
	cn.tick(2)
	cn.rvMustCommit(l, rvPromote(5))
	cn.rvMustCommit(l, rvRemove(l))
	cn.crash(l)
	l2 := cn.rvOneLeader(10 * cn.cfgs[3].electionTicksMax)
	var want []int
	for _, v := range []int{3, 5, 7, 9} {
		if v != l {
			want = append(want, v)
		}
	}
	if got := cn.cores[l2].voters; !slices.Equal(got, want) {
		t.Fatalf("voters %v, want %v", got, want)
	}
	cn.propose(l2, "b")
	other := want[0]
	if other == l2 {
		other = want[1]
	}
	cn.isolate(other)
	cn.propose(l2, "c") // 2 of 3
	cn.heal()
	cn.tick(2)
	for _, i := range want {
		if got := cn.appliedCommands(i); !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Fatalf("core %d applied %v", i, got)
		}
	}
	cn.rvCheckApplied()
	cn.checkNoViolations()
}
