package raft

import (
	"fmt"
	"slices"
	"testing"
)

// Scripted tests of the "you were removed" answer (issue 15): a voter
// whose committed configuration leaves a candidate out says so in its vote
// answer (RequestVoteResponse.RemovedAt); a candidate whose own
// configuration is older stops campaigning, one that knows a newer one
// ignores it.

// countVotesFrom counts the vote requests core i sends from now on.
func (cn *coreNet) countVotesFrom(i int) *int {
	n := new(int)
	cn.dropFn = func(from int, m message) bool {
		if from == i && m.rv != nil {
			*n++
		}
		return false
	}
	return n
}

// TestCoreMemberRemovedCutOffLearnsAndStops: a voter cut off when it is
// removed (and silent long enough that the leader stops replicating to
// it) never receives its removal; once it can reach the cluster again, its
// first refused campaign tells it, and it campaigns no more — also after a
// restart, which forgets the notice until the next refused campaign. Added
// again, it learns the new configuration and is a member as before.
func TestCoreMemberRemovedCutOffLearnsAndStops(t *testing.T) {
	for _, pre := range []bool{true, false} {
		t.Run(fmt.Sprint("prevote=", pre), func(t *testing.T) {
			cn := newMemberNet(t, 4, []int{0, 1, 2, 3}, func(c *coreConfig) { c.preVote = pre })
			cn.campaign(0)
			cn.isolate(3)
			cn.mustChange(0, remove(3))
			removedAt := cn.cores[0].confIndex()
			cn.tick(3 * cn.cfgs[0].electionTicksMax) // the leader stops replicating to 3
			if cn.cores[0].isLeaving(3) {
				t.Fatal("setup: the leader still replicates to 3")
			}
			if c := cn.cores[3]; c.conf().Contains(3) != true || c.removed() {
				t.Fatalf("setup: 3 should not know of its removal: conf %v removed %v", c.conf(), c.removed())
			}
			term := cn.cores[0].term
			cn.heal()
			cn.tick(3 * cn.cfgs[3].electionTicksMax)
			c := cn.cores[3]
			if c.removedAt != removedAt || !c.removed() || c.mayCampaign() {
				t.Fatalf("3 was not told of its removal: removedAt %d (want %d), removed %v", c.removedAt, removedAt, c.removed())
			}
			votes := cn.countVotesFrom(3)
			cn.tick(10 * cn.cfgs[3].electionTicksMax)
			if *votes != 0 || c.role != Follower {
				t.Fatalf("removed node sent %d vote requests after it was told, is %v", *votes, c.role)
			}
			if ls := cn.leaders(); !slices.Equal(ls, []int{0}) || cn.cores[0].term != term {
				t.Fatalf("leaders %v term %d (was %d)", ls, cn.cores[0].term, term)
			}

			// A restart forgets the notice: one campaign, told again.
			cn.crash(3)
			cn.restart(3)
			cn.tick(3 * cn.cfgs[3].electionTicksMax)
			if c := cn.cores[3]; c.removedAt != removedAt || c.role != Follower {
				t.Fatalf("restarted removed node: removedAt %d, %v", c.removedAt, c.role)
			}
			votes = cn.countVotesFrom(3)
			cn.tick(10 * cn.cfgs[3].electionTicksMax)
			if *votes != 0 {
				t.Fatalf("restarted removed node sent %d vote requests after it was told again", *votes)
			}

			// Added again (its stale log is repaired by the leader), it
			// is a member: not removed, and a voter once promoted.
			// (Without pre-vote, 3's term ran ahead while it was cut off:
			// its first answer to the leader costs one election.)
			cn.dropFn = nil
			cn.mustChange(0, addLearner(3))
			c = cn.cores[3]
			for i := 0; i < 10*cn.cfgs[0].electionTicksMax && c.confIndex() < removedAt; i++ {
				cn.tick(1)
			}
			if c.removed() || c.confIndex() < removedAt || !c.conf().Contains(3) {
				t.Fatalf("re-added node: removed %v conf %v at %d", c.removed(), c.conf(), c.confIndex())
			}
			l := cn.rvOneLeader(10 * cn.cfgs[0].electionTicksMax)
			cn.tick(2)
			cn.mustChange(l, promote(3))
			cn.tick(4)
			if !cn.cores[3].mayCampaign() || !cn.commits(l, "after") {
				t.Fatal("re-added voter may not campaign, or no commit")
			}
			cn.checkNoViolations()
		})
	}
}

