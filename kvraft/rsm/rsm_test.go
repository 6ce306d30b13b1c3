package rsm_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/kvraft/kvtest"
	"github.com/ruaft/ruaft/kvraft/rsm"
	"github.com/ruaft/ruaft/raft"
)

// The lab's 4A tests: an RSM replicating a counter on 3 servers.

const nsrv = 3

// Commands of the counter state machine.
var (
	cmdInc  = []byte{1}
	cmdNull = []byte{2}
)

// counter is a StateMachine counting Inc commands.
type counter struct {
	mu sync.Mutex // guards n
	n  uint64
}

func (c *counter) Apply(_ uint64, cmd []byte) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(cmd) == 1 && cmd[0] == cmdInc[0] {
		c.n++
		return c.n
	}
	return nil
}

func (c *counter) Snapshot() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return binary.AppendUvarint(nil, c.n)
}

func (c *counter) Restore(b []byte) error {
	n := uint64(0)
	if len(b) > 0 {
		var k int
		if n, k = binary.Uvarint(b); k <= 0 {
			return errors.New("counter: bad snapshot")
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n = n
	return nil
}

func (c *counter) value() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// replica is one server: an RSM around a counter.
type replica struct {
	rsm *rsm.RSM
	sm  *counter
}

func (r *replica) Kill() error { return r.rsm.Kill() }

type test struct {
	t *testing.T
	c *kvtest.Cluster
	// unknown counts submissions whose outcome was not learned (a timeout,
	// lost leadership, a killed server): each may still be applied, in
	// addition to the retry that succeeded, since the counter has no
	// duplicate detection. On a loaded machine a commit can outlast an
	// attempt's second.
	unknown atomic.Uint64
}

func makeTest(t *testing.T, maxraftstate int64) *test {
	start := func(i int, newNode kvtest.NewNode) (kvtest.Replica, error) {
		sm := &counter{}
		r, err := rsm.New(rsm.DefaultConfig(), sm)
		if err != nil {
			return nil, err
		}
		node, err := newNode(r)
		if err != nil {
			return nil, err
		}
		r.Attach(node)
		return &replica{rsm: r, sm: sm}, nil
	}
	return &test{t: t, c: kvtest.NewCluster(t, kvtest.Options{Servers: nsrv, MaxRaftState: maxraftstate}, start)}
}

func (ts *test) replica(i int) *replica {
	r, _ := ts.c.Replica(i).(*replica)
	return r
}

// submitTo submits cmd to the servers in group until one applies it, for
// up to 10 s.
func (ts *test) submitTo(group []int, cmd []byte) (any, error) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, i := range group {
			r := ts.replica(i)
			if r == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			res, err := r.rsm.Submit(ctx, cmd)
			cancel()
			if err == nil {
				return res, nil
			}
			if !errors.Is(err, rsm.ErrNotLeader) {
				ts.unknown.Add(1)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil, fmt.Errorf("no server in %v applied the command within 10 s", group)
}

func (ts *test) oneIncPartition(group []int) uint64 {
	ts.t.Helper()
	res, err := ts.submitTo(group, cmdInc)
	if err != nil {
		ts.t.Fatal(err)
	}
	return res.(uint64)
}

func (ts *test) oneInc() uint64 {
	ts.t.Helper()
	return ts.oneIncPartition(ts.c.All())
}

// checkCounter waits up to 5 s for at least n servers to have counted v,
// or up to v plus the submissions whose outcome was unknown (ts.unknown).
func (ts *test) checkCounter(v uint64, n int) {
	ts.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := 0
		for i := range nsrv {
			if r := ts.replica(i); r != nil && r.sm.value() >= v && r.sm.value() <= v+ts.unknown.Load() {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			ts.t.Fatalf("only %d servers counted %d, want %d", got, v, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBasic4A(t *testing.T) {
	ts := makeTest(t, -1)
	for i := range 10 {
		// Exactly i+1, unless a submission's outcome was unknown (a
		// leader change as the cluster starts, under a loaded machine) and
		// its retry applied the Inc again: the counter may then be ahead
		// by up to the unknown outcomes (as checkCounter allows).
		if r, want := ts.oneInc(), uint64(i+1); r < want || r > want+ts.unknown.Load() {
			t.Fatalf("Inc %d returned %d (%d submissions of unknown outcome)", i+1, r, ts.unknown.Load())
		}
		ts.checkCounter(uint64(i+1), nsrv)
	}
}

func TestConcurrent4A(t *testing.T) {
	const ninc = 50
	ts := makeTest(t, -1)
	var wg sync.WaitGroup
	for range ninc {
		wg.Go(func() {
			if _, err := ts.submitTo(ts.c.All(), cmdInc); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	ts.checkCounter(ninc, nsrv)
}

func TestLeaderFailure4A(t *testing.T) {
	ts := makeTest(t, -1)
	r := ts.oneInc()
	ts.checkCounter(r, nsrv)
	l := ts.c.WaitLeader()
	ts.c.Disconnect(l)
	r = ts.oneInc()
	ts.checkCounter(r, nsrv-1)
	ts.c.Connect(l)
	ts.checkCounter(r, nsrv)
}

func TestLeaderPartition4A(t *testing.T) {
	ts := makeTest(t, -1)
	r := ts.oneInc()
	ts.checkCounter(r, nsrv)

	l := ts.c.WaitLeader()
	p1, p2 := ts.c.MakePartition()
	ts.c.Partition(p1, p2)
	done := make(chan error, 1)
	go func() {
		_, err := ts.replica(l).rsm.Submit(context.Background(), cmdInc)
		done <- err
	}()
	rep := ts.oneIncPartition(p1)
	returned := false
	select {
	case err := <-done:
		// With check-quorum the old leader steps down on its own, so
		// failing here is right; succeeding is not.
		if err == nil {
			t.Fatal("Submit in the minority succeeded")
		}
		returned = true
	case <-time.After(time.Second):
	}
	ts.c.Heal()
	if !returned {
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("Submit in the minority succeeded")
			}
		case <-time.After(time.Second):
			t.Fatal("Submit did not return after the partition healed")
		}
	}
	ts.checkCounter(rep, nsrv)
}

func TestRestartReplay4A(t *testing.T) {
	const ninc = 100
	ts := makeTest(t, -1)
	for i := range ninc {
		if r := ts.oneInc(); r != uint64(i+1) {
			t.Fatalf("Inc %d returned %d", i+1, r)
		}
	}
	ts.checkCounter(ninc, nsrv)
	ts.c.CrashAll()
	time.Sleep(kvtest.ElectionWait)
	ts.c.RestartAll()
	ts.c.Heal()
	if r := ts.oneInc(); r != ninc+1 {
		t.Fatalf("Inc after restart returned %d, want %d", r, ninc+1)
	}
	ts.checkCounter(ninc+1, nsrv)
}

// submitNulls submits n Null commands concurrently, each to every server
// once, and returns a channel that gets one value per returned Submit.
func (ts *test) submitNulls(n int) chan struct{} {
	done := make(chan struct{}, n)
	for range n {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range nsrv {
				r := ts.replica(i)
				if r == nil {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := r.rsm.Submit(ctx, cmdNull)
				cancel()
				if err == nil || errors.Is(err, context.DeadlineExceeded) {
					return
				}
			}
		}()
	}
	return done
}

func (ts *test) waitReturned(done chan struct{}, n int) {
	ts.t.Helper()
	for i := range n {
		select {
		case <-done:
		case <-time.After(time.Second):
			ts.t.Fatalf("only %d of %d Submits returned after shutdown", i, n)
		}
	}
}

// TestShutdown4A: Submit returns when the RSM is killed.
func TestShutdown4A(t *testing.T) {
	const nsubmit = 100
	ts := makeTest(t, -1)
	ts.c.WaitLeader()
	done := ts.submitNulls(nsubmit)
	time.Sleep(20 * time.Millisecond)
	ts.c.CrashAll()
	ts.waitReturned(done, nsubmit)
}

// TestRestartSubmit4A: commands submitted before a shutdown do not get
// confused with ones submitted after the restart.
func TestRestartSubmit4A(t *testing.T) {
	const ninc, nsubmit = 100, 100
	ts := makeTest(t, -1)
	for i := range ninc {
		if r := ts.oneInc(); r != uint64(i+1) {
			t.Fatalf("Inc %d returned %d", i+1, r)
		}
	}
	ts.c.CrashAll()
	time.Sleep(kvtest.ElectionWait)
	ts.c.RestartAll()
	ts.c.Heal()
	if r := ts.oneInc(); r != ninc+1 {
		t.Fatalf("Inc after restart returned %d, want %d", r, ninc+1)
	}
	done := ts.submitNulls(nsubmit)
	time.Sleep(20 * time.Millisecond)
	ts.c.CrashAll()
	ts.waitReturned(done, nsubmit)
	ts.c.RestartAll()
	ts.c.Heal()
	r := ts.oneInc()
	ts.checkCounter(r, nsrv)
}

// TestSnapshot4C: with a small maxraftstate the RSM snapshots, and a
// restart recovers the counter from the snapshot.
func TestSnapshot4C(t *testing.T) {
	const ninc = 100
	ts := makeTest(t, 200)
	for range ninc {
		ts.oneInc()
	}
	ts.checkCounter(ninc, nsrv)
	waitSnapshot := time.Now().Add(5 * time.Second)
	for ts.c.SnapshotSize() == 0 {
		if time.Now().After(waitSnapshot) {
			t.Fatal("no snapshot taken")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ts.c.CrashAll()
	ts.c.RestartAll()
	ts.c.Heal()
	if r := ts.oneInc(); r != ninc+1 {
		t.Fatalf("Inc after restart returned %d, want %d", r, ninc+1)
	}
	ts.checkCounter(ninc+1, nsrv)
}

// TestSubmitNotLeader: a follower refuses at once without proposing.
func TestSubmitNotLeader(t *testing.T) {
	ts := makeTest(t, -1)
	l := ts.c.WaitLeader()
	f := (l + 1) % nsrv
	if _, err := ts.replica(f).rsm.Submit(context.Background(), cmdInc); !errors.Is(err, rsm.ErrNotLeader) {
		t.Fatalf("Submit on follower %d: %v, want ErrNotLeader", f, err)
	}
	var _ raft.Application = ts.replica(l).rsm
}

// checkedCounter is a counter whose snapshots can be validated.
type checkedCounter struct{ counter }

func (c *checkedCounter) ValidateSnapshot(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if _, k := binary.Uvarint(b); k != len(b) {
		return errors.New("counter: bad snapshot")
	}
	return nil
}

// TestValidateSnapshot: the RSM validates snapshots with the state
// machine's SnapshotValidator, and accepts any without one.
func TestValidateSnapshot(t *testing.T) {
	garbage := []byte{0xff, 0xff}
	r, err := rsm.New(rsm.DefaultConfig(), &checkedCounter{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ValidateSnapshot(4, garbage); err == nil || !strings.Contains(err.Error(), "index 4") {
		t.Fatalf("ValidateSnapshot(garbage) = %v, want an error naming the index", err)
	}
	if err := r.ValidateSnapshot(4, binary.AppendUvarint(nil, 7)); err != nil {
		t.Fatalf("ValidateSnapshot(valid) = %v", err)
	}
	r, err = rsm.New(rsm.DefaultConfig(), &counter{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ValidateSnapshot(4, garbage); err != nil {
		t.Fatalf("without a validator: %v", err)
	}
}

// discardingCounter is a counter that is also a ResultDiscarder, counting
// the commands it applied without a result.
type discardingCounter struct {
	counter
	discarded atomic.Uint64
}

func (c *discardingCounter) ApplyDiscard(index uint64, cmd []byte) {
	c.discarded.Add(1)
	c.Apply(index, cmd)
}

// A ResultDiscarder applies without a result only the commands nobody
// waits for: every Submit gets its result (on one server too, where a
// command commits as soon as it is proposed, before its future is
// registered), and followers discard.
func TestResultDiscarder(t *testing.T) {
	for _, servers := range []int{1, 3} {
		t.Run(fmt.Sprintf("servers=%d", servers), func(t *testing.T) {
			sms := make([]*discardingCounter, servers)
			var mu sync.Mutex // guards sms
			start := func(i int, newNode kvtest.NewNode) (kvtest.Replica, error) {
				sm := &discardingCounter{}
				r, err := rsm.New(rsm.DefaultConfig(), sm)
				if err != nil {
					return nil, err
				}
				node, err := newNode(r)
				if err != nil {
					return nil, err
				}
				r.Attach(node)
				mu.Lock()
				sms[i] = sm
				mu.Unlock()
				return &replica{rsm: r, sm: &sm.counter}, nil
			}
			ts := &test{t: t, c: kvtest.NewCluster(t, kvtest.Options{Servers: servers}, start)}
			group := make([]int, servers)
			for i := range group {
				group[i] = i
			}
			const n = 50
			var wg sync.WaitGroup
			for range n {
				wg.Go(func() {
					res, err := ts.submitTo(group, cmdInc)
					if err != nil {
						t.Error(err)
						return
					}
					if _, ok := res.(uint64); !ok {
						t.Errorf("Submit's result is %v, want the counter's value", res)
					}
				})
			}
			wg.Wait()
			discarded := func() (d uint64) {
				mu.Lock()
				defer mu.Unlock()
				for _, sm := range sms {
					d += sm.discarded.Load()
				}
				return d
			}
			if servers > 1 {
				// Followers apply once the commit index reaches them (the
				// leader's next message), maybe after every Submit returned.
				deadline := time.Now().Add(10 * time.Second)
				for discarded() == 0 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if discarded() == 0 {
					t.Errorf("no command was applied without its result on %d servers", servers)
				}
			}
		})
	}
}

// syncRaft is a one-server Raft whose Start has the command applied before
// it returns (as a node whose applier is quicker than the proposer): the
// entry reaches the state machine before Propose registers its future.
type syncRaft struct {
	rsm     *rsm.RSM
	applied chan struct{} // the state machine took the command
	index   uint64        // only Start touches it, under the RSM's lock
}

func (f *syncRaft) Start(cmd []byte) (uint64, uint64, bool) {
	f.index++
	go f.rsm.Apply(raft.ApplyMsg{Index: f.index, Term: 1, Command: cmd})
	<-f.applied
	return f.index, 1, true
}

func (f *syncRaft) State() (uint64, bool)                     { return 1, true }
func (f *syncRaft) Status() raft.Status                       { return raft.Status{} }
func (f *syncRaft) ReadIndex(context.Context) (uint64, error) { return f.index, nil }
func (f *syncRaft) SaveSnapshot(uint64, []byte) error         { return nil }
func (f *syncRaft) Subscribe() (<-chan raft.Event, func())    { return make(chan raft.Event), func() {} }
func (f *syncRaft) Kill() error                               { return nil }

// signalCounter is a discardingCounter that tells when it took a command.
type signalCounter struct {
	discardingCounter
	took chan struct{}
}

func (c *signalCounter) Apply(index uint64, cmd []byte) any {
	defer func() { c.took <- struct{}{} }()
	return c.counter.Apply(index, cmd)
}

func (c *signalCounter) ApplyDiscard(index uint64, cmd []byte) {
	defer func() { c.took <- struct{}{} }()
	c.discardingCounter.ApplyDiscard(index, cmd)
}

// A command applied between Start and its future's registration still
// gets its result: Propose counts its future before Start.
func TestResultDiscarderBeforeRegistration(t *testing.T) {
	sm := &signalCounter{took: make(chan struct{})}
	r, err := rsm.New(rsm.DefaultConfig(), sm)
	if err != nil {
		t.Fatal(err)
	}
	r.Attach(&syncRaft{rsm: r, applied: sm.took})
	defer r.Kill()
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := r.Submit(ctx, cmdInc)
		cancel()
		if err != nil || res != uint64(i+1) {
			t.Fatalf("Submit %d = %v, %v; want %d", i, res, err, i+1)
		}
	}
	if n := sm.discarded.Load(); n != 0 {
		t.Fatalf("%d commands with a future applied without their result", n)
	}
}
