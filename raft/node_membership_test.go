package raft

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
)

// TestNodeAddLearnerInTerm: Node.AddLearnerInTerm, not only the core, binds
// the change to the term it is given. Leader l checks in term checked,
// loses leadership and wins it back (two transfers); the addition for
// term checked is then refused with ErrNotLeader and appends nothing, as
// are term 0 and the same change at a follower, while the addition for
// the term l leads now is made.
func TestNodeAddLearnerInTerm(t *testing.T) {
	// Three voters on a net with room for learner 3, which never starts.
	cl := newClusterOn(t, newInprocNet(4), nil, 3, nil, func(int) persist.Store { return persist.NewMemory() })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cl.commit("a")
	l := cl.leader()
	checked, _ := cl.nodes[l].State()

	// Leadership moves to another node and back to l.
	for _, to := range []int{(l + 1) % 3, l} {
		for {
			from := cl.leader()
			if from == to {
				break
			}
			tctx, tcancel := context.WithTimeout(ctx, 3*time.Second)
			err := cl.nodes[from].TransferLeadership(tctx, to)
			tcancel()
			if err != nil && ctx.Err() != nil {
				t.Fatalf("transfer %d -> %d: %v", from, to, err)
			}
		}
	}
	cl.commit("b") // l's entry of its new term commits: only the term can refuse the change below
	now, isLeader := cl.nodes[l].State()
	if !isLeader || now <= checked {
		t.Fatalf("node %d: term %d, leader %v; it led term %d before", l, now, isLeader, checked)
	}

	m := Member{ID: 3, Addr: "addr-3"}
	last := cl.nodes[l].Status().LastIndex
	f := (l + 1) % 3
	for _, tc := range []struct {
		name string
		node int
		term uint64
	}{
		{"the term checked, before leadership was lost", l, checked},
		{"term 0", l, 0},
		{"a term the node does not lead yet", l, now + 1},
		{"a follower, in the leader's term", f, now},
	} {
		err := cl.nodes[tc.node].AddLearnerInTerm(ctx, m, tc.term)
		if !errors.Is(err, ErrNotLeader) {
			t.Fatalf("%s: %v, want ErrNotLeader", tc.name, err)
		}
		if got := cl.nodes[l].Status().LastIndex; got != last {
			t.Fatalf("%s: refused, but the leader's log grew from %d to %d", tc.name, last, got)
		}
		if ms := cl.nodes[l].Membership(); ms.Contains(3) {
			t.Fatalf("%s: refused, but 3 is in the configuration %+v", tc.name, ms)
		}
	}

	if err := cl.nodes[l].AddLearnerInTerm(ctx, m, now); err != nil {
		t.Fatalf("the addition for the term %d the node leads: %v", now, err)
	}
	if ls := cl.nodes[l].Membership().Learners(); !slices.Equal(ls, []int{3}) {
		t.Fatalf("learners %v after the addition, want [3]", ls)
	}
}
