package kvraft_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/ruaft/ruaft/kvraft"
	"github.com/ruaft/ruaft/kvraft/kvtest"
)

// The lab's 4B tests (KV without snapshots) and 4C tests (with snapshots),
// with the lab's parameters. Names drop the lab suffix and keep the rest.

func lab(clients int, unreliable, crash, partitions bool, maxraftstate int64) kvtest.Params {
	return kvtest.LabParams(clients, unreliable, crash, partitions, maxraftstate)
}

// linearizable is the lab's linearizability variant: 15 clients on random
// keys, 7 servers.
func linearizable(maxraftstate int64) kvtest.Params {
	p := lab(15, true, true, true, maxraftstate)
	p.Servers = 7
	p.RandomKeys = true
	return p
}

func TestBasic4B(t *testing.T)            { kvtest.GenericTest(t, lab(1, false, false, false, -1)) }
func TestConcurrent4B(t *testing.T)       { kvtest.GenericTest(t, lab(5, false, false, false, -1)) }
func TestUnreliable4B(t *testing.T)       { kvtest.GenericTest(t, lab(5, true, false, false, -1)) }
func TestPersistOneClient4B(t *testing.T) { kvtest.GenericTest(t, lab(1, false, true, false, -1)) }
func TestPersistConcurrent4B(t *testing.T) {
	kvtest.GenericTest(t, lab(5, false, true, false, -1))
}
func TestPersistConcurrentUnreliable4B(t *testing.T) {
	kvtest.GenericTest(t, lab(5, true, true, false, -1))
}
func TestManyPartitionsOneClient4B(t *testing.T) {
	kvtest.GenericTest(t, lab(1, false, false, true, -1))
}
func TestManyPartitionsManyClients4B(t *testing.T) {
	kvtest.GenericTest(t, lab(5, false, false, true, -1))
}
func TestPersistPartition4B(t *testing.T) { kvtest.GenericTest(t, lab(5, false, true, true, -1)) }
func TestPersistPartitionUnreliable4B(t *testing.T) {
	kvtest.GenericTest(t, lab(5, true, true, true, -1))
}
func TestPersistPartitionUnreliableLinearizable4B(t *testing.T) {
	kvtest.GenericTest(t, linearizable(-1))
}

func TestSnapshotRecover4C(t *testing.T) { kvtest.GenericTest(t, lab(1, false, true, false, 1000)) }
func TestSnapshotRecoverManyClients4C(t *testing.T) {
	kvtest.GenericTest(t, lab(20, false, true, false, 1000))
}
func TestSnapshotUnreliable4C(t *testing.T) { kvtest.GenericTest(t, lab(5, true, false, false, 1000)) }
func TestSnapshotUnreliableRecover4C(t *testing.T) {
	kvtest.GenericTest(t, lab(5, true, true, false, 1000))
}
func TestSnapshotUnreliableRecoverConcurrentPartition4C(t *testing.T) {
	kvtest.GenericTest(t, lab(5, true, true, true, 1000))
}
func TestSnapshotUnreliableRecoverConcurrentPartitionLinearizable4C(t *testing.T) {
	kvtest.GenericTest(t, linearizable(1000))
}

// labOpBound is the lab's bound on one operation of the speed tests: its
// reference takes 33 s for 1000 operations. A unit test asserts no tighter
// wall-clock bound, so that it passes on a loaded machine; the project's
// own target (under 3 ms per operation) is measured by BenchmarkSpeed.
const labOpBound = 33 * time.Millisecond

// speedTest: 1000 sequential appends by one client, then a read, within the
// lab's bound.
func speedTest(t *testing.T, maxraftstate int64) {
	c := kvtest.NewCluster(t, kvtest.Options{Servers: 3, MaxRaftState: maxraftstate}, kvtest.StartKVServer)
	const numOps = 1000
	elapsed := sequentialAppends(t, c, speedClerk(c), numOps)
	t.Logf("%d sequential appends in %v (%v per op)", numOps, elapsed.Round(time.Millisecond), (elapsed / numOps).Round(time.Microsecond))
	if elapsed > numOps*labOpBound {
		t.Fatalf("%d operations took %v, want under %v (the lab's %v per operation)", numOps, elapsed, numOps*labOpBound, labOpBound)
	}
}

// speedClerk returns a clerk for sequentialAppends once the cluster has a
// leader.
func speedClerk(c *kvtest.Cluster) *kvraft.Clerk {
	ck := c.MakeClerk(c.All())
	c.Put(ck, "x", "", nil, -1)
	return ck
}

// sequentialAppends has ck append n values to one key one after the other,
// checks the result, and returns the time the appends took.
func sequentialAppends(tb testing.TB, c *kvtest.Cluster, ck *kvraft.Clerk, n int) time.Duration {
	start := time.Now()
	for i := range n {
		c.Append(ck, "x", "x 0 "+strconv.Itoa(i)+" y", nil, -1)
	}
	elapsed := time.Since(start)
	v := c.Get(ck, "x", nil, -1)
	kvtest.CheckClientAppends(tb, 0, v, n)
	return elapsed
}

func TestSpeed4B(t *testing.T) { speedTest(t, -1) }
func TestSpeed4C(t *testing.T) { speedTest(t, 1000) }

