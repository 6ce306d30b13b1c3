package rafttest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"time"
)

// The MIT 6.5840 lab 3B tests: log agreement. Every leader appends a no-op
// entry at the start of its term and no-ops are not applied, so where the
// lab expects exact indexes these tests expect them relative to the indexes
// already seen (consecutive within a term).

func TestBasicAgree3B(t *testing.T) {
	const servers = 3
	c := NewCluster(t, servers, Options{})

	const iters = 3
	var prev uint64
	for i := 1; i <= iters; i++ {
		if prev > 0 {
			if nd, _ := c.NCommitted(prev + 1); nd > 0 {
				t.Fatalf("some have committed before Start()")
			}
		}
		xindex := c.One(Cmd(i*100), servers, false)
		if prev > 0 && xindex != prev+1 {
			t.Fatalf("got index %d but expected %d", xindex, prev+1)
		}
		if prev == 0 && xindex < 2 {
			t.Fatalf("first command at index %d, but the leader's no-op comes first", xindex)
		}
		prev = xindex
	}
}

// randString returns n random printable bytes.
func randString(n int) []byte {
	b := make([]byte, (n+1)/2)
	rand.Read(b)
	return []byte(hex.EncodeToString(b)[:n])
}

// TestRPCBytes3B checks that each command is sent to each follower about
// once: the lab allows servers×bytes, this test (servers-1)×bytes, plus the
// lab's 50000 bytes of slack for headers and heartbeats.
func TestRPCBytes3B(t *testing.T) {
	const servers = 3
	c := NewCluster(t, servers, Options{})

	first := c.One(Cmd(99), servers, false)
	bytes0 := c.BytesTotal()

	const iters = 10
	var sent int64
	for index := first + 1; index < first+1+iters; index++ {
		cmd := randString(5000)
		xindex := c.One(cmd, servers, false)
		if xindex != index {
			t.Fatalf("got index %d but expected %d", xindex, index)
		}
		sent += int64(len(cmd))
	}

	got := c.BytesTotal() - bytes0
	expected := int64(servers-1) * sent
	if got > expected+50000 {
		t.Fatalf("too many RPC bytes; got %d, expected %d", got, expected)
	}
}

// TestFollowerFailure3B: test just failure of followers.
func TestFollowerFailure3B(t *testing.T) {
	const servers = 3
	c := NewCluster(t, servers, Options{})

	c.One(Cmd(101), servers, false)

	// Disconnect one follower from the network.
	leader1 := c.CheckOneLeader()
	c.Disconnect((leader1 + 1) % servers)

	// The leader and remaining follower should be able to agree despite
	// the disconnected follower.
	c.One(Cmd(102), servers-1, false)
	time.Sleep(ElectionTimeout)
	last := c.One(Cmd(103), servers-1, false)

	// Disconnect the remaining follower.
	leader2 := c.CheckOneLeader()
	c.Disconnect((leader2 + 1) % servers)
	c.Disconnect((leader2 + 2) % servers)

	// Submit a command.
	index, _, ok := c.Start(leader2, Cmd(104))
	if !ok {
		t.Fatalf("leader rejected Start()")
	}
	if index <= last {
		t.Fatalf("expected an index after %d, got %d", last, index)
	}

	time.Sleep(2 * ElectionTimeout)

	// Check that command 104 did not commit.
	if n, _ := c.NCommitted(index); n > 0 {
		t.Fatalf("%d committed but no majority", n)
	}
}

// TestLeaderFailure3B: test just failure of leaders.
func TestLeaderFailure3B(t *testing.T) {
	const servers = 3
	c := NewCluster(t, servers, Options{})

	c.One(Cmd(101), servers, false)

	// Disconnect the first leader.
	leader1 := c.CheckOneLeader()
	c.Disconnect(leader1)

	// The remaining followers should elect a new leader.
	c.One(Cmd(102), servers-1, false)
	time.Sleep(ElectionTimeout)
	c.One(Cmd(103), servers-1, false)

	// Disconnect the new leader.
	leader2 := c.CheckOneLeader()
	c.Disconnect(leader2)

	// Submit a command to each server.
	var indexes []uint64
	for i := range servers {
		if index, _, ok := c.Start(i, Cmd(104)); ok {
			indexes = append(indexes, index)
		}
	}

	time.Sleep(2 * ElectionTimeout)

	// Check that command 104 did not commit.
	for _, index := range indexes {
		if n, _ := c.NCommitted(index); n > 0 {
			t.Fatalf("%d committed index %d but no majority", n, index)
		}
	}
	if n := c.Applied(Cmd(104)); n > 0 {
		t.Fatalf("%d applied command 104 but no majority", n)
	}
}

