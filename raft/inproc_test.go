package raft

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
)

// errUnreachable is what the in-process transport returns for a cut link or
// a missing node.
var errUnreachable = errors.New("inproc: peer unreachable")

// inprocNet connects nodes of one process by calling each other's handlers
// directly; links can be cut. It is the minimal transport of the node tests
// and benchmarks (the lab's simulated network lives in rafttest).
type inprocNet struct {
	mu    sync.RWMutex // guards nodes and cut
	nodes []*Node
	cut   [][]bool
	// rpcs counts the RPCs each replica sent.
	rpcs []atomic.Int64
	// gate, if set, runs before each RPC is delivered (a test may block
	// it there).
	gate atomic.Pointer[func(from, to int)]
}

func newInprocNet(n int) *inprocNet {
	in := &inprocNet{nodes: make([]*Node, n), cut: make([][]bool, n), rpcs: make([]atomic.Int64, n)}
	for i := range in.cut {
		in.cut[i] = make([]bool, n)
	}
	return in
}

func (in *inprocNet) set(i int, n *Node) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.nodes[i] = n
}

func (in *inprocNet) isolate(i int, cut bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for j := range in.cut {
		in.cut[i][j], in.cut[j][i] = cut, cut
	}
}

func (in *inprocNet) peer(from, to int) (*Node, error) {
	in.mu.RLock()
	defer in.mu.RUnlock()
	if n := in.nodes[to]; n != nil && !in.cut[from][to] {
		return n, nil
	}
	return nil, errUnreachable
}

// call counts an RPC from -> to and returns its target.
func (in *inprocNet) call(from, to int) (*Node, error) {
	in.rpcs[from].Add(1)
	if g := in.gate.Load(); g != nil {
		(*g)(from, to)
	}
	return in.peer(from, to)
}

// reply drops the answer if the link was cut while the call ran.
func reply[R any](in *inprocNet, from, to int, r *R, err error) (*R, error) {
	if err != nil {
		return nil, err
	}
	if _, err := in.peer(from, to); err != nil {
		return nil, err
	}
	return r, nil
}

type inprocTransport struct {
	net  *inprocNet
	from int
}

var _ Transport = (*inprocTransport)(nil)

func (t *inprocTransport) AppendEntries(ctx context.Context, peer int, req *AppendEntriesRequest) (*AppendEntriesResponse, error) {
	n, err := t.net.call(t.from, peer)
	if err != nil {
		return nil, err
	}
	r, err := n.HandleAppendEntries(ctx, req)
	return reply(t.net, t.from, peer, r, err)
}

func (t *inprocTransport) RequestVote(ctx context.Context, peer int, req *RequestVoteRequest) (*RequestVoteResponse, error) {
	n, err := t.net.call(t.from, peer)
	if err != nil {
		return nil, err
	}
	r, err := n.HandleRequestVote(ctx, req)
	return reply(t.net, t.from, peer, r, err)
}

func (t *inprocTransport) InstallSnapshot(ctx context.Context, peer int, req *InstallSnapshotRequest) (*InstallSnapshotResponse, error) {
	n, err := t.net.call(t.from, peer)
	if err != nil {
		return nil, err
	}
	r, err := n.HandleInstallSnapshot(ctx, req)
	return reply(t.net, t.from, peer, r, err)
}

func (t *inprocTransport) TimeoutNow(ctx context.Context, peer int, req *TimeoutNowRequest) (*TimeoutNowResponse, error) {
	n, err := t.net.call(t.from, peer)
	if err != nil {
		return nil, err
	}
	r, err := n.HandleTimeoutNow(ctx, req)
	return reply(t.net, t.from, peer, r, err)
}

func (t *inprocTransport) ReadIndex(ctx context.Context, peer int, req *ReadIndexRequest) (*ReadIndexResponse, error) {
	n, err := t.net.call(t.from, peer)
	if err != nil {
		return nil, err
	}
	r, err := n.HandleReadIndex(ctx, req)
	return reply(t.net, t.from, peer, r, err)
}

