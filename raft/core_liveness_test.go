package raft

import (
	"slices"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

// TestCoreProbeFollowerLostLog: a follower that the leader tracks in probe
// state (its sends failed while it was down) comes back with an empty log
// (a store that does not survive restarts). The leader must notice and
// catch it up, rather than probing at match+1 every heartbeat forever
// (which also keeps the follower from ever campaigning).
func TestCoreProbeFollowerLostLog(t *testing.T) {
	cn := newCoreNet(t, 3)
	cn.campaign(0)
	for i := range 5 {
		cn.propose(0, string(rune('a'+i)))
	}
	l := cn.cores[0]
	if pr := l.prs[2]; pr.match != 6 || pr.state != stateReplicate {
		t.Fatalf("progress of 2: %+v", pr)
	}
	// 2 goes down; a proposal to it fails, so the leader probes it.
	cn.crash(2)
	cn.propose(0, "f")
	if pr := l.prs[2]; pr.state != stateProbe || pr.match != 6 {
		t.Fatalf("progress of 2 after a failed send: %+v, want probe at match 6", pr)
	}
	// It restarts with nothing.
	cn.stores[2] = persist.NewMemory()
	cn.applied[2] = nil
	cn.restart(2)
	cn.tick(10 * cn.cfgs[0].heartbeatTicks)
	want := []string{"a", "b", "c", "d", "e", "f"}
	if got := cn.appliedCommands(2); !slices.Equal(got, want) {
		t.Fatalf("restarted follower applied %v, want %v (progress %+v)", got, want, l.prs[2])
	}
	if pr := l.prs[2]; pr.match != l.log.lastIndex() || pr.state != stateReplicate {
		t.Fatalf("progress of 2: %+v, want replicate at %d", pr, l.log.lastIndex())
	}
	cn.checkNoViolations()
}

// TestCoreStaleTimeoutNowIgnored: a TimeoutNow delayed until after its
// transfer was abandoned must not start an election: it would bypass the
// leases and depose a leader that kept leading.
func TestCoreStaleTimeoutNowIgnored(t *testing.T) {
	cn := newCoreNet(t, 3)
	cn.campaign(0)
	cn.propose(0, "a")
	l := cn.cores[0]
	term := l.term
	// Hold the TimeoutNow the transfer sends.
	var held []message
	cn.dropFn = func(from int, m message) bool {
		if m.tn != nil {
			held = append(held, m)
			return true
		}
		return false
	}
	if err := l.transferLeadership(2); err != nil {
		t.Fatal(err)
	}
	cn.stabilize()
	if len(held) == 0 {
		t.Fatal("no TimeoutNow was sent")
	}
	// The transfer is abandoned (every TimeoutNow it sends is held); the
	// leader goes on leading.
	cn.tick(cn.cfgs[0].electionTicksMax + cn.cfgs[0].electionTicks)
	cn.dropFn = nil
	if l.role != Leader || l.transferee != NoLeader {
		t.Fatalf("leader role %v transferee %d; want the transfer abandoned", l.role, l.transferee)
	}
	// The late TimeoutNow arrives.
	f := cn.cores[2]
	resp := f.handleTimeoutNow(held[0].tn)
	if resp.Accepted || f.role != Follower || f.term != term {
		t.Fatalf("late TimeoutNow: answer %+v, target %v in term %d; want ignored in term %d", resp, f.role, f.term, term)
	}
	cn.stabilize()
	cn.tick(cn.cfgs[0].electionTicks)
	if ls := cn.leaders(); !slices.Equal(ls, []int{0}) || l.term != term {
		t.Fatalf("leaders %v in term %d, want [0] in %d", ls, l.term, term)
	}
	// A transfer replaced by one to another target: the first target's
	// TimeoutNow is stale too.
	held = nil
	cn.dropFn = func(from int, m message) bool {
		if m.tn != nil {
			held = append(held, m)
			return true
		}
		return false
	}
	if err := l.transferLeadership(2); err != nil {
		t.Fatal(err)
	}
	cn.stabilize()
	if len(held) == 0 || held[0].to != 2 {
		t.Fatalf("held %+v, want a TimeoutNow to 2", held)
	}
	stale := held[0]
	if err := l.transferLeadership(1); err != nil {
		t.Fatal(err)
	}
	cn.stabilize()
	if resp := f.handleTimeoutNow(stale.tn); resp.Accepted || f.role != Follower || f.term != term {
		t.Fatalf("replaced transfer's TimeoutNow: answer %+v, target %v in term %d", resp, f.role, f.term)
	}
	var toOne *message
	for i := range held {
		if held[i].to == 1 {
			toOne = &held[i]
		}
	}
	if toOne == nil {
		t.Fatalf("no TimeoutNow to 1 among %+v", held)
	}
	cn.dropFn = nil
	cn.pending = append(cn.pending, envelope{from: 0, m: *toOne})
	cn.stabilize()
	if ls := cn.leaders(); !slices.Equal(ls, []int{1}) || cn.cores[1].term != term+1 {
		t.Fatalf("leaders %v in term %d, want [1] in term %d", ls, cn.cores[1].term, term+1)
	}
	cn.checkNoViolations()
}

// TestCoreTimeoutNowForRunningTransfer: the check does not refuse a
// TimeoutNow whose transfer is still running, even one that arrives twice.
func TestCoreTimeoutNowForRunningTransfer(t *testing.T) {
	cn := newCoreNet(t, 3)
	cn.campaign(0)
	cn.propose(0, "a")
	l := cn.cores[0]
	req := &TimeoutNowRequest{Term: l.term, LeaderID: 0, LastLogIndex: l.log.lastIndex()}
	f := cn.cores[1]
	if resp := f.handleTimeoutNow(req); !resp.Accepted || f.role != Candidate {
		t.Fatalf("answer %+v role %v, want an election", resp, f.role)
	}
}
