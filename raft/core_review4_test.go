package raft

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

// Adversarial scripted tests of the "you were removed" vote answer
// (RequestVoteResponse.RemovedAt, core.removedAt; session 4 review): exact
// interleavings in the deterministic core.

// r4RemovedWhileCutOff builds voters {0,1,2,3} (n cores), elects 0, removes
// 3 while it is cut off, lets the leader stop replicating to 3 and reconnects
// 3 to everyone but 0 (0 and 3 stay cut apart), so that 3's campaigns reach
// 1 and 2, whose committed configuration leaves it out. It returns the index
// of the removal.
func r4RemovedWhileCutOff(t *testing.T, n int, pre bool) (*coreNet, uint64) {
	t.Helper()
	cn := newMemberNet(t, n, []int{0, 1, 2, 3}, func(c *coreConfig) { c.preVote = pre })
	cn.campaign(0)
	cn.isolate(3)
	cn.mustChange(0, remove(3))
	removedAt := cn.cores[0].confIndex()
	cn.tick(3 * cn.cfgs[0].electionTicksMax)
	if cn.cores[0].isLeaving(3) || cn.cores[3].removed() {
		t.Fatal("setup: the leader still replicates to 3, or 3 knows of its removal")
	}
	cn.heal()
	cn.cut[0][3], cn.cut[3][0] = true, true
	return cn, removedAt
}

// r4WaitRemoved ticks until core i was told of its removal (at most ticks).
func (cn *coreNet) r4WaitRemoved(i, ticks int) {
	cn.t.Helper()
	for range ticks {
		if c := cn.cores[i]; c.removedAt > 0 && c.removedAt >= c.confIndex() {
			return
		}
		cn.tick(1)
	}
	cn.t.Fatalf("core %d was not told of its removal within %d ticks (removedAt %d, conf index %d)",
		i, ticks, cn.cores[i].removedAt, cn.cores[i].confIndex())
}

// TestReview4TimeoutNowToRemovedNode: a node told by a voter that it was
// removed must not campaign for a stale TimeoutNow either (one sent by the
// leader before the removal, for a transfer it since gave up, delivered
// late): it answers not accepted and sends no vote request. (Before the
// fix, handleTimeoutNow checked only isVoter of the node's stale
// configuration and started a transfer campaign, which bypasses leases.)
func TestReview4TimeoutNowToRemovedNode(t *testing.T) {
	for _, pre := range []bool{true, false} {
		t.Run(fmt.Sprint("prevote=", pre), func(t *testing.T) {
			cn, _ := r4RemovedWhileCutOff(t, 4, pre)
			cn.r4WaitRemoved(3, 5*cn.cfgs[3].electionTicksMax)
			c := cn.cores[3]
			term := cn.cores[0].term
			votes := cn.countVotesFrom(3)
			// A TimeoutNow of the current leader's term, for 3's log as it
			// is: nothing marks it stale but 3's removal.
			resp := c.handleTimeoutNow(&TimeoutNowRequest{Term: max(term, c.term), LeaderID: 0, LastLogIndex: c.log.lastIndex()})
			cn.stabilize()
			if resp.Accepted || *votes != 0 || c.role != Follower {
				t.Fatalf("removed node took a TimeoutNow: accepted %v, %d vote requests, %v", resp.Accepted, *votes, c.role)
			}
			if ls := cn.leaders(); !slices.Equal(ls, []int{0}) || cn.cores[0].term != term {
				t.Fatalf("leaders %v term %d (was %d)", ls, cn.cores[0].term, term)
			}
			cn.checkNoViolations()
		})
	}
}

