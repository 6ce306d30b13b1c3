package rafttest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ruaft/ruaft/raft"
)

// Tests of the features beyond the lab: chunked InstallSnapshot, ReadIndex
// and leadership transfer.

// TestChunkedSnapshotUnreliable: a follower that fell behind the leader's
// snapshot catches up through InstallSnapshot in many chunks (snapshots of
// over 10 KiB, chunks of 1 KiB) on an unreliable network, where chunks and
// replies are lost and the transfer must resume.
func TestChunkedSnapshotUnreliable(t *testing.T) {
	t.Parallel() // long and mostly waiting; see the package doc
	const servers = 3
	const pad, chunk = 10 << 10, 1 << 10
	c := NewCluster(t, servers, Options{
		Unreliable:       true,
		Snapshots:        true,
		SnapshotPadBytes: pad,
		Configure:        func(cfg *raft.Config) { cfg.SnapshotChunkBytes = chunk },
	})

	c.One(c.RandCmd(), servers, true)
	for round := range 3 {
		leader := c.CheckOneLeader()
		victim := (leader + 1 + round%2) % servers
		c.Disconnect(victim)
		for range 3 * SnapshotInterval {
			c.One(c.RandCmd(), servers-1, true)
		}
		before := c.MethodCount(MethodInstallSnapshot)
		snapBefore := c.Node(victim).Status().SnapshotIndex
		c.Connect(victim)
		c.One(c.RandCmd(), servers, true)
		chunks := c.MethodCount(MethodInstallSnapshot) - before
		snapAfter := c.Node(victim).Status().SnapshotIndex
		t.Logf("round %d: follower %d snapshot %d -> %d, %d InstallSnapshot RPCs", round, victim, snapBefore, snapAfter, chunks)
		if chunks < pad/chunk {
			t.Fatalf("follower %d caught up with %d InstallSnapshot RPCs; a snapshot of over %d bytes needs at least %d chunks of %d",
				victim, chunks, pad, pad/chunk, chunk)
		}
		if snapAfter <= snapBefore {
			t.Fatalf("follower %d did not install a newer snapshot (%d -> %d)", victim, snapBefore, snapAfter)
		}
	}
	c.SetUnreliable(false)
	c.One(c.RandCmd(), servers, true)
}

