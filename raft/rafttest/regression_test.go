package rafttest

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ruaft/ruaft/internal/simnet"
	"github.com/ruaft/ruaft/raft"
)

// Regression tests from the Rust project, driven through the network's
// interceptor.

// drainer takes every held call off the network and lets decide handle it,
// until stop is called.
type drainer struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startDrainer(net *simnet.Network, decide func(h *simnet.Held)) *drainer {
	ctx, cancel := context.WithCancel(context.Background())
	d := &drainer{cancel: cancel}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			h, err := net.NextHeld(ctx)
			if err != nil {
				return
			}
			decide(h)
		}
	}()
	return d
}

func (d *drainer) stop() {
	d.cancel()
	d.wg.Wait()
}

// TestDelayedCommitConsistency: a leader cut off in an old term later learns
// that its own entry committed (the replies to its AppendEntries arrive
// late). Meanwhile a new leader committed a later write. A read served by
// the old leader must fail: a commit index that advances is no proof of
// leadership, and answering would return a stale read point.
func TestDelayedCommitConsistency(t *testing.T) {
	const servers = 3
	// Without check-quorum the cut-off leader keeps believing it leads,
	// which is what makes the stale read possible.
	c := NewCluster(t, servers, Options{Configure: func(cfg *raft.Config) { cfg.CheckQuorum = false }})

	c.One(c.RandCmd(), servers, true)
	l1 := c.CheckOneLeader()
	term1, _ := c.State(l1)

	x := Cmd(424242)
	var mu sync.Mutex // guards heldX
	heldX := make(map[int]*simnet.Held)
	gotX := make(chan struct{})
	// Every call from or to the old leader is held: the AppendEntries that
	// carry x are executed with their replies held; the rest fail.
	c.Net().Intercept(func(info simnet.CallInfo) bool {
		return CallFrom(info) == l1 || CallTo(info) == l1
	})
	var xIndex uint64
	d := startDrainer(c.Net(), func(h *simnet.Held) {
		to := CallTo(h.CallInfo)
		if CallFrom(h.CallInfo) == l1 && h.Method == MethodAppendEntries {
			req, err := DecodeAppendEntries(h.Request)
			if err != nil {
				t.Errorf("decode: %v", err)
				h.Fail()
				return
			}
			for _, e := range req.Entries {
				mu.Lock()
				want := heldX[to] == nil && xIndex != 0 && e.Index == xIndex && bytes.Equal(e.Data, x)
				mu.Unlock()
				if want {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err := h.Execute(ctx)
					cancel()
					if err != nil {
						h.Fail()
						return
					}
					mu.Lock()
					heldX[to] = h
					if len(heldX) == servers-1 {
						close(gotX)
					}
					mu.Unlock()
					return
				}
			}
		}
		h.Fail()
	})
	defer d.stop()

	mu.Lock()
	ix, _, ok := c.Start(l1, x)
	xIndex = ix
	mu.Unlock()
	if !ok {
		t.Fatalf("leader %d rejected Start", l1)
	}
	// The first AppendEntries carrying x may have been failed before
	// xIndex was set; the leader retries.
	select {
	case <-gotX:
	case <-time.After(10 * time.Second):
		t.Fatalf("x never reached both followers")
	}

	// The followers elect a new leader, which commits x (with its no-op)
	// and then y.
	l2 := -1
	if !waitFor(5*time.Second, func() bool {
		for i := range servers {
			if tm, isLeader := c.State(i); i != l1 && isLeader && tm > term1 {
				l2 = i
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no new leader among the followers")
	}
	term2, _ := c.State(l2)
	y := Cmd(777777)
	iy, _, ok := c.Start(l2, y)
	if !ok {
		t.Fatalf("new leader %d rejected Start", l2)
	}
	if cmd, ok := c.Wait(iy, servers-1, term2); !ok || !bytes.Equal(cmd, y) {
		t.Fatalf("y not committed at %d by the new leader: %q %v", iy, cmd, ok)
	}
	if nd, cmd := c.NCommitted(ix); nd != servers-1 || !bytes.Equal(cmd, x) {
		t.Fatalf("x not committed at %d: %d servers, %q", ix, nd, cmd)
	}

	// The old leader now learns, late, that its followers stored x.
	mu.Lock()
	for _, h := range heldX {
		h.Release()
	}
	mu.Unlock()
	if waitFor(2*time.Second, func() bool { return c.Node(l1).Status().Commit >= ix }) {
		t.Logf("old leader %d learned that index %d committed; y is at %d", l1, ix, iy)
	} else {
		t.Logf("old leader %d did not advance its commit to %d", l1, ix)
	}
	if _, isLeader := c.State(l1); !isLeader {
		t.Logf("old leader %d no longer believes it leads", l1)
	}

	// A read at the old leader, still cut off, must fail.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	r, err := c.Node(l1).ReadIndex(ctx)
	cancel()
	if err == nil {
		t.Fatalf("cut-off old leader answered ReadIndex with %d (y committed at %d): stale read", r, iy)
	}

	// Reconnected, it learns of the new term and must still refuse.
	c.Net().Intercept(nil)
	d.stop()
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	r, err = c.Node(l1).ReadIndex(ctx)
	cancel()
	if err == nil && r < iy {
		t.Fatalf("old leader answered ReadIndex with %d, before y at %d: stale read", r, iy)
	}
	c.One(c.RandCmd(), servers, true)
}

// TestInterceptorSmoke: every RPC goes through the interceptor, which
// releases most at once, fails some, executes some and then fails their
// replies, and holds some back to release them out of order. The cluster
// must still agree.
func TestInterceptorSmoke(t *testing.T) {
	const servers = 3
	c := NewCluster(t, servers, Options{})
	c.One(c.RandCmd(), servers, true)

	var mu sync.Mutex // guards later
	var later []*simnet.Held
	var stats [5]int
	c.Net().Intercept(func(simnet.CallInfo) bool { return true })
	d := startDrainer(c.Net(), func(h *simnet.Held) {
		k := c.RandIntN(100)
		switch {
		case k < 55:
			h.Release()
			stats[0]++
		case k < 65:
			h.Fail()
			stats[1]++
		case k < 75:
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if _, err := h.Execute(ctx); err == nil {
				h.Fail()
			}
			cancel()
			stats[2]++
		case k < 85:
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if _, err := h.Execute(ctx); err == nil {
				h.Release()
			}
			cancel()
			stats[3]++
		default:
			mu.Lock()
			later = append(later, h)
			stats[4]++
			// Release the held-back calls newest first.
			if len(later) >= 3 {
				for i := len(later) - 1; i >= 0; i-- {
					later[i].Release()
				}
				later = nil
			}
			mu.Unlock()
		}
	})

	for range 30 {
		c.One(c.RandCmd(), servers, true)
	}
	d.stop()
	c.Net().Intercept(nil)
	mu.Lock()
	for _, h := range later {
		h.Release()
	}
	mu.Unlock()
	c.One(c.RandCmd(), servers, true)
	t.Logf("released %d, failed %d, executed+failed %d, executed+released %d, reordered %d",
		stats[0], stats[1], stats[2], stats[3], stats[4])
	if stats[1] == 0 || stats[2] == 0 || stats[4] == 0 {
		t.Fatalf("the interceptor did not exercise every path: %v", stats)
	}
}
