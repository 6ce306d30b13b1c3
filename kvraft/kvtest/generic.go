package kvtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/kvraft"
)

// OpTimeout bounds one clerk operation in the tests; the lab's clerk
// retries forever, so an operation that takes this long is a failure.
const OpTimeout = 30 * time.Second

// MinOpsWait is how much longer than RoundTime a round of GenericTest may
// last for every client to complete MinOps operations. The count is the
// check, not the clock: at load 20 on 2 cores with -race, every client of a
// linearizability round completed only 4 to 16 operations in 5 s, all alike
// (no client starved). A client still short after MinOpsWait fails the round.
const MinOpsWait = 20 * time.Second

// ElectionWait is how long the tests let the cluster settle after healing
// partitions or restarting (the lab's electionTimeout of 1 s, scaled to our
// 150–300 ms election timeouts).
const ElectionWait = 500 * time.Millisecond

// fail reports a failure and ends the calling goroutine, which may be the
// test's or a client's: FailNow marks the test failed and finished under
// its lock, then exits the goroutine.
func fail(t testing.TB, format string, args ...any) {
	t.Helper()
	t.Errorf(format, args...)
	t.FailNow()
}

// Get reads key through ck, recording the operation in log (if not nil) as
// client cli's. A missing key reads as "".
func (c *Cluster) Get(ck *kvraft.Clerk, key string, log *OpLog, cli int) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), OpTimeout)
	defer cancel()
	var call int64
	if log != nil {
		call = log.Now()
	}
	begin := time.Now()
	v, err := ck.Get(ctx, key)
	c.noteSlow(begin, "Get", key)
	if errors.Is(err, kvraft.ErrNoKey) {
		v, err = "", nil
	}
	if err != nil {
		c.LogStatus()
		fail(c.t, "Get(%q): %v", key, err)
	}
	if log != nil {
		log.Add(cli, KVInput{Op: OpGet, Key: key}, KVOutput{Value: DigestOf(v)}, call, log.Now())
	}
	return v
}

// Put sets key through ck, recording it in log (if not nil).
func (c *Cluster) Put(ck *kvraft.Clerk, key, value string, log *OpLog, cli int) {
	c.t.Helper()
	c.write(OpPut, ck, key, value, log, cli)
}

// Append appends to key through ck, recording it in log (if not nil).
func (c *Cluster) Append(ck *kvraft.Clerk, key, value string, log *OpLog, cli int) {
	c.t.Helper()
	c.write(OpAppend, ck, key, value, log, cli)
}

// Delete removes key through ck, recording it in log (if not nil).
func (c *Cluster) Delete(ck *kvraft.Clerk, key string, log *OpLog, cli int) {
	c.t.Helper()
	c.write(OpDelete, ck, key, "", log, cli)
}

func (c *Cluster) write(kind uint8, ck *kvraft.Clerk, key, value string, log *OpLog, cli int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), OpTimeout)
	defer cancel()
	var call int64
	if log != nil {
		call = log.Now()
	}
	var err error
	begin := time.Now()
	defer c.noteSlow(begin, "write", key)
	switch kind {
	case OpPut:
		err = ck.Put(ctx, key, value)
	case OpAppend:
		err = ck.Append(ctx, key, value)
	case OpDelete:
		_, err = ck.Delete(ctx, key)
	}
	if err != nil {
		c.LogStatus()
		fail(c.t, "write %d to %q: %v", kind, key, err)
	}
	if log != nil {
		log.Add(cli, KVInput{Op: kind, Key: key, Value: value}, KVOutput{}, call, log.Now())
	}
}

// slowOp is the latency above which the tests log an operation.
const slowOp = time.Second

func (c *Cluster) noteSlow(begin time.Time, what, key string) {
	if d := time.Since(begin); d > slowOp {
		c.t.Logf("slow %s(%q): %v (ended %v after the test began)", what, key, d.Round(time.Millisecond), time.Since(c.began).Round(time.Millisecond))
	}
}

// Check fails the test unless key reads as want through ck.
func (c *Cluster) Check(ck *kvraft.Clerk, key, want string) {
	c.t.Helper()
	if v := c.Get(ck, key, nil, -1); v != want {
		c.t.Fatalf("Get(%q) = %q, want %q", key, v, want)
	}
}

