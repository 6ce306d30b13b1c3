package raft

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
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

// TestReview15RandomChurn runs random scripts over the deterministic net:
// membership changes (add, promote, remove, at whichever core leads)
// interleaved with proposals, reads, partitions, crashes and restarts, and
// compactions, checking after every step at most one leader per term, log
// matching over the committed prefixes, that no committed entry ever
// changes, and that each core's configuration in force is the latest of its
// log; at the end, healed and restarted, the cluster must elect a leader
// and commit on every voter.
//
// RAFT_CHURN_SEEDS sets how many seeds run (default 30) and RAFT_CHURN_BASE
// the first one (default 0; "random" picks one, logged), for stress runs
// that explore new scripts: a failing seed replays exactly.
func TestReview15RandomChurn(t *testing.T) {
	seeds, base := 30, uint64(0)
	if testing.Short() {
		seeds = 10
	}
	if v := os.Getenv("RAFT_CHURN_SEEDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("RAFT_CHURN_SEEDS: %v", err)
		}
		seeds = n
	}
	switch v := os.Getenv("RAFT_CHURN_BASE"); v {
	case "":
	case "random":
		base = rand.Uint64() >> 1
		t.Logf("RAFT_CHURN_BASE=%d", base)
	default:
		b, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("RAFT_CHURN_BASE: %v", err)
		}
		base = b
	}
	for k := range uint64(seeds) {
		seed := base + k
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { rvChurn(t, seed, 700) })
	}
}

