package raft

import (
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

func TestQuorum(t *testing.T) {
	for _, tc := range []struct{ n, q int }{{1, 1}, {2, 2}, {3, 2}, {4, 3}, {5, 3}, {6, 4}, {7, 4}} {
		if got := quorum(tc.n); got != tc.q {
			t.Errorf("quorum(%d) = %d, want %d", tc.n, got, tc.q)
		}
	}
	for _, tc := range []struct {
		vals []uint64
		want uint64
	}{
		{[]uint64{5}, 5},
		{[]uint64{5, 3}, 3},
		{[]uint64{5, 3, 1}, 3},
		{[]uint64{9, 1, 5, 7}, 5},
		{[]uint64{9, 1, 5, 7, 2}, 5},
		{[]uint64{9, 1, 5, 7, 2, 8}, 5},
	} {
		if got := quorumMin(tc.vals); got != tc.want {
			t.Errorf("quorumMin(%v) = %d, want %d", tc.vals, got, tc.want)
		}
	}
	for _, tc := range []struct {
		votes []int8
		want  voteResult
	}{
		{[]int8{1}, voteWon},
		{[]int8{1, 0}, votePending},
		{[]int8{1, -1}, voteLost},
		{[]int8{1, 1}, voteWon},
		{[]int8{1, 1, 0, 0}, votePending},
		{[]int8{1, 1, -1, 0}, votePending},
		{[]int8{1, 1, -1, -1}, voteLost},
		{[]int8{1, 1, 1, 0}, voteWon},
		{[]int8{1, -1, -1, 0, 0}, votePending},
		{[]int8{1, -1, -1, -1, 0}, voteLost},
	} {
		voters := make([]int, len(tc.votes))
		votes := map[int]int8{}
		for i, v := range tc.votes {
			voters[i] = i
			if v != 0 {
				votes[i] = v
			}
		}
		if got := tally(voters, votes); got != tc.want {
			t.Errorf("tally(%v) = %v, want %v", tc.votes, got, tc.want)
		}
	}
}

func TestCoreElectionTicks(t *testing.T) {
	cn := newCoreNet(t, 3)
	cn.tick(cn.cfgs[0].electionTicksMax + 1)
	if ls := cn.leaders(); len(ls) != 1 {
		t.Fatalf("leaders %v, want one", ls)
	}
	l := cn.leaders()[0]
	term := cn.cores[l].term
	// An idle cluster keeps its leader and term.
	cn.tick(10 * cn.cfgs[0].electionTicksMax)
	if ls := cn.leaders(); len(ls) != 1 || ls[0] != l || cn.cores[l].term != term {
		t.Fatalf("leader changed to %v term %d; was %d term %d", ls, cn.cores[ls[0]].term, l, term)
	}
	cn.checkNoViolations()
}

// TestCoreMajorities: clusters of every size elect and commit only with a
// true majority; an even split commits nothing.
func TestCoreMajorities(t *testing.T) {
	for n := 1; n <= 7; n++ {
		// With a majority connected (the leader and quorum-1 others).
		cn := newCoreNet(t, n)
		q := quorum(n)
		var majority, minority []int
		for i := range n {
			if i < q {
				majority = append(majority, i)
			} else {
				minority = append(minority, i)
			}
		}
		cn.partition(majority, minority)
		cn.campaign(0)
		if cn.cores[0].role != Leader {
			t.Fatalf("n=%d: core 0 with %d of %d is %v, want leader", n, q, n, cn.cores[0].role)
		}
		idx := cn.propose(0, "a")
		if c := cn.cores[0].log.commit; c != idx {
			t.Fatalf("n=%d: commit %d, want %d", n, c, idx)
		}
		if n == 1 {
			continue
		}
		// With one fewer than a majority (for even n, exactly half).
		cn = newCoreNet(t, n, func(c *coreConfig) { c.preVote = false })
		cn.partition(majority[:q-1], append(minority, majority[q-1]))
		cn.campaign(0)
		if cn.cores[0].role == Leader {
			t.Fatalf("n=%d: core 0 elected with %d of %d votes", n, q-1, n)
		}
	}
}

// TestCoreLease: a node that heard from a leader within the election
// timeout denies pre-votes and votes, unless for a leadership transfer.
func TestCoreLease(t *testing.T) {
	for _, tc := range []struct {
		name     string
		elapsed  int
		pre      bool
		transfer bool
		want     bool
	}{
		{"pre-vote in lease", 3, true, false, false},
		{"vote in lease", 3, false, false, false},
		{"transfer vote in lease", 3, false, true, true},
		{"pre-vote after lease", 10, true, false, true},
		{"vote after lease", 10, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cn := newCoreNet(t, 3)
			cn.campaign(0)
			f := cn.cores[1]
			f.electionElapsed = tc.elapsed
			term := f.term
			resp := f.handleRequestVote(&RequestVoteRequest{
				Term: term + 1, CandidateID: 2, LastLogIndex: 10, LastLogTerm: term,
				PreVote: tc.pre, LeadershipTransfer: tc.transfer,
			})
			if resp.VoteGranted != tc.want {
				t.Fatalf("granted %v, want %v", resp.VoteGranted, tc.want)
			}
			if !tc.want && f.term != term {
				t.Fatalf("refused request moved term %d -> %d", term, f.term)
			}
			if tc.pre && f.term != term {
				t.Fatalf("pre-vote moved term %d -> %d", term, f.term)
			}
		})
	}
}