// SpawnClients runs fn for clients 0..n-1, each with its own clerk
// connected to every server, and waits for all of them.
func (c *Cluster) SpawnClients(n int, fn func(cli int, ck *kvraft.Clerk)) {
	c.spawnClients(n, false, fn)
}

// spawnClients is SpawnClients, with forwarding clerks if forward (see
// MakeForwardingClerk).
func (c *Cluster) spawnClients(n int, forward bool, fn func(cli int, ck *kvraft.Clerk)) {
	var wg sync.WaitGroup
	for cli := range n {
		ck := c.makeClerk(c.All(), forward)
		wg.Go(func() { fn(cli, ck) })
	}
	wg.Wait()
}

// CheckClientAppends checks that v holds client cli's appends 0..count-1,
// each exactly once and in order.
func CheckClientAppends(t testing.TB, cli int, v string, count int) {
	t.Helper()
	last := -1
	for j := range count {
		want := "x " + strconv.Itoa(cli) + " " + strconv.Itoa(j) + " y"
		off := strings.Index(v, want)
		if off < 0 {
			t.Fatalf("client %d: missing append %d in %q", cli, j, short(v))
		}
		if off2 := strings.LastIndex(v, want); off2 != off {
			t.Fatalf("client %d: duplicate append %d", cli, j)
		}
		if off <= last {
			t.Fatalf("client %d: append %d out of order", cli, j)
		}
		last = off
	}
}

// CheckConcurrentAppends checks that v holds, for each client i, its
// appends 0..counts[i]-1 exactly once and in order.
func CheckConcurrentAppends(t testing.TB, v string, counts []int) {
	t.Helper()
	for cli, n := range counts {
		CheckClientAppends(t, cli, v, n)
	}
}

// Params are the knobs of the lab's generic KV test.
type Params struct {
	// Clients is the number of concurrent clients.
	Clients int
	// Servers is the cluster size (5; 7 for the linearizability tests).
	Servers int
	// Unreliable, Crash and Partitions choose the faults: an unreliable
	// network, crash and restart of every server after each round, random
	// partitions every 1–1.2 s.
	Unreliable, Crash, Partitions bool
	// MaxRaftState is the snapshot threshold in bytes; -1 for none.
	MaxRaftState int64
	// RandomKeys makes every client use random keys among Clients keys and
	// put and delete as well as append and get (the linearizability test);
	// otherwise each client appends to and reads its own key and checks the
	// value it reads.
	RandomKeys bool
	// Rounds and RoundTime: the lab runs 3 rounds of 5 s.
	Rounds    int
	RoundTime time.Duration
	// MinOps is the fewest operations each client must complete per round;
	// a round goes on past RoundTime (at most MinOpsWait) until they have.
	MinOps int
}

// LabParams returns the lab's generic-test parameters for the given
// faults, with 5 servers.
func LabParams(clients int, unreliable, crash, partitions bool, maxraftstate int64) Params {
	return Params{
		Clients: clients, Servers: 5,
		Unreliable: unreliable, Crash: crash, Partitions: partitions,
		MaxRaftState: maxraftstate,
		Rounds:       3, RoundTime: 5 * time.Second, MinOps: 10,
	}
}

// LogSizeFactor bounds the persisted raft state at the end of a round:
// at most LogSizeFactor × maxraftstate (the lab allows 8).
const LogSizeFactor = 2

