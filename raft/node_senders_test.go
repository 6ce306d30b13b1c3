package raft

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The senders of a peer that left the configuration end once the leader
// is done telling it of its removal, instead of idling until Kill (issue
// 15): after 3 -> 6 -> 3 voters with the leader among the new three, the
// leader runs senders for its two fellow members only; a removed id added
// again gets new senders and catches up.
func TestNodeSendersOfRemovedPeersEnd(t *testing.T) {
	cl := newCluster(t, 6, func(c *Config) {
		if c.ID >= 3 {
			c.Peers = 0 // a joiner
		} else {
			c.Peers = 3
		}
	})
	workers := int64(cl.cfg(0).RPCWorkersPerPeer)
	change := func(what string, f func(context.Context, *Node) error) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := f(ctx, cl.nodes[cl.leader()])
			cancel()
			if err == nil {
				return
			}
			if !(errors.Is(err, ErrChangeInProgress) || errors.Is(err, ErrLearnerBehind) || errors.Is(err, ErrNotLeader)) ||
				time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for id := 3; id < 6; id++ {
		change("add", func(ctx context.Context, n *Node) error { return n.AddLearner(ctx, Member{ID: id}) })
		change("promote", func(ctx context.Context, n *Node) error { return n.Promote(ctx, id) })
	}
	if l := cl.leader(); l != 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := cl.nodes[l].TransferLeadership(ctx, 5)
		cancel()
		if err != nil {
			t.Fatalf("transfer to 5: %v", err)
		}
	}
	if l := cl.leader(); l != 5 {
		t.Fatalf("leader %d, want 5", l)
	}
	if got := cl.nodes[5].senders.Load(); got != 5*workers {
		t.Fatalf("setup: leader 5 of six voters runs %d senders, want %d", got, 5*workers)
	}
	for id := range 3 {
		change("remove", func(ctx context.Context, n *Node) error { return n.RemoveMember(ctx, id) })
		cl.crash(id)
	}
	for _, id := range []int{3, 4, 5} {
		if !cl.waitUntil(10*time.Second, func() bool { return cl.nodes[id].senders.Load() <= 2*workers }) {
			t.Fatalf("node %d of three members runs %d senders, want at most %d", id, cl.nodes[id].senders.Load(), 2*workers)
		}
	}

	// 0 comes back with its old store and is added again.
	cl.start(0)
	change("add again", func(ctx context.Context, n *Node) error { return n.AddLearner(ctx, Member{ID: 0}) })
	at := cl.nodes[5].Status().MembershipIndex
	if !cl.waitUntil(10*time.Second, func() bool {
		st := cl.nodes[0].Status()
		return st.MembershipIndex >= at && st.Commit >= at && !st.Removed
	}) {
		t.Fatalf("re-added 0 did not catch up: %+v", cl.nodes[0].Status())
	}
	if got := cl.nodes[5].senders.Load(); got != 3*workers {
		t.Fatalf("leader 5 runs %d senders for two voters and a learner, want %d", got, 3*workers)
	}
}
