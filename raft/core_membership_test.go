package raft

// Scripted core tests of membership changes, one per rule of the design
// (learners, promotion lag, the 2015 rule, removal of the leader, refusals).
// Kept in one file above ~500 lines on purpose: the rules read together, and
// the review tests of the same rules live in core_review15_*_test.go.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

// Scripted tests of membership changes in the deterministic core, one per
// rule (issue 15).

// newMemberNet is a net of n cores whose bootstrap configuration has the
// voters given; the other cores start with an empty configuration, as
// replicas waiting to join.
func newMemberNet(t *testing.T, n int, voters []int, tweak ...func(*coreConfig)) *coreNet {
	boot := Membership{}
	for _, v := range voters {
		boot.Members = append(boot.Members, Member{ID: v, Addr: fmt.Sprintf("addr-%d", v)})
	}
	return newCoreNet(t, n, append([]func(*coreConfig){func(c *coreConfig) {
		if slices.Contains(voters, c.id) {
			c.bootstrap = boot
		} else {
			c.bootstrap = Membership{}
		}
		c.maxPromoteLag = 5
	}}, tweak...)...)
}

// change proposes ch at leader i and stabilizes.
func (cn *coreNet) change(i int, ch confChange) error {
	_, _, err := cn.cores[i].proposeConfChange(ch, cn.cores[i].cfg.maxPromoteLag)
	cn.stabilize()
	return err
}

func (cn *coreNet) mustChange(i int, ch confChange) {
	cn.t.Helper()
	if err := cn.change(i, ch); err != nil {
		cn.t.Fatalf("change %v %d at %d: %v", ch.op, ch.member.ID, i, err)
	}
	if c := cn.cores[i]; c.role == Leader && c.confIndex() > c.log.commit {
		cn.t.Fatalf("change %v %d at %d did not commit (conf index %d, commit %d)", ch.op, ch.member.ID, i, c.confIndex(), c.log.commit)
	}
}

func addLearner(id int) confChange {
	return confChange{op: opAddLearner, member: Member{ID: id, Addr: fmt.Sprintf("addr-%d", id)}}
}
func promote(id int) confChange { return confChange{op: opPromote, member: Member{ID: id}} }
func remove(id int) confChange  { return confChange{op: opRemove, member: Member{ID: id}} }

// commits reports whether a proposal at leader l commits on the current
// links (after a few ticks).
func (cn *coreNet) commits(l int, data string) bool {
	cn.t.Helper()
	idx := cn.propose(l, data)
	cn.tick(2)
	return cn.cores[l].log.commit >= idx
}

// TestCoreMemberAddInTerm: a change bound to a term (AddLearnerInTerm) is
// made only by the leader of that term. A leader that lost leadership and
// won it back leads a later term and refuses a change checked in the
// earlier one (or for a later term), appending nothing, as does a follower;
// the same change bound to the term it leads is made.
func TestCoreMemberAddInTerm(t *testing.T) {
	cn := newMemberNet(t, 4, []int{0, 1, 2})
	cn.campaign(0)
	cn.propose(0, "a")
	checked := cn.cores[0].term

	// Leadership moves to 1 and back to 0.
	for _, to := range []int{1, 0} {
		if err := cn.cores[cn.leaders()[0]].transferLeadership(to); err != nil {
			t.Fatalf("transfer to %d: %v", to, err)
		}
		cn.stabilize()
		cn.propose(to, "x")
	}
	if ls := cn.leaders(); !slices.Equal(ls, []int{0}) || cn.cores[0].term <= checked {
		t.Fatalf("leaders %v, term %d (checked in %d)", ls, cn.cores[0].term, checked)
	}

	last := cn.cores[0].log.lastIndex()
	ch := addLearner(3)
	for _, term := range []uint64{checked, cn.cores[0].term + 1} {
		ch.term = term
		if err := cn.change(0, ch); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("a change for term %d at the leader of term %d: %v, want ErrNotLeader", term, cn.cores[0].term, err)
		}
		if got := cn.cores[0].log.lastIndex(); got != last {
			t.Fatalf("a refused change appended: last index %d, was %d", got, last)
		}
	}
	// At a follower, even for the term it is in.
	ch.term = cn.cores[1].term
	if err := cn.change(1, ch); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("a change at a follower: %v, want ErrNotLeader", err)
	}

	ch.term = cn.cores[0].term
	cn.mustChange(0, ch)
	if !slices.Equal(cn.cores[0].conf().Learners(), []int{3}) {
		t.Fatalf("3 is not a learner after the change for the leader's term: %+v", cn.cores[0].conf())
	}
	cn.checkNoViolations()
}

