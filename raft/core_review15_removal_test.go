package raft

// Scripted tests of the issue 15 review about removed, leaving and joining
// nodes (rv helpers in core_review15_test.go).

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// TestReview15RemovedLeaderLostBeforeCommit: a leader of {0,1} removes
// itself; 1 does not get the entry, and 0 loses leadership before the
// removal commits (check-quorum, or a crash and restart). 0 holds the
// longest log, so 1 cannot win without its vote, and 0 is no voter of the
// configuration in force ({1}): unless 0 may still campaign and lead until
// the removal commits, the two voters stay leaderless forever.
// (Found by TestReview15RandomChurn, seed 27.)
func TestReview15RemovedLeaderLostBeforeCommit(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprint("crash=", crash), func(t *testing.T) {
			cn := rvNet(t, 2, []int{0, 1}, nil)
			cn.campaign(0)
			cn.propose(0, "a")
			cn.isolate(1)
			if err := cn.rvChange(0, rvRemove(0)); err != nil {
				t.Fatal(err)
			}
			if crash {
				cn.crash(0)
				cn.restart(0)
			} else {
				cn.tick(3 * cn.cfgs[0].electionTicks)
			}
			if c := cn.cores[0]; c.role == Leader || c.isVoter() || c.confIndex() <= c.log.commit {
				t.Fatalf("setup: 0 is %v, voter %v, conf %d commit %d", c.role, c.isVoter(), c.confIndex(), c.log.commit)
			}
			cn.heal()
			for k := 0; ; k++ {
				if c := cn.cores[1]; c.role == Leader && c.log.commit >= c.noopIndex {
					break
				}
				if k > 20*cn.cfgs[0].electionTicksMax {
					t.Fatalf("no leader: 0 %v term %d conf %v, 1 %v term %d conf %v", cn.cores[0].role, cn.cores[0].term,
						cn.cores[0].conf(), cn.cores[1].role, cn.cores[1].term, cn.cores[1].conf())
				}
				cn.tick(1)
			}
			if got := cn.cores[1].conf().String(); got != "{1}" {
				t.Fatalf("1's configuration %s", got)
			}
			cn.propose(1, "b")
			if got := cn.appliedCommands(1); !slices.Equal(got, []string{"a", "b"}) {
				t.Fatalf("1 applied %v", got)
			}
			// Its removal committed, 0 stays quiet.
			term := cn.cores[1].term
			cn.tick(5 * cn.cfgs[0].electionTicksMax)
			if c := cn.cores[0]; c.role != Follower || cn.cores[1].term != term || cn.cores[1].role != Leader {
				t.Fatalf("after: 0 %v, 1 %v term %d (was %d)", c.role, cn.cores[1].role, cn.cores[1].term, term)
			}
			cn.rvCheckApplied()
			cn.checkNoViolations()
		})
	}
}

// TestReview15RemovedFollowerLearnsRemoval: a connected follower that is
// removed gets the entry that removes it, so it knows it is no member and
// stops campaigning (issue 15: "a removed node stops campaigning"), instead
// of sending (pre-)vote requests every election timeout for as long as it
// runs.
func TestReview15RemovedFollowerLearnsRemoval(t *testing.T) {
	cn := rvNet(t, 3, []int{0, 1, 2}, nil)
	cn.campaign(0)
	cn.propose(0, "a")
	cn.rvMustCommit(0, rvRemove(2))
	cn.tick(2)
	if m := cn.cores[2].conf(); m.Contains(2) {
		t.Fatalf("removed follower's configuration %v: it never got its removal", m)
	}
	votes := 0
	cn.dropFn = func(from int, m message) bool {
		if from == 2 && m.rv != nil {
			votes++
		}
		return false
	}
	cn.tick(5 * cn.cfgs[2].electionTicksMax)
	if votes != 0 || cn.cores[2].role != Follower {
		t.Fatalf("removed follower sent %d vote requests, is %v", votes, cn.cores[2].role)
	}
	cn.checkNoViolations()
}

