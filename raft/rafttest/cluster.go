package rafttest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ruaft/ruaft/internal/simnet"
	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/persisttest"
	"github.com/ruaft/ruaft/raft"
	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
)

// Timing of the lab's tests.
const (
	// ElectionTimeout is the lab's RaftElectionTimeout: time enough for a
	// leader to be noticed lost and a new one elected.
	ElectionTimeout = time.Second
	// SnapshotInterval is how many indexes the snapshotting applier lets pass
	// between snapshots (the lab's SnapShotInterval).
	SnapshotInterval = 10
	// MaxLogSize is the lab's bound on a server's persisted Raft state (the
	// store's Size) in the snapshot tests.
	MaxLogSize = 2000
)

// TestConfig is the node configuration the harness uses: the defaults with
// the lab's timing (heartbeats about 8 a second, election timeout 300–600 ms).
func TestConfig(id, peers int) raft.Config {
	cfg := raft.DefaultConfig()
	cfg.ID, cfg.Peers = id, peers
	cfg.HeartbeatInterval = 120 * time.Millisecond
	cfg.ElectionTimeoutMin = 300 * time.Millisecond
	cfg.ElectionTimeoutMax = 600 * time.Millisecond
	return cfg
}

// Options configure a Cluster.
type Options struct {
	// Unreliable starts the network in unreliable mode.
	Unreliable bool
	// Snapshots makes each server's application snapshot every
	// SnapshotInterval indexes and whenever the node asks (the lab's 3D
	// applier), and check the snapshots it is given.
	Snapshots bool
	// SnapshotPadBytes adds filler to every snapshot, to make snapshots
	// larger than an InstallSnapshot chunk.
	SnapshotPadBytes int
	// ShortDelays makes calls to unreachable servers fail within 100 ms
	// instead of the lab's default of up to 7 s.
	ShortDelays bool
	// Store, if set, gives each server a store of this kind in its own folder
	// instead of the default persist.Memory; a crash closes it and a restart
	// reopens it (persisttest.Slot). Plugin kinds need persisttest.Main as
	// the package's TestMain.
	Store *persisttest.Factory
	// Configure, if set, adjusts each node's configuration before New.
	Configure func(*raft.Config)
	// Voters, if above 0, bootstraps the cluster with voters 0..Voters-1
	// only; the other servers start with an empty configuration, as
	// replicas waiting to join (membership.go adds them).
	Voters int
}

// Cluster is a Raft cluster on a simulated network with the lab's checks.
// Its methods are called from the test's goroutine unless they say
// otherwise; failures are reported with t.Fatalf.
type Cluster struct {
	t     testing.TB
	n     int
	seed  uint64
	opts  Options
	net   *simnet.Network
	began time.Time
	log   *tbLog

	rngMu sync.Mutex // guards rng
	rng   *rand.Rand // the test's random choices, from seed

	trace bool // RAFTTEST_TRACE: log every RPC a server serves

	methodMu sync.Mutex       // guards methods
	methods  map[string]int64 // RPCs received, by method

	mu          sync.Mutex // guards every field below
	nodes       []*raft.Node
	apps        []*app
	stores      []persist.Store     // the store each server uses (or, for memory, restarts from)
	slots       []*persisttest.Slot // with Options.Store, each server's store across crashes
	connected   []bool
	endNames    [][]string // endNames[i][j] is server i's endpoint to server j
	gens        []int      // incarnation of each server
	logs        []map[uint64][]byte
	lastApplied []uint64
	skipped     map[uint64]int // indexes a server applied past without a command, and who
	maxIndex    uint64
	applyErrs   []string
	cmds        int
}

