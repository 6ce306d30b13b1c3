package kvraft

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func newFake16(t *testing.T, adjust func(*Config)) (*Server, *fakeRaft) {
	t.Helper()
	cfg := DefaultConfig(0)
	if adjust != nil {
		adjust(&cfg)
	}
	s, fr, err := newFakeServerConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Kill() })
	return s, fr
}

// A Watch waits for a matching write, and not for others.
func TestServerWatchWakesOnMatchingWrite(t *testing.T) {
	s, _ := newFake16(t, nil)
	ctx := context.Background()
	put, err := s.Put(ctx, &PutRequest{Key: "w/a", Value: "0"})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *WatchResponse, 1)
	go func() {
		resp, err := s.Watch(ctx, &WatchRequest{Key: "w/", Prefix: true, AfterRevision: put.Header.Revision, Wait: time.Minute})
		if err != nil {
			t.Error(err)
		}
		got <- resp
	}()
	waitFor(t, "condition", func() bool { return s.watchers.Load() == 1 })
	s.Put(ctx, &PutRequest{Key: "other", Value: "x"})
	select {
	case r := <-got:
		t.Fatalf("woken by another key: %+v", r)
	case <-time.After(50 * time.Millisecond):
	}
	s.Put(ctx, &PutRequest{Key: "w/b", Value: "1"})
	select {
	case r := <-got:
		if len(r.Events) != 1 || r.Events[0].KV.Key != "w/b" || r.NextAfterRevision != 3 {
			t.Fatalf("answer %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch not woken")
	}
}

// A Watch of a quiet key waits while other keys change faster than the
// history keeps them: the changes it did not wait for were not for it, so
// it gets its key's change, or an empty answer at the end of its wait, and
// never "compacted" (which ended every stream of a quiet key, at its next
// heartbeat, once 1 MiB of other changes had passed). A watcher whose own
// change the history dropped before it looked is still told.
func TestServerWatchQuietKeyOutlivesTheHistory(t *testing.T) {
	s, _ := newFake16(t, func(c *Config) { c.HistoryMaxEvents = 5 })
	ctx := context.Background()
	put := func(k string) uint64 {
		t.Helper()
		resp, err := s.Put(ctx, &PutRequest{Key: k, Value: "v"})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	start := put("noise")
	type answer struct {
		resp *WatchResponse
		err  error
	}
	watch := func(key string, wait time.Duration) chan answer {
		ch := make(chan answer, 1)
		go func() {
			resp, err := s.Watch(ctx, &WatchRequest{Key: key, AfterRevision: start, Wait: wait})
			ch <- answer{resp, err}
		}()
		return ch
	}
	woken, timedOut := watch("quiet", time.Minute), watch("silent", 500*time.Millisecond)
	waitFor(t, "both watchers waiting", func() bool { return s.watchers.Load() == 2 })
	for range 20 {
		put("noise")
	}
	rev := put("quiet")
	a := <-woken
	if a.err != nil || a.resp.Compacted || len(a.resp.Events) != 1 || a.resp.Events[0].KV.ModRevision != rev || a.resp.NextAfterRevision != rev {
		t.Fatalf("the watcher of the quiet key: %+v, %v; want its change at %d", a.resp, a.err, rev)
	}
	a = <-timedOut
	if a.err != nil || a.resp.Compacted || len(a.resp.Events) != 0 || a.resp.NextAfterRevision != rev {
		t.Fatalf("the watcher whose wait ended: %+v, %v; want no events, next %d", a.resp, a.err, rev)
	}
	if resp, err := s.Watch(ctx, &WatchRequest{Key: "silent", AfterRevision: start}); err != nil || !resp.Compacted {
		t.Fatalf("a new watch from the dropped revision %d: %+v, %v; want compacted", start, resp, err)
	}
}

// Limits, each sent the bad thing.
func TestServerWatchLimits(t *testing.T) {
	s, _ := newFake16(t, func(c *Config) { c.MaxWatchers = 2; c.WatchMaxWait = 200 * time.Millisecond })
	ctx := context.Background()
	if _, err := s.Watch(ctx, &WatchRequest{Key: ""}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty key without prefix: %v", err)
	}
	if _, err := s.Watch(ctx, &WatchRequest{Key: "k", Wait: -time.Second}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("negative wait: %v", err)
	}
	// A wait of an hour is cut to WatchMaxWait.
	begin := time.Now()
	resp, err := s.Watch(ctx, &WatchRequest{Key: "k", Wait: time.Hour})
	if err != nil || len(resp.Events) != 0 || time.Since(begin) > 30*time.Second {
		t.Fatalf("capped wait: %+v, %v after %v", resp, err, time.Since(begin))
	}
	// Two watchers wait; the third is refused.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { s.Watch(ctx, &WatchRequest{Key: "k", Wait: time.Hour}) })
	}
	waitFor(t, "condition", func() bool { return s.watchers.Load() == 2 })
	if _, err := s.Watch(ctx, &WatchRequest{Key: "k"}); !errors.Is(err, ErrTooManyWatchers) {
		t.Fatalf("third watcher: %v", err)
	}
	wg.Wait()
	if n := s.watchers.Load(); n != 0 {
		t.Fatalf("%d watchers left counted", n)
	}
	// Events per answer are capped by the request's limit.
	for i := range 5 {
		s.Put(ctx, &PutRequest{Key: "k", Value: fmt.Sprint(i)})
	}
	resp, err = s.Watch(ctx, &WatchRequest{Key: "k", Limit: 2})
	if err != nil || len(resp.Events) != 2 || resp.NextAfterRevision != 2 {
		t.Fatalf("limit 2: %+v, %v", resp, err)
	}
}

