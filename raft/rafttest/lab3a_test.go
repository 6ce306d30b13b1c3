package rafttest

import (
	"testing"
	"time"
)

// The MIT 6.5840 lab 3A tests: leader election.

func TestInitialElection3A(t *testing.T) {
	const servers = 3
	c := NewCluster(t, servers, Options{})

	// Is a leader elected?
	c.CheckOneLeader()

	// Wait for the followers to learn of the election (the lab sleeps
	// 50 ms), then check that all peers agree on the term.
	waitFor(time.Second, func() bool { _, other := c.connectedTerms(); return other == 0 })
	term1 := c.CheckTerms()
	if term1 < 1 {
		t.Fatalf("term is %d, but should be at least 1", term1)
	}

	// Does the leader and term stay the same if there is no network
	// failure? The lab only warns; with pre-vote and check-quorum a change
	// is a failure here.
	time.Sleep(2 * ElectionTimeout)
	if term2 := c.CheckTerms(); term1 != term2 {
		t.Fatalf("term changed from %d to %d even though there were no failures", term1, term2)
	}

	// There should still be a leader.
	c.CheckOneLeader()
}

func TestReElection3A(t *testing.T) {
	const servers = 3
	c := NewCluster(t, servers, Options{})

	leader1 := c.CheckOneLeader()

	// If the leader disconnects, a new one should be elected.
	c.Disconnect(leader1)
	c.CheckOneLeader()

	// If the old leader rejoins, that shouldn't disturb the new leader,
	// and the old leader should switch to follower.
	c.Connect(leader1)
	leader2 := c.CheckOneLeader()

	// If there's no quorum, no new leader should be elected.
	c.Disconnect(leader2)
	c.Disconnect((leader2 + 1) % servers)
	time.Sleep(2 * ElectionTimeout)

	// Check that the one connected server does not think it is the leader.
	c.CheckNoLeader()

	// If a quorum arises, it should elect a leader.
	c.Connect((leader2 + 1) % servers)
	c.CheckOneLeader()

	// Re-join of the last node shouldn't prevent a leader from existing.
	c.Connect(leader2)
	c.CheckOneLeader()
}

func TestManyElections3A(t *testing.T) {
	const servers = 7
	c := NewCluster(t, servers, Options{})

	c.CheckOneLeader()

	const iters = 10
	for range iters - 1 {
		// Disconnect three nodes.
		i1, i2, i3 := c.RandIntN(servers), c.RandIntN(servers), c.RandIntN(servers)
		c.Disconnect(i1)
		c.Disconnect(i2)
		c.Disconnect(i3)

		// Either the current leader should still be alive, or the
		// remaining four should elect a new one.
		c.CheckOneLeader()

		c.Connect(i1)
		c.Connect(i2)
		c.Connect(i3)
	}
	c.CheckOneLeader()
}
