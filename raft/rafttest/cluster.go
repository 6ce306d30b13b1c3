package rafttest

// The harness itself: its options and timing, the Cluster and its start and
// teardown, the accessors tests use. The other concepts have their own
// files: lifecycle.go (crash, restart), network.go (faults, counters),
// checks.go (the lab's checks), app.go (the checking, snapshotting
// application and its codec), log.go (logs and traces), membership.go.

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ruaft/ruaft/internal/simnet"
	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/persisttest"
	"github.com/ruaft/ruaft/raft"
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
	links       *Links              // the fault model (network.go)
	endNames    [][]string          // endNames[i][j] is server i's endpoint to server j
	gens        []int               // incarnation of each server
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
		links:       NewLinks(n),
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
		c.Restart(i)
	}
	c.Heal()
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