// TestCoreMemberLearnerAddPromote: a learner gets the log, counts toward no
// quorum and never campaigns; once promoted it counts, and the four voters
// need three for a quorum.
func TestCoreMemberLearnerAddPromote(t *testing.T) {
	cn := newMemberNet(t, 4, []int{0, 1, 2})
	cn.campaign(0)
	cn.propose(0, "a")
	cn.mustChange(0, addLearner(3))
	cn.propose(0, "b")
	cn.tick(1) // the commit index reaches the learner
	l := cn.cores[3]
	if got := cn.appliedCommands(3); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("learner applied %v", got)
	}
	if m := l.conf(); !slices.Equal(m.Learners(), []int{3}) || !slices.Equal(m.Voters(), []int{0, 1, 2}) {
		t.Fatalf("learner's configuration %v", m)
	}
	if a, _ := l.conf().Get(3); a.Addr != "addr-3" {
		t.Fatalf("learner's address %q", a.Addr)
	}
	// The learner counts toward no quorum: with only the learner, nothing
	// commits, and check-quorum deposes the leader.
	cn.partition([]int{0, 3}, []int{1, 2})
	if cn.commits(0, "no quorum") {
		t.Fatal("leader + learner committed")
	}
	cn.tick(2 * cn.cfgs[0].electionTicks)
	if cn.cores[0].role == Leader {
		t.Fatal("leader with only a learner kept leading past check-quorum")
	}
	// A learner never campaigns, whatever the time without a leader.
	cn.isolate(3)
	term := l.term
	cn.tick(5 * cn.cfgs[3].electionTicksMax)
	if l.role != Follower || l.term != term {
		t.Fatalf("learner is %v in term %d (was %d)", l.role, l.term, term)
	}
	cn.heal()
	cn.tick(3 * cn.cfgs[0].electionTicksMax)
	lead := cn.leaders()
	if len(lead) != 1 || lead[0] == 3 {
		t.Fatalf("leaders %v", lead)
	}
	ld := lead[0]
	cn.tick(2)
	cn.mustChange(ld, promote(3))
	if !l.isVoter() || !slices.Equal(cn.cores[ld].voters, []int{0, 1, 2, 3}) {
		t.Fatalf("after promote: learner voter %v, leader's voters %v", l.isVoter(), cn.cores[ld].voters)
	}
	// Four voters: two are not a quorum, three are.
	others := slices.DeleteFunc([]int{0, 1, 2, 3}, func(x int) bool { return x == ld })
	cn.partition([]int{ld, others[0]}, others[1:])
	if cn.commits(ld, "two of four") {
		t.Fatal("two of four voters committed")
	}
	cn.partition([]int{ld, others[0], others[1]}, others[2:])
	if !cn.commits(ld, "three of four") {
		t.Fatal("three of four voters did not commit")
	}
	cn.checkNoViolations()
}

