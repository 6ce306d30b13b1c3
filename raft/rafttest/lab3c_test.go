package rafttest

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The MIT 6.5840 lab 3C tests: persistence across crashes, on reliable and
// unreliable networks.

// TestPersist13C: basic persistence.
func TestPersist13C(t *testing.T) {
	persist1(t, Options{})
}

func persist1(t *testing.T, opts Options) {
	const servers = 3
	c := NewCluster(t, servers, opts)

	c.One(Cmd(11), servers, true)

	// Crash and re-start all.
	for i := range servers {
		c.Restart(i)
	}
	for i := range servers {
		c.Disconnect(i)
		c.Connect(i)
	}

	c.One(Cmd(12), servers, true)

	leader1 := c.CheckOneLeader()
	c.Disconnect(leader1)
	c.Restart(leader1)
	c.Connect(leader1)

	c.One(Cmd(13), servers, true)

	leader2 := c.CheckOneLeader()
	c.Disconnect(leader2)
	index14 := c.One(Cmd(14), servers-1, true)
	c.Restart(leader2)
	c.Connect(leader2)

	c.Wait(index14, servers, 0) // wait for leader2 to join before killing i3

	i3 := (c.CheckOneLeader() + 1) % servers
	c.Disconnect(i3)
	c.One(Cmd(15), servers-1, true)
	c.Restart(i3)
	c.Connect(i3)

	c.One(Cmd(16), servers, true)
}

// TestPersist23C: more persistence.
func TestPersist23C(t *testing.T) {
	t.Parallel() // long and mostly waiting; see the package doc
	const servers = 5
	c := NewCluster(t, servers, Options{})

	index := 1
	for range 5 {
		c.One(Cmd(10+index), servers, true)
		index++

		leader1 := c.CheckOneLeader()

		c.Disconnect((leader1 + 1) % servers)
		c.Disconnect((leader1 + 2) % servers)

		c.One(Cmd(10+index), servers-2, true)
		index++

		c.Disconnect((leader1 + 0) % servers)
		c.Disconnect((leader1 + 3) % servers)
		c.Disconnect((leader1 + 4) % servers)

		c.Restart((leader1 + 1) % servers)
		c.Restart((leader1 + 2) % servers)
		c.Connect((leader1 + 1) % servers)
		c.Connect((leader1 + 2) % servers)

		time.Sleep(ElectionTimeout)

		c.Restart((leader1 + 3) % servers)
		c.Connect((leader1 + 3) % servers)

		c.One(Cmd(10+index), servers-2, true)
		index++

		c.Connect((leader1 + 4) % servers)
		c.Connect((leader1 + 0) % servers)
	}

	c.One(Cmd(1000), servers, true)
}

// TestPersist33C: partitioned leader and one follower crash, leader
// restarts.
func TestPersist33C(t *testing.T) {
	persist3(t, Options{})
}

func persist3(t *testing.T, opts Options) {
	const servers = 3
	c := NewCluster(t, servers, opts)

	c.One(Cmd(101), 3, true)

	leader := c.CheckOneLeader()
	c.Disconnect((leader + 2) % servers)

	c.One(Cmd(102), 2, true)

	c.Crash((leader + 0) % servers)
	c.Crash((leader + 1) % servers)
	c.Connect((leader + 2) % servers)
	c.Restart((leader + 0) % servers)
	c.Connect((leader + 0) % servers)

	c.One(Cmd(103), 2, true)

	c.Restart((leader + 1) % servers)
	c.Connect((leader + 1) % servers)

	c.One(Cmd(104), servers, true)
}

// TestFigure83C tests the scenarios of Figure 8 of the extended Raft paper:
// leaders crash right after appending, new leaders must not commit entries
// of older terms by counting replicas.
func TestFigure83C(t *testing.T) {
	t.Parallel() // long and mostly waiting; see the package doc
	const servers = 5
	c := NewCluster(t, servers, Options{})

	c.One(c.RandCmd(), 1, true)

	nup := servers
	for range 1000 {
		leader := -1
		for i := range servers {
			if _, _, ok := c.Start(i, c.RandCmd()); ok {
				leader = i
			}
		}

		if c.RandIntN(1000) < 100 {
			ms := c.RandIntN(int(ElectionTimeout/time.Millisecond) / 2)
			time.Sleep(time.Duration(ms) * time.Millisecond)
		} else {
			ms := c.RandIntN(13)
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}

		if leader != -1 {
			c.Crash(leader)
			nup--
		}

		if nup < 3 {
			s := c.RandIntN(servers)
			if c.Node(s) == nil {
				c.Restart(s)
				c.Connect(s)
				nup++
			}
		}
	}

	for i := range servers {
		if c.Node(i) == nil {
			c.Restart(i)
			c.Connect(i)
		}
	}

	c.One(c.RandCmd(), servers, true)
}

func TestUnreliableAgree3C(t *testing.T) {
	const servers = 5
	c := NewCluster(t, servers, Options{Unreliable: true})

	var wg sync.WaitGroup
	for iters := 1; iters < 50; iters++ {
		for j := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.OneErr(Cmd(100*iters+j), 1, true); err != nil {
					t.Error(err)
				}
			}()
		}
		c.One(Cmd(iters), 1, true)
	}

	c.SetUnreliable(false)

	wg.Wait()

	c.One(Cmd(100), servers, true)
}