func TestCoreVoteRules(t *testing.T) {
	for _, tc := range []struct {
		name          string
		lastIdx, lTrm uint64
		term          uint64
		want          bool
	}{
		{"older term", 5, 1, 1, false},
		{"log behind in term", 1, 1, 5, false},
		{"log shorter same last term", 2, 2, 5, false},
		{"log equal", 3, 2, 5, true},
		{"log longer", 9, 2, 5, true},
		{"higher last term", 1, 3, 5, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := persist.State{HardState: persist.HardState{Term: 2, VotedFor: persist.NoVote},
				Entries: []Entry{{Index: 1, Term: 1}, {Index: 2, Term: 2}, {Index: 3, Term: 2}}}
			c := newCore(testCoreConfig(0, 3), st)
			resp := c.handleRequestVote(&RequestVoteRequest{Term: tc.term, CandidateID: 1, LastLogIndex: tc.lastIdx, LastLogTerm: tc.lTrm})
			if resp.VoteGranted != tc.want {
				t.Fatalf("granted %v, want %v", resp.VoteGranted, tc.want)
			}
			if tc.want {
				// One vote per term.
				r2 := c.handleRequestVote(&RequestVoteRequest{Term: tc.term, CandidateID: 2, LastLogIndex: 99, LastLogTerm: 9})
				if r2.VoteGranted {
					t.Fatal("voted twice in one term")
				}
			}
		})
	}
}

// TestCoreFastBackup: a follower with a long divergent log is repaired in a
// few round trips, not one per entry.
func TestCoreFastBackup(t *testing.T) {
	run := func(lo, hi, term uint64) []Entry {
		var es []Entry
		for i := lo; i <= hi; i++ {
			es = append(es, Entry{Index: i, Term: term, Type: persist.EntryCommand, Data: []byte{byte(i)}})
		}
		return es
	}
	long := append(run(1, 100, 1), run(101, 150, 3)...)
	diverged := append(run(1, 50, 1), run(51, 250, 2)...)
	cn := newCoreNet(t, 3, func(c *coreConfig) { c.maxEntries = 1000 })
	cn.load(0, persist.State{HardState: persist.HardState{Term: 3, VotedFor: persist.NoVote}, Entries: long})
	cn.load(1, persist.State{HardState: persist.HardState{Term: 3, VotedFor: persist.NoVote}, Entries: slices.Clone(long)})
	cn.load(2, persist.State{HardState: persist.HardState{Term: 2, VotedFor: persist.NoVote}, Entries: diverged})
	cn.trace = &strings.Builder{}
	cn.campaign(0)
	cn.tick(cn.cfgs[0].heartbeatTicks)
	if got, want := cn.cores[2].log.lastIndex(), cn.cores[0].log.lastIndex(); got != want {
		t.Fatalf("core 2 last index %d, want %d", got, want)
	}
	for i := uint64(1); i <= cn.cores[0].log.lastIndex(); i++ {
		a, _ := cn.cores[0].log.term(i)
		b, _ := cn.cores[2].log.term(i)
		if a != b {
			t.Fatalf("logs differ at %d: %d vs %d", i, a, b)
		}
	}
	var rejects int
	for _, l := range strings.Split(cn.trace.String(), "\n") {
		if strings.HasPrefix(l, "0->2 AppendEntries") && strings.Contains(l, ": reject") {
			rejects++
		}
	}
	if rejects > 2 {
		t.Fatalf("repair took %d rejected appends, want at most 2:\n%s", rejects, cn.trace.String())
	}
	cn.checkNoViolations()
}

