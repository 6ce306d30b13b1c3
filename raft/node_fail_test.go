package raft

// Node tests of failure and shutdown: Kill, a failing store, a blocked or
// panicking application, and the leader killed under load.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
)

func TestNodeKillIdempotentNoCallbacksAfter(t *testing.T) {
	cl := newCluster(t, 3, nil)
	cl.commit("x")
	l := cl.leader()
	app := cl.apps[l]
	n := cl.nodes[l]
	// A proposer keeps the node busy until it is killed: each command is
	// proposed once the previous one applied.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			idx, _, ok := n.Start([]byte("y"))
			if !ok {
				return // killed, or no longer leader
			}
			select {
			case <-app.wait(idx):
			case <-stop:
				return
			}
		}
	}()
	if !cl.waitUntil(5*time.Second, func() bool { return len(app.commands()) >= 4 }) {
		t.Fatal("the proposer's commands were not applied")
	}
	cl.net.set(l, nil)
	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	// Kill returned: every goroutine of the node is done, so an Apply from
	// now on, however late, is a bug the cluster's cleanup reports.
	app.closeApp()
	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if _, _, ok := n.Start([]byte("z")); ok {
		t.Fatal("killed node accepted a command")
	}
	if _, err := n.HandleAppendEntries(t.Context(), &AppendEntriesRequest{}); !errors.Is(err, ErrKilled) {
		t.Fatalf("handler of a killed node: %v", err)
	}
	cl.nodes[l] = nil
}

// failingStore fails every Append after fail is set.
type failingStore struct {
	*persist.Memory
	fail atomic.Bool
}

var errDisk = errors.New("disk on fire")

func (s *failingStore) Append(ctx context.Context, hs persist.HardState, es []Entry) error {
	if s.fail.Load() {
		return errDisk
	}
	return s.Memory.Append(ctx, hs, es)
}

func TestNodeStoreFailureStopsWrites(t *testing.T) {
	net := newInprocNet(1)
	st := &failingStore{Memory: persist.NewMemory()}
	app := newTestApp()
	n, err := New(testConfig(0, 1), &inprocTransport{net: net, from: 0}, st, app)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Kill()
	net.set(0, n)
	if !pollUntil(time.Now().Add(5*time.Second), func() bool { _, ok := n.State(); return ok }) {
		t.Fatal("no leader")
	}
	idx, _, _ := n.Start([]byte("ok"))
	<-app.wait(idx)
	st.fail.Store(true)
	idx, _, ok := n.Start([]byte("lost"))
	if !ok {
		t.Fatal("refused before the failure was seen")
	}
	if !pollUntil(time.Now().Add(5*time.Second), func() bool { return n.Status().Err != nil }) {
		t.Fatal("store failure not reported in Status")
	}
	if !errors.Is(n.Status().Err, errDisk) {
		t.Fatalf("Status().Err = %v", n.Status().Err)
	}
	if _, _, ok := n.Start([]byte("more")); ok {
		t.Fatal("node accepts writes after a store failure")
	}
	if _, ok := n.State(); ok {
		t.Fatal("node still leader after a store failure")
	}
	if _, err := n.ReadIndex(t.Context()); !errors.Is(err, ErrStoreFailed) {
		t.Fatalf("ReadIndex after failure: %v", err)
	}
	// Once Kill returned, the applier is done: whatever it applied is in.
	_ = n.Kill() // its error is the store's failure, checked above
	if got := app.commands(); slices.Contains(got, "lost") {
		t.Fatalf("applied an entry that was never stored: %v (index %d)", got, idx)
	}
}