// TestCoreMemberOneChangeAtATime: a second change is refused while the first
// is not committed; so is a change by a leader that has not committed an
// entry of its term (the 2015 fix), and changes on a follower.
func TestCoreMemberOneChangeAtATime(t *testing.T) {
	cn := newMemberNet(t, 5, []int{0, 1, 2})
	cn.campaign(0)
	cn.isolate(0)
	if err := cn.change(0, addLearner(3)); err != nil {
		t.Fatal(err)
	}
	if err := cn.change(0, addLearner(4)); !errors.Is(err, ErrChangeInProgress) {
		t.Fatalf("second change while the first is uncommitted: %v, want ErrChangeInProgress", err)
	}
	if err := cn.change(1, addLearner(4)); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("change at a follower: %v, want ErrNotLeader", err)
	}
	// A new leader whose no-op has not committed refuses changes.
	cn.heal()
	cn.isolate(0)
	c := cn.cores[1]
	c.becomeCandidate(false)
	c.votes[2] = 1
	c.becomeLeader()
	cn.isolate(1)
	cn.stabilize()
	if c.role != Leader || c.log.commit >= c.noopIndex {
		t.Fatalf("setup: role %v commit %d noop %d", c.role, c.log.commit, c.noopIndex)
	}
	if err := cn.change(1, addLearner(4)); !errors.Is(err, ErrChangeInProgress) {
		t.Fatalf("change before the term's first commit: %v, want ErrChangeInProgress", err)
	}
	cn.heal()
	cn.tick(3)
	if c.role != Leader || c.log.commit < c.noopIndex {
		t.Fatalf("leader 1: role %v commit %d noop %d", c.role, c.log.commit, c.noopIndex)
	}
	cn.mustChange(1, addLearner(4))
	// Leader 0's uncommitted change was overwritten: its configuration
	// reverted to the one in the new leader's log.
	if m := cn.cores[0].conf(); m.Contains(3) || !m.Contains(4) {
		t.Fatalf("old leader's configuration %v, want 3 gone and 4 added", m)
	}
	cn.checkNoViolations()
}

// TestCoreMemberChangeWhilePartitioned: a leader in a minority proposes a
// change and crashes; the majority elects another leader and goes on; the
// crashed leader restarts with the uncommitted change in force (the latest
// in its log), and loses it when the new leader truncates its log.
func TestCoreMemberChangeWhilePartitioned(t *testing.T) {
	cn := newMemberNet(t, 4, []int{0, 1, 2})
	cn.campaign(0)
	cn.propose(0, "a")
	cn.partition([]int{0, 3}, []int{1, 2})
	if err := cn.change(0, addLearner(3)); err != nil {
		t.Fatal(err)
	}
	if c := cn.cores[0]; c.confIndex() <= c.log.commit {
		t.Fatal("change committed in a minority")
	}
	if !cn.cores[3].conf().Contains(3) {
		t.Fatal("the learner did not get the uncommitted configuration")
	}
	cn.crash(0)
	cn.tick(3 * cn.cfgs[1].electionTicksMax)
	lead := cn.leaders()
	if len(lead) != 1 || lead[0] == 0 {
		t.Fatalf("leaders %v", lead)
	}
	cn.propose(lead[0], "b")
	cn.restart(0)
	if !cn.cores[0].conf().Contains(3) {
		t.Fatal("restarted leader lost the configuration of its log")
	}
	cn.heal()
	cn.tick(3 * cn.cfgs[1].electionTicks)
	for _, i := range []int{0, 1, 2} {
		if cn.cores[i].conf().Contains(3) {
			t.Fatalf("core %d still has the overwritten change: %v", i, cn.cores[i].conf())
		}
	}
	// 3 learned of the change from a leader that lost; nobody replicates
	// to it now, and with no voter configuration it never campaigns.
	term := cn.cores[3].term
	cn.isolate(3)
	cn.tick(3 * cn.cfgs[3].electionTicksMax)
	if cn.cores[3].role != Follower || cn.cores[3].term != term {
		t.Fatalf("the would-be learner campaigned: %v term %d", cn.cores[3].role, cn.cores[3].term)
	}
	cn.checkNoViolations()
}