// TestReview15InheritedUncommittedChange: a new leader that holds the
// previous leader's uncommitted configuration entry uses it at once (the
// latest in the log is in force), refuses a further change until its own
// no-op commits, and then finds the inherited change committed with it.
func TestReview15InheritedUncommittedChange(t *testing.T) {
	cn := rvNet(t, 5, []int{0, 1, 2}, nil)
	cn.campaign(0)
	cn.propose(0, "a")
	cn.partition([]int{0, 1}, []int{2, 3, 4})
	if err := cn.rvChange(0, rvAdd(3)); err != nil {
		t.Fatal(err)
	}
	if !cn.cores[1].conf().Contains(3) {
		t.Fatal("setup: 1 did not get the change")
	}
	// 0 commits it with 1's answer, but 1 has not learned the commit yet
	// when 0 crashes.
	cn.crash(0)
	cn.heal()
	cn.dropFn = func(from int, m message) bool { return from == 1 && m.ae != nil }
	cn.cores[2].electionElapsed = cn.cfgs[2].electionTicks
	cn.campaign(1)
	c := cn.cores[1]
	if c.role != Leader || !c.conf().Contains(3) || c.log.commit >= c.confIndex() {
		t.Fatalf("setup: 1 is %v, conf %v at %d, commit %d", c.role, c.conf(), c.confIndex(), c.log.commit)
	}
	if _, ok := c.prs[3]; !ok {
		t.Fatal("new leader does not replicate to the learner of the inherited configuration")
	}
	if err := cn.rvChange(1, rvAdd(4)); !errors.Is(err, ErrChangeInProgress) {
		t.Fatalf("change before the no-op commits: %v, want ErrChangeInProgress", err)
	}
	cn.dropFn = nil
	cn.tick(2)
	if c.log.commit < c.confIndex() {
		t.Fatalf("inherited change not committed with the no-op: commit %d, conf at %d", c.log.commit, c.confIndex())
	}
	cn.rvMustCommit(1, rvAdd(4))
	if got := cn.cores[3].conf().String(); got != "{0 1 2 3L 4L}" {
		t.Fatalf("learner 3's configuration %s", got)
	}
	cn.checkNoViolations()
}

// TestReview15JoinerAndVotes: a joiner (empty configuration) never
// campaigns; a vote it grants a candidate that does not count it as a
// voter elects nobody; once added as a learner its vote is not counted.
func TestReview15JoinerAndVotes(t *testing.T) {
	cn := rvNet(t, 4, []int{0, 1, 2}, nil)
	cn.campaign(0)
	cn.propose(0, "a")
	j := cn.cores[3]
	resp := j.handleRequestVote(&RequestVoteRequest{Term: 9, CandidateID: 1, LastLogIndex: 5, LastLogTerm: 8})
	if j.role != Follower || j.conf().Contains(3) {
		t.Fatalf("joiner %v conf %v", j.role, j.conf())
	}
	_ = resp // granted or not: 1 does not count it
	cn.rvMustCommit(0, rvAdd(3))
	cn.tick(2)
	// 1 alone with the learner: its vote plus 1's own is not a majority
	// of {0,1,2}.
	cn.partition([]int{0, 2}, []int{1, 3})
	cn.tick(10 * cn.cfgs[1].electionTicksMax)
	if cn.cores[1].role == Leader || cn.cores[3].role != Follower {
		t.Fatalf("1 is %v, learner 3 is %v", cn.cores[1].role, cn.cores[3].role)
	}
	cn.rvCheckApplied()
	cn.checkNoViolations()
}

// TestReview15LeavingNodeHigherTerm: the leader still sends appends to a
// node it just removed (to tell it); an answer with a higher term from that
// node (it campaigned, pre-vote off, while cut off) must not depose the
// leader: it is no member.
func TestReview15LeavingNodeHigherTerm(t *testing.T) {
	cn := rvNet(t, 4, []int{0, 1, 2, 3}, nil, func(c *coreConfig) { c.preVote, c.checkQuorum = false, false })
	cn.campaign(0)
	cn.propose(0, "a")
	cn.isolate(3)
	cn.rvMustCommit(0, rvRemove(3))
	if !cn.cores[0].isLeaving(3) {
		t.Fatal("setup: 3 is not leaving")
	}
	x := cn.cores[3]
	x.becomeFollower(x.term+5, NoLeader)
	term := cn.cores[0].term
	cn.heal()
	cn.tick(3)
	if ls := cn.leaders(); !slices.Equal(ls, []int{0}) || cn.cores[0].term != term {
		t.Fatalf("leaders %v term %d (was %d): a removed node's term deposed the leader", ls, cn.cores[0].term, term)
	}
	if cn.cores[0].isLeaving(3) {
		t.Fatal("the leader still replicates to a removed node of a later term")
	}
	cn.checkNoViolations()
}