// hopNet gives inprocNet the shape of hashicorp/raft's InmemTransport, for
// benchmarks that compare the two libraries rather than their transports:
// every request crosses a channel to a goroutine of the receiving replica,
// which calls the handler, and the answer crosses a channel back to the
// waiting caller. Each replica serves with a pool of goroutines, so that
// requests are served concurrently as a network server would (hashicorp's
// follower serves them one at a time on its main goroutine, which also
// stores the entries; ours hands that to its replication loop).
type hopNet struct {
	in   *inprocNet
	reqs []chan hopCall // per receiving replica
	quit chan struct{}
	wg   sync.WaitGroup
}

// hopCall is one request in transit: serve runs on the receiver's
// goroutine and done carries its error back.
type hopCall struct {
	serve func() error
	done  chan error
}

func newHopNet(in *inprocNet, servers int) *hopNet {
	h := &hopNet{in: in, reqs: make([]chan hopCall, len(in.nodes)), quit: make(chan struct{})}
	for i := range h.reqs {
		h.reqs[i] = make(chan hopCall)
		for range servers {
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				for {
					select {
					case <-h.quit:
						return
					case c := <-h.reqs[i]:
						c.done <- c.serve()
					}
				}
			}()
		}
	}
	return h
}

// stop ends the serving goroutines and waits for them.
func (h *hopNet) stop() {
	close(h.quit)
	h.wg.Wait()
}