// NewCluster starts n servers, all connected. The cluster is torn down by
// t.Cleanup: every node is killed (a Kill error fails the test) and the
// network is cleaned up.
func NewCluster(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("RAFTTEST_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("RAFTTEST_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("rafttest: seed %d (replay with RAFTTEST_SEED=%d)", seed, seed)
	c := &Cluster{
		t:           t,
		n:           n,
		seed:        seed,
		opts:        opts,
		net:         simnet.New(seed),
		began:       time.Now(),
		log:         &tbLog{t: t},
		rng:         rand.New(rand.NewPCG(seed, 0x5eed)),
		methods:     make(map[string]int64),
		trace:       os.Getenv("RAFTTEST_TRACE") != "",
		nodes:       make([]*raft.Node, n),
		apps:        make([]*app, n),
		stores:      make([]persist.Store, n),
		connected:   make([]bool, n),
		endNames:    make([][]string, n),
		gens:        make([]int, n),
		logs:        make([]map[uint64][]byte, n),
		lastApplied: make([]uint64, n),
		skipped:     make(map[uint64]int),
	}
	// Registered first so that it runs last, after the nodes are dead.
	t.Cleanup(c.log.stop)
	if opts.Store != nil {
		// Before c.cleanup, so that the stores close after the nodes die.
		c.slots = make([]*persisttest.Slot, n)
		for i := range n {
			c.slots[i] = persisttest.NewSlot(t, *opts.Store)
		}
		t.Logf("rafttest: %s stores", opts.Store.Name)
	}
	t.Cleanup(c.cleanup)
	c.net.SetReliable(!opts.Unreliable)
	c.net.SetLongDelays(!opts.ShortDelays)
	for i := range n {
		c.logs[i] = make(map[uint64][]byte)
		c.Start1(i)
	}
	for i := range n {
		c.Connect(i)
	}
	return c
}

// N is the number of servers.
func (c *Cluster) N() int { return c.n }

// Seed is the cluster's random seed.
func (c *Cluster) Seed() uint64 { return c.seed }

// Net is the simulated network, for tests that need finer control
// (interception, single links).
func (c *Cluster) Net() *simnet.Network { return c.net }

// RandIntN returns a random number in [0, k) from the cluster's seeded
// source; safe for concurrent use.
func (c *Cluster) RandIntN(k int) int {
	c.rngMu.Lock()
	defer c.rngMu.Unlock()
	return c.rng.IntN(k)
}

// RandCmd returns a random command (a decimal number), as the lab's
// rand.Int() commands.
func (c *Cluster) RandCmd() []byte {
	c.rngMu.Lock()
	defer c.rngMu.Unlock()
	return Cmd(int(c.rng.Int64() & 0x7fffffffffffffff))
}

// Cmd encodes x as a command.
func Cmd(x int) []byte { return strconv.AppendInt(nil, int64(x), 10) }

func (c *Cluster) cleanup() {
	c.mu.Lock()
	nodes := slices.Clone(c.nodes)
	c.mu.Unlock()
	for i, nd := range nodes {
		if nd != nil {
			if err := nd.Kill(); err != nil {
				c.t.Errorf("server %d: Kill: %v", i, err)
			}
		}
	}
	c.net.Cleanup()
	if !c.t.Failed() {
		tot := c.net.Total()
		c.mu.Lock()
		cmds := c.cmds
		c.mu.Unlock()
		c.t.Logf("rafttest: passed in %.1fs, %d peers, %d RPCs, %d bytes, %d commands agreed by One",
			time.Since(c.began).Seconds(), c.n, tot.Calls, tot.Bytes, cmds)
	}
}

func serverName(i int) string { return strconv.Itoa(i) }

// Node returns server i's node, or nil if it is crashed.
func (c *Cluster) Node(i int) *raft.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Store returns the store server i uses (or, for the default memory store,
// restarts from); nil for a crashed server with Options.Store.
func (c *Cluster) Store(i int) persist.Store {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stores[i]
}

// Crash1 kills server i and keeps a copy of its persisted state, as the
// lab's crash1: the server is disconnected and removed from the network, its
// node killed, and its store replaced by a copy so nothing the dead instance
// might still do can reach the restarted one. With Options.Store the store
// is closed as a crash leaves it, to be reopened by Start1.
func (c *Cluster) Crash1(i int) {
	c.Disconnect(i)
	c.net.DeleteServer(serverName(i))
	c.mu.Lock()
	nd := c.nodes[i]
	c.nodes[i] = nil
	a := c.apps[i]
	c.mu.Unlock()
	if nd == nil {
		return
	}
	if err := nd.Kill(); err != nil {
		c.t.Errorf("server %d: Kill: %v", i, err)
	}
	a.dead.Store(true)
	if c.slots != nil {
		c.slots[i].Crash()
		c.mu.Lock()
		c.stores[i] = nil
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	c.stores[i] = c.stores[i].(*persist.Memory).Clone()
	c.mu.Unlock()
}

// Start1 (re)starts server i from its persisted state, as the lab's start1:
// if it is running it is crashed first; it gets fresh endpoints (all
// disabled until Connect) and a copy of its store.
func (c *Cluster) Start1(i int) {
	c.Crash1(i)
	c.mu.Lock()
	c.gens[i]++
	ends := make([]*simnet.End, c.n)
	c.endNames[i] = make([]string, c.n)
	for j := range c.n {
		name := fmt.Sprintf("%d->%d#%d", i, j, c.gens[i])
		c.endNames[i][j] = name
		ends[j] = c.net.MakeEnd(name)
		c.net.Connect(name, serverName(j))
	}
	var load persist.Store // to read the snapshot from before the node starts
	switch {
	case c.slots != nil:
	case c.stores[i] == nil:
		c.stores[i] = persist.NewMemory()
		load = c.stores[i]
	default:
		m := c.stores[i].(*persist.Memory)
		c.stores[i] = m.Clone()
		load = m.Clone()
	}
	c.lastApplied[i] = 0
	a := &app{c: c, id: i}
	c.apps[i] = a
	gen := c.gens[i]
	c.mu.Unlock()

	if c.slots != nil {
		st, err := c.slots[i].Open()
		if err != nil {
			c.t.Fatalf("server %d: %v", i, err)
		}
		load = st
		c.mu.Lock()
		c.stores[i] = st
		c.mu.Unlock()
	}
	c.mu.Lock()
	store := c.stores[i]
	c.mu.Unlock()

	// Mimic a KV server: restore the application from the stored snapshot
	// before the node starts.
	st, err := load.Load(context.Background())
	if err != nil {
		c.t.Fatalf("server %d: load: %v", i, err)
	}
	if st.Snapshot.Index > 0 && c.opts.Snapshots {
		c.mu.Lock()
		err := c.ingestSnapLocked(i, st.Snapshot.Data, st.Snapshot.Index)
		c.mu.Unlock()
		if err != nil {
			c.t.Fatalf("server %d: stored snapshot: %v", i, err)
		}
		a.lastSnap = st.Snapshot.Index
	}

	cfg := TestConfig(i, c.n)
	if v := c.opts.Voters; v > 0 {
		cfg.Peers = v
		if i >= v {
			cfg.Peers = 0 // a spare: joins with an empty configuration
		}
	}
	cfg.Seed = c.seed*7919 + uint64(gen)*131 + uint64(i) + 1
	cfg.Logger = c.log.logger(i, gen)
	if c.opts.Configure != nil {
		c.opts.Configure(&cfg)
	}
	nd, err := raft.New(cfg, NewTransport(ends), store, a)
	if err != nil {
		c.t.Fatalf("server %d: New: %v", i, err)
	}
	a.setNode(nd)
	c.mu.Lock()
	c.nodes[i] = nd
	c.mu.Unlock()
	h := Handler(nd)
	c.net.AddServer(serverName(i), func(ctx context.Context, method string, req []byte) ([]byte, error) {
		c.methodMu.Lock()
		c.methods[method]++
		c.methodMu.Unlock()
		reply, err := h(ctx, method, req)
		if c.trace {
			c.log.printf("%s", traceRPC(i, method, req, reply, err))
		}
		return reply, err
	})
}

// traceRPC describes one RPC served by server i, for RAFTTEST_TRACE.
func traceRPC(i int, method string, req, reply []byte, err error) string {
	switch method {
	case MethodAppendEntries:
		q, qerr := DecodeAppendEntries(req)
		if qerr != nil {
			return fmt.Sprintf("trace: AE to %d: bad request: %v", i, qerr)
		}
		first, last := uint64(0), uint64(0)
		if len(q.Entries) > 0 {
			first, last = q.Entries[0].Index, q.Entries[len(q.Entries)-1].Index
		}
		out := fmt.Sprintf("trace: AE %d->%d term=%d prev=%d/%d entries=[%d,%d] commit=%d",
			q.LeaderID, i, q.Term, q.PrevLogIndex, q.PrevLogTerm, first, last, q.LeaderCommit)
		if err != nil {
			return out + fmt.Sprintf(" => error %v", err)
		}
		p := new(raftv1.AppendEntriesResponse)
		if perr := proto.Unmarshal(reply, p); perr != nil {
			return out + fmt.Sprintf(" => bad reply %v", perr)
		}
		return out + fmt.Sprintf(" => term=%d success=%v match=%d conflict=%d/%d last=%d",
			p.GetTerm(), p.GetSuccess(), p.GetMatchIndex(), p.GetConflictTerm(), p.GetConflictIndex(), p.GetLastLogIndex())
	default:
		return fmt.Sprintf("trace: %s to %d: %d bytes => %d bytes, err %v", method, i, len(req), len(reply), err)
	}
}

// MethodCount is the number of RPCs of method (MethodAppendEntries, ...)
// that servers have received.
func (c *Cluster) MethodCount(method string) int64 {
	c.methodMu.Lock()
	defer c.methodMu.Unlock()
	return c.methods[method]
}

// Connect attaches server i to the network: links to and from every other
// connected server are enabled.
func (c *Cluster) Connect(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.connected[i] = true
	for j := range c.n {
		if c.connected[j] {
			c.net.Enable(c.endNames[i][j], true)
			c.net.Enable(c.endNames[j][i], true)
		}
	}
}

// Disconnect detaches server i: links to and from it are disabled.
func (c *Cluster) Disconnect(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.connected[i] = false
	for j := range c.n {
		if c.endNames[i] != nil {
			c.net.Enable(c.endNames[i][j], false)
		}
		if c.endNames[j] != nil {
			c.net.Enable(c.endNames[j][i], false)
		}
	}
}

// SetLink enables or disables both directions of the link between servers i
// and j, without changing whether either counts as connected.
func (c *Cluster) SetLink(i, j int, on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.net.Enable(c.endNames[i][j], on)
	c.net.Enable(c.endNames[j][i], on)
}

// Partition splits the servers into groups: links within a group are
// enabled, links between groups disabled. Servers in no group are cut off
// from all. Every server counts as connected afterwards (CheckOneLeader and
// One consider all of them).
func (c *Cluster) Partition(groups ...[]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	group := make([]int, c.n)
	for i := range group {
		group[i] = -1 - i // alone
	}
	for g, members := range groups {
		for _, i := range members {
			group[i] = g
		}
	}
	for i := range c.n {
		c.connected[i] = true
		for j := range c.n {
			if i != j {
				c.net.Enable(c.endNames[i][j], group[i] == group[j])
			}
		}
	}
}

// CallFrom returns the server that made a call seen by the interceptor, or
// -1 if the call is not between servers of the cluster.
func CallFrom(info simnet.CallInfo) int {
	var from, to, gen int
	if _, err := fmt.Sscanf(info.End, "%d->%d#%d", &from, &to, &gen); err != nil {
		return -1
	}
	return from
}

// CallTo returns the server a call seen by the interceptor is addressed to,
// or -1.
func CallTo(info simnet.CallInfo) int {
	to, err := strconv.Atoi(info.Server)
	if err != nil {
		return -1
	}
	return to
}

// LastApplied returns the last index server i's application applied (or
// restored from a snapshot) in its current incarnation.
func (c *Cluster) LastApplied(i int) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastApplied[i]
}

// Connected reports whether server i is connected.
func (c *Cluster) Connected(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected[i]
}

// SetUnreliable turns the network's unreliable mode on or off.
func (c *Cluster) SetUnreliable(on bool) { c.net.SetReliable(!on) }

// SetLongReordering turns long reordering of replies on or off.
func (c *Cluster) SetLongReordering(on bool) { c.net.SetLongReordering(on) }

// RPCTotal is the number of RPCs sent so far.
func (c *Cluster) RPCTotal() int64 { return c.net.Total().Calls }

// BytesTotal is the number of request and reply bytes sent so far.
func (c *Cluster) BytesTotal() int64 { return c.net.Total().Bytes }

// RPCCount is the number of RPCs server i has received (in all its
// incarnations).
func (c *Cluster) RPCCount(i int) int64 { return c.net.ServerStats(serverName(i)).Calls }

// LogSize is the largest persisted Raft state (store Size) of any server.
func (c *Cluster) LogSize() int64 {
	c.mu.Lock()
	stores := slices.Clone(c.stores)
	c.mu.Unlock()
	var m int64
	for _, s := range stores {
		if s != nil {
			m = max(m, s.Size())
		}
	}
	return m
}

// Start calls Start on server i's node; a crashed server is not leader.
func (c *Cluster) Start(i int, cmd []byte) (index, term uint64, isLeader bool) {
	nd := c.Node(i)
	if nd == nil {
		return 0, 0, false
	}
	return nd.Start(cmd)
}

// State returns server i's term and whether it thinks it is leader; a
// crashed server reports 0, false.
func (c *Cluster) State(i int) (term uint64, isLeader bool) {
	nd := c.Node(i)
	if nd == nil {
		return 0, false
	}
	return nd.State()
}

// StatusDump describes every server, for failure messages.
func (c *Cluster) StatusDump() string {
	var b strings.Builder
	for i := range c.n {
		nd := c.Node(i)
		fmt.Fprintf(&b, "  server %d connected=%v lastApplied=%d: ", i, c.Connected(i), c.LastApplied(i))
		if nd == nil {
			b.WriteString("crashed\n")
			continue
		}
		st := nd.Status()
		fmt.Fprintf(&b, "conf=%v term=%d role=%v leader=%d commit=%d applied=%d last=%d snapshot=%d logBytes=%d err=%v\n", st.Membership,
			st.Term, st.Role, st.Leader, st.Commit, st.Applied, st.LastIndex, st.SnapshotIndex, st.LogSizeBytes, st.Err)
	}
	tot := c.net.Total()
	fmt.Fprintf(&b, "  network: %d RPCs, %d bytes", tot.Calls, tot.Bytes)
	return b.String()
}

// checkApplyErrs fails the test now if an applier recorded an error.
func (c *Cluster) checkApplyErrs() {
	c.t.Helper()
	c.mu.Lock()
	errs := slices.Clone(c.applyErrs)
	c.mu.Unlock()
	if len(errs) > 0 {
		c.t.Fatalf("apply error: %v", errs[0])
	}
}

// sleep waits d; it is the harness's only bare sleep, used where the lab
// waits for time itself to pass (elections, heartbeats).
func sleep(d time.Duration) { time.Sleep(d) }

// CheckOneLeader checks that exactly one connected server thinks it is the
// leader of the newest term, trying 10 times about 500 ms apart, and
// returns it.
func (c *Cluster) CheckOneLeader() int {
	c.t.Helper()
	for range 10 {
		sleep(time.Duration(450+c.RandIntN(100)) * time.Millisecond)
		c.checkApplyErrs()
		leaders := make(map[uint64][]int)
		for i := range c.n {
			if c.Connected(i) {
				if term, leader := c.State(i); leader {
					leaders[term] = append(leaders[term], i)
				}
			}
		}
		var last uint64
		for term, ls := range leaders {
			if len(ls) > 1 {
				c.t.Fatalf("term %d has %d (>1) leaders: %v", term, len(ls), ls)
			}
			last = max(last, term)
		}
		if len(leaders) != 0 {
			return leaders[last][0]
		}
	}
	c.t.Fatalf("expected one leader, got none\n%s", c.StatusDump())
	return -1
}

// CheckTerms checks that every connected server has the same term and
// returns it.
func (c *Cluster) CheckTerms() uint64 {
	c.t.Helper()
	var term uint64
	for i := range c.n {
		if c.Connected(i) {
			xterm, _ := c.State(i)
			if term == 0 {
				term = xterm
			} else if term != xterm {
				c.t.Fatalf("servers disagree on term: %d and %d", term, xterm)
			}
		}
	}
	return term
}

// CheckNoLeader checks that no connected server thinks it is leader.
func (c *Cluster) CheckNoLeader() {
	c.t.Helper()
	for i := range c.n {
		if c.Connected(i) {
			if _, leader := c.State(i); leader {
				c.t.Fatalf("expected no leader among connected servers, but %d claims to be leader", i)
			}
		}
	}
}

// NCommitted returns how many servers have applied index, and the command,
// failing the test if they disagree.
func (c *Cluster) NCommitted(index uint64) (int, []byte) {
	c.t.Helper()
	n, cmd, err := c.nCommitted(index)
	if err != nil {
		c.t.Fatal(err)
	}
	return n, cmd
}

// nCommitted is NCommitted for any goroutine: it returns an error instead
// of failing the test.
func (c *Cluster) nCommitted(index uint64) (int, []byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.applyErrs) > 0 {
		return 0, nil, fmt.Errorf("apply error: %s", c.applyErrs[0])
	}
	count := 0
	var cmd []byte
	for i := range c.n {
		if v, ok := c.logs[i][index]; ok {
			if count > 0 && !bytes.Equal(cmd, v) {
				return 0, nil, fmt.Errorf("committed values do not match: index %d, %q, %q", index, cmd, v)
			}
			count++
			cmd = v
		}
	}
	return count, cmd, nil
}

// Skipped reports whether some server applied past index without a
// command there (a no-op entry).
func (c *Cluster) Skipped(index uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.skipped[index]
	return ok
}

// Applied returns how many servers applied cmd, at any index.
func (c *Cluster) Applied(cmd []byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for i := range c.n {
		for _, v := range c.logs[i] {
			if bytes.Equal(v, cmd) {
				n++
				break
			}
		}
	}
	return n
}

// Wait waits for at least n servers to apply index and returns the command.
// If startTerm is not 0 and some server moves past it, Wait gives up and
// returns nil, false: the leader that issued the entry is gone.
func (c *Cluster) Wait(index uint64, n int, startTerm uint64) ([]byte, bool) {
	c.t.Helper()
	to := 10 * time.Millisecond
	for range 30 {
		if nd, _ := c.NCommitted(index); nd >= n {
			break
		}
		sleep(to)
		if to < time.Second {
			to *= 2
		}
		if startTerm > 0 {
			for i := range c.n {
				if t, _ := c.State(i); t > startTerm {
					return nil, false
				}
			}
		}
	}
	nd, cmd := c.NCommitted(index)
	if nd < n {
		c.t.Fatalf("only %d decided for index %d; wanted %d\n%s", nd, index, n, c.StatusDump())
	}
	return cmd, true
}

// One submits cmd to the leader (trying every connected server until one
// accepts it) and waits for at least expected servers to apply it, within
// 10 s; with retry it resubmits if the first leader fails to commit it in 2
// s. It returns the index and fails the test if no agreement is reached.
func (c *Cluster) One(cmd []byte, expected int, retry bool) uint64 {
	c.t.Helper()
	index, err := c.OneErr(cmd, expected, retry)
	if err != nil {
		c.t.Fatal(err)
	}
	return index
}

// OneErr is One for any goroutine: it returns an error instead of failing
// the test.
func (c *Cluster) OneErr(cmd []byte, expected int, retry bool) (uint64, error) {
	t0 := time.Now()
	starts := c.RandIntN(c.n)
	for time.Since(t0) < 10*time.Second {
		var index uint64
		found := false
		for range c.n {
			starts = (starts + 1) % c.n
			if c.Connected(starts) {
				if idx, _, ok := c.Start(starts, cmd); ok {
					index, found = idx, true
					break
				}
			}
		}
		if found {
			t1 := time.Now()
			for time.Since(t1) < 2*time.Second {
				nd, cmd1, err := c.nCommitted(index)
				if err != nil {
					return 0, err
				}
				if nd > 0 && nd >= expected && bytes.Equal(cmd1, cmd) {
					c.mu.Lock()
					c.cmds++
					c.mu.Unlock()
					return index, nil
				}
				sleep(20 * time.Millisecond)
			}
			if !retry {
				return 0, fmt.Errorf("one(%q) failed to reach agreement\n%s", cmd, c.StatusDump())
			}
		} else {
			sleep(50 * time.Millisecond)
		}
	}
	return 0, fmt.Errorf("one(%q) failed to reach agreement in 10s\n%s", cmd, c.StatusDump())
}

// app is one incarnation of a server's application.
type app struct {
	c        *Cluster
	id       int
	dead     atomic.Bool
	nodeMu   sync.Mutex // guards node
	node     *raft.Node
	lastSnap uint64 // used only from the node's apply goroutine
}

var (
	_ raft.Application       = (*app)(nil)
	_ raft.SnapshotValidator = (*app)(nil)
)

func (a *app) setNode(nd *raft.Node) {
	a.nodeMu.Lock()
	defer a.nodeMu.Unlock()
	a.node = nd
}

func (a *app) getNode() *raft.Node {
	a.nodeMu.Lock()
	defer a.nodeMu.Unlock()
	return a.node
}

// Apply implements raft.Application: it checks msg against what the other
// servers applied and records it.
func (a *app) Apply(msg raft.ApplyMsg) {
	c := a.c
	if a.dead.Load() {
		c.applyError(fmt.Sprintf("server %d: Apply(index %d) called after Kill returned", a.id, msg.Index))
		return
	}
	c.mu.Lock()
	if msg.IsSnapshot {
		var err error
		if !c.opts.Snapshots {
			err = errors.New("snapshot delivered to an application that never took one")
		} else {
			err = c.ingestSnapLocked(a.id, msg.Snapshot, msg.Index)
		}
		c.mu.Unlock()
		if err != nil {
			c.applyError(fmt.Sprintf("server %d: snapshot at %d: %v", a.id, msg.Index, err))
		}
		a.lastSnap = msg.Index
		return
	}
	errMsg := c.checkApplyLocked(a.id, msg.Index, msg.Command)
	var data []byte
	if errMsg == "" && c.opts.Snapshots && msg.Index/SnapshotInterval > a.lastSnap/SnapshotInterval {
		data = c.encodeSnapLocked(a.id, msg.Index)
	}
	c.mu.Unlock()
	if errMsg != "" {
		c.applyError(errMsg)
		return
	}
	if data != nil {
		a.saveSnapshot(msg.Index, data)
	}
}

// SnapshotNeeded implements raft.Application: the snapshotting application
// answers at once with a snapshot at lastApplied.
func (a *app) SnapshotNeeded(lastApplied uint64) {
	c := a.c
	if !c.opts.Snapshots || lastApplied <= a.lastSnap {
		return
	}
	c.mu.Lock()
	if c.lastApplied[a.id] < lastApplied {
		c.mu.Unlock()
		c.applyError(fmt.Sprintf("server %d: SnapshotNeeded(%d) but the application applied only up to %d", a.id, lastApplied, c.lastApplied[a.id]))
		return
	}
	data := c.encodeSnapLocked(a.id, lastApplied)
	c.mu.Unlock()
	a.saveSnapshot(lastApplied, data)
}

// ValidateSnapshot implements raft.SnapshotValidator, so that the tests run
// the node's validation of received and stored snapshots: a snapshot must
// parse and have been taken at index (ingestSnapLocked checks its content
// against every server when it is applied).
func (a *app) ValidateSnapshot(index uint64, data []byte) error {
	r := bytes.NewReader(data)
	got, err := binary.ReadUvarint(r)
	if err != nil {
		return fmt.Errorf("%w: %v", errBadSnapshot, err)
	}
	if got != index {
		return fmt.Errorf("%w: taken at index %d, offered as %d", errBadSnapshot, got, index)
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return fmt.Errorf("%w: %v", errBadSnapshot, err)
	}
	for range n {
		_, err1 := binary.ReadUvarint(r)
		l, err2 := binary.ReadUvarint(r)
		if err := errors.Join(err1, err2); err != nil || l > uint64(r.Len()) {
			return fmt.Errorf("%w: entry: %v", errBadSnapshot, err)
		}
		if _, err := r.Seek(int64(l), io.SeekCurrent); err != nil {
			return fmt.Errorf("%w: %v", errBadSnapshot, err)
		}
	}
	return nil
}

func (a *app) saveSnapshot(index uint64, data []byte) {
	nd := a.getNode()
	if nd == nil {
		return
	}
	if err := nd.SaveSnapshot(index, data); err != nil {
		a.c.log.printf("server %d: SaveSnapshot(%d): %v", a.id, index, err)
		return
	}
	a.lastSnap = index
}

func (c *Cluster) applyError(msg string) {
	c.mu.Lock()
	c.applyErrs = append(c.applyErrs, msg)
	c.mu.Unlock()
	c.t.Errorf("apply error: %s", msg)
}

// checkApplyLocked checks that server i may apply cmd at index and records
// it. It returns an error message, or "".
func (c *Cluster) checkApplyLocked(i int, index uint64, cmd []byte) string {
	last := c.lastApplied[i]
	if index <= last {
		return fmt.Sprintf("server %d applied index %d after %d: out of order", i, index, last)
	}
	// Indexes skipped over must hold no command anywhere.
	for g := last + 1; g < index; g++ {
		for j := range c.n {
			if v, ok := c.logs[j][g]; ok {
				return fmt.Sprintf("server %d applied %d after %d, skipping index %d where server %d applied %q", i, index, last, g, j, v)
			}
		}
		c.skipped[g] = i
	}
	if j, ok := c.skipped[index]; ok {
		return fmt.Sprintf("server %d applied %q at index %d, which server %d skipped as holding no command", i, cmd, index, j)
	}
	for j := range c.n {
		if old, ok := c.logs[j][index]; ok && !bytes.Equal(old, cmd) {
			return fmt.Sprintf("commit index=%d server=%d %q != server=%d %q", index, i, cmd, j, old)
		}
	}
	c.logs[i][index] = slices.Clone(cmd)
	c.lastApplied[i] = index
	c.maxIndex = max(c.maxIndex, index)
	return ""
}

// encodeSnapLocked encodes server i's application state at index: the index
// and every command it applied up to it.
func (c *Cluster) encodeSnapLocked(i int, index uint64) []byte {
	b := binary.AppendUvarint(nil, index)
	idxs := make([]uint64, 0, len(c.logs[i]))
	for k := range c.logs[i] {
		if k <= index {
			idxs = append(idxs, k)
		}
	}
	slices.Sort(idxs)
	b = binary.AppendUvarint(b, uint64(len(idxs)))
	for _, k := range idxs {
		b = binary.AppendUvarint(b, k)
		b = binary.AppendUvarint(b, uint64(len(c.logs[i][k])))
		b = append(b, c.logs[i][k]...)
	}
	return append(b, make([]byte, c.opts.SnapshotPadBytes)...)
}

var errBadSnapshot = errors.New("rafttest: malformed snapshot")

// ingestSnapLocked restores server i's application from a snapshot taken at
// index, checking it against what every server applied.
func (c *Cluster) ingestSnapLocked(i int, data []byte, index uint64) error {
	r := bytes.NewReader(data)
	got, err := binary.ReadUvarint(r)
	if err != nil {
		return fmt.Errorf("%w: %v", errBadSnapshot, err)
	}
	if got != index {
		return fmt.Errorf("snapshot taken at index %d delivered as index %d", got, index)
	}
	if index < c.lastApplied[i] {
		return fmt.Errorf("snapshot at %d would roll back the application from %d", index, c.lastApplied[i])
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return fmt.Errorf("%w: %v", errBadSnapshot, err)
	}
	restored := make(map[uint64][]byte, n)
	for range n {
		k, err1 := binary.ReadUvarint(r)
		l, err2 := binary.ReadUvarint(r)
		if err := errors.Join(err1, err2); err != nil || l > uint64(r.Len()) {
			return fmt.Errorf("%w: entry: %v", errBadSnapshot, err)
		}
		v := make([]byte, l)
		if _, err := io.ReadFull(r, v); err != nil {
			return fmt.Errorf("%w: %v", errBadSnapshot, err)
		}
		for j := range c.n {
			if old, ok := c.logs[j][k]; ok && !bytes.Equal(old, v) {
				return fmt.Errorf("snapshot holds %q at index %d, server %d applied %q", v, k, j, old)
			}
		}
		restored[k] = v
	}
	if r.Len() != c.opts.SnapshotPadBytes {
		return fmt.Errorf("%w: %d trailing bytes, want %d", errBadSnapshot, r.Len(), c.opts.SnapshotPadBytes)
	}
	for k, v := range restored {
		c.logs[i][k] = v
	}
	c.lastApplied[i] = index
	c.maxIndex = max(c.maxIndex, index)
	return nil
}

// tbLog sends node logs to the test log when RAFTTEST_LOG is set, and stops
// once the test is over (logging after that would panic).
type tbLog struct {
	t       testing.TB
	mu      sync.Mutex // guards stopped
	stopped bool
}

func (l *tbLog) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
}

// Write implements io.Writer for the slog handler: one record, one t.Log.
func (l *tbLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func (l *tbLog) printf(format string, args ...any) {
	if os.Getenv("RAFTTEST_LOG") != "" || os.Getenv("RAFTTEST_TRACE") != "" {
		fmt.Fprintf(l, format, args...)
	}
}

func (l *tbLog) logger(id, gen int) *slog.Logger {
	if os.Getenv("RAFTTEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})).
		With("server", id, "gen", gen)
}