// TestCoreMemberRemovedNoticeIgnoredByNewerVoter: the notice comes from a
// voter's committed configuration, which may be stale. Voter 1 is cut off
// after committing a configuration (learner 4 added); then 3 joins and is
// promoted and 0 removes itself. 1's committed configuration leaves 3 out,
// so 1's answers to 3 carry a notice — for an index older than 3's own
// configuration, so 3 ignores it, keeps campaigning, and wins with 1's
// vote once 0 and 2 are gone (TestReview15VoteForVoterNotYetKnown with the
// notice on).
func TestCoreMemberRemovedNoticeIgnoredByNewerVoter(t *testing.T) {
	for _, pre := range []bool{true, false} {
		t.Run(fmt.Sprint("prevote=", pre), func(t *testing.T) {
			cn := newMemberNet(t, 5, []int{0, 1, 2}, func(c *coreConfig) { c.preVote = pre })
			cn.campaign(0)
			cn.mustChange(0, addLearner(4))
			cn.tick(2)
			known := cn.cores[1].confIndex()
			if cn.cores[1].log.commit < known {
				t.Fatalf("setup: 1 has not seen its configuration at %d commit", known)
			}
			cn.isolate(1)
			cn.mustChange(0, addLearner(3))
			cn.tick(2)
			cn.mustChange(0, promote(3))
			cn.mustChange(0, remove(0))
			if got := cn.cores[3].conf().Voters(); !slices.Equal(got, []int{1, 2, 3}) {
				t.Fatalf("3's voters %v", got)
			}
			if at := cn.cores[1].removedNotice(3); at != known {
				t.Fatalf("1's notice to 3 is for index %d, want %d (the path under test is not exercised)", at, known)
			}
			cn.crash(0)
			cn.crash(2)
			cn.heal()
			l := -1
			for range 20 * cn.cfgs[1].electionTicksMax {
				if ls := cn.leaders(); len(ls) == 1 {
					l = ls[0]
					break
				}
				cn.tick(1)
			}
			if l != 3 || cn.cores[3].removedAt != 0 || cn.cores[3].removed() {
				t.Fatalf("leader %d (want 3); 3's removedAt %d removed %v", l, cn.cores[3].removedAt, cn.cores[3].removed())
			}
			if !cn.commits(3, "b") {
				t.Fatal("no commit with voters 1 and 3")
			}
			cn.checkNoViolations()
		})
	}
}

// TestCoreMemberRemovedNoticeRules: the notice's rules on both sides, one
// by one: no notice for a member (voter or learner), from a node with no
// configuration (a joiner), or from a bootstrap configuration at index 0;
// a notice older than or equal to the candidate's configuration is
// ignored, a leader ignores one, and a notice ends a running campaign.
func TestCoreMemberRemovedNoticeRules(t *testing.T) {
	cn := newMemberNet(t, 5, []int{0, 1, 2})
	cn.campaign(0)
	if at := cn.cores[1].removedNotice(4); at != 0 {
		t.Fatalf("notice from a bootstrap configuration at index 0: %d", at)
	}
	if at := cn.cores[4].removedNotice(0); at != 0 {
		t.Fatalf("notice from a joiner: %d", at)
	}
	cn.mustChange(0, addLearner(3))
	cn.tick(2)
	at := cn.cores[1].confIndex()
	for _, id := range []int{0, 1, 2, 3} {
		if got := cn.cores[1].removedNotice(id); got != 0 {
			t.Fatalf("notice for member %d: %d", id, got)
		}
	}
	if got := cn.cores[1].removedNotice(4); got != at {
		t.Fatalf("notice for non-member 4: %d, want %d", got, at)
	}

	// Answers as a candidate would get them.
	c := cn.cores[2]
	cn.isolate(2)
	c.noteRemoved(c.confIndex(), 1) // not newer than its own: ignored
	if c.removedAt != 0 || !c.mayCampaign() {
		t.Fatalf("notice at its own configuration's index taken: removedAt %d", c.removedAt)
	}
	c.campaign()
	if c.role == Follower {
		t.Fatal("setup: 2 did not campaign")
	}
	vr := &RequestVoteRequest{Term: c.term + 1, CandidateID: 2, PreVote: c.role == PreCandidate}
	if c.role == Candidate {
		vr.Term = c.term
	}
	c.handleVoteResponse(message{to: 1, rv: vr}, &RequestVoteResponse{Term: c.term, RemovedAt: at + 5})
	if c.role != Follower || c.removedAt != at+5 || c.mayCampaign() || !c.removed() {
		t.Fatalf("campaign not ended by a newer notice: %v removedAt %d", c.role, c.removedAt)
	}
	c.tick()
	for range 5 * cn.cfgs[2].electionTicksMax {
		c.tick()
	}
	if c.role != Follower {
		t.Fatalf("told node campaigned: %v", c.role)
	}

	// A leader ignores notices (an answer to a campaign it won).
	l := cn.cores[0]
	l.handleVoteResponse(message{to: 1, rv: &RequestVoteRequest{Term: l.term, CandidateID: 0}}, &RequestVoteResponse{Term: l.term, RemovedAt: 1 << 40})
	if l.role != Leader || l.removedAt != 0 {
		t.Fatalf("leader took a notice: %v removedAt %d", l.role, l.removedAt)
	}
}
