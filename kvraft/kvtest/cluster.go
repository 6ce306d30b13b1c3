package kvtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/internal/simnet"
	"github.com/ruaft/ruaft/kvraft"
	"github.com/ruaft/ruaft/kvraft/kvwire"
	"github.com/ruaft/ruaft/kvraft/rsm"
	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/raft"
	"github.com/ruaft/ruaft/raft/rafttest"
)

// Replica is what a Cluster runs on each server: an application around a
// raft node. If it also implements kvraft.Service, the cluster routes the
// KV RPCs to it.
type Replica interface {
	// Kill stops the replica and its node and returns the node's Kill error.
	Kill() error
}

// NewNode creates a replica's raft node with app as its application, wired
// to the simulated network and the replica's store.
type NewNode func(app raft.Application) (*raft.Node, error)

// StartFunc starts replica i; it must create its node with newNode.
type StartFunc func(i int, newNode NewNode) (Replica, error)

// Options configure a Cluster.
type Options struct {
	// Servers is the number of replicas.
	Servers int
	// Unreliable turns on the network's unreliable mode.
	Unreliable bool
	// MaxRaftState is the lab's maxraftstate: the store size in bytes above
	// which raft asks for a snapshot; 0 or less disables snapshots.
	MaxRaftState int64
	// ShortDelays turns off the network's long delays for unreachable
	// servers (the tests' default is on).
	ShortDelays bool
	// Seed seeds the network and the raft nodes; 0 picks one from the clock.
	Seed uint64
	// Raft, if not nil, adjusts each replica's raft configuration.
	Raft func(*raft.Config)
	// Voters, if above 0, bootstraps the cluster with voters 0..Voters-1;
	// the servers past them are spares that start with an empty
	// configuration and wait to be added (raft's joiners). 0: every server
	// is a bootstrap voter.
	Voters int
	// OpenStore, if not nil, opens server i's store (for benchmarks with a
	// durable store); it is called at every start, and the store is closed
	// at every crash. Otherwise each server has a persist.Memory that a
	// crash copies, as the lab's persister.
	OpenStore func(i int) (persist.Store, error)
	// Replay turns on the replay fault: the network delivers delayed
	// copies of the writes clerks sent, after their answers, to random
	// servers (see replayer), and counts the copies that succeeded where
	// the original was refused (ReplayContradictions).
	Replay bool
}

// Cluster is the lab's config: servers on a simulated network, each with a
// memory store that survives its crashes, partitions, and clerks.
type Cluster struct {
	t     testing.TB
	Net   *simnet.Network
	opts  Options
	start StartFunc
	seed  uint64
	began time.Time
	// replay, if not nil, sends delayed copies of the clerks' writes.
	replay *replayer

	mu sync.Mutex // guards every field below
	// slots holds each server's store and current incarnation.
	slots []*slot
	// links is the fault model, shared with rafttest (rafttest.Links).
	links *rafttest.Links
	// clerks maps a clerk to its endpoints, one per server.
	clerks map[*kvraft.Clerk][]*simnet.End
	nEnds  int
}

// slot is one server: its store (kept across crashes) and its incarnation.
type slot struct {
	store   persist.Store // nil while crashed with Options.OpenStore
	gen     int
	ends    []*simnet.End // this incarnation's endpoints to each server
	replica Replica       // nil while crashed
	node    *raft.Node
	inc     *incarnation
}

// incarnation is what one run of a server's handler dispatches to.
type incarnation struct {
	node atomic.Pointer[raft.Node]
	svc  atomic.Value // kvraft.Service once started
}

// ServerName is server i's name on the network.
func ServerName(i int) string { return fmt.Sprintf("server-%d", i) }

