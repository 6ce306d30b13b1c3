package raft

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
)

// Review tests of the proposal queue (node_propose.go): Start proposes at
// once when n.mu is free and otherwise queues its command for the lock
// holder. The stress test drives many proposers while other goroutines
// hold n.mu outside locked (Status, Subscribe, ReadIndex) and leadership
// moves, and checks what every Start answered against what committed.

// r4App records the committed commands by index.
type r4App struct {
	mu   sync.Mutex // guards byIdx, last and errs
	byIx map[uint64]string
	last uint64
	errs []error
}

func (a *r4App) Apply(msg ApplyMsg) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if msg.IsSnapshot {
		a.errs = append(a.errs, fmt.Errorf("unexpected snapshot at %d", msg.Index))
		return
	}
	if msg.Index <= a.last {
		a.errs = append(a.errs, fmt.Errorf("apply %d after %d", msg.Index, a.last))
	}
	a.last = msg.Index
	a.byIx[msg.Index] = string(msg.Command)
}

func (a *r4App) SnapshotNeeded(uint64) {}

func (a *r4App) applied() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// r4Result is one Start call's answer.
type r4Result struct {
	cmd         string
	index, term uint64
	ok          bool
}

// TestReview4ProposalQueueStress: proposers call Start on the node they
// believe leads, in a tight loop, while (a) goroutines take n.mu outside
// locked (Status, State-polling Subscribe, ReadIndex), so that queued
// proposals depend on the hand-over, and (b) leadership moves (transfers,
// and a leader cut off and healed). Checks:
//   - no Start takes longer than a generous bound (a stranded queued
//     proposal would hang until the next tick or forever);
//   - a command whose Start answered false never commits;
//   - a command that commits commits once, at the index its Start
//     returned, and that Start answered true;
//   - a committed entry at an index some Start returned with term T, if
//     its term is T, holds that Start's command (the index was not given
//     to two commands of one term);
//   - one proposer's commands commit in the order of its Start calls, and
//     within one term its answered indexes increase;
//   - at the end, Kill of the leader under load returns, and every Start
//     running or made after it returns false or an answer given before.
func TestReview4ProposalQueueStress(t *testing.T) {
	const n = 3
	dur := 3 * time.Second
	if testing.Short() {
		dur = time.Second
	}
	in := newInprocNet(n)
	nodes := make([]*Node, n)
	apps := make([]*r4App, n)
	for i := range n {
		apps[i] = &r4App{byIx: map[uint64]string{}}
		cfg := testConfig(i, n)
		cfg.SnapshotThresholdBytes = 0
		nd, err := New(cfg, &inprocTransport{net: in, from: i}, persist.NewMemory(), apps[i])
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = nd
		in.set(i, nd)
	}
	killed := make([]bool, n)
	t.Cleanup(func() {
		for i, nd := range nodes {
			if !killed[i] {
				if err := nd.Kill(); err != nil {
					t.Errorf("node %d: %v", i, err)
				}
			}
		}
	})
	leader := func() int {
		for i, nd := range nodes {
			if _, ok := nd.State(); ok {
				return i
			}
		}
		return -1
	}
	deadline := time.Now().Add(10 * time.Second)
	for leader() < 0 {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(time.Millisecond)
	}

	stop := make(chan struct{})
	// target, when >= 0, is the node every proposer uses (the kill phase).
	var target atomic.Int64
	target.Store(-1)
	var wg sync.WaitGroup
	// inStart[g] is the time proposer g entered Start (0 when not in it).
	const proposers = 24
	var inStart [proposers]atomic.Int64
	results := make([][]r4Result, proposers)
	for g := range proposers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				l := int(target.Load())
				if l < 0 {
					l = leader()
				}
				if l < 0 {
					l = k % n // anyone: an answer false is checked too
				}
				cmd := fmt.Sprintf("%d:%d", g, k)
				inStart[g].Store(time.Now().UnixNano())
				idx, term, ok := nodes[l].Start([]byte(cmd))
				inStart[g].Store(0)
				results[g] = append(results[g], r4Result{cmd: cmd, index: idx, term: term, ok: ok})
				if k%64 == 63 {
					runtime.Gosched()
				}
			}
		}()
	}
	// Lock holders outside locked.
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = nodes[i].Status()
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				_, _ = nodes[i].ReadIndex(ctx)
				cancel()
				_, c := nodes[i].Subscribe()
				c()
			}
		}()
	}
	// Leadership moves.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			case <-time.After(150 * time.Millisecond):
			}
			l := leader()
			if l < 0 {
				continue
			}
			if k%3 == 2 {
				in.isolate(l, true)
				select {
				case <-stop:
				case <-time.After(300 * time.Millisecond):
				}
				in.isolate(l, false)
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = nodes[l].TransferLeadership(ctx, (l+1+k%2)%n)
			cancel()
		}
	}()
	// Watchdog: a Start running for long is stranded.
	var stuck atomic.Value
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			now := time.Now().UnixNano()
			for g := range proposers {
				if s := inStart[g].Load(); s != 0 && time.Duration(now-s) > 3*time.Second {
					stuck.CompareAndSwap(nil, fmt.Sprintf("proposer %d in Start for %v", g, time.Duration(now-s)))
				}
			}
		}
	}()
	time.Sleep(dur)

	// Kill the leader under load (every proposer on it), then stop.
	if l := leader(); l >= 0 {
		target.Store(int64(l))
		time.Sleep(50 * time.Millisecond)
		in.set(l, nil)
		if err := nodes[l].Kill(); err != nil {
			t.Error(err)
		}
		killed[l] = true
		if _, _, ok := nodes[l].Start([]byte("after-kill")); ok {
			t.Error("a killed node accepted a command")
		}
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines did not stop (a Start is stranded?):\n%s", buf[:runtime.Stack(buf, true)])
	}
	if s := stuck.Load(); s != nil {
		t.Fatal(s)
	}

	// Let the survivors commit a last command so everything settles.
	for i := range n {
		in.isolate(i, false)
	}
	var final uint64
	deadline = time.Now().Add(10 * time.Second)
	for final == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no leader commits after the load")
		}
		for i, nd := range nodes {
			if killed[i] {
				continue
			}
			if idx, _, ok := nd.Start([]byte("final")); ok {
				final = idx
				break
			}
		}
		time.Sleep(time.Millisecond)
	}
	deadline = time.Now().Add(10 * time.Second)
	for i := range n {
		for !killed[i] && apps[i].applied() < final {
			if time.Now().After(deadline) {
				t.Fatalf("node %d applied %d, want %d", i, apps[i].applied(), final)
			}
			time.Sleep(time.Millisecond)
		}
	}
	var ref *r4App
	for i, a := range apps {
		a.mu.Lock()
		if len(a.errs) > 0 {
			t.Errorf("app %d: %v", i, a.errs)
		}
		a.mu.Unlock()
		if !killed[i] {
			ref = a
		}
	}
	ref.mu.Lock()
	defer ref.mu.Unlock()
	committedAt := map[string]uint64{}
	for idx, cmd := range ref.byIx {
		if idx > final {
			continue
		}
		if prev, dup := committedAt[cmd]; dup && cmd != "final" {
			t.Errorf("command %q committed twice, at %d and %d", cmd, prev, idx)
		}
		committedAt[cmd] = idx
	}
	okTerm := map[string]uint64{}
	for _, rs := range results {
		for _, r := range rs {
			if r.ok {
				okTerm[r.cmd] = r.term
			}
		}
	}
	var oks, refused, lost int
	for g, rs := range results {
		var lastIdx, lastTerm uint64
		var lastCommitted uint64
		for _, r := range rs {
			at, committed := committedAt[r.cmd]
			switch {
			case !r.ok:
				refused++
				if committed {
					t.Errorf("%q: Start answered false, yet it committed at %d", r.cmd, at)
				}
				continue
			case committed && at != r.index:
				t.Errorf("%q: Start answered index %d term %d, committed at %d", r.cmd, r.index, r.term, at)
			case !committed:
				lost++
			}
			oks++
			if r.term == lastTerm && r.index <= lastIdx {
				t.Errorf("proposer %d: %q got index %d after index %d in the same term %d", g, r.cmd, r.index, lastIdx, r.term)
			}
			lastIdx, lastTerm = r.index, r.term
			if committed {
				if at <= lastCommitted {
					t.Errorf("proposer %d: %q committed at %d, before an earlier command at %d", g, r.cmd, at, lastCommitted)
				}
				lastCommitted = at
			}
			if other, ok := ref.byIx[r.index]; ok && r.index <= final && other != r.cmd && !committed {
				// The index went to another command: that must be of another
				// term (an entry of this Start's term at its index is its own).
				if ot, ok := okTerm[other]; ok && ot == r.term {
					t.Errorf("index %d given to %q and %q, both in term %d", r.index, r.cmd, other, r.term)
				}
			}
		}
	}
	t.Logf("%d Start calls answered true (%d lost to leader changes), %d false; %d commands committed", oks, lost, refused, len(committedAt))
	if oks == 0 || len(committedAt) < 100 {
		t.Fatalf("too little load: %d accepted, %d committed", oks, len(committedAt))
	}
}