// call runs serve on one of peer's goroutines and waits for it.
func (h *hopNet) call(ctx context.Context, peer int, serve func() error) error {
	c := hopCall{serve: serve, done: make(chan error, 1)}
	select {
	case h.reqs[peer] <- c:
	case <-ctx.Done():
		return ctx.Err()
	case <-h.quit:
		return errUnreachable
	}
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hopDo runs f on one of peer's goroutines; the answer is read only once
// the serving goroutine handed it over.
func hopDo[R any](h *hopNet, ctx context.Context, peer int, f func() (*R, error)) (*R, error) {
	var r *R
	if err := h.call(ctx, peer, func() (err error) { r, err = f(); return err }); err != nil {
		return nil, err
	}
	return r, nil
}

// hopTransport is inprocTransport behind a hopNet.
type hopTransport struct {
	hop   *hopNet
	inner inprocTransport
}

var _ Transport = (*hopTransport)(nil)

func (t *hopTransport) AppendEntries(ctx context.Context, peer int, req *AppendEntriesRequest) (*AppendEntriesResponse, error) {
	return hopDo(t.hop, ctx, peer, func() (*AppendEntriesResponse, error) { return t.inner.AppendEntries(ctx, peer, req) })
}

func (t *hopTransport) RequestVote(ctx context.Context, peer int, req *RequestVoteRequest) (*RequestVoteResponse, error) {
	return hopDo(t.hop, ctx, peer, func() (*RequestVoteResponse, error) { return t.inner.RequestVote(ctx, peer, req) })
}

func (t *hopTransport) InstallSnapshot(ctx context.Context, peer int, req *InstallSnapshotRequest) (*InstallSnapshotResponse, error) {
	return hopDo(t.hop, ctx, peer, func() (*InstallSnapshotResponse, error) { return t.inner.InstallSnapshot(ctx, peer, req) })
}

func (t *hopTransport) TimeoutNow(ctx context.Context, peer int, req *TimeoutNowRequest) (*TimeoutNowResponse, error) {
	return hopDo(t.hop, ctx, peer, func() (*TimeoutNowResponse, error) { return t.inner.TimeoutNow(ctx, peer, req) })
}

func (t *hopTransport) ReadIndex(ctx context.Context, peer int, req *ReadIndexRequest) (*ReadIndexResponse, error) {
	return hopDo(t.hop, ctx, peer, func() (*ReadIndexResponse, error) { return t.inner.ReadIndex(ctx, peer, req) })
}

// cluster is a set of nodes on an inprocNet with memory stores.
type cluster struct {
	t   testing.TB
	net *inprocNet
	// hop, when set, carries every RPC (newHopCluster).
	hop    *hopNet
	cfg    func(id int) Config
	nodes  []*Node
	apps   []*testApp
	stores []persist.Store
	// clock, when the nodes run on a fake clock (Config.clock), is it: the
	// helpers that wait advance it instead of letting real time pass.
	clock *fakeClock
}

func testConfig(id, peers int) Config {
	c := DefaultConfig()
	c.ID, c.Peers = id, peers
	c.Seed = uint64(id + 1)
	// RAFT_TEST_LOG=1 shows the nodes' logs (elections, role changes).
	if os.Getenv("RAFT_TEST_LOG") != "" {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return c
}

func newCluster(t testing.TB, n int, tweak func(*Config)) *cluster {
	return newClusterStores(t, n, tweak, func(int) persist.Store { return persist.NewMemory() })
}

// newClusterStores is newCluster with stores from open; crash needs
// *persist.Memory stores.
func newClusterStores(t testing.TB, n int, tweak func(*Config), open func(i int) persist.Store) *cluster {
	return newClusterOn(t, newInprocNet(n), nil, n, tweak, open)
}

func newClusterOn(t testing.TB, in *inprocNet, hop *hopNet, n int, tweak func(*Config), open func(i int) persist.Store) *cluster {
	cl := &cluster{t: t, net: in, hop: hop, nodes: make([]*Node, n), apps: make([]*testApp, n), stores: make([]persist.Store, n)}
	cl.cfg = func(id int) Config {
		c := testConfig(id, n)
		if tweak != nil {
			tweak(&c)
		}
		return c
	}
	cl.clock, _ = cl.cfg(0).clock.(*fakeClock)
	for i := range n {
		cl.stores[i] = open(i)
		cl.start(i)
	}
	t.Cleanup(cl.killAll)
	return cl
}

// newFakeClockCluster is newCluster with every node on one fake clock.
func newFakeClockCluster(t testing.TB, n int, tweak func(*Config)) *cluster {
	fc := newFakeClock()
	return newCluster(t, n, func(c *Config) {
		c.clock = fc
		if tweak != nil {
			tweak(c)
		}
	})
}

// waitUntil waits for cond, for at most timeout of real time, and reports
// whether it holds. On a fake clock each try advances the clock by one tick
// and then gives the nodes up to a tick of real time to act on it
// (returning as soon as cond holds), so the clock never runs ahead of what
// the nodes could do in real time.
func (cl *cluster) waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		now := time.Now()
		if now.After(deadline) {
			return false
		}
		if cl.clock != nil {
			tick := cl.cfg(0).TickInterval
			cl.clock.Advance(cl.t, tick)
			pollUntil(now.Add(tick), cond)
		} else {
			pollUntil(now.Add(5*time.Millisecond), cond)
		}
	}
	return true
}

// pollUntil polls cond every 100 µs until it holds or until passes.
func pollUntil(until time.Time, cond func() bool) bool {
	for !cond() {
		if time.Now().After(until) {
			return false
		}
		time.Sleep(100 * time.Microsecond)
	}
	return true
}

// newHopCluster is newCluster over a hopNet.
func newHopCluster(t testing.TB, n int, tweak func(*Config)) *cluster {
	in := newInprocNet(n)
	servers := (n - 1) * DefaultConfig().RPCWorkersPerPeer
	if tweak != nil {
		c := DefaultConfig()
		tweak(&c)
		servers = (n - 1) * c.RPCWorkersPerPeer
	}
	hop := newHopNet(in, servers)
	// Registered first, so it runs after the nodes are killed.
	t.Cleanup(hop.stop)
	return newClusterOn(t, in, hop, n, tweak, func(int) persist.Store { return persist.NewMemory() })
}