// NewCluster starts opts.Servers replicas with start, all connected, and
// registers cleanup with t.
func NewCluster(t testing.TB, opts Options, start StartFunc) *Cluster {
	t.Helper()
	seed := opts.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("cluster: %d servers, unreliable %v, maxraftstate %d, seed %d", opts.Servers, opts.Unreliable, opts.MaxRaftState, seed)
	c := &Cluster{
		t:      t,
		Net:    simnet.New(seed),
		opts:   opts,
		start:  start,
		seed:   seed,
		began:  time.Now(),
		clerks: make(map[*kvraft.Clerk][]*simnet.End),
	}
	c.Net.SetReliable(!opts.Unreliable)
	c.Net.SetLongDelays(!opts.ShortDelays)
	if opts.Replay {
		c.replay = newReplayer(c.Net, opts.Servers)
	}
	c.links = rafttest.NewLinks(opts.Servers)
	for range opts.Servers {
		s := &slot{}
		if opts.OpenStore == nil {
			s.store = persist.NewMemory()
		}
		c.slots = append(c.slots, s)
	}
	t.Cleanup(c.cleanup)
	c.RestartAll()
	c.Heal()
	return c
}

// N is the number of servers.
func (c *Cluster) N() int { return c.opts.Servers }

// All returns the ids of every server.
func (c *Cluster) All() []int {
	all := make([]int, c.opts.Servers)
	for i := range all {
		all[i] = i
	}
	return all
}

func (c *Cluster) cleanup() {
	if c.replay != nil {
		c.replay.close()
		c.t.Logf("replay: %v", c.replay)
	}
	for i := range c.opts.Servers {
		c.Crash(i)
	}
	c.Net.Cleanup()
}

// Restart starts server i from its saved store, crashing it first if it is
// running; it stays disconnected until Connect, Heal or Partition (as
// rafttest's Restart, the lab's StartServer).
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.Crash(i)
	c.mu.Lock()
	s := c.slots[i]
	if s.store == nil {
		st, err := c.opts.OpenStore(i)
		if err != nil {
			c.mu.Unlock()
			c.t.Fatalf("open store %d: %v", i, err)
		}
		s.store = st
	}
	s.gen++
	s.ends = make([]*simnet.End, c.opts.Servers)
	for j := range s.ends {
		if j == i {
			continue
		}
		name := fmt.Sprintf("raft-%d.%d-to-%d", i, s.gen, j)
		s.ends[j] = c.Net.MakeEnd(name)
		c.Net.Connect(name, ServerName(j))
		c.Net.Enable(name, c.links.Up(i, j))
	}
	ends, store, gen := s.ends, s.store, s.gen
	inc := &incarnation{}
	s.inc = inc
	c.mu.Unlock()

	newNode := func(app raft.Application) (*raft.Node, error) {
		cfg := raft.DefaultConfig()
		cfg.ID, cfg.Peers = i, c.opts.Servers
		if v := c.opts.Voters; v > 0 {
			cfg.Peers = v
			if i >= v {
				cfg.Peers = 0 // a spare: joins with an empty configuration
			}
		}
		cfg.Seed = c.seed*1000003 + uint64(i)*101 + uint64(gen)
		cfg.AppVersion = kvraft.ApplyLevel
		if c.opts.MaxRaftState > 0 {
			cfg.SnapshotThresholdBytes = c.opts.MaxRaftState
		}
		if c.opts.Raft != nil {
			c.opts.Raft(&cfg)
		}
		node, err := raft.New(cfg, rafttest.NewTransport(ends), store, app)
		if err != nil {
			return nil, err
		}
		inc.node.Store(node)
		c.Net.AddServer(ServerName(i), c.handler(inc))
		return node, nil
	}
	rep, err := c.start(i, newNode)
	if err != nil {
		c.t.Fatalf("start server %d: %v", i, err)
	}
	if svc, ok := rep.(kvraft.Service); ok {
		inc.svc.Store(svc)
	}
	c.mu.Lock()
	s.replica, s.node = rep, inc.node.Load()
	c.mu.Unlock()
}

// errNotReady answers calls that arrive before a server's service is set.
var errNotReady = errors.New("kvtest: server starting")