// TestFigure8Unreliable3C is Figure 8 on an unreliable network with long
// reordering (from iteration 200 on), disconnecting leaders instead of
// crashing them.
func TestFigure8Unreliable3C(t *testing.T) {
	t.Parallel() // long and mostly waiting; see the package doc
	const servers = 5
	c := NewCluster(t, servers, Options{Unreliable: true})

	c.One(Cmd(c.RandIntN(10000)), 1, true)

	nup := servers
	for iters := range 1000 {
		if iters == 200 {
			c.SetLongReordering(true)
		}
		leader := -1
		for i := range servers {
			_, _, ok := c.Start(i, Cmd(c.RandIntN(10000)))
			if ok && c.Connected(i) {
				leader = i
			}
		}

		if c.RandIntN(1000) < 100 {
			ms := c.RandIntN(int(ElectionTimeout/time.Millisecond) / 2)
			time.Sleep(time.Duration(ms) * time.Millisecond)
		} else {
			ms := c.RandIntN(13)
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}

		if leader != -1 && c.RandIntN(1000) < int(ElectionTimeout/time.Millisecond)/2 {
			c.Disconnect(leader)
			nup--
		}

		if nup < 3 {
			s := c.RandIntN(servers)
			if !c.Connected(s) {
				c.Connect(s)
				nup++
			}
		}
	}

	for i := range servers {
		if !c.Connected(i) {
			c.Connect(i)
		}
	}

	c.One(Cmd(c.RandIntN(10000)), servers, true)
}

// churn runs 3 clients submitting commands while servers are disconnected,
// crashed and restarted at random, then checks that every command a client
// saw committed at the index Start returned is in the final log.
func churn(t *testing.T, unreliable bool) {
	const servers = 5
	c := NewCluster(t, servers, Options{Unreliable: unreliable})

	var stop atomic.Bool

	// Create concurrent clients.
	client := func(me int) [][]byte {
		var values [][]byte
		for !stop.Load() {
			x := c.RandCmd()
			var index uint64
			ok := false
			for i := range servers {
				// Try them all, maybe one of them is a leader.
				if index1, _, ok1 := c.Start(i, x); ok1 {
					ok, index = true, index1
				}
			}
			if ok {
				// Maybe the leader will commit our value, maybe not,
				// but don't wait forever.
				for _, to := range []int{10, 20, 50, 100, 200} {
					nd, cmd, err := c.nCommitted(index)
					if err != nil {
						t.Error(err)
						return nil
					}
					if nd > 0 {
						if bytes.Equal(cmd, x) {
							values = append(values, x)
						}
						break
					}
					time.Sleep(time.Duration(to) * time.Millisecond)
				}
			} else {
				time.Sleep(time.Duration(79+me*17) * time.Millisecond)
			}
		}
		return values
	}

	const ncli = 3
	results := make([]chan [][]byte, ncli)
	for i := range ncli {
		results[i] = make(chan [][]byte, 1)
		go func() { results[i] <- client(i) }()
	}

	for range 20 {
		if c.RandIntN(1000) < 200 {
			c.Disconnect(c.RandIntN(servers))
		}

		if c.RandIntN(1000) < 500 {
			i := c.RandIntN(servers)
			if c.Node(i) == nil {
				c.Restart(i)
			}
			c.Connect(i)
		}

		if c.RandIntN(1000) < 200 {
			if i := c.RandIntN(servers); c.Node(i) != nil {
				c.Crash(i)
			}
		}

		// Make crash/restart infrequent enough that the peers can often
		// keep up, but not so infrequent that everything has settled
		// down from one change to the next. Pick a value smaller than the
		// election timeout, but not hugely smaller.
		time.Sleep(ElectionTimeout * 7 / 10)
	}

	time.Sleep(ElectionTimeout)
	c.SetUnreliable(false)
	for i := range servers {
		if c.Node(i) == nil {
			c.Restart(i)
		}
		c.Connect(i)
	}

	stop.Store(true)

	var values [][]byte
	for i := range ncli {
		vv := <-results[i]
		if vv == nil && t.Failed() {
			t.FailNow()
		}
		values = append(values, vv...)
	}

	time.Sleep(ElectionTimeout)

	lastIndex := c.One(c.RandCmd(), servers, true)

	// Every index up to lastIndex is now applied on all servers, or holds a
	// no-op that none applies.
	really := make(map[string]bool)
	for index := uint64(1); index <= lastIndex; index++ {
		nd, cmd := c.NCommitted(index)
		switch {
		case nd == servers:
			really[string(cmd)] = true
		case nd == 0 && c.Skipped(index):
		default:
			t.Fatalf("index %d applied by %d of %d servers after index %d committed everywhere", index, nd, servers, lastIndex)
		}
	}

	for _, v1 := range values {
		if !really[string(v1)] {
			t.Fatalf("didn't find a value")
		}
	}
	t.Logf("%d values committed by clients, %d indexes", len(values), lastIndex)
}

func TestReliableChurn3C(t *testing.T) {
	t.Parallel() // long and mostly waiting; see the package doc
	churn(t, false)
}

func TestUnreliableChurn3C(t *testing.T) {
	t.Parallel() // long and mostly waiting; see the package doc
	churn(t, true)
}
