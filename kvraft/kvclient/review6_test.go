package kvclient

// Adversarial tests of the clerk's deadlines (review6b): whatever the
// replicas do — hang until the attempt's context ends, refuse with leader
// hints that flap between replicas, move the known leader all the time —
// and whatever the caller does (cancel, give a deadline already past), every
// request returns by its deadline and leaves nothing running.

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// review6Caller runs one request through ck with deadline by (and ctx for
// cancellation), as one of the clerk's entry points does.
type review6Caller struct {
	name string
	do   func(ck *Clerk, ctx context.Context, by time.Time, first int, write bool, attempt func(context.Context, Service) error) error
}

func review6Callers() []review6Caller {
	return []review6Caller{
		{"Do", func(ck *Clerk, ctx context.Context, by time.Time, _ int, write bool, attempt func(context.Context, Service) error) error {
			ctx, cancel := context.WithDeadline(ctx, by)
			defer cancel()
			return ck.Do(ctx, write, attempt)
		}},
		{"DoFrom", func(ck *Clerk, ctx context.Context, by time.Time, first int, write bool, attempt func(context.Context, Service) error) error {
			ctx, cancel := context.WithDeadline(ctx, by)
			defer cancel()
			return ck.DoFrom(ctx, first, write, attempt)
		}},
		{"DoFromBy", func(ck *Clerk, ctx context.Context, by time.Time, first int, write bool, attempt func(context.Context, Service) error) error {
			return ck.DoFromBy(ctx, by, first, write, attempt)
		}},
	}
}

// flapReplica refuses every request, naming as leader the next replica of
// three (a leader hint that never settles).
type flapReplica struct {
	Service
	id    int
	calls atomic.Int64
}

func (f *flapReplica) Get(context.Context, *GetRequest) (*GetResponse, error) {
	f.calls.Add(1)
	return nil, &WrongLeaderError{Leader: (f.id + 1) % 3}
}

// hangReplica holds every request until its context ends.
type hangReplica struct {
	Service
	calls atomic.Int64
}

func (h *hangReplica) Get(ctx context.Context, _ *GetRequest) (*GetResponse, error) {
	h.calls.Add(1)
	<-ctx.Done()
	return nil, ctx.Err()
}

// okReplica answers every read.
type okReplica struct{ Service }

func (okReplica) Get(context.Context, *GetRequest) (*GetResponse, error) {
	return &GetResponse{Found: true, Value: "v"}, nil
}

func review6Get(ctx context.Context, s Service) error {
	_, err := s.Get(ctx, &GetRequest{Key: "k"})
	return err
}

// Every entry point returns by its deadline (with a generous bound for a
// loaded machine) in each scenario, with the expected outcome, and the
// goroutine count settles back afterwards.
func TestReview6ClerkReturnsByDeadline(t *testing.T) {
	before := runtime.NumGoroutine()
	type scenario struct {
		name     string
		servers  func() []Service
		watch    func(stop <-chan struct{}) LeaderWatch
		attempt  time.Duration // AttemptTimeout
		deadline time.Duration // from the call (negative: already past)
		cancelAt time.Duration // cancel ctx after this (0: never)
		wantOK   bool
	}
	// flapping moves a subscriber's leader among 0..2 every millisecond
	// until stop.
	flapping := func(stop <-chan struct{}) LeaderWatch {
		w := &subWatch{watch: newWatch(0)}
		go func() {
			for i := 1; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
					w.set(i % 3)
				}
			}
		}()
		return w
	}
	scenarios := []scenario{
		{name: "first attempt hangs, deadline before the attempt timeout", attempt: time.Hour, deadline: 150 * time.Millisecond,
			servers: func() []Service { return []Service{&hangReplica{}, &hangReplica{}} }},
		{name: "first attempt hangs, then another replica answers", attempt: 100 * time.Millisecond, deadline: 10 * time.Second, wantOK: true,
			servers: func() []Service { return []Service{&hangReplica{}, okReplica{}, okReplica{}} }},
		{name: "every replica hangs", attempt: 60 * time.Millisecond, deadline: 300 * time.Millisecond,
			servers: func() []Service { return []Service{&hangReplica{}, &hangReplica{}, &hangReplica{}} }},
		{name: "leader hints flap", attempt: time.Hour, deadline: 300 * time.Millisecond,
			servers: func() []Service { return []Service{&flapReplica{id: 0}, &flapReplica{id: 1}, &flapReplica{id: 2}} }},
		{name: "known leader flaps, replicas hang", attempt: time.Hour, deadline: 300 * time.Millisecond, watch: flapping,
			servers: func() []Service { return []Service{&hangReplica{}, &hangReplica{}, &hangReplica{}} }},
		{name: "cancelled mid-attempt", attempt: time.Hour, deadline: time.Hour, cancelAt: 50 * time.Millisecond,
			servers: func() []Service { return []Service{&hangReplica{}, &hangReplica{}, &hangReplica{}} }},
		{name: "deadline already past", attempt: time.Hour, deadline: -time.Second,
			servers: func() []Service { return []Service{&hangReplica{}, &hangReplica{}} }},
	}
	for _, caller := range review6Callers() {
		for _, sc := range scenarios {
			t.Run(caller.name+"/"+sc.name, func(t *testing.T) {
				stop := make(chan struct{})
				defer close(stop)
				cfg := DefaultClerkConfig()
				cfg.AttemptTimeout = sc.attempt
				if sc.watch != nil {
					cfg.Leader = sc.watch(stop)
				}
				ck, err := NewClerk(sc.servers(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				if sc.cancelAt > 0 {
					time.AfterFunc(sc.cancelAt, cancel)
				}
				start := time.Now()
				bound := sc.deadline
				if sc.cancelAt > 0 {
					bound = sc.cancelAt
				}
				done := make(chan error, 1)
				go func() { done <- caller.do(ck, ctx, start.Add(sc.deadline), 0, false, review6Get) }()
				select {
				case err = <-done:
				case <-time.After(max(bound, 0) + 10*time.Second):
					t.Fatalf("still running %v after its deadline", 10*time.Second)
				}
				if took := time.Since(start); took > max(bound, 0)+3*time.Second {
					t.Errorf("returned after %v, deadline %v", took, bound)
				}
				switch {
				case sc.wantOK && err != nil:
					t.Errorf("err %v, want success", err)
				case !sc.wantOK && !errors.Is(err, ErrNoLeader):
					t.Errorf("err %v, want ErrNoLeader (a read that timed out)", err)
				}
			})
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A hung first attempt does not make the clerk give up on a request whose
// deadline leaves time for more: with an attempt timeout shorter than the
// deadline, the request moves on and succeeds (at most one attempt hung).
func TestReview6ClerkHungFirstAttemptMovesOn(t *testing.T) {
	for _, caller := range review6Callers() {
		t.Run(caller.name, func(t *testing.T) {
			hang := &hangReplica{}
			cfg := DefaultClerkConfig()
			cfg.AttemptTimeout = 50 * time.Millisecond
			ck, err := NewClerk([]Service{hang, okReplica{}}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 5 {
				if err := caller.do(ck, context.Background(), time.Now().Add(20*time.Second), 0, false, review6Get); err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
			}
			if n := hang.calls.Load(); n > 5 {
				t.Errorf("the hung replica got %d attempts for 5 requests", n)
			}
		})
	}
}