// TestNodeKillLeaderUnderLoad: with proposers running, killing the leader
// (each replica in turn) lets the survivors commit again promptly.
func TestNodeKillLeaderUnderLoad(t *testing.T) {
	for victim := range 3 {
		t.Run(fmt.Sprint(victim), func(t *testing.T) {
			cl := newCluster(t, 3, nil)
			cl.commit("a")
			if l := cl.leader(); l != victim {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				defer cancel()
				if err := cl.nodes[l].TransferLeadership(ctx, victim); err != nil {
					t.Fatal(err)
				}
			}
			var lastOK atomic.Int64
			var wg sync.WaitGroup
			nodes := slices.Clone(cl.nodes)
			// changed is closed and replaced whenever a node's role or
			// term changes: proposers that know no leader wait on it.
			stop := make(chan struct{})
			var changedMu sync.Mutex
			changed := make(chan struct{})
			leaderChanged := func() <-chan struct{} {
				changedMu.Lock()
				defer changedMu.Unlock()
				return changed
			}
			for _, n := range nodes {
				events, cancel := n.Subscribe()
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer cancel()
					for {
						select {
						case _, ok := <-events:
							if !ok {
								return // the node was killed
							}
							changedMu.Lock()
							close(changed)
							changed = make(chan struct{})
							changedMu.Unlock()
						case <-stop:
							return
						}
					}
				}()
			}
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						wake := leaderChanged() // before looking, so no change is missed
						l := -1
						for i, n := range nodes {
							if _, ok := n.State(); ok {
								l = i
							}
						}
						if l < 0 {
							select {
							case <-wake:
								continue
							case <-stop:
								return
							}
						}
						idx, _, ok := nodes[l].Start([]byte("load"))
						if !ok {
							continue
						}
						select {
						case <-cl.apps[l].wait(idx):
							lastOK.Store(time.Now().UnixNano())
						case <-wake: // a new leader: the command may be lost
						case <-stop:
							return
						}
					}
				}()
			}
			if !cl.waitUntil(5*time.Second, func() bool { return lastOK.Load() != 0 }) {
				t.Fatal("no command of the load committed")
			}
			killed := time.Now()
			cl.net.set(victim, nil)
			if err := nodes[victim].Kill(); err != nil {
				t.Error(err)
			}
			// The lab's bound for a new leader (5 s), not a speed target:
			// a loaded machine must not fail this test.
			cl.waitUntil(5*time.Second, func() bool { return lastOK.Load() >= killed.Add(10*time.Millisecond).UnixNano() })
			close(stop)
			wg.Wait()
			cl.nodes[victim] = nil
			if rec := time.Duration(lastOK.Load() - killed.UnixNano()); rec < 10*time.Millisecond {
				t.Fatalf("no commit within 5s of killing leader %d", victim)
			}
		})
	}
}

// blockingApp blocks in Apply until release is closed.
type blockingApp struct {
	*testApp
	release chan struct{}
}

func (a *blockingApp) Apply(msg ApplyMsg) {
	<-a.release
	a.testApp.Apply(msg)
}

// TestNodeBlockedApplyDoesNotStall: a follower whose application blocks in
// Apply still acknowledges appends, so the others keep committing.
func TestNodeBlockedApplyDoesNotStall(t *testing.T) {
	cl := newCluster(t, 3, nil)
	cl.commit("a")
	l := cl.leader()
	slow := (l + 1) % 3
	// Restart the slow node with an application that blocks.
	cl.crash(slow)
	blocked := &blockingApp{testApp: newTestApp(), release: make(chan struct{})}
	n, err := New(cl.cfg(slow), &inprocTransport{net: cl.net, from: slow}, cl.stores[slow], blocked)
	if err != nil {
		t.Fatal(err)
	}
	cl.net.set(slow, n)
	// The third node is cut off: commits need the slow node's votes.
	third := (l + 2) % 3
	cl.net.isolate(third, true)
	for i := range 20 {
		idx, _, ok := cl.nodes[l].Start([]byte(fmt.Sprint(i)))
		if !ok {
			t.Fatal("leader lost leadership")
		}
		select {
		case <-cl.apps[l].wait(idx):
		case <-time.After(5 * time.Second):
			t.Fatalf("command %d not committed while a follower's Apply blocks", i)
		}
	}
	if got := n.Status().Applied; got > 2 {
		t.Fatalf("blocked node applied up to %d", got)
	}
	close(blocked.release)
	cl.net.isolate(third, false)
	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	cl.net.set(slow, nil)
}

// TestNodeKillReportsViolations: Kill names a broken invariant (two leaders
// in one term) and a recovered daemon panic.
func TestNodeKillReportsViolations(t *testing.T) {
	net := newInprocNet(3)
	n, err := New(testConfig(1, 3), &inprocTransport{net: net, from: 1}, persist.NewMemory(), panicApp{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := n.HandleAppendEntries(ctx, &AppendEntriesRequest{Term: 5, LeaderID: 0,
		Entries: []Entry{{Index: 1, Term: 5, Type: persist.EntryCommand, Data: []byte("x")}}}); err != nil {
		t.Fatal(err)
	}
	// A second leader in term 5; its commit index makes the application run
	// (and panic).
	if _, err := n.HandleAppendEntries(ctx, &AppendEntriesRequest{Term: 5, LeaderID: 2,
		PrevLogIndex: 1, PrevLogTerm: 5, LeaderCommit: 1}); err != nil {
		t.Fatal(err)
	}
	pollUntil(time.Now().Add(5*time.Second), func() bool { return n.Status().Err != nil })
	err = n.Kill()
	if !errors.Is(err, ErrInvariant) || !strings.Contains(err.Error(), "two leaders in term 5") {
		t.Fatalf("Kill() = %v, want the two-leaders violation", err)
	}
	if !errors.Is(err, ErrPanic) || !strings.Contains(err.Error(), "applier") {
		t.Fatalf("Kill() = %v, want the applier's panic", err)
	}
	if err2 := n.Kill(); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("second Kill() = %v", err2)
	}
}

type panicApp struct{}

func (panicApp) Apply(ApplyMsg)        { panic("application bug") }
func (panicApp) SnapshotNeeded(uint64) {}