// GenericTest is the lab's generic KV test: rounds of concurrent clients
// under the chosen faults, each client's last value checked at the end of
// each round, snapshot bounds checked, and the whole history checked for
// linearizability with porcupine.
func GenericTest(t *testing.T, p Params) {
	c := NewCluster(t, Options{Servers: p.Servers, Unreliable: p.Unreliable, MaxRaftState: p.MaxRaftState}, StartKVServer)
	ck := c.MakeClerk(c.All())
	log := NewOpLog()
	var totalOps atomic.Int64
	for round := range p.Rounds {
		var stopClients, stopPartitioner atomic.Bool
		counts := make([]int, p.Clients) // appends per client, for the checks
		ops := make([]int, p.Clients)
		// progress counts each client's completed operations while the
		// round runs.
		progress := make([]atomic.Int64, p.Clients)
		clientsDone := make(chan struct{})
		go func() {
			defer close(clientsDone)
			c.SpawnClients(p.Clients, func(cli int, myck *kvraft.Clerk) {
				j, n := 0, 0
				defer func() { counts[cli], ops[cli] = j, n }()
				key := strconv.Itoa(cli)
				var last []byte // the value this client expects for its key
				if !p.RandomKeys {
					c.Put(myck, key, "", log, cli)
				}
				for !stopClients.Load() {
					if p.RandomKeys {
						key = strconv.Itoa(rand.IntN(p.Clients))
					}
					nv := "x " + strconv.Itoa(cli) + " " + strconv.Itoa(j) + " y"
					switch r := rand.IntN(1000); {
					case r < 500:
						c.Append(myck, key, nv, log, cli)
						last = append(last, nv...)
						j++
					case p.RandomKeys && r < 600:
						c.Put(myck, key, nv, log, cli)
						j++
					case p.RandomKeys && r < 630:
						c.Delete(myck, key, log, cli)
					default:
						v := c.Get(myck, key, log, cli)
						if !p.RandomKeys && v != string(last) {
							fail(t, "client %d: Get(%q) = %q, want %q", cli, key, short(v), short(string(last)))
						}
					}
					n++
					progress[cli].Add(1)
				}
			})
		}()

		partitionerDone := make(chan struct{})
		if p.Partitions {
			go func() {
				defer close(partitionerDone)
				time.Sleep(time.Second)
				for !stopPartitioner.Load() {
					c.Partition(c.RandomSplit())
					time.Sleep(time.Second + rand.N(200*time.Millisecond))
				}
			}()
		} else {
			close(partitionerDone)
		}

		time.Sleep(p.RoundTime)
		behind := func() bool {
			for i := range progress {
				if progress[i].Load() < int64(p.MinOps) {
					return true
				}
			}
			return false
		}
		if behind() {
			start := time.Now()
			for time.Since(start) < MinOpsWait && behind() && !t.Failed() {
				time.Sleep(50 * time.Millisecond)
			}
			t.Logf("round %d: %v past its %v until every client had %d operations", round, time.Since(start).Round(time.Millisecond), p.RoundTime, p.MinOps)
		}
		stopClients.Store(true)
		stopPartitioner.Store(true)
		<-partitionerDone
		if p.Partitions {
			c.Heal()
			time.Sleep(ElectionWait)
		}
		if p.Crash {
			c.CrashAll()
			time.Sleep(ElectionWait)
			c.RestartAll()
			c.Heal()
		}
		<-clientsDone
		if t.Failed() {
			t.FailNow()
		}
		for cli := range p.Clients {
			totalOps.Add(int64(ops[cli]))
			if ops[cli] < p.MinOps {
				// Everyone's counts tell a starved client from a slow round.
				t.Fatalf("round %d: client %d completed only %d operations, want at least %d (all clients: %v)",
					round, cli, ops[cli], p.MinOps, ops)
			}
			if !p.RandomKeys {
				v := c.Get(ck, strconv.Itoa(cli), log, 0)
				CheckClientAppends(t, cli, v, counts[cli])
			}
		}
		if p.MaxRaftState > 0 {
			if sz := c.WaitLogSize(LogSizeFactor * p.MaxRaftState); sz > LogSizeFactor*p.MaxRaftState {
				t.Fatalf("round %d: logs were not trimmed (%d > %d×%d)", round, sz, LogSizeFactor, p.MaxRaftState)
			}
		} else {
			for i := range p.Servers {
				if n := c.Node(i); n != nil && n.Status().SnapshotIndex != 0 {
					t.Fatalf("round %d: server %d has a snapshot although maxraftstate is %d", round, i, p.MaxRaftState)
				}
			}
		}
	}
	t.Logf("%d operations by %d clients in %d rounds", totalOps.Load(), p.Clients, p.Rounds)
	log.CheckLinearizable(t)
}

// String describes the parameters, for logs.
func (p Params) String() string {
	return fmt.Sprintf("%d clients, %d servers, unreliable %v, crash %v, partitions %v, maxraftstate %d",
		p.Clients, p.Servers, p.Unreliable, p.Crash, p.Partitions, p.MaxRaftState)
}
