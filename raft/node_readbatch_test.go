package raft

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Node tests of read batching (Config.ReadBatchWindow) on a fake clock:
// the window's time passes only when the test advances the clock.

// readBatchCluster is three nodes on one fake clock with a window of
// 40 ms, a leader elected and its no-op committed, and the window of any
// earlier round closed.
func readBatchCluster(t *testing.T) (*cluster, *fakeClock, int) {
	t.Helper()
	fc := newFakeClock()
	cl := newCluster(t, 3, func(c *Config) {
		c.clock = fc
		c.ReadBatchWindow = 40 * time.Millisecond
	})
	l := cl.leader()
	cl.commit("setup")
	fc.Advance(t, cl.cfg(0).ReadBatchWindow)
	return cl, fc, l
}

// readAsync starts a ReadIndex at node i and returns its result channel.
func readAsync(n *Node) <-chan error {
	ch := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := n.ReadIndex(ctx)
		ch <- err
	}()
	return ch
}

func waitedReads(n *Node) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.readWaiters)
}

// rpcGate holds RPCs of one node at the cluster's network until opened.
type rpcGate struct {
	mu      sync.Mutex
	release chan struct{} // nil once open
	blocked atomic.Int32  // RPCs that were held
}

// gateRPCs holds every RPC node from sends (those for which hold, if not
// nil, reports true) until the gate is opened; the test's end opens it and
// takes it off the network.
func gateRPCs(t *testing.T, cl *cluster, from int, hold func() bool) *rpcGate {
	g := &rpcGate{release: make(chan struct{})}
	fn := func(f, _ int) {
		if f != from || (hold != nil && !hold()) {
			return
		}
		g.mu.Lock()
		ch := g.release
		g.mu.Unlock()
		if ch != nil {
			g.blocked.Add(1)
			<-ch
		}
	}
	cl.net.gate.Store(&fn)
	t.Cleanup(func() {
		cl.net.gate.CompareAndSwap(&fn, nil)
		g.open()
	})
	return g
}

// open lets the held RPCs and every later one through.
func (g *rpcGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.release != nil {
		close(g.release)
		g.release = nil
	}
}

// TestReadBatchLoneReaderNotHeld: a reader alone (nothing in flight when
// its read arrives) never waits for the window: reads one after another
// complete at the leader and at a follower while the clock stands still,
// each with its own round or request.
func TestReadBatchLoneReaderNotHeld(t *testing.T) {
	cl, _, l := readBatchCluster(t)
	f := (l + 1) % 3
	for _, i := range []int{l, f} {
		n := cl.nodes[i]
		before := n.Status()
		for k := range 10 {
			select {
			case err := <-readAsync(n):
				if err != nil {
					t.Fatalf("node %d read %d: %v", i, k, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("node %d: lone read %d not answered with the clock stopped", i, k)
			}
		}
		after := n.Status()
		if got := after.ReadRounds + after.ReadIndexRequests - before.ReadRounds - before.ReadIndexRequests; got != 10 {
			t.Fatalf("node %d: %d rounds and requests for 10 lone reads, want 10", i, got)
		}
	}
}

// TestReadBatchHoldsBacklog: reads that arrive while a round (at the
// leader) or a read-index request (at a follower) is in flight wait for the
// window of that one to end, then share one round or request.
func TestReadBatchHoldsBacklog(t *testing.T) {
	for _, at := range []string{"leader", "follower"} {
		t.Run(at, func(t *testing.T) {
			cl, fc, l := readBatchCluster(t)
			i := l
			if at == "follower" {
				i = (l + 1) % 3
			}
			n := cl.nodes[i]
			// Hold every RPC node i sends until opened.
			gate := gateRPCs(t, cl, i, nil)
			before := n.Status()

			// The first read's round (or request) starts and its RPC is
			// held at the gate: it stays in flight.
			first := readAsync(n)
			if !pollUntil(time.Now().Add(10*time.Second), func() bool {
				st := n.Status()
				return st.ReadRounds+st.ReadIndexRequests > before.ReadRounds+before.ReadIndexRequests && gate.blocked.Load() > 0
			}) {
				t.Fatal("the first read's round was not sent")
			}
			more := []<-chan error{readAsync(n), readAsync(n), readAsync(n)}
			if !pollUntil(time.Now().Add(10*time.Second), func() bool { return waitedReads(n) == 4 }) {
				t.Fatalf("%d reads waiting, want 4", waitedReads(n))
			}
			timers := fc.timers()
			gate.open()
			select {
			case err := <-first:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the first read was not answered")
			}
			// The next round waits for the window's end, with a timer.
			if !pollUntil(time.Now().Add(10*time.Second), func() bool { return fc.timers() > timers }) {
				t.Fatal("no wake-up set for the held reads")
			}
			if got := waitedReads(n); got != 3 {
				t.Fatalf("%d reads waiting inside the window, want the 3 that came while the first was in flight", got)
			}
			fc.Advance(t, cl.cfg(0).ReadBatchWindow)
			for k, ch := range more {
				select {
				case err := <-ch:
					if err != nil {
						t.Fatalf("held read %d: %v", k, err)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("held read %d not answered after the window", k)
				}
			}
			after := n.Status()
			if got := after.ReadRounds + after.ReadIndexRequests - before.ReadRounds - before.ReadIndexRequests; got != 2 {
				t.Fatalf("%d rounds and requests for 1 + 3 reads, want 2", got)
			}
		})
	}
}

// TestReadBatchWindowOff: with ReadBatchWindow 0 nothing is held: reads
// that arrived while a round was in flight start the next one at once,
// with the clock stopped.
func TestReadBatchWindowOff(t *testing.T) {
	fc := newFakeClock()
	cl := newCluster(t, 3, func(c *Config) {
		c.clock = fc
		c.ReadBatchWindow = 0
	})
	l := cl.leader()
	cl.commit("setup")
	n := cl.nodes[l]
	gate := gateRPCs(t, cl, l, nil)
	first := readAsync(n)
	if !pollUntil(time.Now().Add(10*time.Second), func() bool { return gate.blocked.Load() > 0 }) {
		t.Fatal("the first read's round was not sent")
	}
	second := readAsync(n)
	if !pollUntil(time.Now().Add(10*time.Second), func() bool { return waitedReads(n) == 2 }) {
		t.Fatalf("%d reads waiting, want 2", waitedReads(n))
	}
	gate.open()
	for _, ch := range []<-chan error{first, second} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("read not answered with the window off and the clock stopped")
		}
	}
}