// TestReview4ReAddedWhileCutOffFromLeader: 3, removed while cut off, is told
// so by 1 and 2 (it still cannot reach the leader). The cluster then adds 3
// again as a learner: 1's committed configuration now contains 3, so no
// notice tells it more, and it must still not campaign (it is a learner).
// Once it reaches the leader, it gets the log, knows it is a member again
// (not removed), and once promoted campaigns and can win.
func TestReview4ReAddedWhileCutOffFromLeader(t *testing.T) {
	for _, pre := range []bool{true, false} {
		t.Run(fmt.Sprint("prevote=", pre), func(t *testing.T) {
			cn, removedAt := r4RemovedWhileCutOff(t, 4, pre)
			cn.r4WaitRemoved(3, 5*cn.cfgs[3].electionTicksMax)
			c := cn.cores[3]
			if c.removedAt != removedAt || !c.removed() {
				t.Fatalf("3 told removedAt %d (want %d), removed %v", c.removedAt, removedAt, c.removed())
			}
			l := cn.rvOneLeader(10 * cn.cfgs[0].electionTicksMax)
			cn.mustChange(l, addLearner(3))
			votes := cn.countVotesFrom(3)
			cn.tick(5 * cn.cfgs[3].electionTicksMax)
			if *votes != 0 || c.role != Follower {
				t.Fatalf("re-added (learner) node cut off from the leader sent %d vote requests, is %v", *votes, c.role)
			}
			cn.dropFn = nil
			cn.heal()
			for range 10 * cn.cfgs[0].electionTicksMax {
				if c.confIndex() > removedAt {
					break
				}
				cn.tick(1)
			}
			if c.removed() || !c.conf().Contains(3) || c.conf().IsVoter(3) {
				t.Fatalf("3 after healing: removed %v, configuration %v at %d", c.removed(), c.conf(), c.confIndex())
			}
			l = cn.rvOneLeader(10 * cn.cfgs[0].electionTicksMax)
			cn.tick(2)
			cn.mustChange(l, promote(3))
			cn.tick(2)
			if !c.mayCampaign() || c.removed() {
				t.Fatalf("promoted 3 may not campaign: removedAt %d conf %v at %d", c.removedAt, c.conf(), c.confIndex())
			}
			// 3's log is as good as anyone's: a transfer to it succeeds.
			if err := cn.cores[l].transferLeadership(3); err != nil {
				t.Fatal(err)
			}
			cn.tick(3)
			if ls := cn.leaders(); !slices.Equal(ls, []int{3}) {
				t.Fatalf("leaders %v after a transfer to 3", ls)
			}
			if !cn.commits(3, "after") {
				t.Fatal("no commit under 3")
			}
			cn.checkNoViolations()
		})
	}
}

