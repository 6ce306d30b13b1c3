package raft

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
)

// gateStore is a Memory store whose next SaveSnapshot, once a test arms it,
// waits until the test releases it (a large state's snapshot on a slow
// disk), and which says whether it takes snapshots beside its Appends.
type gateStore struct {
	*persist.Memory
	beside bool
	gates  gates
}

func (s *gateStore) SnapshotsBesideAppends() bool { return s.beside }

func (s *gateStore) SaveSnapshot(ctx context.Context, snap persist.Snapshot) error {
	s.gates.pass()
	return s.Memory.SaveSnapshot(ctx, snap)
}

// snapGate holds one store call: entered is closed when the call reaches
// it, and the call goes on once the test calls open (any number of times).
type snapGate struct {
	entered, release chan struct{}
	once             sync.Once
}

func (g *snapGate) open() { g.once.Do(func() { close(g.release) }) }

// gates arms a snapGate for the next call that passes it.
type gates struct {
	mu   sync.Mutex
	next *snapGate
}

// arm makes the next call to pass wait for the returned gate's open.
func (gs *gates) arm() *snapGate {
	g := &snapGate{entered: make(chan struct{}), release: make(chan struct{})}
	gs.mu.Lock()
	gs.next = g
	gs.mu.Unlock()
	return g
}

// pass waits at the armed gate, if any, and disarms it.
func (gs *gates) pass() {
	gs.mu.Lock()
	g := gs.next
	gs.next = nil
	gs.mu.Unlock()
	if g != nil {
		close(g.entered)
		<-g.release
	}
}

// proposeUntil proposes commands of about 100 bytes at node l until g is
// entered (the leader's log passes the snapshot threshold and its
// compaction reaches the store), failing the test after 10 s.
func proposeUntil(t *testing.T, cl *cluster, l int, g *snapGate) {
	t.Helper()
	cmd := strings.Repeat("x", 100)
	deadline := time.After(10 * time.Second)
	for i := 0; ; i++ {
		select {
		case <-g.entered:
			return
		case <-deadline:
			t.Fatal("no compaction reached the leader's store within 10s")
		default:
			cl.nodes[l].Start([]byte(fmt.Sprintf("%s before %d", cmd, i)))
			time.Sleep(time.Millisecond)
		}
	}
}

// TestNodeCompactsBesideAppends: while a leader's store takes seconds to
// write a compaction's snapshot, a store that takes it beside its Appends
// (persist.BackgroundSnapshots) lets the leader go on committing and
// applying, and it stays leader; with one that does not, the leader's
// replication stalls for as long (the contrast shows the test can tell).
// Afterwards the snapshot is stored, the log compacted and the cluster
// agrees.
func TestNodeCompactsBesideAppends(t *testing.T) {
	// Election timeouts twice the default, so that a busy machine's
	// scheduling alone does not cost the leader its term; the write is
	// held for more than three of the longest.
	const electionMin, hold = 300 * time.Millisecond, 2 * time.Second
	cmd := strings.Repeat("y", 100)
	for _, beside := range []bool{true, false} {
		t.Run(fmt.Sprintf("beside=%v", beside), func(t *testing.T) {
			stores := make([]*gateStore, 3)
			cl := newClusterStores(t, 3, func(c *Config) {
				c.SnapshotThresholdBytes = 2000
				c.ElectionTimeoutMin, c.ElectionTimeoutMax = electionMin, 2*electionMin
			},
				func(i int) persist.Store {
					stores[i] = &gateStore{Memory: persist.NewMemory(), beside: beside}
					return stores[i]
				})
			l := cl.leader()
			term, _ := cl.nodes[l].State()
			g := stores[l].gates.arm()
			defer g.open()
			proposeUntil(t, cl, l, g)
			// While the snapshot is being written: 20 more commands.
			heldSince := time.Now()
			var last uint64
			for i := range 20 {
				idx, _, ok := cl.nodes[l].Start([]byte(fmt.Sprintf("%s during %d", cmd, i)))
				if !ok {
					t.Fatalf("the leader lost its leadership %v into the snapshot write", time.Since(heldSince))
				}
				last = idx
			}
			applied := cl.waitUntil(hold, func() bool { return cl.apps[l].lastApplied() >= last })
			time.Sleep(time.Until(heldSince.Add(hold)))
			nowTerm, isLeader := cl.nodes[l].State()
			if beside {
				if !applied {
					t.Fatalf("the leader applied up to %d of %d while its snapshot was written", cl.apps[l].lastApplied(), last)
				}
				if !isLeader || nowTerm != term {
					t.Fatalf("after %v of snapshot write the leader is leader %v in term %d (was term %d)", hold, isLeader, nowTerm, term)
				}
			} else if applied {
				t.Fatal("the leader applied every command while its snapshot was written inline: the test cannot tell the two apart")
			}
			g.open()
			if !cl.waitUntil(10*time.Second, func() bool { return cl.nodes[l].Status().SnapshotIndex > 0 }) {
				t.Fatal("the held compaction was never stored")
			}
			cl.commit("after")
			want := cl.apps[l].commands()
			for i := range cl.nodes {
				if got := cl.apps[i].commands(); len(got) != len(want) {
					t.Fatalf("node %d applied %d commands, the old leader %d", i, len(got), len(want))
				}
			}
		})
	}
}