func TestCoreAppendEntriesRules(t *testing.T) {
	base := []Entry{{Index: 1, Term: 1}, {Index: 2, Term: 1}, {Index: 3, Term: 2}, {Index: 4, Term: 2}}
	for _, tc := range []struct {
		name         string
		commit       uint64
		req          AppendEntriesRequest
		wantOK       bool
		wantTerms    []uint64
		wantCommit   uint64
		wantCTerm    uint64
		wantCIndex   uint64
		wantViolates bool
	}{
		{name: "heartbeat matches", req: AppendEntriesRequest{Term: 3, PrevLogIndex: 4, PrevLogTerm: 2, LeaderCommit: 3},
			wantOK: true, wantTerms: []uint64{1, 1, 2, 2}, wantCommit: 3},
		{name: "commit capped by last new entry", req: AppendEntriesRequest{Term: 3, PrevLogIndex: 2, PrevLogTerm: 1, LeaderCommit: 9},
			wantOK: true, wantTerms: []uint64{1, 1, 2, 2}, wantCommit: 2},
		{name: "gap", req: AppendEntriesRequest{Term: 3, PrevLogIndex: 7, PrevLogTerm: 3},
			wantTerms: []uint64{1, 1, 2, 2}, wantCIndex: 5},
		{name: "conflicting prev", req: AppendEntriesRequest{Term: 3, PrevLogIndex: 4, PrevLogTerm: 3},
			wantTerms: []uint64{1, 1, 2, 2}, wantCTerm: 2, wantCIndex: 3},
		{name: "truncate conflict", req: AppendEntriesRequest{Term: 3, PrevLogIndex: 2, PrevLogTerm: 1, Entries: []Entry{{Index: 3, Term: 3}}},
			wantOK: true, wantTerms: []uint64{1, 1, 3}},
		{name: "stale shorter append keeps suffix", req: AppendEntriesRequest{Term: 3, PrevLogIndex: 1, PrevLogTerm: 1, Entries: []Entry{{Index: 2, Term: 1}}},
			wantOK: true, wantTerms: []uint64{1, 1, 2, 2}},
		{name: "append after end", req: AppendEntriesRequest{Term: 3, PrevLogIndex: 4, PrevLogTerm: 2, Entries: []Entry{{Index: 5, Term: 3}}},
			wantOK: true, wantTerms: []uint64{1, 1, 2, 2, 3}},
		{name: "stale term", req: AppendEntriesRequest{Term: 1, PrevLogIndex: 4, PrevLogTerm: 2, Entries: []Entry{{Index: 5, Term: 1}}},
			wantTerms: []uint64{1, 1, 2, 2}},
		{name: "overwrite committed", commit: 3, req: AppendEntriesRequest{Term: 3, PrevLogIndex: 2, PrevLogTerm: 1, Entries: []Entry{{Index: 3, Term: 3}}},
			wantTerms: []uint64{1, 1, 2, 2}, wantCommit: 3, wantViolates: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := persist.State{HardState: persist.HardState{Term: 2, VotedFor: persist.NoVote, Commit: tc.commit}, Entries: slices.Clone(base)}
			c := newCore(testCoreConfig(1, 3), st)
			resp := c.handleAppendEntries(&tc.req)
			if resp.Success != tc.wantOK {
				t.Fatalf("success %v, want %v (%+v)", resp.Success, tc.wantOK, resp)
			}
			var terms []uint64
			for i := c.log.firstIndex(); i <= c.log.lastIndex(); i++ {
				tm, _ := c.log.term(i)
				terms = append(terms, tm)
			}
			if !slices.Equal(terms, tc.wantTerms) {
				t.Errorf("log terms %v, want %v", terms, tc.wantTerms)
			}
			if c.log.commit != tc.wantCommit {
				t.Errorf("commit %d, want %d", c.log.commit, tc.wantCommit)
			}
			if !tc.wantOK && (resp.ConflictTerm != tc.wantCTerm || resp.ConflictIndex != tc.wantCIndex) && tc.req.Term >= 2 {
				t.Errorf("conflict %d/%d, want %d/%d", resp.ConflictTerm, resp.ConflictIndex, tc.wantCTerm, tc.wantCIndex)
			}
			if got := len(c.violations) > 0; got != tc.wantViolates {
				t.Errorf("violations %v, want some: %v", c.violations, tc.wantViolates)
			}
		})
	}
}

