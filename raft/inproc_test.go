package raft

import (
	"context"
	"errors"
	"fmt"
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

// testApp is an Application that records what it applied and lets callers
// wait for an index. Its state is the list of applied commands; a snapshot
// is that list, newline-separated.
type testApp struct {
	mu sync.Mutex // guards every field below
	// node answers SnapshotNeeded when set.
	node     *Node
	cmds     []string
	last     uint64
	snaps    int
	waiters  map[uint64][]chan struct{}
	errs     []error
	askCount int
}

func newTestApp() *testApp { return &testApp{waiters: make(map[uint64][]chan struct{})} }

func (a *testApp) Apply(msg ApplyMsg) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if msg.Index <= a.last {
		a.errs = append(a.errs, fmt.Errorf("apply %d after %d", msg.Index, a.last))
	}
	if msg.IsSnapshot {
		a.snaps++
		a.cmds = decodeCmds(msg.Snapshot)
	} else {
		a.cmds = append(a.cmds, string(msg.Command))
	}
	a.last = msg.Index
	if !msg.IsSnapshot {
		// Waiters wait for command indexes, so only this one can be due.
		for _, w := range a.waiters[msg.Index] {
			close(w)
		}
		delete(a.waiters, msg.Index)
		return
	}
	for i, ws := range a.waiters {
		if i <= a.last {
			for _, w := range ws {
				close(w)
			}
			delete(a.waiters, i)
		}
	}
}

func (a *testApp) SnapshotNeeded(lastApplied uint64) {
	a.mu.Lock()
	a.askCount++
	n, data := a.node, encodeCmds(a.cmds)
	last := a.last
	a.mu.Unlock()
	if n != nil {
		if err := n.SaveSnapshot(last, data); err != nil {
			a.mu.Lock()
			a.errs = append(a.errs, err)
			a.mu.Unlock()
		}
	}
}

func encodeCmds(cmds []string) []byte {
	var b []byte
	for _, c := range cmds {
		b = append(b, c...)
		b = append(b, '\n')
	}
	return b
}

func decodeCmds(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == '\n' {
			out = append(out, string(b[start:i]))
			start = i + 1
		}
	}
	return out
}

// wait returns a channel closed once index is applied.
func (a *testApp) wait(index uint64) <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch := make(chan struct{})
	if a.last >= index {
		close(ch)
		return ch
	}
	a.waiters[index] = append(a.waiters[index], ch)
	return ch
}

func (a *testApp) commands() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.cmds...)
}

// cluster is a set of nodes on an inprocNet with memory stores.
type cluster struct {
	t      testing.TB
	net    *inprocNet
	cfg    func(id int) Config
	nodes  []*Node
	apps   []*testApp
	stores []persist.Store
}

func testConfig(id, peers int) Config {
	c := DefaultConfig()
	c.ID, c.Peers = id, peers
	c.Seed = uint64(id + 1)
	return c
}

func newCluster(t testing.TB, n int, tweak func(*Config)) *cluster {
	return newClusterStores(t, n, tweak, func(int) persist.Store { return persist.NewMemory() })
}

// newClusterStores is newCluster with stores from open; crash needs
// *persist.Memory stores.
func newClusterStores(t testing.TB, n int, tweak func(*Config), open func(i int) persist.Store) *cluster {
	cl := &cluster{t: t, net: newInprocNet(n), nodes: make([]*Node, n), apps: make([]*testApp, n), stores: make([]persist.Store, n)}
	cl.cfg = func(id int) Config {
		c := testConfig(id, n)
		if tweak != nil {
			tweak(&c)
		}
		return c
	}
	for i := range n {
		cl.stores[i] = open(i)
		cl.start(i)
	}
	t.Cleanup(cl.killAll)
	return cl
}

func (cl *cluster) start(i int) {
	cl.apps[i] = newTestApp()
	n, err := New(cl.cfg(i), &inprocTransport{net: cl.net, from: i}, cl.stores[i], cl.apps[i])
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
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
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
		if count == 1 {
			return best
		}
		time.Sleep(10 * time.Millisecond)
	}
	cl.t.Fatal("no leader within 5s")
	return -1
}

// commit proposes cmd at the leader until it is applied by every live node.
func (cl *cluster) commit(cmd string) uint64 {
	cl.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		l := cl.leader()
		idx, _, ok := cl.nodes[l].Start([]byte(cmd))
		if !ok {
			continue
		}
		all := true
		for i, a := range cl.apps {
			if cl.nodes[i] == nil {
				continue
			}
			select {
			case <-a.wait(idx):
			case <-time.After(2 * time.Second):
				all = false
			}
		}
		if all {
			return idx
		}
	}
	cl.t.Fatalf("%q not committed within 10s", cmd)
	return 0
}