func TestServerWatchEndsOnKill(t *testing.T) {
	s, _ := newFake16(t, nil)
	done := make(chan error, 1)
	go func() {
		_, err := s.Watch(context.Background(), &WatchRequest{Key: "k", Wait: time.Hour})
		done <- err
	}()
	waitFor(t, "condition", func() bool { return s.watchers.Load() == 1 })
	s.Kill()
	select {
	case err := <-done:
		if !errors.Is(err, ErrKilled) {
			t.Fatalf("watch after Kill: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch outlived Kill")
	}
}

func TestServerListLimits(t *testing.T) {
	s, _ := newFake16(t, func(c *Config) { c.ListMaxLimit = 3; c.ListMaxBytes = 1 << 20 })
	ctx := context.Background()
	for i := range 5 {
		s.Put(ctx, &PutRequest{Key: fmt.Sprintf("l/%d", i), Value: "v"})
	}
	resp, err := s.List(ctx, &ListRequest{Prefix: "l/", Limit: 1 << 30})
	if err != nil || len(resp.KVs) != 3 || !resp.More || resp.Revision != 5 || resp.Header.Revision != 5 {
		t.Fatalf("huge limit: %+v, %v", resp, err)
	}
	if _, err := s.List(ctx, &ListRequest{Limit: -1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("negative limit: %v", err)
	}
	if _, err := s.List(ctx, &ListRequest{Revision: 99}); !errors.Is(err, ErrFutureRevision) {
		t.Fatalf("future revision: %v", err)
	}
}

func TestServerLeaseLimits(t *testing.T) {
	s, _ := newFake16(t, func(c *Config) { c.MaxLeases = 1 })
	ctx := context.Background()
	for _, ttl := range []time.Duration{0, time.Millisecond, 999 * time.Millisecond, 25 * time.Hour} {
		if _, err := s.LeaseGrant(ctx, &LeaseGrantRequest{TTL: ttl}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("TTL %v: %v", ttl, err)
		}
	}
	if _, err := s.LeaseGrant(ctx, &LeaseGrantRequest{TTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LeaseGrant(ctx, &LeaseGrantRequest{TTL: time.Second}); !errors.Is(err, ErrTooManyLeases) {
		t.Fatalf("second lease with MaxLeases 1: %v", err)
	}
	if _, err := s.LeaseKeepAlive(ctx, &LeaseKeepAliveRequest{ID: 12345}); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("keep-alive of a missing lease: %v", err)
	}
	if _, err := s.Put(ctx, &PutRequest{Key: "k", Value: "v", Lease: 12345}); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("put with a missing lease: %v", err)
	}
}

// A lease expires through the log about its TTL after the last keep-alive,
// its keys with it; keep-alives hold it; a grant retried with the same
// write id returns the same lease.
func TestServerLeaseExpiry(t *testing.T) {
	s, _ := newFake16(t, func(c *Config) { c.LeaseTick = 10 * time.Millisecond })
	ctx := context.Background()
	openSessionID(t, s, 3)
	id := WriteID{ClientID: 3, Seq: 1}
	g, err := s.LeaseGrant(ctx, &LeaseGrantRequest{TTL: time.Second, Write: id})
	if err != nil {
		t.Fatal(err)
	}
	if again, err := s.LeaseGrant(ctx, &LeaseGrantRequest{TTL: time.Second, Write: id}); err != nil || again.ID != g.ID {
		t.Fatalf("retried grant: %+v, %v; want lease %d", again, err, g.ID)
	}
	if _, err := s.Put(ctx, &PutRequest{Key: "presence", Value: "here", Lease: g.ID}); err != nil {
		t.Fatal(err)
	}
	stop := time.Now().Add(1500 * time.Millisecond)
	var last time.Time
	for time.Now().Before(stop) {
		last = time.Now()
		if _, err := s.LeaseKeepAlive(ctx, &LeaseKeepAliveRequest{ID: g.ID}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		if r, _ := s.Get(ctx, &GetRequest{Key: "presence"}); !r.Found {
			t.Fatal("key expired while kept alive")
		}
	}
	ttl, err := s.LeaseTimeToLive(ctx, &LeaseTimeToLiveRequest{ID: g.ID, Keys: true})
	if err != nil || len(ttl.Keys) != 1 || ttl.Remaining > time.Second {
		t.Fatalf("time to live: %+v, %v", ttl, err)
	}
	waitFor(t, "condition", func() bool { r, _ := s.Get(ctx, &GetRequest{Key: "presence"}); return !r.Found })
	if gone := time.Since(last); gone < time.Second {
		t.Fatalf("expired %v after the last keep-alive, before its TTL", gone)
	}
	if _, err := s.LeaseKeepAlive(ctx, &LeaseKeepAliveRequest{ID: g.ID}); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("keep-alive after expiry: %v", err)
	}
}