// TestUnreliableOneKey4B: 5 clients append 10 values each to one key on an
// unreliable network; every append lands exactly once, in each client's
// order.
func TestUnreliableOneKey4B(t *testing.T) {
	c := kvtest.NewCluster(t, kvtest.Options{Servers: 3, Unreliable: true}, kvtest.StartKVServer)
	ck := c.MakeClerk(c.All())
	c.Put(ck, "k", "", nil, -1)
	const clients, upto = 5, 10
	c.SpawnClients(clients, func(cli int, myck *kvraft.Clerk) {
		for n := range upto {
			c.Append(myck, "k", "x "+strconv.Itoa(cli)+" "+strconv.Itoa(n)+" y", nil, -1)
		}
	})
	counts := make([]int, clients)
	for i := range counts {
		counts[i] = upto
	}
	kvtest.CheckConcurrentAppends(t, c.Get(ck, "k", nil, -1), counts)
}

// TestOnePartition4B: the majority makes progress while the old leader sits
// in the minority; the minority makes none; after healing, the minority's
// pending operations complete.
func TestOnePartition4B(t *testing.T) {
	c := kvtest.NewCluster(t, kvtest.Options{Servers: 5}, kvtest.StartKVServer)
	ck := c.MakeClerk(c.All())
	c.Put(ck, "1", "13", nil, -1)

	p1, p2 := c.MakePartition()
	c.Partition(p1, p2)
	ckp1 := c.MakeClerk(p1)
	ckp2a := c.MakeClerk(p2)
	ckp2b := c.MakeClerk(p2)
	c.Put(ckp1, "1", "14", nil, -1)
	c.Check(ckp1, "1", "14")

	done0 := make(chan struct{})
	done1 := make(chan struct{})
	go func() { defer close(done0); c.Put(ckp2a, "1", "15", nil, -1) }()
	go func() { defer close(done1); c.Get(ckp2b, "1", nil, -1) }()
	select {
	case <-done0:
		t.Fatal("Put in the minority completed")
	case <-done1:
		t.Fatal("Get in the minority completed")
	case <-time.After(time.Second):
	}
	c.Check(ckp1, "1", "14")
	c.Put(ckp1, "1", "16", nil, -1)
	c.Check(ckp1, "1", "16")

	c.Heal()
	c.ConnectClerk(ckp2a, c.All())
	c.ConnectClerk(ckp2b, c.All())
	for what, done := range map[string]chan struct{}{"Put": done0, "Get": done1} {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s did not complete after healing", what)
		}
	}
	c.Check(ck, "1", "15")
}

// TestSnapshotRPC4C: a server cut off while the others compact their logs
// catches up through InstallSnapshot.
func TestSnapshotRPC4C(t *testing.T) {
	const maxraftstate = 1000
	c := kvtest.NewCluster(t, kvtest.Options{Servers: 3, MaxRaftState: maxraftstate}, kvtest.StartKVServer)
	ck := c.MakeClerk(c.All())
	c.Put(ck, "a", "A", nil, -1)
	c.Check(ck, "a", "A")

	// A bunch of puts into the majority partition.
	c.Partition([]int{0, 1}, []int{2})
	ck1 := c.MakeClerk([]int{0, 1})
	for i := range 50 {
		c.Put(ck1, strconv.Itoa(i), strconv.Itoa(i), nil, -1)
	}
	time.Sleep(kvtest.ElectionWait)
	c.Put(ck1, "b", "B", nil, -1)

	// The majority has thrown away most of its log.
	if sz := c.WaitLogSize(kvtest.LogSizeFactor * maxraftstate); sz > kvtest.LogSizeFactor*maxraftstate {
		t.Fatalf("logs were not trimmed (%d > %d×%d)", sz, kvtest.LogSizeFactor, maxraftstate)
	}

	// A group that needs the lagging server, which must catch up through a
	// snapshot.
	c.Partition([]int{0, 2}, []int{1})
	ck2 := c.MakeClerk([]int{0, 2})
	c.Put(ck2, "c", "C", nil, -1)
	c.Put(ck2, "d", "D", nil, -1)
	c.Check(ck2, "a", "A")
	c.Check(ck2, "b", "B")
	c.Check(ck2, "1", "1")
	c.Check(ck2, "49", "49")

	// Everybody.
	c.Heal()
	c.Put(ck, "e", "E", nil, -1)
	c.Check(ck, "c", "C")
	c.Check(ck, "e", "E")
	c.Check(ck, "1", "1")
}

// TestSnapshotSize4C: the persisted log stays within 2×maxraftstate and the
// snapshot within 500 bytes. The lab's bound is for the state alone, so
// the retained event history (which a snapshot also carries, up to
// Config.HistoryMaxBytes) is turned off here.
func TestSnapshotSize4C(t *testing.T) {
	const maxraftstate, maxsnapshotstate = 1000, 500
	c := kvtest.NewCluster(t, kvtest.Options{Servers: 3, MaxRaftState: maxraftstate},
		kvtest.StartKVServerWith(func(cfg *kvraft.Config) { cfg.HistoryMaxEvents = 0 }))
	ck := c.MakeClerk(c.All())
	for range 200 {
		c.Put(ck, "x", "0", nil, -1)
		c.Check(ck, "x", "0")
		c.Put(ck, "x", "1", nil, -1)
		c.Check(ck, "x", "1")
	}
	if sz := c.WaitLogSize(kvtest.LogSizeFactor * maxraftstate); sz > kvtest.LogSizeFactor*maxraftstate {
		t.Fatalf("logs were not trimmed (%d > %d×%d)", sz, kvtest.LogSizeFactor, maxraftstate)
	}
	if sz := c.SnapshotSize(); sz > maxsnapshotstate {
		t.Fatalf("snapshot too large (%d > %d)", sz, maxsnapshotstate)
	}
	t.Logf("log %d bytes, snapshot %d bytes", c.LogSize(), c.SnapshotSize())
}