// TestReview4NoticeFromSnapshotResponder: the notice's index is the
// responder's snapshot index when its committed configuration came with a
// snapshot (confs[0].index is the snapshot index, not that of the
// configuration entry). Voter 1 is cut off while 3 is removed, 3 is cut off
// too; the leader compacts and 1 installs the snapshot. 3 reaches only 1 and
// is told it was removed at the snapshot index; added again, it learns the
// new configuration (its index is past the snapshot) and is no longer
// removed; a restart of 1 (which reloads the snapshot) changes nothing.
func TestReview4NoticeFromSnapshotResponder(t *testing.T) {
	cn := newMemberNet(t, 4, []int{0, 1, 2, 3})
	cn.campaign(0)
	cn.isolate(1)
	cn.isolate(3)
	cn.mustChange(0, remove(3))
	for i := range 5 {
		cn.propose(0, fmt.Sprint(i))
	}
	c0 := cn.cores[0]
	idx := c0.log.commit
	snap := persist.Snapshot{Index: idx, Term: c0.term, Data: []byte("state"), Config: c0.snapshotConfig(idx)}
	if err := cn.stores[0].SaveSnapshot(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	if err := c0.compact(snap); err != nil {
		t.Fatal(err)
	}
	cn.tick(3 * cn.cfgs[0].electionTicksMax) // the leader forgets 3
	cn.heal()
	cn.cut[0][3], cn.cut[3][0] = true, true
	cn.cut[2][3], cn.cut[3][2] = true, true
	cn.tick(3) // 1 installs the snapshot
	if f := cn.cores[1]; f.log.snap.Index != idx || f.committedConf().index != idx {
		t.Fatalf("setup: 1's snapshot %d, committed configuration at %d (want %d)", f.log.snap.Index, f.committedConf().index, idx)
	}
	cn.crash(1)
	cn.restart(1)
	cn.r4WaitRemoved(3, 5*cn.cfgs[3].electionTicksMax)
	c := cn.cores[3]
	if c.removedAt != idx {
		t.Fatalf("3 told removedAt %d, want the snapshot index %d", c.removedAt, idx)
	}
	votes := cn.countVotesFrom(3)
	cn.tick(5 * cn.cfgs[3].electionTicksMax)
	if *votes != 0 {
		t.Fatalf("removed node sent %d vote requests after it was told", *votes)
	}
	cn.dropFn = nil
	l := cn.rvOneLeader(10 * cn.cfgs[0].electionTicksMax)
	cn.mustChange(l, addLearner(3))
	cn.heal()
	for range 10 * cn.cfgs[0].electionTicksMax {
		if c.confIndex() > idx {
			break
		}
		cn.tick(1)
	}
	if c.removed() || !c.conf().Contains(3) {
		t.Fatalf("re-added 3: removed %v (removedAt %d) configuration %v at %d", c.removed(), c.removedAt, c.conf(), c.confIndex())
	}
	cn.checkNoViolations()
}

// TestReview4RemovedLeaderToldByCommittedVoter: a leader of {0,1,2}
// removes itself; 1 and 2 store the removal, 0 is cut off before it hears
// their answers. 0 holds the longest log and may still campaign
// (mayCampaign's exception, TestReview15RemovedLeaderLostBeforeCommit);
// 1 and 2 elect a leader of {1,2} and commit the removal. Nobody
// replicates to 0 any more (it is no member of the new leader's
// configuration), so only the notice in the vote answers can tell it the
// removal committed: its index equals 0's own configuration index, and 0
// must take it (it knows the configuration that leaves it out; the notice
// says it committed) and stop campaigning.
func TestReview4RemovedLeaderToldByCommittedVoter(t *testing.T) {
	for _, pre := range []bool{true, false} {
		t.Run(fmt.Sprint("prevote=", pre), func(t *testing.T) {
			cn := newMemberNet(t, 3, []int{0, 1, 2}, func(c *coreConfig) { c.preVote = pre })
			cn.campaign(0)
			c0 := cn.cores[0]
			if _, _, err := c0.proposeConfChange(remove(0), c0.cfg.maxPromoteLag); err != nil {
				t.Fatal(err)
			}
			at := c0.confIndex()
			// 0's appends reach 1 and 2; their answers are lost.
			cn.processReady(0)
			q := cn.pending
			cn.pending = nil
			for _, e := range q {
				if e.from == 0 && e.m.ae != nil {
					cn.cores[e.m.to].handleAppendEntries(e.m.ae)
				}
			}
			cn.isolate(0)
			l := -1
			for k := 0; l < 0; k++ {
				if k > 20*cn.cfgs[1].electionTicksMax {
					t.Fatalf("setup: 1 and 2 elect no leader (leaders %v)", cn.leaders())
				}
				cn.tick(1)
				for _, i := range cn.leaders() {
					if i != 0 {
						l = i
					}
				}
			}
			cn.tick(2)
			if cn.cores[1].log.commit < at || cn.cores[2].log.commit < at {
				t.Fatalf("setup: removal at %d not committed by 1 and 2 (%d, %d)", at, cn.cores[1].log.commit, cn.cores[2].log.commit)
			}
			if c0.log.commit >= at || !c0.mayCampaign() {
				t.Fatalf("setup: 0 knows its removal committed (commit %d, at %d)", c0.log.commit, at)
			}
			cn.heal()
			cn.r4WaitRemoved(0, 10*cn.cfgs[0].electionTicksMax)
			votes := cn.countVotesFrom(0)
			cn.tick(5 * cn.cfgs[0].electionTicksMax)
			if *votes != 0 || c0.mayCampaign() || !c0.removed() {
				t.Fatalf("removed leader sent %d vote requests after it was told", *votes)
			}
			l = cn.rvOneLeader(10 * cn.cfgs[1].electionTicksMax)
			if l == 0 || !cn.commits(l, "y") {
				t.Fatalf("leader %d, or no commit", l)
			}
			cn.checkNoViolations()
		})
	}
}
