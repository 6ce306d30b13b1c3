package raft

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
)

// contractStore is a Memory store that takes snapshots beside its Appends
// and records breaches of persist.BackgroundSnapshots' rules: a Close while
// a SaveSnapshot runs. Its next SaveSnapshot, once armed, waits for the
// test; its Appends fail once failAppend is set.
type contractStore struct {
	*persist.Memory
	saving          atomic.Bool
	closeDuringSave atomic.Bool
	failAppend      atomic.Bool
	closeOnce       sync.Once
	closed          chan struct{}
	gates           gates
}

func newContractStore() *contractStore {
	return &contractStore{Memory: persist.NewMemory(), closed: make(chan struct{})}
}

func (s *contractStore) SnapshotsBesideAppends() bool { return true }

func (s *contractStore) SaveSnapshot(ctx context.Context, snap persist.Snapshot) error {
	s.saving.Store(true)
	defer s.saving.Store(false)
	s.gates.pass()
	return s.Memory.SaveSnapshot(ctx, snap)
}

func (s *contractStore) Append(ctx context.Context, hs persist.HardState, es []persist.Entry) error {
	if s.failAppend.Load() {
		return errors.New("injected append failure")
	}
	return s.Memory.Append(ctx, hs, es)
}

func (s *contractStore) Close() error {
	if s.saving.Load() {
		s.closeDuringSave.Store(true)
	}
	s.closeOnce.Do(func() { close(s.closed) })
	return s.Memory.Close()
}

// TestReviewBesideNoCloseDuringBackgroundSnapshot: while a compaction is
// stored beside the loop, an Append fails; the loop's storeFailed closes
// the store at once, while the SaveSnapshot still runs, which
// persist.BackgroundSnapshots forbids ("no other method ... not Close"):
// a store that releases what the write uses on Close breaks.
func TestReviewBesideNoCloseDuringBackgroundSnapshot(t *testing.T) {
	stores := make([]*contractStore, 3)
	cl := newClusterStores(t, 3, func(c *Config) { c.SnapshotThresholdBytes = 2000 },
		func(i int) persist.Store {
			stores[i] = newContractStore()
			return stores[i]
		})
	l := cl.leader()
	g := stores[l].gates.arm()
	defer g.open()
	proposeUntil(t, cl, l, g)
	stores[l].failAppend.Store(true)
	cl.nodes[l].Start([]byte("fails"))
	// The node fails; the store must not be closed before the snapshot
	// write returns.
	select {
	case <-stores[l].closed:
	case <-time.After(2 * time.Second):
	}
	g.open()
	select {
	case <-stores[l].closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the failed node never closed its store")
	}
	if stores[l].closeDuringSave.Load() {
		t.Fatal("the store was closed while a background SaveSnapshot ran")
	}
}

// appendGateStore is a contractStore whose SaveSnapshot fails once armed
// and whose Appends, once gated, wait for the test; it records a Close
// while an Append runs (the Store contract has no concurrent calls but
// Size, LoadSnapshot and a background SaveSnapshot beside Appends).
type appendGateStore struct {
	*contractStore
	failSave         atomic.Bool
	appending        atomic.Bool
	closeDuringWrite atomic.Bool
	appendGates      gates
}

func (s *appendGateStore) SaveSnapshot(ctx context.Context, snap persist.Snapshot) error {
	err := s.contractStore.SaveSnapshot(ctx, snap) // waits for its gate
	if s.failSave.Load() {
		return errors.New("injected snapshot failure")
	}
	return err
}

func (s *appendGateStore) Append(ctx context.Context, hs persist.HardState, es []persist.Entry) error {
	s.appending.Store(true)
	defer s.appending.Store(false)
	s.appendGates.pass()
	return s.contractStore.Append(ctx, hs, es)
}

func (s *appendGateStore) Close() error {
	if s.appending.Load() {
		s.closeDuringWrite.Store(true)
	}
	return s.contractStore.Close()
}

// TestReviewBesideNoCloseDuringAppend: a compaction stored beside the loop
// fails while the loop is in an Append; compactBeside's storeFailed closes
// the store from its goroutine, concurrently with that Append.
func TestReviewBesideNoCloseDuringAppend(t *testing.T) {
	stores := make([]*appendGateStore, 3)
	cl := newClusterStores(t, 3, func(c *Config) { c.SnapshotThresholdBytes = 2000 },
		func(i int) persist.Store {
			stores[i] = &appendGateStore{contractStore: newContractStore()}
			return stores[i]
		})
	l := cl.leader()
	st := stores[l]
	g := st.gates.arm()
	defer g.open()
	proposeUntil(t, cl, l, g)
	ag := st.appendGates.arm()
	defer ag.open()
	cl.nodes[l].Start([]byte("held append"))
	select {
	case <-ag.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the loop never appended beside the compaction")
	}
	st.failSave.Store(true)
	g.open() // the snapshot fails while the Append is held
	select {
	case <-st.closed:
	case <-time.After(2 * time.Second):
	}
	ag.open()
	select {
	case <-st.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the failed node never closed its store")
	}
	if st.closeDuringWrite.Load() {
		t.Fatal("the store was closed while the loop's Append ran")
	}
}
