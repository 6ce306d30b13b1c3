package kvraft_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/kvraft/kvtest"
)

// churnSeed returns the seed of a randomized membership test: KV_CHURN_SEED
// if set (to replay a failure), otherwise one from the clock. It is logged.
func churnSeed(t *testing.T) uint64 {
	if s := os.Getenv("KV_CHURN_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("KV_CHURN_SEED: %v", err)
		}
		return seed
	}
	return uint64(time.Now().UnixNano())
}

// TestMembershipChurnLinearizable (issue 15): while clerks Put, Append and
// Get, the membership of a key-value cluster churns through raft's API —
// spares join as learners (through InstallSnapshot once the log is
// compacted), learners are promoted, voters (the leader too) and learners
// are removed, and dead voters are replaced by a new id with an empty store
// — and, at the same time, the network is partitioned at random and
// servers crash and restart. The whole history must be linearizable
// (porcupine), every acknowledged append must be in its key exactly once
// and in order, and at the end every member agrees on the configuration
// and the cluster serves. Replay a failure with KV_CHURN_SEED (the
// operation mix and fault schedule follow the seed; goroutine timing does
// not, so a replay is likely but not certain to fail again).
func TestMembershipChurnLinearizable(t *testing.T) {
	const (
		voters  = 3  // bootstrap voters 0..2
		servers = 12 // 3..11 are spares, each joining at most once
		clients = 4  // two on their own key (checked), two on shared keys
		runFor  = 14 * time.Second
		change  = 4 * time.Second // one attempt at a change
	)
	seed := churnSeed(t)
	t.Logf("KV_CHURN_SEED=%d", seed)
	c := kvtest.NewCluster(t, kvtest.Options{
		Servers: servers, Voters: voters, Unreliable: true, ShortDelays: true,
		MaxRaftState: 4000, Seed: seed,
	}, kvtest.StartKVServer)
	c.WaitLeader()
	log := kvtest.NewOpLog()

	// Clients: 0 and 1 append to their own key and check every read of it
	// against what they were acknowledged; 2 and 3 mix Put, Append and Get
	// on shared keys. All of it goes into the history.
	var (
		stopClients atomic.Bool
		clientsWG   sync.WaitGroup
		appends     [clients]int
		ops         atomic.Int64
	)
	for cli := range clients {
		ck := c.MakeClerk(c.All())
		rng := rand.New(rand.NewPCG(seed, uint64(100+cli)))
		clientsWG.Go(func() {
			own := cli < 2
			key, last := "own-"+strconv.Itoa(cli), ""
			for j := 0; !stopClients.Load(); j++ {
				if !own {
					key = "shared-" + strconv.Itoa(rng.IntN(3))
				}
				n := j
				if own {
					n = appends[cli] // CheckClientAppends wants 0, 1, 2, ...
				}
				v := "x " + strconv.Itoa(cli) + " " + strconv.Itoa(n) + " y"
				switch r := rng.IntN(10); {
				case r < 5:
					c.Append(ck, key, v, log, cli)
					if own {
						last += v
						appends[cli]++
					}
				case r < 6 && !own:
					c.Put(ck, key, v, log, cli)
				default:
					if got := c.Get(ck, key, log, cli); own && got != last {
						t.Errorf("client %d: Get(%q) = %q, want %q", cli, key, got, last)
						return
					}
				}
				ops.Add(1)
			}
		})
	}

	// Faults: random partitions, one crashed server at a time, heals.
	var (
		mu   sync.Mutex   // guards dead
		dead map[int]bool // servers replaced as dead: never restarted
	)
	dead = make(map[int]bool)
	stopFaults := make(chan struct{})
	faultsDone := make(chan struct{})
	faults := rand.New(rand.NewPCG(seed, 2))
	go func() {
		defer close(faultsDone)
		crashed := -1
		for {
			select {
			case <-stopFaults:
				return
			case <-time.After(300*time.Millisecond + time.Duration(faults.IntN(500))*time.Millisecond):
			}
			mu.Lock()
			if crashed >= 0 && !dead[crashed] {
				c.Restart(crashed)
				c.Connect(crashed)
			}
			mu.Unlock()
			crashed = -1
			switch r := faults.IntN(10); {
			case r < 4:
				var a, b []int
				for i := range servers {
					if faults.IntN(2) == 0 {
						a = append(a, i)
					} else {
						b = append(b, i)
					}
				}
				c.Partition(a, b)
			case r < 6:
				c.Heal()
				crashed = faults.IntN(servers)
				mu.Lock()
				if !dead[crashed] {
					c.Crash(crashed)
				}
				mu.Unlock()
			default:
				c.Heal()
			}
		}
	}()

	// Membership: the test goroutine churns the configuration it reads back
	// from the leader (a change whose outcome is unknown is simply seen, or
	// not, in the next read).
	rng := rand.New(rand.NewPCG(seed, 1))
	anyDead := func(ids []int) bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.ContainsFunc(ids, func(id int) bool { return dead[id] })
	}
	next := voters // the next spare to join
	var made, failed []string
	try := func(what string, err error) bool {
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", what, err))
			return false
		}
		made = append(made, what)
		return true
	}
	for deadline := time.Now().Add(runFor); time.Now().Before(deadline); {
		time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond)
		m := c.Membership()
		vs, ls := m.Voters(), m.Learners()
		if len(vs) == 0 {
			continue // no server knows a configuration (none running)
		}
		switch r := rng.IntN(10); {
		case r < 3 && len(ls) == 0 && next < servers:
			try(fmt.Sprintf("add learner %d", next), c.AddLearner(change, next))
			next++
		case r < 5 && len(ls) > 0:
			id := ls[rng.IntN(len(ls))]
			try(fmt.Sprintf("promote %d", id), c.Promote(change, id))
		case r < 7 && len(vs) > 3:
			id := vs[rng.IntN(len(vs))] // the leader as well
			try(fmt.Sprintf("remove voter %d", id), c.RemoveMember(change, id))
		case r < 8 && len(ls) > 0:
			id := ls[rng.IntN(len(ls))]
			try(fmt.Sprintf("remove learner %d", id), c.RemoveMember(change, id))
		case r < 10 && next < servers && len(ls) == 0 && !anyDead(vs):
			// A voter's machine dies; a new one (a new id, an empty
			// store) replaces it: add learner, promote, remove the dead.
			old, id := vs[rng.IntN(len(vs))], next
			next++
			mu.Lock()
			dead[old] = true
			c.WipeStore(old)
			mu.Unlock()
			ok := try(fmt.Sprintf("replace: add learner %d", id), c.AddLearner(change, id)) &&
				try(fmt.Sprintf("replace: promote %d", id), c.Promote(2*change, id))
			if ok {
				try(fmt.Sprintf("replace: remove dead %d", old), c.RemoveMember(change, old))
			}
			// Otherwise the dead voter stays in the configuration (its
			// disk is gone: it never comes back) until a later removal
			// or the settling below; no second voter is replaced while
			// it is there, so a majority stays alive.
		}
	}
	close(stopFaults)
	<-faultsDone
	mu.Lock()
	for i := range servers {
		if !dead[i] && c.Node(i) == nil {
			c.Restart(i)
		}
	}
	mu.Unlock()
	c.Heal()
	stopClients.Store(true)
	clientsWG.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("membership changes made: %v", made)
	t.Logf("changes that failed (transient, with faults): %d %v", len(failed), failed)
	t.Logf("%d client operations", ops.Load())
	if len(made) < 4 {
		t.Fatalf("only %d membership changes were made; the test judged too little", len(made))
	}

	// Settle: a voter that was removed as dead but whose removal did not
	// commit is removed now, and a learner left over is promoted or removed.
	m := c.Membership()
	for _, id := range m.Voters() {
		mu.Lock()
		d := dead[id]
		mu.Unlock()
		if d {
			if err := c.RemoveMember(10*time.Second, id); err != nil {
				t.Fatalf("remove dead voter %d: %v", id, err)
			}
		}
	}
	for _, id := range c.Membership().Learners() {
		if err := c.Promote(10*time.Second, id); err != nil {
			t.Fatalf("promote learner %d: %v", id, err)
		}
	}
	m = c.Membership()
	t.Logf("final configuration %v", m)
	members := append(m.Voters(), m.Learners()...)
	if err := c.WaitMembership(10*time.Second, members, m.Voters(), m.Learners()); err != nil {
		c.LogStatus()
		t.Fatal(err)
	}
	for _, id := range m.Voters() {
		mu.Lock()
		d := dead[id]
		mu.Unlock()
		if d {
			t.Fatalf("dead server %d is a voter of the final configuration %v", id, m)
		}
	}

	// No acknowledged write lost: each own key holds every append its
	// client was told succeeded, once and in order; a write through a
	// fresh clerk commits with the final configuration.
	ck := c.MakeClerk(c.All())
	for cli := range 2 {
		v := c.Get(ck, "own-"+strconv.Itoa(cli), log, clients)
		kvtest.CheckClientAppends(t, cli, v, appends[cli])
	}
	c.Put(ck, "final", "1", log, clients)
	c.Check(ck, "final", "1")
	if slices.Equal(m.Voters(), []int{0, 1, 2}) && next == voters {
		t.Fatalf("the configuration never changed")
	}
	log.CheckLinearizable(t)
}