func (c *Cluster) handler(inc *incarnation) simnet.Handler {
	return func(ctx context.Context, method string, b []byte) ([]byte, error) {
		if strings.HasPrefix(method, "raft.") {
			return rafttest.Handler(inc.node.Load())(ctx, method, b)
		}
		svc, _ := inc.svc.Load().(kvraft.Service)
		if svc == nil {
			return nil, errNotReady
		}
		return serveKV(ctx, svc, method, b)
	}
}

// Crash crashes server i: it is disconnected (see rafttest.Links), its
// store is copied as it stands, and the replica is killed. Restart restarts
// it from the copy.
func (c *Cluster) Crash(i int) {
	c.t.Helper()
	c.mu.Lock()
	c.links.Disconnect(i)
	c.applyLinksLocked()
	s := c.slots[i]
	if s.replica == nil {
		c.mu.Unlock()
		return
	}
	c.Net.DeleteServer(ServerName(i))
	for _, e := range s.ends {
		if e != nil {
			c.Net.Enable(e.Name(), false)
		}
	}
	// Copy after cutting the server off, so no reply it sends later is
	// based on state the copy lacks.
	old := s.store
	var saved persist.Store
	if m, ok := old.(*persist.Memory); ok {
		saved = m.Clone()
	}
	rep := s.replica
	s.replica, s.node, s.store = nil, nil, saved
	c.mu.Unlock()
	if err := rep.Kill(); err != nil {
		c.t.Errorf("server %d: Kill: %v", i, err)
	}
	if saved == nil {
		if err := old.Close(); err != nil {
			c.t.Errorf("server %d: close store: %v", i, err)
		}
	}
}

// WipeStore crashes server i and gives it an empty memory store (a new
// disk); Restart then starts it as a new machine.
func (c *Cluster) WipeStore(i int) {
	c.t.Helper()
	if c.opts.OpenStore != nil {
		c.t.Fatal("WipeStore: not with Options.OpenStore")
	}
	c.Crash(i)
	c.mu.Lock()
	c.slots[i].store = persist.NewMemory()
	c.mu.Unlock()
}

// CrashAll crashes every server.
func (c *Cluster) CrashAll() {
	for i := range c.opts.Servers {
		c.Crash(i)
	}
}

// RestartAll restarts every server; they stay disconnected until Heal (or
// Connect, Partition).
func (c *Cluster) RestartAll() {
	for i := range c.opts.Servers {
		c.Restart(i)
	}
}

// Replica returns server i's running replica, or nil.
func (c *Cluster) Replica(i int) Replica {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slots[i].replica
}

// Node returns server i's running raft node, or nil.
func (c *Cluster) Node(i int) *raft.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slots[i].node
}

// The fault API: the same names and meaning as rafttest's (see
// rafttest.Links).

// Partition lets servers talk only within their group; servers in no
// group are cut off from everyone. Every server counts as connected
// afterwards.
func (c *Cluster) Partition(groups ...[]int) {
	c.changeLinks(func(l *rafttest.Links) { l.Partition(groups...) })
}

// Heal connects every server and brings every link up.
func (c *Cluster) Heal() { c.changeLinks((*rafttest.Links).Heal) }

// Disconnect cuts server i off from everyone.
func (c *Cluster) Disconnect(i int) { c.changeLinks(func(l *rafttest.Links) { l.Disconnect(i) }) }

// Connect reconnects server i to every connected server, whatever
// partition separated it before.
func (c *Cluster) Connect(i int) { c.changeLinks(func(l *rafttest.Links) { l.Connect(i) }) }

// SetLink enables or disables both directions of the link between servers i
// and j, without changing whether either counts as connected.
func (c *Cluster) SetLink(i, j int, on bool) {
	c.changeLinks(func(l *rafttest.Links) { l.SetLink(i, j, on) })
}

// Connected reports whether server i is connected.
func (c *Cluster) Connected(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.links.Connected(i)
}

