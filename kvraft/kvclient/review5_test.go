package kvclient

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// dedupCluster stands for the replicated state machine behind fake
// replicas: a write id is applied at most once, whichever replica it
// reaches, and a replica may apply a write yet never answer (the leader
// that committed it lost the leadership before replying).
type dedupCluster struct {
	mu      sync.Mutex // guards applied, count
	applied map[WriteID]bool
	count   int // writes applied
}

func (c *dedupCluster) apply(id WriteID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.applied == nil {
		c.applied = map[WriteID]bool{}
	}
	if !c.applied[id] {
		c.applied[id] = true
		c.count++
	}
}

// committingReplica applies every write to its cluster; if hang, it then
// hangs until the attempt is abandoned.
type committingReplica struct {
	fakeReplica
	cluster *dedupCluster
}

func (r *committingReplica) Put(ctx context.Context, req *PutRequest) (*PutResponse, error) {
	r.cluster.apply(req.Write)
	return r.fakeReplica.Put(ctx, req)
}

// A write the old leader commits but never answers, abandoned when the
// leader flaps away and back and away again, is retried with the same write
// id; the caller gets one result and the cluster applies it once.
func TestReview5FlappingLeaderAbandonedWriteAppliedOnce(t *testing.T) {
	bothWatches(t, func(t *testing.T, newWatch func(int) movableWatch) {
		cl := &dedupCluster{}
		w := newWatch(1)
		r0 := &committingReplica{fakeReplica: fakeReplica{err: errors.New("not the leader")}, cluster: cl}
		r1 := &committingReplica{fakeReplica: fakeReplica{hang: true}, cluster: cl}
		r2 := &committingReplica{fakeReplica: fakeReplica{hang: true}, cluster: cl}
		cfg := DefaultClerkConfig()
		cfg.AttemptTimeout, cfg.Leader = time.Hour, w
		ck, err := NewClerk([]Service{r0, r1, r2}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 2)
		go func() { done <- ck.Put(context.Background(), "k", "v") }()
		waitUntil(t, "the write reaches replica 1", func() bool { return len(r1.seen()) == 1 })
		w.set(2) // abandons the attempt at 1
		waitUntil(t, "the retry reaches replica 2", func() bool { return len(r2.seen()) == 1 })
		w.set(1) // abandons the attempt at 2; 1 hangs again
		waitUntil(t, "the retry reaches replica 1", func() bool { return len(r1.seen()) == 2 })
		r2.mu.Lock()
		r2.hang = false
		r2.mu.Unlock()
		w.set(2)
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the write did not finish after the leader settled")
		}
		ids := append(append(r1.seen(), r2.seen()...), r0.seen()...)
		for _, id := range ids {
			if id != ids[0] {
				t.Fatalf("the retries changed the write id: %v", ids)
			}
		}
		if cl.count != 1 {
			t.Fatalf("the write was applied %d times", cl.count)
		}
		select {
		case err := <-done:
			t.Fatalf("a second result: %v", err)
		default:
		}
	})
}

// neverWatch is a LeaderSubscriber cut off from the cluster: it names a
// leader and never tells of a change.
type neverWatch struct {
	leader int
	added  atomic.Int64
	ended  atomic.Int64
}

func (w *neverWatch) Leader() (int, <-chan struct{}) { return w.leader, nil }

func (w *neverWatch) AbandonOnMove(int, func()) func() {
	w.added.Add(1)
	return func() { w.ended.Add(1) }
}

// With a subscriber that is never notified (its replica is cut off and
// still names a dead leader), each attempt at that leader still ends at
// AttemptTimeout, the write ends at the caller's deadline with
// ErrTimeout, and every registration is stopped. (The clerk keeps going
// back to the leader the watch names: it trusts the local view, which a
// cut-off replica's own election timeout corrects.)
func TestReview5SilentSubscriberAttemptEndsAtDeadline(t *testing.T) {
	w := &neverWatch{leader: 1}
	stuck := &fakeReplica{hang: true}
	cfg := DefaultClerkConfig()
	cfg.AttemptTimeout, cfg.Leader = 100*time.Millisecond, w
	ck, err := NewClerk([]Service{&fakeReplica{}, stuck}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ck.Put(ctx, "k", "v") }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("Put = %v, want ErrTimeout", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the write outlived its deadline")
	}
	stuck.mu.Lock()
	causes := append([]error(nil), stuck.causes...)
	stuck.mu.Unlock()
	if len(causes) < 2 {
		t.Fatalf("%d attempts in 1 s with a 100 ms attempt timeout", len(causes))
	}
	for _, c := range causes {
		if !errors.Is(c, context.DeadlineExceeded) {
			t.Errorf("a stuck attempt ended with %v, want its deadline", c)
		}
	}
	if a, e := w.added.Load(), w.ended.Load(); a == 0 || a != e {
		t.Fatalf("%d registrations, %d stopped", a, e)
	}
}

// Attempts under concurrent registration, stopping and moves: an abandon
// runs at most once, never for an attempt at the new leader, never for an
// attempt stopped before the move began; nothing is left registered.
func TestReview5AttemptsConcurrentMoves(t *testing.T) {
	var a Attempts
	var wg sync.WaitGroup
	stopMoving := make(chan struct{})
	var leader atomic.Int64
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stopMoving:
				return
			default:
			}
			l := i % 3
			leader.Store(int64(l))
			a.Moved(l)
		}
	})
	var bad atomic.Int64
	var workers sync.WaitGroup
	for g := range 4 {
		workers.Go(func() {
			for i := range 2000 {
				target := (g + i) % 3
				var calls atomic.Int64
				stop := a.Add(target, func() {
					if calls.Add(1) > 1 {
						bad.Add(1)
					}
				})
				if i%2 == 0 {
					runtime.Gosched()
				}
				stop()
				after := calls.Load()
				runtime.Gosched()
				// An abandon already copied out by a Moved may still run
				// after stop; a new one may not start. Give a running one
				// time to finish, then check no second one came.
				if calls.Load() > max(after, 1) {
					bad.Add(1)
				}
			}
		})
	}
	workers.Wait()
	close(stopMoving)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d attempts abandoned twice or after stop", bad.Load())
	}
	a.mu.Lock()
	n := len(a.m)
	a.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d attempts still registered", n)
	}
}

// Many writes through a subscriber leave no goroutine, timer or
// registration behind.
func TestReview5SubscriberLeavesNothingBehind(t *testing.T) {
	w := &subWatch{watch: newWatch(1)}
	r0, r1 := &fakeReplica{}, &fakeReplica{}
	cfg := DefaultClerkConfig()
	cfg.Leader = w
	ck, err := NewClerk([]Service{r0, r1}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	for range 500 {
		if err := ck.Put(context.Background(), "k", "v"); err != nil {
			t.Fatal(err)
		}
	}
	w.attempts.mu.Lock()
	n := len(w.attempts.m)
	w.attempts.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d finished attempts still registered", n)
	}
	waitUntil(t, "goroutines back to the start", func() bool { return runtime.NumGoroutine() <= before })
}
