package rafttest

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/persisttest"
)

// stallingStore holds an Append now and then, as a slow SD card or a store
// collecting its garbage does: every 1-3 s one Append waits 20 ms to 1.5 s
// (a pause below a heartbeat interval, one the leader's ticker bridges with
// heartbeats, or one past raft's Config.StallHeartbeats that costs the
// leadership), unless the node's context ends first. The optional store
// interfaces are passed through.
type stallingStore struct {
	persist.Store
	mu   sync.Mutex
	rng  *rand.Rand
	next time.Time
}

func newStallingStore(s persist.Store, seed uint64) *stallingStore {
	st := &stallingStore{Store: s, rng: rand.New(rand.NewPCG(seed, seed^0x5eed))}
	st.next = time.Now().Add(st.gap())
	return st
}

func (s *stallingStore) gap() time.Duration {
	return time.Second + time.Duration(s.rng.Int64N(int64(2*time.Second)))
}

func (s *stallingStore) Append(ctx context.Context, hs persist.HardState, entries []persist.Entry) error {
	s.mu.Lock()
	var hold time.Duration
	if now := time.Now(); !now.Before(s.next) {
		hold = 20*time.Millisecond + time.Duration(s.rng.Int64N(int64(1480*time.Millisecond)))
		s.next = now.Add(hold + s.gap())
	}
	s.mu.Unlock()
	if hold > 0 {
		select {
		case <-time.After(hold):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Store.Append(ctx, hs, entries)
}

func (s *stallingStore) CanLoadSnapshot() bool {
	l, ok := s.Store.(persist.SnapshotLoader)
	return ok && l.CanLoadSnapshot()
}

func (s *stallingStore) LoadSnapshot(ctx context.Context) (persist.Snapshot, error) {
	return s.Store.(persist.SnapshotLoader).LoadSnapshot(ctx)
}

func (s *stallingStore) SnapshotsBesideAppends() bool {
	return persist.TakesSnapshotsBesideAppends(s.Store)
}

// TestStallingStores runs crash, partition and snapshot tests of the lab on
// file stores whose Appends stall now and then for up to 1.5 s: leaders keep
// their followers through the shorter pauses (their tickers send the
// heartbeats) and lose their leadership to the longer ones, and the
// cluster's checks (one value per index, every command applied in order)
// hold throughout.
func TestStallingStores(t *testing.T) {
	t.Parallel() // long and mostly waiting; see the package doc
	f, err := persisttest.ByName("file")
	if err != nil {
		t.Fatal(err)
	}
	var seq uint64
	var seqMu sync.Mutex
	open := f.Open
	f.Name += "-stalling"
	f.Open = func(t testing.TB, dir string) (persist.Store, error) {
		s, err := open(t, dir)
		if err != nil {
			return nil, err
		}
		seqMu.Lock()
		seq++
		seed := seq
		seqMu.Unlock()
		return newStallingStore(s, seed), nil
	}
	opts := Options{Store: &f}
	t.Run("Persist3", func(t *testing.T) { persist3(t, opts) })
	t.Run("SnapshotInstallUnCrash", func(t *testing.T) { snapCommon(t, opts, false, false, true) })
}