// TestFailAgree3B: a disconnected follower rejoins and catches up.
func TestFailAgree3B(t *testing.T) {
	const servers = 3
	c := NewCluster(t, servers, Options{})

	c.One(Cmd(101), servers, false)

	// Disconnect one follower from the network.
	leader := c.CheckOneLeader()
	c.Disconnect((leader + 1) % servers)

	// The leader and remaining follower should be able to agree despite
	// the disconnected follower.
	c.One(Cmd(102), servers-1, false)
	c.One(Cmd(103), servers-1, false)
	time.Sleep(ElectionTimeout)
	c.One(Cmd(104), servers-1, false)
	c.One(Cmd(105), servers-1, false)

	// Re-connect.
	c.Connect((leader + 1) % servers)

	// The full set of servers should preserve previous agreements, and be
	// able to agree on new commands.
	c.One(Cmd(106), servers, true)
	time.Sleep(ElectionTimeout)
	c.One(Cmd(107), servers, true)
}

// TestFailNoAgree3B: no agreement if too many followers disconnect.
func TestFailNoAgree3B(t *testing.T) {
	const servers = 5
	c := NewCluster(t, servers, Options{})

	first := c.One(Cmd(10), servers, false)

	// 3 of 5 followers disconnect.
	leader := c.CheckOneLeader()
	c.Disconnect((leader + 1) % servers)
	c.Disconnect((leader + 2) % servers)
	c.Disconnect((leader + 3) % servers)

	index, term1, ok := c.Start(leader, Cmd(20))
	if !ok {
		t.Fatalf("leader rejected Start()")
	}
	if index != first+1 {
		t.Fatalf("expected index %d, got %d", first+1, index)
	}

	time.Sleep(2 * ElectionTimeout)

	if n, _ := c.NCommitted(index); n > 0 {
		t.Fatalf("%d committed but no majority", n)
	}

	// Repair.
	c.Connect((leader + 1) % servers)
	c.Connect((leader + 2) % servers)
	c.Connect((leader + 3) % servers)

	// The disconnected majority may have chosen a leader from among their
	// own ranks, forgetting index first+1. Each new term adds at most one
	// no-op, so the next command lands at most one slot per term later.
	leader2 := c.CheckOneLeader()
	index2, term2, ok2 := c.Start(leader2, Cmd(30))
	if !ok2 {
		t.Fatalf("leader2 rejected Start()")
	}
	if index2 < first+2 || index2 > first+2+(term2-term1) {
		t.Fatalf("unexpected index %d (first command at %d, terms %d to %d)", index2, first, term1, term2)
	}

	c.One(Cmd(1000), servers, true)
}

func TestConcurrentStarts3B(t *testing.T) {
	const servers = 3
	c := NewCluster(t, servers, Options{})

	success := false
loop:
	for try := range 5 {
		if try > 0 {
			// Give the solution some time to settle.
			time.Sleep(3 * time.Second)
		}

		leader := c.CheckOneLeader()
		_, term, ok := c.Start(leader, Cmd(1))
		if !ok {
			// Leader moved on really quickly.
			continue
		}

		const iters = 5
		var wg sync.WaitGroup
		is := make(chan uint64, iters)
		for ii := range iters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				i, term1, ok := c.Start(leader, Cmd(100+ii))
				if term1 != term || !ok {
					return
				}
				is <- i
			}()
		}
		wg.Wait()
		close(is)

		for j := range servers {
			if t, _ := c.State(j); t != term {
				// Term changed -- can't expect low RPC counts.
				continue loop
			}
		}

		var cmds [][]byte
		for index := range is {
			cmd, ok := c.Wait(index, servers, term)
			if !ok {
				// Peers have moved on to later terms, so we can't
				// expect all Start()s to have succeeded.
				continue loop
			}
			cmds = append(cmds, cmd)
		}

		for ii := range iters {
			x := Cmd(100 + ii)
			found := false
			for _, cmd := range cmds {
				if bytes.Equal(cmd, x) {
					found = true
				}
			}
			if !found {
				t.Fatalf("cmd %s missing in %q", x, cmds)
			}
		}
		success = true
		break
	}
	if !success {
		t.Fatalf("term changed too often")
	}
}

// TestRejoin3B: a partitioned leader rejoins with uncommitted entries.
func TestRejoin3B(t *testing.T) {
	const servers = 3
	c := NewCluster(t, servers, Options{})

	c.One(Cmd(101), servers, true)

	// Leader network failure.
	leader1 := c.CheckOneLeader()
	c.Disconnect(leader1)

	// Make the old leader try to agree on some entries.
	c.Start(leader1, Cmd(102))
	c.Start(leader1, Cmd(103))
	c.Start(leader1, Cmd(104))

	// New leader commits, also for the index the old leader used.
	c.One(Cmd(103), 2, true)

	// New leader network failure.
	leader2 := c.CheckOneLeader()
	c.Disconnect(leader2)

	// Old leader connected again.
	c.Connect(leader1)

	c.One(Cmd(104), 2, true)

	// All together now.
	c.Connect(leader2)

	c.One(Cmd(105), servers, true)
}