func TestCoreInstallSnapshotRules(t *testing.T) {
	base := []Entry{{Index: 1, Term: 1}, {Index: 2, Term: 1}, {Index: 3, Term: 2}, {Index: 4, Term: 2}}
	for _, tc := range []struct {
		name        string
		commit      uint64
		snapIdx     uint64
		snapTerm    uint64
		wantRestore bool
		wantLast    uint64
		wantCommit  uint64
	}{
		{"covered by commit: ignored", 3, 2, 1, false, 4, 3},
		{"matching entry: keep suffix", 1, 3, 2, false, 4, 3},
		{"conflicting entry: replace log", 1, 3, 3, true, 3, 3},
		{"beyond log: replace", 1, 9, 3, true, 9, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := persist.State{HardState: persist.HardState{Term: 3, VotedFor: persist.NoVote, Commit: tc.commit}, Entries: slices.Clone(base)}
			c := newCore(testCoreConfig(1, 3), st)
			resp := c.handleInstallSnapshot(&InstallSnapshotRequest{Term: 3, LeaderID: 0, LastIncludedIndex: tc.snapIdx,
				LastIncludedTerm: tc.snapTerm, Data: []byte("s"), Done: true, TotalSize: 1, Checksum: crc32.Checksum([]byte("s"), castagnoli)})
			if !resp.Installed {
				t.Fatalf("not installed: %+v", resp)
			}
			if got := c.log.snapUnstable; got != tc.wantRestore {
				t.Errorf("restored %v, want %v", got, tc.wantRestore)
			}
			if c.log.lastIndex() != tc.wantLast || c.log.commit != tc.wantCommit {
				t.Errorf("last %d commit %d, want %d %d", c.log.lastIndex(), c.log.commit, tc.wantLast, tc.wantCommit)
			}
		})
	}
}

// TestCorePipelineReordered: pipelined appends delivered out of order (the
// later one rejected for a gap) are resent, whichever answer the leader
// handles first.
func TestCorePipelineReordered(t *testing.T) {
	for _, rejectFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("rejectFirst=%v", rejectFirst), func(t *testing.T) {
			cn := newCoreNet(t, 2, func(c *coreConfig) { c.maxEntries = 5 })
			cn.campaign(0)
			l, f := cn.cores[0], cn.cores[1]
			if l.prs[1].state != stateReplicate {
				t.Fatalf("state %v", l.prs[1].state)
			}
			l.propose([]byte("a"))
			rd1 := l.ready()
			l.advance(rd1)
			for i := range 5 {
				l.propose([]byte{byte(i)})
			}
			rd2 := l.ready()
			l.advance(rd2)
			if len(rd1.messages) != 1 || len(rd2.messages) != 1 {
				t.Fatalf("messages %d %d, want 1 and 1", len(rd1.messages), len(rd2.messages))
			}
			m1, m2 := rd1.messages[0], rd2.messages[0]
			// The follower sees m2 first (a gap: rejected), then m1.
			r2 := f.handleAppendEntries(m2.ae)
			r1 := f.handleAppendEntries(m1.ae)
			if r2.Success || !r1.Success {
				t.Fatalf("answers %+v %+v", r2, r1)
			}
			if rejectFirst {
				l.handleAppendResponse(m2, r2)
				l.handleAppendResponse(m1, r1)
			} else {
				l.handleAppendResponse(m1, r1)
				l.handleAppendResponse(m2, r2)
			}
			cn.stabilize()
			if got, want := f.log.lastIndex(), l.log.lastIndex(); got != want {
				t.Fatalf("follower last %d, leader %d: the rejected entries were never resent", got, want)
			}
			if l.prs[1].match != l.log.lastIndex() || len(l.prs[1].inflights) != 0 {
				t.Fatalf("progress %+v", l.prs[1])
			}
		})
	}
}