func rvChurn(t *testing.T, seed uint64, steps int) {
	const n = 7
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	pre, cq := rng.IntN(4) != 0, rng.IntN(4) != 0
	cn := rvNet(t, n, []int{0, 1, 2}, nil, func(c *coreConfig) {
		c.seed = seed
		c.preVote, c.checkQuorum = pre, cq
		c.maxPromoteLag = 20
	})
	leaderOf := map[uint64]int{}
	var script []string
	logf := func(format string, args ...any) { script = append(script, fmt.Sprintf(format, args...)) }
	defer func() {
		if t.Failed() {
			t.Logf("seed %d (prevote %v, check-quorum %v), script:\n%s", seed, pre, cq, strings.Join(script, "\n"))
		}
	}()
	live := func() []int {
		var out []int
		for i, c := range cn.cores {
			if c != nil {
				out = append(out, i)
			}
		}
		return out
	}
	check := func() {
		t.Helper()
		for i, c := range cn.cores {
			if c == nil {
				continue
			}
			if c.role == Leader {
				if o, ok := leaderOf[c.term]; ok && o != i {
					t.Fatalf("two leaders in term %d: %d and %d", c.term, o, i)
				}
				leaderOf[c.term] = i
			}
			// The configuration in force is the latest in the log.
			want := c.confs[0].m
			for k := c.log.firstIndex(); k <= c.log.lastIndex(); k++ {
				if e := c.log.entry(k); e.Type == persist.EntryConfig {
					m, err := decodeMembership(e.Data)
					if err != nil {
						t.Fatalf("core %d entry %d: %v", i, k, err)
					}
					want = m
				}
			}
			if c.conf().String() != want.String() {
				t.Fatalf("core %d: configuration in force %v, latest in its log %v", i, c.conf(), want)
			}
			for j := i + 1; j < n; j++ {
				d := cn.cores[j]
				if d == nil {
					continue
				}
				hi := min(c.log.commit, d.log.commit, c.log.lastIndex(), d.log.lastIndex())
				for k := max(c.log.firstIndex(), d.log.firstIndex()); k <= hi; k++ {
					if a, b := c.log.entry(k), d.log.entry(k); a.Term != b.Term {
						t.Fatalf("committed index %d: core %d has term %d, core %d term %d", k, i, a.Term, j, b.Term)
					}
				}
			}
		}
		cn.rvCheckApplied()
		cn.checkNoViolations()
		if t.Failed() {
			t.FailNow()
		}
	}
	cn.tick(3 * cn.cfgs[0].electionTicksMax)
	for step := range steps {
		ls := cn.leaders()
		r := rng.IntN(100)
		switch {
		case r < 30:
			cn.tick(1 + rng.IntN(3))
		case r < 45 && len(ls) > 0:
			l := ls[rng.IntN(len(ls))]
			if _, _, ok := cn.cores[l].propose(fmt.Appendf(nil, "s%d-%d", seed, step)); ok {
				logf("%d: propose at %d", step, l)
			}
			cn.stabilize()
		case r < 58 && len(ls) > 0:
			l := ls[rng.IntN(len(ls))]
			m := cn.cores[l].conf()
			var ch confChange
			switch op := rng.IntN(3); {
			case op == 0 || len(m.Members) < 3:
				var out []int
				for id := range n {
					if !m.Contains(id) {
						out = append(out, id)
					}
				}
				if len(out) == 0 {
					continue
				}
				ch = rvAdd(out[rng.IntN(len(out))])
			case op == 1 && len(m.Learners()) > 0:
				ch = rvPromote(m.Learners()[rng.IntN(len(m.Learners()))])
			default:
				ch = rvRemove(m.Members[rng.IntN(len(m.Members))].ID)
			}
			err := cn.rvChange(l, ch)
			logf("%d: %v %d at %d: %v", step, ch.op, ch.member.ID, l, err)
		case r < 66:
			var a, b []int
			for _, i := range live() {
				if rng.IntN(2) == 0 {
					a = append(a, i)
				} else {
					b = append(b, i)
				}
			}
			cn.partition(a, b)
			logf("%d: partition %v %v", step, a, b)
		case r < 74:
			cn.heal()
			logf("%d: heal", step)
		case r < 79:
			if l := live(); len(l) > 0 {
				i := l[rng.IntN(len(l))]
				cn.crash(i)
				logf("%d: crash %d", step, i)
			}
		case r < 86:
			for i, c := range cn.cores {
				if c == nil {
					cn.restart(i)
					logf("%d: restart %d", step, i)
					break
				}
			}
			cn.stabilize()
		case r < 93 && len(live()) > 0:
			l := live()
			i := l[rng.IntN(len(l))]
			c := cn.cores[i]
			idx := min(c.log.applied, c.log.durable)
			if idx <= c.log.snap.Index {
				continue
			}
			term, _ := c.log.term(idx)
			snap := persist.Snapshot{Index: idx, Term: term, Data: fmt.Appendf(nil, "state@%d", idx), Config: c.snapshotConfig(idx)}
			if err := cn.stores[i].SaveSnapshot(context.Background(), snap); err != nil {
				t.Fatal(err)
			}
			if err := c.compact(snap); err != nil {
				t.Fatalf("compact core %d: %v", i, err)
			}
			logf("%d: compact %d at %d", step, i, idx)
		case len(live()) > 0:
			l := live()
			i := l[rng.IntN(len(l))]
			cn.cores[i].readIndex(uint64(step + 1))
			cn.stabilize()
		}
		check()
	}
	// Healed and all up: a leader is elected and commits on every voter of
	// its configuration (leadership may still move meanwhile: then again
	// with the next leader).
	for i, c := range cn.cores {
		if c == nil {
			cn.restart(i)
		}
	}
	cn.heal()
	logf("end: heal, restart all")
	dump := func() {
		for i, c := range cn.cores {
			t.Logf("core %d: %v term %d lead %d conf %v (at %d) snap %d last %d/%d commit %d", i, c.role, c.term, c.lead, c.conf(), c.confIndex(), c.log.snap.Index, c.log.lastIndex(), c.log.lastTerm(), c.log.commit)
		}
	}
	budget := 50 * cn.cfgs[0].electionTicksMax
	l, idx, term := -1, uint64(0), uint64(0)
	for k := 0; ; k++ {
		if k > budget {
			dump()
			t.Fatalf("no leader committed a last entry on all its voters within %d ticks after healing (leaders %v)", budget, cn.leaders())
		}
		ls := cn.leaders()
		if len(ls) == 1 && (l != ls[0] || cn.cores[l].term != term) {
			c := cn.cores[ls[0]]
			if c.log.commit >= c.noopIndex {
				l, term = ls[0], c.term
				idx = cn.propose(l, fmt.Sprint("final-", k))
			}
		}
		if l >= 0 && cn.cores[l].role == Leader && cn.cores[l].term == term {
			done := true
			for _, v := range cn.cores[l].voters {
				if cn.cores[v].log.commit < idx {
					done = false
				}
			}
			if done {
				break
			}
		}
		cn.tick(1)
	}
	check()
}

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