// readIndex calls ReadIndex on server i with a timeout.
func readIndex(c *Cluster, i int, d time.Duration) (uint64, error) {
	nd := c.Node(i)
	if nd == nil {
		return 0, errors.New("crashed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return nd.ReadIndex(ctx)
}

// TestReadIndexPartition: ReadIndex at the leader returns a read point at
// or after every committed write, with the write applied locally, and so do
// followers (through the leader); a leader partitioned into a minority never
// answers, nor does its follower (with or without check-quorum), while the
// majority's new leader does.
func TestReadIndexPartition(t *testing.T) {
	for _, checkQuorum := range []bool{true, false} {
		t.Run(fmt.Sprintf("checkQuorum=%v", checkQuorum), func(t *testing.T) {
			const servers = 5
			c := NewCluster(t, servers, Options{Configure: func(cfg *raft.Config) { cfg.CheckQuorum = checkQuorum }})

			idx := c.One(c.RandCmd(), servers, true)
			leader := c.CheckOneLeader()
			r, err := readIndex(c, leader, 2*time.Second)
			if err != nil {
				t.Fatalf("leader %d: ReadIndex: %v", leader, err)
			}
			if r < idx {
				t.Fatalf("leader %d: ReadIndex %d before the committed write at %d", leader, r, idx)
			}
			if a := c.LastApplied(leader); a < r {
				t.Fatalf("leader %d: ReadIndex returned %d but the application applied only %d", leader, r, a)
			}
			// Followers get their read point from the leader (follower
			// reads), with the same guarantees.
			for i := range servers {
				if i != leader {
					r, err := readIndex(c, i, 2*time.Second)
					if err != nil || r < idx {
						t.Fatalf("follower %d: ReadIndex = %d, %v; want >= %d", i, r, err, idx)
					}
					if a := c.LastApplied(i); a < r {
						t.Fatalf("follower %d: ReadIndex returned %d but the application applied only %d", i, r, a)
					}
				}
			}

			// The leader and one follower in a minority.
			minority := []int{leader, (leader + 1) % servers}
			var majority []int
			for k := 2; k < servers; k++ {
				majority = append(majority, (leader+k)%servers)
			}
			c.Partition(minority, majority)

			// The majority elects a leader and commits y...
			y := c.RandCmd()
			type result struct {
				index uint64
				err   error
			}
			done := make(chan result, 1)
			go func() {
				index, err := c.OneErr(y, len(majority), true)
				done <- result{index, err}
			}()
			// ...while the minority leader and its follower are asked for
			// reads again and again, and must never answer.
			deadline := time.Now().Add(2 * ElectionTimeout)
			for time.Now().Before(deadline) {
				for _, i := range minority {
					if r, err := readIndex(c, i, 150*time.Millisecond); err == nil {
						t.Fatalf("minority replica %d (old leader %d) answered ReadIndex with %d", i, leader, r)
					}
				}
			}
			res := <-done
			if res.err != nil {
				t.Fatal(res.err)
			}
			leader2 := -1
			var term2 uint64
			for _, i := range majority {
				if tm, isLeader := c.State(i); isLeader && tm > term2 {
					leader2, term2 = i, tm
				}
			}
			if leader2 < 0 {
				t.Fatalf("no leader in the majority %v", majority)
			}
			r2, err := readIndex(c, leader2, 2*time.Second)
			if err != nil {
				t.Fatalf("new leader %d: ReadIndex: %v", leader2, err)
			}
			if r2 < res.index {
				t.Fatalf("new leader %d: ReadIndex %d before the committed write at %d", leader2, r2, res.index)
			}
			if r, err := readIndex(c, leader, 500*time.Millisecond); err == nil {
				t.Fatalf("minority leader %d answered ReadIndex with %d", leader, r)
			}

			// Healed, the old leader refuses or, if it leads again,
			// answers at or after y.
			c.Heal()
			c.One(c.RandCmd(), servers, true)
			if r, err := readIndex(c, leader, time.Second); err == nil && r < res.index {
				t.Fatalf("old leader %d: ReadIndex %d before y at %d", leader, r, res.index)
			}
		})
	}
}

// TestLeadershipTransfer: with pre-vote on, a leader hands leadership to an
// up-to-date follower and to a lagging one (caught up first); the target
// wins the next term at once. A follower cannot transfer, and a transfer to
// an unreachable server fails without losing the cluster.
func TestLeadershipTransfer(t *testing.T) {
	const servers = 3
	c := NewCluster(t, servers, Options{})
	if cfg := TestConfig(0, servers); !cfg.PreVote {
		t.Fatalf("pre-vote is off in the test configuration")
	}

	// transfer hands leadership from from to to. A transfer is abandoned
	// after an election timeout; a target that just reconnected may not be
	// reachable that fast (calls sent while it was away are still waiting
	// for their timeouts), so with retry ErrTransferFailed is retried twice.
	transfer := func(from, to int, retry bool) {
		t.Helper()
		term0, _ := c.State(from)
		start := time.Now()
		for attempt := 1; ; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			err := c.Node(from).TransferLeadership(ctx, to)
			cancel()
			if err == nil {
				break
			}
			if !retry || attempt == 3 || !errors.Is(err, raft.ErrTransferFailed) {
				t.Fatalf("transfer %d -> %d (attempt %d): %v\n%s", from, to, attempt, err, c.StatusDump())
			}
			t.Logf("transfer %d -> %d attempt %d: %v", from, to, attempt, err)
		}
		t.Logf("transfer %d -> %d took %v", from, to, time.Since(start))
		if !waitFor(time.Second, func() bool { _, isLeader := c.State(to); return isLeader }) {
			t.Fatalf("transfer %d -> %d returned but %d is not leader", from, to, to)
		}
		if term, _ := c.State(to); term < term0+1 || (!retry && term != term0+1) {
			t.Fatalf("transfer %d -> %d: target in term %d, want %d", from, to, term, term0+1)
		}
		if got := c.CheckOneLeader(); got != to {
			t.Fatalf("leader %d after transfer to %d", got, to)
		}
		c.One(c.RandCmd(), servers, true)
	}

	c.One(c.RandCmd(), servers, true)
	leader := c.CheckOneLeader()
	target := (leader + 1) % servers
	transfer(leader, target, false)

	// To a follower that is behind: the leader catches it up first.
	leader = target
	lag := (leader + 1) % servers
	c.Disconnect(lag)
	for range 20 {
		c.One(c.RandCmd(), servers-1, true)
	}
	c.Connect(lag)
	if behind, last := c.Node(lag).Status().LastIndex, c.Node(leader).Status().LastIndex; behind >= last {
		t.Fatalf("follower %d is not behind (%d >= %d)", lag, behind, last)
	}
	transfer(leader, lag, true)
	leader = lag

	// A follower cannot transfer.
	follower := (leader + 1) % servers
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	err := c.Node(follower).TransferLeadership(ctx, leader)
	cancel()
	if !errors.Is(err, raft.ErrNotLeader) {
		t.Fatalf("follower %d: TransferLeadership error %v, want ErrNotLeader", follower, err)
	}

	// A transfer to an unreachable server fails; the cluster recovers.
	gone := (leader + 2) % servers
	c.Disconnect(gone)
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
	err = c.Node(leader).TransferLeadership(ctx, gone)
	cancel()
	if err == nil {
		t.Fatalf("transfer to disconnected server %d succeeded", gone)
	}
	t.Logf("transfer to a disconnected server: %v", err)
	c.One(c.RandCmd(), servers-1, true)
	c.Connect(gone)
	c.One(c.RandCmd(), servers, true)
}
