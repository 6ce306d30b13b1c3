package raft

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

// TestCoreImplausibleTermsRefused: a request or answer whose term is beyond
// MaxTerm or more than maxTermJump ahead changes nothing; a term just within
// the bound is adopted.
func TestCoreImplausibleTermsRefused(t *testing.T) {
	bad := []uint64{math.MaxUint64, MaxTerm + 1, 5 + maxTermJump + 1}
	for _, term := range bad {
		cn := newCoreNet(t, 3)
		cn.campaign(0)
		f := cn.cores[1]
		before := f.term
		reqs := []func() uint64{
			func() uint64 {
				return f.handleAppendEntries(&AppendEntriesRequest{Term: term, LeaderID: 2, PrevLogIndex: 1, PrevLogTerm: 1}).Term
			},
			func() uint64 {
				return f.handleRequestVote(&RequestVoteRequest{Term: term, CandidateID: 2, LastLogIndex: 100, LastLogTerm: term}).Term
			},
			func() uint64 {
				return f.handleRequestVote(&RequestVoteRequest{Term: term, CandidateID: 2, LastLogIndex: 100, LastLogTerm: term, PreVote: true, LeadershipTransfer: true}).Term
			},
			func() uint64 {
				return f.handleInstallSnapshot(&InstallSnapshotRequest{Term: term, LeaderID: 2, LastIncludedIndex: 50, LastIncludedTerm: 1, Done: true}).Term
			},
			func() uint64 { return f.handleTimeoutNow(&TimeoutNowRequest{Term: term, LeaderID: 2}).Term },
		}
		for i, req := range reqs {
			if got := req(); got != before || f.term != before || f.role != Follower || f.lead != 0 {
				t.Fatalf("term %d, request %d: answered term %d, now term %d role %v lead %d; want all unchanged (%d)",
					term, i, got, f.term, f.role, f.lead, before)
			}
		}
		// An answer with such a term does not depose the leader.
		l := cn.cores[0]
		l.handleAppendResponse(message{to: 1, ae: &AppendEntriesRequest{Term: l.term}}, &AppendEntriesResponse{Term: term})
		l.handleSnapshotResponse(message{to: 1, is: &InstallSnapshotRequest{Term: l.term}}, &InstallSnapshotResponse{Term: term})
		l.handleTimeoutNowResponse(message{to: 1, tn: &TimeoutNowRequest{Term: l.term}}, &TimeoutNowResponse{Term: term})
		if l.role != Leader || l.term != before {
			t.Fatalf("term %d: leader is %v in term %d after implausible answers", term, l.role, l.term)
		}
		// The cluster keeps working, in a sane term.
		cn.propose(0, "after")
		cn.tick(cn.cfgs[0].heartbeatTicks)
		if got := cn.appliedCommands(1); len(got) != 1 || got[0] != "after" {
			t.Fatalf("term %d: follower applied %v", term, got)
		}
		cn.checkNoViolations()
	}
	// Within the bound: adopted.
	c := newCore(testCoreConfig(1, 3), persist.State{HardState: persist.HardState{Term: 5, VotedFor: persist.NoVote}})
	if resp := c.handleAppendEntries(&AppendEntriesRequest{Term: 5 + maxTermJump, LeaderID: 0}); !resp.Success || c.term != 5+maxTermJump {
		t.Fatalf("a term maxTermJump ahead: %+v, term %d", resp, c.term)
	}
}

// TestCoreTermNeverWraps: a node at MaxTerm (reachable only through hostile
// requests, one maxTermJump at a time) does not campaign, so its term never
// passes MaxTerm and never wraps.
func TestCoreTermNeverWraps(t *testing.T) {
	cfg := testCoreConfig(0, 3)
	c := newCore(cfg, persist.State{HardState: persist.HardState{Term: MaxTerm - 1, VotedFor: persist.NoVote}})
	if resp := c.handleAppendEntries(&AppendEntriesRequest{Term: MaxTerm, LeaderID: 1}); !resp.Success {
		t.Fatalf("MaxTerm itself refused: %+v", resp)
	}
	for range 10 * cfg.electionTicksMax {
		c.tick()
	}
	c.becomeCandidate(true) // as a TimeoutNow would
	if c.term != MaxTerm || c.role != Follower {
		t.Fatalf("term %d role %v, want MaxTerm, follower", c.term, c.role)
	}
	for _, m := range c.msgs {
		if m.rv != nil {
			t.Fatalf("campaigned at MaxTerm: %+v", m.rv)
		}
	}
	// Without pre-vote, too.
	cfg.preVote = false
	c = newCore(cfg, persist.State{HardState: persist.HardState{Term: MaxTerm, VotedFor: persist.NoVote}})
	c.campaign()
	if c.term != MaxTerm || c.role != Follower {
		t.Fatalf("without pre-vote: term %d role %v", c.term, c.role)
	}
}

// TestNodeRefusesStoredTermBeyondMax: a store holding a term no correct
// cluster reaches (written before terms were checked) is refused at
// start-up with an error saying so.
func TestNodeRefusesStoredTermBeyondMax(t *testing.T) {
	st := persist.NewMemory()
	if err := st.Append(context.Background(), persist.HardState{Term: math.MaxUint64, VotedFor: persist.NoVote}, nil); err != nil {
		t.Fatal(err)
	}
	n, err := New(testConfig(0, 3), &inprocTransport{net: newInprocNet(3)}, st, newTestApp())
	if !errors.Is(err, ErrBadTerm) {
		if n != nil {
			n.Kill()
		}
		t.Fatalf("New = %v, want ErrBadTerm", err)
	}
}