// TestCoreMemberPromoteRefusedWhenBehind: promotion needs a caught-up and
// recently active learner.
func TestCoreMemberPromoteRefusedWhenBehind(t *testing.T) {
	cn := newMemberNet(t, 4, []int{0, 1, 2})
	cn.campaign(0)
	cn.mustChange(0, addLearner(3))
	cn.isolate(3)
	for i := range 10 {
		cn.propose(0, fmt.Sprint(i))
	}
	if err := cn.change(0, promote(3)); !errors.Is(err, ErrLearnerBehind) {
		t.Fatalf("promote a learner 10 entries behind: %v, want ErrLearnerBehind", err)
	}
	cn.heal()
	cn.tick(2)
	// Caught up but silent: still refused.
	cn.isolate(3)
	cn.tick(cn.cfgs[0].electionTicks)
	if err := cn.change(0, promote(3)); !errors.Is(err, ErrLearnerBehind) {
		t.Fatalf("promote a silent learner: %v, want ErrLearnerBehind", err)
	}
	cn.heal()
	cn.tick(2)
	cn.mustChange(0, promote(3))
	for _, tc := range []struct {
		ch   confChange
		want error
	}{
		{promote(3), ErrAlreadyMember},
		{promote(9), ErrUnknownMember},
		{addLearner(3), ErrAlreadyMember},
		{remove(9), ErrUnknownMember},
		{confChange{op: opAddLearner, member: Member{ID: -1}}, ErrBadMembership},
	} {
		if err := cn.change(0, tc.ch); !errors.Is(err, tc.want) {
			t.Errorf("%v %d: %v, want %v", tc.ch.op, tc.ch.member.ID, err, tc.want)
		}
	}
	cn.checkNoViolations()
}

// TestCoreMemberRemoveLeader: a leader that removes itself leads until the
// removal commits, then steps down and never campaigns again; the others
// elect a leader among themselves.
func TestCoreMemberRemoveLeader(t *testing.T) {
	cn := newMemberNet(t, 3, []int{0, 1, 2})
	cn.campaign(0)
	cn.propose(0, "a")
	cn.mustChange(0, remove(0))
	c := cn.cores[0]
	if c.role == Leader || c.isVoter() {
		t.Fatalf("removed leader: role %v voter %v", c.role, c.isVoter())
	}
	cn.tick(3 * cn.cfgs[1].electionTicksMax)
	lead := cn.leaders()
	if len(lead) != 1 || lead[0] == 0 {
		t.Fatalf("leaders %v", lead)
	}
	if !slices.Equal(cn.cores[lead[0]].voters, []int{1, 2}) {
		t.Fatalf("voters %v", cn.cores[lead[0]].voters)
	}
	// Two voters: both are needed.
	cn.isolate(3 - lead[0])
	if cn.commits(lead[0], "one of two") {
		t.Fatal("one of two voters committed")
	}
	cn.heal()
	cn.tick(3 * cn.cfgs[1].electionTicksMax)
	if c.role != Follower {
		t.Fatalf("removed node is %v", c.role)
	}
	// The last voter cannot be removed.
	lead = cn.leaders()
	cn.mustChange(lead[0], remove(3-lead[0]))
	if err := cn.change(lead[0], remove(lead[0])); !errors.Is(err, ErrRemoveLastVoter) {
		t.Fatalf("remove the last voter: %v, want ErrRemoveLastVoter", err)
	}
	if !cn.commits(lead[0], "alone") {
		t.Fatal("sole voter did not commit")
	}
	cn.checkNoViolations()
}

// TestCoreMemberRemovedNodeDoesNotDisrupt: a node removed while cut off
// never learns of it and keeps campaigning, with or without pre-vote; the
// cluster refuses its (pre-)votes without adopting its term, and keeps its
// leader.
func TestCoreMemberRemovedNodeDoesNotDisrupt(t *testing.T) {
	for _, pre := range []bool{true, false} {
		t.Run(fmt.Sprint("prevote=", pre), func(t *testing.T) {
			cn := newMemberNet(t, 4, []int{0, 1, 2, 3}, func(c *coreConfig) { c.preVote = pre })
			cn.campaign(0)
			cn.isolate(3)
			cn.mustChange(0, remove(3))
			cn.tick(5 * cn.cfgs[3].electionTicksMax) // 3 campaigns alone, its term grows without pre-vote
			term := cn.cores[0].term
			cn.heal()
			cn.tick(5 * cn.cfgs[3].electionTicksMax)
			if ls := cn.leaders(); !slices.Equal(ls, []int{0}) || cn.cores[0].term != term {
				t.Fatalf("leaders %v term %d (was %d): the removed node disrupted the cluster", ls, cn.cores[0].term, term)
			}
			if !cn.commits(0, "after") {
				t.Fatal("no commit")
			}
			// A vote request from a node outside the configuration is
			// refused outright.
			resp := cn.cores[1].handleRequestVote(&RequestVoteRequest{Term: term + 10, CandidateID: 7,
				LastLogIndex: 1000, LastLogTerm: term + 9, LeadershipTransfer: true})
			if resp.VoteGranted || cn.cores[1].term != term {
				t.Fatalf("stranger's vote request: %+v, term now %d", resp, cn.cores[1].term)
			}
			cn.checkNoViolations()
		})
	}
}

