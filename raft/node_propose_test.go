package raft

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitQueued waits until n has k Start calls queued.
func waitQueued(t *testing.T, n *Node, k int32) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); n.props.n.Load() != k; time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d Start calls queued, want %d", n.props.n.Load(), k)
		}
	}
}

// TestNodeStartQueuedWhileLocked: Start calls that find the node's lock
// taken wait in the queue, not on the lock, and are proposed in the order
// they came once the holder lets go, even if the holder does not propose
// them itself (a plain Unlock: the loop serves them).
func TestNodeStartQueuedWhileLocked(t *testing.T) {
	cl := newCluster(t, 3, nil)
	cl.commit("warmup")
	n := cl.nodes[cl.leader()]
	type result struct {
		index, term uint64
		ok          bool
	}
	const calls = 3
	results := make([]chan result, calls)
	n.mu.Lock()
	for i := range calls {
		results[i] = make(chan result, 1)
		go func() {
			idx, term, ok := n.Start(fmt.Appendf(nil, "queued-%d", i))
			results[i] <- result{idx, term, ok}
		}()
		waitQueued(t, n, int32(i+1))
	}
	select {
	case r := <-results[0]:
		n.mu.Unlock()
		t.Fatalf("Start returned %+v while the lock was held", r)
	case <-time.After(20 * time.Millisecond):
	}
	n.mu.Unlock()
	var first result
	for i := range calls {
		var r result
		select {
		case r = <-results[i]:
		case <-time.After(5 * time.Second):
			t.Fatalf("queued Start %d not answered", i)
		}
		if !r.ok {
			t.Fatalf("queued Start %d on the leader = %+v", i, r)
		}
		if i == 0 {
			first = r
		} else if r.index != first.index+uint64(i) || r.term != first.term {
			t.Fatalf("queued Start %d = %+v, want index %d in term %d (arrival order)", i, r, first.index+uint64(i), first.term)
		}
	}
	select {
	case <-cl.apps[cl.leader()].wait(first.index + calls - 1):
	case <-time.After(5 * time.Second):
		t.Fatalf("queued proposals not applied")
	}
	// Nothing else was proposed: the queued commands are the last ones
	// applied, in arrival order.
	cmds := cl.apps[cl.leader()].commands()
	for i := range calls {
		if got, want := cmds[len(cmds)-calls+i], fmt.Sprintf("queued-%d", i); got != want {
			t.Fatalf("applied %q, want the queued commands in order at the end", cmds)
		}
	}
}

// TestNodeStartQueuedOnFollower: a queued Start on a follower is refused
// with the follower's term, like a direct one.
func TestNodeStartQueuedOnFollower(t *testing.T) {
	cl := newCluster(t, 3, nil)
	cl.commit("warmup")
	f := (cl.leader() + 1) % 3
	n := cl.nodes[f]
	term, _ := n.State()
	done := make(chan [2]uint64, 1)
	n.mu.Lock()
	go func() {
		idx, tm, ok := n.Start([]byte("x"))
		if ok {
			idx = ^uint64(0)
		}
		done <- [2]uint64{idx, tm}
	}()
	waitQueued(t, n, 1)
	n.mu.Unlock()
	select {
	case r := <-done:
		if r[0] != 0 || r[1] < term {
			t.Fatalf("queued Start on a follower = index %d, term %d; want refused in term >= %d", r[0], r[1], term)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("queued Start on a follower not answered")
	}
}

// TestNodeStartAfterKillQueuesNothing: a Start on a killed node that finds
// n.mu taken is refused at once and queues nothing. Queued, it would wait
// for nobody: callers retrying in a loop grew the queue without bound, and
// the goroutines taking n.mu (the daemons Kill waits for among them) served
// ever larger rounds of it, which hung TestNodeStartDuringKill under load.
func TestNodeStartAfterKillQueuesNothing(t *testing.T) {
	cl := newCluster(t, 3, nil)
	cl.commit("warmup")
	l := cl.leader()
	n := cl.nodes[l]
	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	cl.nodes[l] = nil
	n.mu.Lock() // every Start takes the queued path
	defer n.mu.Unlock()
	for range 1000 {
		if idx, _, ok := n.Start([]byte("late")); ok || idx != 0 {
			t.Fatalf("Start on a killed node = index %d, ok %v; want refused", idx, ok)
		}
	}
	if q := n.props.n.Load(); q != 0 {
		t.Fatalf("%d proposals queued on a killed node, want 0", q)
	}
}

// TestNodeStartDuringKill: Start calls racing with Kill (direct or queued)
// all return, and Start on the killed node is refused.
func TestNodeStartDuringKill(t *testing.T) {
	cl := newCluster(t, 3, nil)
	cl.commit("warmup")
	l := cl.leader()
	n := cl.nodes[l]
	var (
		wg       sync.WaitGroup
		accepted atomic.Int64
	)
	stop := make(chan struct{})
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				idx, _, ok := n.Start([]byte("load"))
				if ok && idx == 0 {
					t.Error("Start accepted a command at index 0")
				}
				if ok {
					accepted.Add(1)
				}
			}
		}()
	}
	// Kill once the proposers contend for the lock.
	for deadline := time.Now().Add(5 * time.Second); accepted.Load() < 200; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d proposals accepted in 5s", accepted.Load())
		}
	}
	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Start calls still blocked after Kill")
	}
	if _, _, ok := n.Start([]byte("late")); ok {
		t.Fatal("Start on a killed node accepted a command")
	}
	cl.nodes[l] = nil
}