func (cl *cluster) transport(i int) Transport {
	tr := inprocTransport{net: cl.net, from: i}
	if cl.hop != nil {
		return &hopTransport{hop: cl.hop, inner: tr}
	}
	return &tr
}

func (cl *cluster) start(i int) {
	cl.apps[i] = newTestApp()
	n, err := New(cl.cfg(i), cl.transport(i), cl.stores[i], cl.apps[i])
	if err != nil {
		cl.t.Fatal(err)
	}
	cl.apps[i].mu.Lock()
	cl.apps[i].node = n
	cl.apps[i].mu.Unlock()
	cl.nodes[i] = n
	cl.net.set(i, n)
}

// crash kills node i and replaces its store with a copy of what it stored.
func (cl *cluster) crash(i int) {
	cl.net.set(i, nil)
	if err := cl.nodes[i].Kill(); err != nil {
		cl.t.Errorf("node %d: %v", i, err)
	}
	cl.stores[i] = cl.stores[i].(*persist.Memory).Clone()
	cl.nodes[i] = nil
}

func (cl *cluster) killAll() {
	for i, n := range cl.nodes {
		if n != nil {
			cl.net.set(i, nil)
			if err := n.Kill(); err != nil {
				cl.t.Errorf("node %d: %v", i, err)
			}
		}
	}
	for i, a := range cl.apps {
		if a != nil {
			a.mu.Lock()
			if len(a.errs) > 0 {
				cl.t.Errorf("app %d: %v", i, a.errs)
			}
			a.mu.Unlock()
		}
	}
}

// leader waits for exactly one node to claim leadership of the highest
// term, and returns it.
func (cl *cluster) leader() int {
	cl.t.Helper()
	l := -1
	if !cl.waitUntil(5*time.Second, func() bool {
		best, bestTerm, count := -1, uint64(0), 0
		for i, n := range cl.nodes {
			if n == nil {
				continue
			}
			if term, ok := n.State(); ok {
				switch {
				case term > bestTerm:
					best, bestTerm, count = i, term, 1
				case term == bestTerm:
					count++
				}
			}
		}
		l = best
		return count == 1
	}) {
		cl.t.Fatal("no leader within 5s")
	}
	return l
}

// mayCommit reports whether the command cmd, proposed at idx in term, can
// still commit: no leader is known yet, or the leader's log holds the entry
// (or has compacted it into a snapshot whose application applied cmd).
func (cl *cluster) mayCommit(idx, term uint64, cmd string) bool {
	l, best := -1, uint64(0)
	for i, n := range cl.nodes {
		if n == nil {
			continue
		}
		if t, ok := n.State(); ok && t >= best {
			l, best = i, t
		}
	}
	if l < 0 {
		return true
	}
	n := cl.nodes[l]
	n.mu.Lock()
	held, compacted := n.core.log.matchTerm(idx, term), idx < n.core.log.snap.Index
	n.mu.Unlock()
	return held || compacted && slices.Contains(cl.apps[l].commands(), cmd)
}

// commit proposes cmd at the leader until it is applied by every live node.
func (cl *cluster) commit(cmd string) uint64 {
	cl.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		l := cl.leader()
		idx, term, ok := cl.nodes[l].Start([]byte(cmd))
		if !ok {
			continue
		}
		for time.Now().Before(deadline) {
			if cl.waitUntil(2*time.Second, func() bool {
				for i, a := range cl.apps {
					if cl.nodes[i] != nil && a.lastApplied() < idx {
						return false
					}
				}
				return true
			}) {
				return idx
			}
			// A node is slow (catching up from a snapshot on a busy
			// machine, say): proposing again while the entry can still
			// commit would apply the command twice.
			if !cl.mayCommit(idx, term, cmd) {
				break
			}
		}
	}
	cl.t.Fatalf("%q not committed within 10s", cmd)
	return 0
}