// TestCoreMemberJoinerNeverCampaigns: a node with an empty configuration
// waits for a leader, whatever the time.
func TestCoreMemberJoinerNeverCampaigns(t *testing.T) {
	cn := newMemberNet(t, 2, []int{0})
	cn.isolate(0)
	cn.tick(10 * cn.cfgs[1].electionTicksMax)
	if c := cn.cores[1]; c.role != Follower || c.term != 0 || len(c.conf().Members) != 0 {
		t.Fatalf("joiner: %v term %d conf %v", c.role, c.term, c.conf())
	}
	if ls := cn.leaders(); !slices.Equal(ls, []int{0}) {
		t.Fatalf("leaders %v: the single voter did not elect itself", ls)
	}
	cn.heal()
	// 1 -> 2 -> 1: the sole voter adds a learner, promotes it (two voters,
	// both needed), and removes it again.
	cn.mustChange(0, addLearner(1))
	cn.tick(2)
	cn.mustChange(0, promote(1))
	cn.isolate(1)
	if cn.commits(0, "one of two") {
		t.Fatal("one of two committed")
	}
	cn.heal()
	cn.tick(2)
	cn.mustChange(0, remove(1))
	cn.isolate(1)
	if !cn.commits(0, "alone again") {
		t.Fatal("sole voter did not commit")
	}
	cn.checkNoViolations()
}

// TestCoreMemberQuorumsThroughSizes grows 1 -> 2 -> 3 -> 4 -> 5 and shrinks
// 5 -> 4 -> 3, checking at each size that a leader commits with exactly a
// majority of the voters connected and not with one fewer, and that a read
// is confirmed likewise.
func TestCoreMemberQuorumsThroughSizes(t *testing.T) {
	cn := newMemberNet(t, 5, []int{0})
	cn.tick(2 * cn.cfgs[0].electionTicksMax)
	check := func(voters []int) {
		t.Helper()
		l := cn.leaders()
		if len(l) != 1 {
			t.Fatalf("leaders %v", l)
		}
		ld := l[0]
		cn.reads[ld] = nil
		if got := cn.cores[ld].voters; !slices.Equal(got, voters) {
			t.Fatalf("voters %v, want %v", got, voters)
		}
		q := len(voters)/2 + 1
		others := slices.DeleteFunc(slices.Clone(voters), func(x int) bool { return x == ld })
		in := append([]int{ld}, others[:q-1]...)
		out := others[q-1:]
		// q-1 voters with the leader (the others and every non-voter cut).
		cn.partition(in[:q-1], append(append([]int{}, out...), in[q-1:]...))
		if q > 1 {
			if cn.commits(ld, fmt.Sprint("minority ", voters)) {
				t.Fatalf("voters %v: %d committed", voters, q-1)
			}
			cn.cores[ld].readIndex(1)
			cn.stabilize()
			cn.tick(1)
			if len(cn.reads[ld]) != 0 {
				t.Fatalf("voters %v: read confirmed by %d: %+v", voters, q-1, cn.reads[ld])
			}
		}
		cn.partition(in, out)
		if !cn.commits(ld, fmt.Sprint("majority ", voters)) {
			t.Fatalf("voters %v: a majority of %d did not commit", voters, q)
		}
		cn.heal()
		cn.tick(3 * cn.cfgs[0].electionTicksMax)
		cn.reads[ld] = nil
		cn.cores[ld].readIndex(2)
		cn.stabilize()
		cn.tick(1)
		if ls := cn.leaders(); len(ls) == 1 && ls[0] == ld && !slices.ContainsFunc(cn.reads[ld], func(r readState) bool { return r.id == 2 && r.err == nil }) {
			t.Fatalf("voters %v: read not confirmed with everyone connected: %+v", voters, cn.reads[ld])
		}
	}
	check([]int{0})
	for id := 1; id < 5; id++ {
		ld := cn.leaders()[0]
		cn.mustChange(ld, addLearner(id))
		cn.tick(2)
		cn.mustChange(ld, promote(id))
		want := []int{}
		for v := range id + 1 {
			want = append(want, v)
		}
		check(want)
	}
	for _, id := range []int{4, 3} {
		ld := cn.leaders()[0]
		cn.mustChange(ld, remove(id))
		cn.tick(3 * cn.cfgs[0].electionTicksMax)
		var want []int
		for v := range id {
			want = append(want, v)
		}
		check(want)
	}
	cn.checkNoViolations()
}

