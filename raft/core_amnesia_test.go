package raft

import (
	"slices"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

// Scenarios for a replica that restarts with nothing, as every replica on
// the noop store does: term 0, no vote, empty log. Durability is knowingly
// given up there, but the election restriction (a voter refuses a candidate
// whose log is less up to date: last term, then last index) still has to
// keep such a replica from leading while a majority holds entries.

// amnesiaConfigs are the configurations the scenarios run under. With the
// lease (check-quorum) off, nothing but the log comparison stands between
// the empty candidate and the votes.
var amnesiaConfigs = []struct {
	name  string
	tweak func(*coreConfig)
}{
	{"prevote+checkquorum", func(*coreConfig) {}},
	{"prevote", func(c *coreConfig) { c.checkQuorum = false }},
	{"plain", func(c *coreConfig) { c.preVote, c.checkQuorum = false, false }},
}

// wipe replaces core i with a brand-new one that remembers nothing, as a
// restart on the noop store gives.
func (cn *coreNet) wipe(i int) {
	cn.load(i, persist.State{HardState: persist.EmptyHardState})
	cn.applied[i], cn.snapshots[i], cn.reads[i] = nil, nil, nil
}

// checkLeadersHold fails the test if any leader's log lacks one of want
// (Leader Completeness for the entries a majority still holds).
func (cn *coreNet) checkLeadersHold(want []Entry) {
	cn.t.Helper()
	for _, l := range cn.leaders() {
		c := cn.cores[l]
		for _, e := range want {
			if t, ok := c.log.term(e.Index); !ok || t != e.Term {
				cn.t.Fatalf("core %d leads term %d without entry %d/%d (last %d/%d)",
					l, c.term, e.Index, e.Term, c.log.lastIndex(), c.log.lastTerm())
			}
		}
	}
}

// committedOnAll sets up a leader (core 0) in term 1 whose no-op and one
// command are committed and applied on all three cores; it returns the
// entries.
func committedOnAll(t *testing.T, cn *coreNet) []Entry {
	t.Helper()
	cn.campaign(0)
	cn.propose(0, "x")
	cn.tick(cn.cfgs[0].heartbeatTicks)
	for i := range 3 {
		if got := cn.appliedCommands(i); !slices.Equal(got, []string{"x"}) {
			t.Fatalf("core %d applied %v before the wipe, want [x]", i, got)
		}
	}
	return cloneEntries(cn.cores[0].log.ents.All())
}

// TestCoreWipedReplicaCannotLead: a follower, then (second case) the
// leader, is replaced by an empty core while the other two hold the
// committed no-op and command. The empty core campaigns at once, over and
// over, and must never win; the cluster then converges and gives it the
// log back.
func TestCoreWipedReplicaCannotLead(t *testing.T) {
	for _, cfg := range amnesiaConfigs {
		for _, wiped := range []int{2, 0} {
			name := cfg.name + "/follower"
			if wiped == 0 {
				name = cfg.name + "/leader"
			}
			t.Run(name, func(t *testing.T) {
				cn := newCoreNet(t, 3, cfg.tweak)
				held := committedOnAll(t, cn)
				cn.wipe(wiped)
				fresh := cn.cores[wiped]
				if fresh.term != 0 || fresh.log.lastIndex() != 0 {
					t.Fatalf("wiped core has term %d last %d", fresh.term, fresh.log.lastIndex())
				}
				// The empty core campaigns before anyone else moves: its
				// (pre-)vote requests carry term 1 then higher, and last 0/0.
				for attempt := range 5 {
					if cn.cores[wiped].role == Leader {
						break
					}
					cn.cores[wiped].campaign()
					cn.stabilize()
					cn.checkLeadersHold(held)
					if cn.cores[wiped].role == Leader {
						t.Fatalf("attempt %d: the empty core won term %d", attempt, cn.cores[wiped].term)
					}
				}
				// Then let time run: the others (re)elect, the empty core is
				// caught up; no leader may ever lack the entries.
				for range 6 * cn.cfgs[0].electionTicksMax {
					cn.tick(1)
					cn.checkLeadersHold(held)
				}
				ls := cn.leaders()
				if len(ls) != 1 {
					t.Fatalf("leaders %v after the wipe, want one", ls)
				}
				cn.propose(ls[0], "y")
				cn.tick(cn.cfgs[0].heartbeatTicks)
				for i := range 3 {
					got := cn.cores[i].log.ents.All()
					if len(got) < len(held) {
						t.Fatalf("core %d holds %d entries, want at least %d", i, len(got), len(held))
					}
					for k, e := range held {
						if got[k].Index != e.Index || got[k].Term != e.Term || string(got[k].Data) != string(e.Data) {
							t.Fatalf("core %d entry %d is %d/%d %q, want %d/%d %q", i, k,
								got[k].Index, got[k].Term, got[k].Data, e.Index, e.Term, e.Data)
						}
					}
				}
				want := []string{"x", "y"}
				if got := cn.appliedCommands(wiped); !slices.Equal(got, want) {
					t.Errorf("wiped core applied %v, want %v", got, want)
				}
				cn.checkNoViolations()
			})
		}
	}
}

// TestCoreWipedVoteRequestRefused pins the voter side directly: a replica
// holding 1/1 and 2/1, having voted for core 0 in term 1, refuses the empty
// core 0's requests for term 1 (same candidate it voted for: only the log
// check refuses) and for term 2, as vote and as pre-vote, with or without
// the lease. The same replica grants a candidate whose log is as long.
func TestCoreWipedVoteRequestRefused(t *testing.T) {
	st := persist.State{
		HardState: persist.HardState{Term: 1, VotedFor: 0, Commit: 2},
		Entries:   []Entry{{Index: 1, Term: 1, Type: persist.EntryNoop}, {Index: 2, Term: 1, Data: []byte("x")}},
	}
	for _, cfg := range amnesiaConfigs {
		for _, term := range []uint64{1, 2} {
			for _, pre := range []bool{false, true} {
				c := newCore(testCoreConfig(1, 3), st)
				cfg.tweak(&c.cfg)
				resp := c.handleRequestVote(&RequestVoteRequest{Term: term, CandidateID: 0, PreVote: pre})
				if resp.VoteGranted {
					t.Errorf("%s: granted the empty candidate term %d pre=%v", cfg.name, term, pre)
				}
				if !pre && c.vote != 0 && c.vote != persist.NoVote {
					t.Errorf("%s: vote moved to %d", cfg.name, c.vote)
				}
				c = newCore(testCoreConfig(1, 3), st)
				cfg.tweak(&c.cfg)
				resp = c.handleRequestVote(&RequestVoteRequest{Term: term, CandidateID: 0, PreVote: pre, LastLogIndex: 2, LastLogTerm: 1})
				if !resp.VoteGranted {
					t.Errorf("%s: refused an up-to-date candidate term %d pre=%v", cfg.name, term, pre)
				}
			}
		}
	}
}

// TestCoreWipedLeaderUncommittedEntry: the leader of term 1 is cut off
// before its no-op reaches anyone, proposes a command, and restarts empty.
// Nothing was committed and the other two hold nothing, so Raft lets the
// empty core win: its log (empty) is as up to date as theirs. This is not
// a safety violation; the test pins that the log rule, not luck, decides.
// Note that the empty core may even win term 1 again, since the voters
// voted for it in term 1 and it forgot.
func TestCoreWipedLeaderUncommittedEntry(t *testing.T) {
	for _, cfg := range amnesiaConfigs {
		t.Run(cfg.name, func(t *testing.T) {
			cn := newCoreNet(t, 3, cfg.tweak)
			// Votes delivered, then every AppendEntries from 0 dropped.
			cn.dropFn = func(from int, m message) bool { return from == 0 && m.ae != nil }
			cn.campaign(0)
			if cn.cores[0].role != Leader {
				t.Fatalf("core 0 is %v, want leader", cn.cores[0].role)
			}
			cn.propose(0, "x")
			if cn.cores[0].log.commit != 0 {
				t.Fatalf("commit %d with no follower", cn.cores[0].log.commit)
			}
			cn.wipe(0)
			cn.dropFn = nil
			cn.cores[0].campaign()
			cn.stabilize()
			if cn.cores[0].role != Leader {
				t.Fatalf("the empty core is %v in term %d; with all logs empty it may win",
					cn.cores[0].role, cn.cores[0].term)
			}
			cn.tick(cn.cfgs[0].heartbeatTicks)
			for i := range 3 {
				if got := cn.appliedCommands(i); len(got) != 0 {
					t.Errorf("core %d applied %v, the uncommitted x must be gone", i, got)
				}
			}
			cn.checkNoViolations()
		})
	}
}

// TestCoreWipedLeaderOneHolder: the command is committed on the leader and
// core 1 only; the leader restarts empty. Core 1 refuses the empty core (log
// rule) while core 2, as empty as the candidate, may grant it. A core that
// holds the entry wins whenever it campaigns. With two of the three copies
// gone (one never sent, one wiped) the entry has no majority left: what
// follows is the durability noop gives up, not an election bug.
func TestCoreWipedLeaderOneHolder(t *testing.T) {
	for _, cfg := range amnesiaConfigs {
		t.Run(cfg.name, func(t *testing.T) {
			cn := newCoreNet(t, 3, cfg.tweak)
			cn.partition([]int{0, 1}, []int{2})
			cn.campaign(0)
			cn.propose(0, "x")
			cn.tick(cn.cfgs[0].heartbeatTicks)
			if got := cn.appliedCommands(1); !slices.Equal(got, []string{"x"}) {
				t.Fatalf("core 1 applied %v, want [x]", got)
			}
			if n := cn.cores[2].log.lastIndex(); n != 0 {
				t.Fatalf("core 2 holds %d entries, want none", n)
			}
			cn.wipe(0)
			cn.heal()
			c1 := cn.cores[1]
			lastIdx, lastTerm := c1.log.lastIndex(), c1.log.lastTerm()
			// The empty core asks core 1 directly: refused on the log.
			for _, pre := range []bool{true, false} {
				r := c1.handleRequestVote(&RequestVoteRequest{Term: c1.term + 1, CandidateID: 0, PreVote: pre})
				if r.VoteGranted {
					t.Fatalf("core 1 (last %d/%d) granted the empty core pre=%v", lastIdx, lastTerm, pre)
				}
			}
			// Core 1 campaigns: core 2 and the empty core grant, and it
			// gives both the log.
			cn.campaign(1)
			if c1.role != Leader {
				t.Fatalf("core 1 is %v, want leader", c1.role)
			}
			cn.tick(6 * cn.cfgs[0].electionTicksMax)
			ls := cn.leaders()
			if len(ls) != 1 || ls[0] != 1 {
				t.Fatalf("leaders %v, want [1]", ls)
			}
			for i := range 3 {
				if got := cn.appliedCommands(i); !slices.Equal(got, []string{"x"}) {
					t.Errorf("core %d applied %v, want [x]", i, got)
				}
			}
			cn.checkNoViolations()
		})
	}
}
