package raft

import (
	"context"
	"errors"
	"testing"
	"time"
)

// cutOffRefusal isolates the leader of a three-voter cluster with
// CheckQuorum off (so it keeps believing it leads), asks it to remove
// member 7, which it does not know (a refusal from its configuration, which
// it must confirm with a read round that cannot complete), and returns once
// the call waits on that round, with the channel its answer comes on.
func cutOffRefusal(t *testing.T) (*cluster, int, <-chan error) {
	t.Helper()
	cl := newCluster(t, 3, func(c *Config) { c.CheckQuorum = false })
	cl.commit("a")
	l := cl.leader()
	n := cl.nodes[l]
	cl.net.isolate(l, true)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- n.RemoveMember(ctx, 7)
	}()
	waiting := func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return len(n.readWaiters) > 0
	}
	if !pollUntil(time.Now().Add(5*time.Second), waiting) {
		t.Fatal("the refusal never waited for a confirmation round")
	}
	return cl, l, done
}

// TestNodeRefusalConfirmationKilled: a node killed while it confirms a
// refusal answers ErrKilled, as every other call on a killed node does (and
// as the membership service maps to "replica shutting down"), not
// ErrNotLeader, which sends callers to look for another leader as if this
// one were deposed.
func TestNodeRefusalConfirmationKilled(t *testing.T) {
	cl, l, done := cutOffRefusal(t)
	cl.crash(l)
	select {
	case err := <-done:
		if !errors.Is(err, ErrKilled) {
			t.Fatalf("refusal confirmed on a node killed meanwhile: %v, want ErrKilled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the refusal did not return after the node was killed")
	}
}

// TestNodeRefusalSoleVoter: a single-voter leader confirms a refusal at
// once (it alone is a majority), with or without a read batching window.
func TestNodeRefusalSoleVoter(t *testing.T) {
	for _, w := range []time.Duration{0, 20 * time.Millisecond} {
		cl := newCluster(t, 1, func(c *Config) { c.ReadBatchWindow = w })
		cl.commit("a")
		n := cl.nodes[cl.leader()]
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		for _, tc := range []struct {
			what string
			err  error
			want error
		}{
			{"remove the last voter", n.RemoveMember(ctx, 0), ErrRemoveLastVoter},
			{"remove an unknown member", n.RemoveMember(ctx, 5), ErrUnknownMember},
			{"promote a voter", n.Promote(ctx, 0), ErrAlreadyMember},
		} {
			if !errors.Is(tc.err, tc.want) {
				t.Errorf("window %v, %s: %v, want %v", w, tc.what, tc.err, tc.want)
			}
		}
		cancel()
	}
}
