package kvraft

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// BenchmarkList: one page of 1000 keys (with values) out of 10 000 under a
// prefix, at the current revision and at a revision 1000 changes back,
// served by the state machine (no raft round).
func BenchmarkList(b *testing.B) {
	s := newState(stateLimits{historyEvents: 10000, historyBytes: 64 << 20})
	for i := range 10000 {
		applyOp(s, op{kind: rPut, key: fmt.Sprintf("p/%05d", i), value: "0123456789abcdef"})
	}
	old := s.rev
	for i := range 1000 {
		applyOp(s, op{kind: rPut, key: fmt.Sprintf("p/%05d", i*7), value: "changed"})
	}
	for _, tc := range []struct {
		name string
		rev  uint64
	}{{"current", 0}, {"1000-changes-back", old}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				kvs, _, _, _, err := s.list(listQuery{prefix: "p/", after: "p/04000", limit: 1000, maxBytes: 4 << 20, rev: tc.rev})
				if err != nil || len(kvs) != 1000 {
					b.Fatalf("%d keys, %v", len(kvs), err)
				}
			}
		})
	}
}

// BenchmarkWatchFanout: 1000 watchers wait on one prefix; each write under
// it wakes all of them and each collects the event and waits again. The
// time per op is per write, until every watcher has seen it.
func BenchmarkWatchFanout(b *testing.B) {
	cfg := DefaultConfig(0)
	s, _, err := newFakeServerConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Kill()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const watchers = 1000
	var wg sync.WaitGroup
	seen := make(chan uint64, watchers*4)
	for range watchers {
		wg.Go(func() {
			after := uint64(0)
			for ctx.Err() == nil {
				resp, err := s.Watch(ctx, &WatchRequest{Key: "w/", Prefix: true, AfterRevision: after, Wait: time.Minute})
				if err != nil {
					return
				}
				for range resp.Events {
					seen <- resp.NextAfterRevision
				}
				after = resp.NextAfterRevision
			}
		})
	}
	for s.watchers.Load() < watchers {
		time.Sleep(time.Millisecond)
	}
	for b.Loop() {
		if _, err := s.Put(ctx, &PutRequest{Key: "w/k", Value: "v"}); err != nil {
			b.Fatal(err)
		}
		for range watchers {
			<-seen
		}
	}
	cancel()
	wg.Wait()
}