// TestReview4QueuedProposalServedAfterRawUnlock: a Start that finds n.mu
// held by a goroutine that releases it without serving the queue (Status,
// Subscribe, the applier and the handlers take n.mu directly) is still
// proposed, without waiting for a tick: the nodes run on a fake clock that
// the test does not advance, so only the loop's kick can serve it. Three
// proposals queued behind the lock are proposed in the order they queued,
// at consecutive indexes.
func TestReview4QueuedProposalServedAfterRawUnlock(t *testing.T) {
	cl := newFakeClockCluster(t, 3, nil)
	cl.commit("a")
	l := cl.leader()
	nd := cl.nodes[l]
	type answer struct {
		k           int
		index, term uint64
		ok          bool
	}
	answers := make(chan answer, 3)
	nd.mu.Lock()
	for k := range 3 {
		go func() {
			i, term, ok := nd.Start([]byte(fmt.Sprint("q", k)))
			answers <- answer{k, i, term, ok}
		}()
		// Queued (n.mu is held) before the next one starts.
		if !pollUntil(time.Now().Add(5*time.Second), func() bool { return nd.props.n.Load() == int32(k+1) }) {
			nd.mu.Unlock()
			t.Fatalf("Start %d did not queue (queue length %d)", k, nd.props.n.Load())
		}
	}
	select {
	case a := <-answers:
		nd.mu.Unlock()
		t.Fatalf("Start %d answered while n.mu was held: %+v", a.k, a)
	default:
	}
	nd.mu.Unlock() // as Status does: no serveQueued
	got := make([]answer, 3)
	for range 3 {
		select {
		case a := <-answers:
			got[a.k] = a
		case <-time.After(10 * time.Second):
			t.Fatal("a queued Start was not served after the lock was released (no tick given)")
		}
	}
	for k, a := range got {
		if !a.ok || a.index != got[0].index+uint64(k) || a.term != got[0].term {
			t.Fatalf("answers %+v: want accepted, consecutive indexes in queue order, one term", got)
		}
	}
	if !cl.waitUntil(5*time.Second, func() bool { return cl.apps[l].lastApplied() >= got[2].index }) {
		t.Fatal("queued commands not applied")
	}
	if cmds := cl.apps[l].commands(); len(cmds) < 4 || fmt.Sprint(cmds[len(cmds)-3:]) != "[q0 q1 q2]" {
		t.Fatalf("applied %v", cmds)
	}
}