// TestBackup3B: a leader backs up quickly over incorrect follower logs.
func TestBackup3B(t *testing.T) {
	t.Parallel() // long and mostly waiting; see the package doc
	const servers = 5
	c := NewCluster(t, servers, Options{})

	c.One(c.RandCmd(), servers, true)

	// Put leader and one follower in a partition.
	leader1 := c.CheckOneLeader()
	c.Disconnect((leader1 + 2) % servers)
	c.Disconnect((leader1 + 3) % servers)
	c.Disconnect((leader1 + 4) % servers)

	// Submit lots of commands that won't commit.
	for range 50 {
		c.Start(leader1, c.RandCmd())
	}

	time.Sleep(ElectionTimeout / 2)

	c.Disconnect((leader1 + 0) % servers)
	c.Disconnect((leader1 + 1) % servers)

	// Allow the other partition to recover.
	c.Connect((leader1 + 2) % servers)
	c.Connect((leader1 + 3) % servers)
	c.Connect((leader1 + 4) % servers)

	// Lots of successful commands to the new group.
	for range 50 {
		c.One(c.RandCmd(), 3, true)
	}

	// Now another partitioned leader and one follower.
	leader2 := c.CheckOneLeader()
	other := (leader1 + 2) % servers
	if leader2 == other {
		other = (leader2 + 1) % servers
	}
	c.Disconnect(other)

	// Lots more commands that won't commit.
	for range 50 {
		c.Start(leader2, c.RandCmd())
	}

	time.Sleep(ElectionTimeout / 2)

	// Bring the original leader back to life.
	for i := range servers {
		c.Disconnect(i)
	}
	c.Connect((leader1 + 0) % servers)
	c.Connect((leader1 + 1) % servers)
	c.Connect(other)

	// Lots of successful commands to the new group.
	for range 50 {
		c.One(c.RandCmd(), 3, true)
	}

	// Now everyone.
	for i := range servers {
		c.Connect(i)
	}
	c.One(c.RandCmd(), servers, true)
}

// TestCount3B checks RPC counts, tighter than the lab: an election with 3
// servers takes at most 10 RPCs (the lab allows 30, counted up to a
// checkOneLeader that sleeps half a second), 1 + 10 commits take at most
// (10+1+3)×(n-1) RPCs (lab: ×n), and an idle second fewer than 20 (lab:
// 60).
func TestCount3B(t *testing.T) {
	const servers = 3
	c := NewCluster(t, servers, Options{})

	// Count the RPCs until every server knows the first leader.
	deadline := time.Now().Add(5 * time.Second)
	var electionRPCs int64
	for {
		if time.Now().After(deadline) {
			t.Fatalf("no leader known to all servers after 5s")
		}
		rpcs := c.RPCTotal()
		lead := c.Node(0).Status().Leader
		agreed := lead >= 0
		for i := 1; i < servers && agreed; i++ {
			agreed = c.Node(i).Status().Leader == lead
		}
		if agreed {
			electionRPCs = rpcs
			break
		}
		time.Sleep(time.Millisecond)
	}
	if electionRPCs > 10 || electionRPCs < 1 {
		t.Fatalf("too many or few RPCs (%d) to elect the initial leader", electionRPCs)
	}
	t.Logf("initial election: %d RPCs", electionRPCs)

	var total1, total2 int64
	const iters = 10
	success := false
loop:
	for try := range 5 {
		if try > 0 {
			// Give the solution some time to settle.
			time.Sleep(3 * time.Second)
		}

		leader := c.CheckOneLeader()
		total1 = c.RPCTotal()

		starti, term, ok := c.Start(leader, Cmd(1))
		if !ok {
			// Leader moved on really quickly.
			continue
		}
		var cmds [][]byte
		for i := uint64(1); i < iters+2; i++ {
			x := c.RandCmd()
			cmds = append(cmds, x)
			index1, term1, ok := c.Start(leader, x)
			if term1 != term || !ok {
				// Term moved on, or no longer leader.
				continue loop
			}
			if starti+i != index1 {
				t.Fatalf("Start() returned index %d, want %d", index1, starti+i)
			}
		}

		for i := uint64(1); i < iters+1; i++ {
			cmd, ok := c.Wait(starti+i, servers, term)
			if !ok {
				continue loop
			}
			if !bytes.Equal(cmd, cmds[i-1]) {
				t.Fatalf("wrong value %q committed for index %d; expected %q", cmd, starti+i, cmds)
			}
		}

		for j := range servers {
			if t, _ := c.State(j); t != term {
				// Term changed -- can't expect low RPC counts.
				continue loop
			}
		}
		total2 = c.RPCTotal()
		if total2-total1 > (iters+1+3)*(servers-1) {
			t.Fatalf("too many RPCs (%d) for %d entries", total2-total1, iters)
		}
		t.Logf("%d commits: %d RPCs", iters+1, total2-total1)
		success = true
		break
	}
	if !success {
		t.Fatalf("term changed too often")
	}

	time.Sleep(ElectionTimeout)
	if total3 := c.RPCTotal(); total3-total2 >= 20 {
		t.Fatalf("too many RPCs (%d) for 1 second of idleness", total3-total2)
	} else {
		t.Logf("idle second: %d RPCs", total3-total2)
	}
}
