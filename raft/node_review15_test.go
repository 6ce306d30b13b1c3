package raft

import (
	"testing"

	"github.com/ruaft/ruaft/persist"
)

// TestReview15HeldAppendOfDeposedLeader: an append held back for its
// predecessor (awaitPredecessor) is judged by the core when it is stepped,
// not when it arrived: if a new leader's append overwrites the index
// meanwhile, the held one of the older term is refused, and the entries of
// the new leader stay.
func TestReview15HeldAppendOfDeposedLeader(t *testing.T) {
	n, fc := reorderNode(t)                     // follower 1 with entry 1/5 from leader 0
	early := appendAsync(t, n, fc, appendAt(3)) // prev 2/5: held
	// Leader 2 of term 6 writes index 2 with its own entry.
	req := &AppendEntriesRequest{Term: 6, LeaderID: 2, PrevLogIndex: 1, PrevLogTerm: 5,
		Entries: []Entry{{Index: 2, Term: 6, Type: persist.EntryCommand, Data: []byte("new")}}}
	if r, err := n.HandleAppendEntries(t.Context(), req); err != nil || !r.Success {
		t.Fatalf("new leader's append: %+v, %v", r, err)
	}
	r := <-early
	if r.err != nil || r.resp.Success || r.resp.Term != 6 {
		t.Fatalf("held append of the deposed leader: %+v, %v; want a refusal in term 6", r.resp, r.err)
	}
	st := n.Status()
	if st.LastIndex != 2 || st.Term != 6 {
		t.Fatalf("last index %d term %d, want 2 and 6", st.LastIndex, st.Term)
	}
	n.mu.Lock()
	tm, _ := n.core.log.term(2)
	n.mu.Unlock()
	if tm != 6 {
		t.Fatalf("entry 2 has term %d, want 6", tm)
	}
}