// TestCoreMemberSnapshotCarriesConfig: a learner that falls behind a
// compaction gets the snapshot with its configuration, and a restart
// restores the configuration from the stored snapshot.
func TestCoreMemberSnapshotCarriesConfig(t *testing.T) {
	cn := newMemberNet(t, 5, []int{0, 1, 2})
	cn.campaign(0)
	cn.mustChange(0, addLearner(3))
	cn.isolate(3)
	cn.mustChange(0, addLearner(4))
	for i := range 10 {
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
	cn.heal()
	cn.tick(3)
	l := cn.cores[3]
	if l.log.snap.Index != idx {
		t.Fatalf("learner's snapshot index %d, want %d", l.log.snap.Index, idx)
	}
	if m := l.conf(); !slices.Equal(m.Learners(), []int{3, 4}) || !slices.Equal(m.Voters(), []int{0, 1, 2}) {
		t.Fatalf("learner's configuration after the snapshot: %v", m)
	}
	for _, i := range []int{0, 3} {
		cn.crash(i)
		cn.restart(i)
		if m := cn.cores[i].conf(); !slices.Equal(m.Learners(), []int{3, 4}) || m.String() != "{0 1 2 3L 4L}" {
			t.Fatalf("core %d restarted with configuration %v", i, m)
		}
	}
	cn.tick(3 * cn.cfgs[0].electionTicksMax)
	if ls := cn.leaders(); len(ls) != 1 || ls[0] > 2 {
		t.Fatalf("leaders %v", ls)
	}
	cn.checkNoViolations()
}

// TestCoreMemberTransferAndReads: leadership transfer goes to voters only;
// a learner's forwarded read is answered (it counts as no acknowledgement).
func TestCoreMemberTransferAndReads(t *testing.T) {
	cn := newMemberNet(t, 4, []int{0, 1, 2})
	cn.campaign(0)
	cn.mustChange(0, addLearner(3))
	if err := cn.cores[0].transferLeadership(3); !errors.Is(err, ErrBadPeer) {
		t.Fatalf("transfer to a learner: %v, want ErrBadPeer", err)
	}
	if resp := cn.cores[3].handleTimeoutNow(&TimeoutNowRequest{Term: cn.cores[0].term, LeaderID: 0, LastLogIndex: cn.cores[3].log.lastIndex()}); resp.Accepted {
		t.Fatal("a learner accepted TimeoutNow")
	}
	cn.cores[3].readIndex(5)
	cn.tick(1)
	if len(cn.reads[3]) != 1 || cn.reads[3][0].err != nil {
		t.Fatalf("learner's read: %+v", cn.reads[3])
	}
	// Leader and learner alone cannot confirm a read.
	cn.partition([]int{0, 3}, []int{1, 2})
	cn.reads[3] = nil
	cn.cores[3].readIndex(6)
	cn.stabilize()
	if len(cn.reads[3]) != 0 {
		t.Fatalf("read confirmed by the leader and a learner: %+v", cn.reads[3])
	}
	cn.heal()
	if err := cn.cores[0].transferLeadership(1); err != nil {
		t.Fatal(err)
	}
	cn.tick(3)
	if ls := cn.leaders(); !slices.Equal(ls, []int{1}) {
		t.Fatalf("leaders after transfer %v", ls)
	}
	cn.checkNoViolations()
}

// TestMembershipEncoding: configurations round-trip, and malformed bytes
// (from a peer or a damaged disk) are refused, never a panic.
func TestMembershipEncoding(t *testing.T) {
	m := Membership{Members: []Member{{ID: 0, Addr: "a"}, {ID: 7, Learner: true}, {ID: 1 << 20, Addr: "x"}}}
	b := encodeMembership(m)
	got, err := decodeMembership(b)
	if err != nil || got.String() != m.String() || got.Members[0].Addr != "a" {
		t.Fatalf("round trip: %v %v", got, err)
	}
	if e, err := decodeMembership(encodeMembership(Membership{})); err != nil || len(e.Members) != 0 {
		t.Fatalf("empty: %v %v", e, err)
	}
	for i := range b {
		if _, err := decodeMembership(b[:i]); err == nil {
			t.Errorf("prefix of %d bytes decoded", i)
		}
	}
	for _, bad := range []Membership{
		{Members: []Member{{ID: 1}, {ID: 1}}},
		{Members: []Member{{ID: 2}, {ID: 1}}},
		{Members: []Member{{ID: 1, Addr: string(make([]byte, MaxMemberAddrBytes+1))}}},
	} {
		if _, err := decodeMembership(encodeMembership(bad)); !errors.Is(err, ErrBadMembership) {
			t.Errorf("%v decoded: %v", bad, err)
		}
	}
	if _, err := decodeMembership(append(b, 0)); err == nil {
		t.Error("trailing byte accepted")
	}
}

// TestCoreMemberReaddedForgetsAppVersion: a member removed while cut off
// stays in the leader's progress (leaving) until it learns of its removal;
// added again under the same id meanwhile (perhaps another process, of
// another version), its reported AppVersion is forgotten until it answers.
func TestCoreMemberReaddedForgetsAppVersion(t *testing.T) {
	cn := newMemberNet(t, 4, []int{0, 1, 2, 3})
	cn.campaign(0)
	cn.isolate(3)
	cn.cores[0].prs[3].appVersion = 7 // what the old process last reported
	cn.mustChange(0, remove(3))
	if !cn.cores[0].isLeaving(3) {
		t.Fatal("the cut-off member is not leaving")
	}
	cn.mustChange(0, addLearner(3))
	if v := cn.cores[0].prs[3].appVersion; v != 0 {
		t.Fatalf("the re-added member keeps the version %d its old incarnation reported", v)
	}
	if v := cn.cores[0].memberProgress()[3].AppVersion; v != 0 {
		t.Fatalf("Progress reports version %d for the re-added member", v)
	}
}

// TestCoreMemberReaddedIgnoresOldAppVersion: the AppVersion forgotten when
// a leaving member is added again is not restored by a late answer of its
// old incarnation to an AppendEntries sent before the re-addition (same
// term, so the term checks let it through): the new process under that id
// may run another version, and a leader that took the old one's version
// for it could raise an application level the new process cannot apply.
func TestCoreMemberReaddedIgnoresOldAppVersion(t *testing.T) {
	cn := newMemberNet(t, 4, []int{0, 1, 2, 3})
	cn.campaign(0)
	// An AppendEntries to the old incarnation of 3, answered, the answer
	// delayed in the network.
	cn.cores[0].propose([]byte("x"))
	cn.processReady(0)
	var held []heldAppend
	for _, e := range cn.holdPending() {
		if e.m.to == 3 && e.m.ae != nil {
			resp := cn.cores[3].handleAppendEntries(e.m.ae)
			resp.AppVersion = 7 // as its node sets it
			held = append(held, heldAppend{m: e.m, resp: resp})
		} else {
			cn.deliver(e)
		}
	}
	if len(held) == 0 {
		t.Fatal("the leader sent 3 no AppendEntries")
	}
	cn.isolate(3)
	cn.mustChange(0, remove(3))
	cn.mustChange(0, addLearner(3))
	for _, h := range held {
		cn.cores[0].handleAppendResponse(h.m, h.resp)
	}
	if v := cn.cores[0].memberProgress()[3].AppVersion; v != 0 {
		t.Fatalf("the re-added member reports version %d, from its old incarnation's late answer", v)
	}
}