// SetUnreliable turns the network's unreliable mode on or off.
func (c *Cluster) SetUnreliable(on bool) { c.Net.SetReliable(!on) }

func (c *Cluster) changeLinks(change func(*rafttest.Links)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	change(c.links)
	c.applyLinksLocked()
}

// applyLinksLocked enables each endpoint of each running server iff its
// link is up.
func (c *Cluster) applyLinksLocked() {
	for i, s := range c.slots {
		for j, e := range s.ends {
			if e != nil && s.replica != nil {
				c.Net.Enable(e.Name(), c.links.Up(i, j))
			}
		}
	}
}

// RandomSplit puts each server on one side or the other at random (either
// side may be empty).
func (c *Cluster) RandomSplit() (a, b []int) {
	for i := range c.opts.Servers {
		if rand.IntN(2) == 0 {
			a = append(a, i)
		} else {
			b = append(b, i)
		}
	}
	return a, b
}

// MakePartition returns a majority without the current leader and a
// minority holding it, as the lab's make_partition does.
func (c *Cluster) MakePartition() (majority, minority []int) {
	l, ok := c.Leader()
	if !ok {
		l = 0
	}
	for i := range c.opts.Servers {
		if i == l {
			continue
		}
		if len(majority) < c.opts.Servers/2+1 {
			majority = append(majority, i)
		} else {
			minority = append(minority, i)
		}
	}
	return majority, append(minority, l)
}

// Leader returns a server that believes it leads in the highest term.
func (c *Cluster) Leader() (int, bool) {
	best, bestTerm := -1, uint64(0)
	for i := range c.opts.Servers {
		n := c.Node(i)
		if n == nil {
			continue
		}
		if term, isLeader := n.State(); isLeader && (best < 0 || term > bestTerm) {
			best, bestTerm = i, term
		}
	}
	return best, best >= 0
}

// WaitLeader waits up to 10 s for a leader.
func (c *Cluster) WaitLeader() int {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if l, ok := c.Leader(); ok {
			return l
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("no leader within 10 s")
	return -1
}

// WaitApplyLevel waits up to 10 s for a running replica (a kvraft.Server)
// to apply the apply level level or a higher one: every write proposed
// after that is applied at that level or above, as a level never drops.
func (c *Cluster) WaitApplyLevel(level uint32) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i := range c.opts.Servers {
			if srv, ok := c.Replica(i).(*kvraft.Server); ok && srv.ApplyLevel() >= level {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("no replica at apply level %d within 10 s", level)
}

// MakeClerk returns a clerk connected to the servers in to.
func (c *Cluster) MakeClerk(to []int) *kvraft.Clerk {
	c.t.Helper()
	return c.makeClerk(to, false)
}

// MakeForwardingClerk returns a clerk connected to the servers in to that
// sends its writes as durio's frontend sends them to another replica: in
// batches, through a kvwire.Forwarder per server over the simulated
// network (abandoned calls, unknown outcomes and all). Its reads go over
// the KV RPCs as MakeClerk's do.
func (c *Cluster) MakeForwardingClerk(to []int) *kvraft.Clerk {
	c.t.Helper()
	return c.makeClerk(to, true)
}

func (c *Cluster) makeClerk(to []int, forward bool) *kvraft.Clerk {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.nEnds
	c.nEnds++
	ends := make([]*simnet.End, c.opts.Servers)
	svcs := make([]kvraft.Service, c.opts.Servers)
	for j := range ends {
		name := fmt.Sprintf("clerk-%d-to-%d", k, j)
		ends[j] = c.Net.MakeEnd(name)
		c.Net.Connect(name, ServerName(j))
		c.Net.Enable(name, slices.Contains(to, j))
		kv := simKV{end: ends[j]}
		if c.replay != nil {
			kv.sent = c.replay.capture
		}
		svcs[j] = newClient(kv)
		if forward {
			f, err := kvwire.NewForwarder(kv, kv, kvwire.DefaultForwarderConfig())
			if err != nil {
				c.t.Fatalf("NewForwarder: %v", err)
			}
			c.t.Cleanup(f.Close)
			svcs[j] = f
		}
	}
	cfg := kvraft.DefaultClerkConfig()
	cfg.AttemptTimeout = 500 * time.Millisecond
	ck, err := kvraft.NewClerk(svcs, cfg)
	if err != nil {
		c.t.Fatalf("NewClerk: %v", err)
	}
	c.clerks[ck] = ends
	return ck
}

// ConnectClerk lets ck reach exactly the servers in to.
func (c *Cluster) ConnectClerk(ck *kvraft.Clerk, to []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for j, e := range c.clerks[ck] {
		c.Net.Enable(e.Name(), slices.Contains(to, j))
	}
}

// LogSize returns the largest store size (persisted raft state without the
// snapshot) among the servers.
func (c *Cluster) LogSize() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var m int64
	for _, s := range c.slots {
		if s.store != nil {
			m = max(m, s.store.Size())
		}
	}
	return m
}

// WaitLogSize waits up to a second for every server's persisted raft state
// to be at most limit bytes, and returns the largest size it saw last. A
// snapshot is taken and stored in the background after the entry that
// crossed the threshold is applied, and a follower may still be catching
// up when the last operation returns, so the bound is checked once the
// cluster has had a moment to settle.
func (c *Cluster) WaitLogSize(limit int64) int64 {
	deadline := time.Now().Add(time.Second)
	for {
		sz := c.LogSize()
		if sz <= limit || time.Now().After(deadline) {
			return sz
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SnapshotSize returns the largest stored snapshot among the servers' memory
// stores.
func (c *Cluster) SnapshotSize() int {
	c.mu.Lock()
	var stores []*persist.Memory
	for _, s := range c.slots {
		if m, ok := s.store.(*persist.Memory); ok {
			stores = append(stores, m)
		}
	}
	c.mu.Unlock()
	m := 0
	for _, st := range stores {
		state, err := st.Clone().Load(context.Background())
		if err != nil {
			c.t.Fatalf("load store copy: %v", err)
		}
		m = max(m, len(state.Snapshot.Data))
	}
	return m
}

// StartKVServer is the StartFunc of a key-value cluster.
func StartKVServer(i int, newNode NewNode) (Replica, error) {
	return StartKVServerWith(nil)(i, newNode)
}

// StartKVServerWith is the StartFunc of a key-value cluster whose servers'
// configuration adjust changes (nil: the default).
func StartKVServerWith(adjust func(*kvraft.Config)) StartFunc {
	return func(i int, newNode NewNode) (Replica, error) {
		cfg := kvraft.DefaultConfig(i)
		// The lab's snapshot thresholds are a few kB, and every snapshot
		// carries the retained history: keep it on that scale, as a
		// replica should keep it well under its snapshot threshold.
		cfg.HistoryMaxEvents, cfg.HistoryMaxBytes = 200, 8<<10
		if adjust != nil {
			adjust(&cfg)
		}
		return kvraft.NewServer(cfg, func(app raft.Application) (rsm.Raft, error) {
			n, err := newNode(app)
			if err != nil {
				return nil, err
			}
			return n, nil
		})
	}
}

// LogStatus logs every running node's raft status, for failures.
func (c *Cluster) LogStatus() {
	for i := range c.opts.Servers {
		if n := c.Node(i); n != nil {
			st := n.Status()
			c.t.Logf("server %d: term %d %v leader %d commit %d applied %d last %d snapshot %d log %d B err %v; configuration %v at %d (removed %v)",
				i, st.Term, st.Role, st.Leader, st.Commit, st.Applied, st.LastIndex, st.SnapshotIndex, st.LogSizeBytes, st.Err,
				st.Membership, st.MembershipIndex, st.Removed)
		} else {
			c.t.Logf("server %d: down", i)
		}
	}
}
