package raft

import (
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when the test advances it. A tick or
// timer that falls due is handed over synchronously: Advance returns only
// once each due waiter's goroutine received it (or stopped the waiter), so
// k ticks of the clock are exactly k ticks of every node on it, however
// busy the machine.
type fakeClock struct {
	mu      sync.Mutex // guards every field below
	now     time.Time
	waiters map[*fakeWaiter]struct{}
}

// fakeWaiter is one ticker (period > 0) or timer.
type fakeWaiter struct {
	at     time.Time
	period time.Duration
	ch     chan time.Time
	// stopped is closed by the stop function: a hand-over in progress gives
	// up.
	stopped  chan struct{}
	stopOnce sync.Once
}

var _ clock = (*fakeClock)(nil)

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1_000_000, 0), waiters: make(map[*fakeWaiter]struct{})}
}

func (f *fakeClock) add(d, period time.Duration) (<-chan time.Time, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := &fakeWaiter{at: f.now.Add(d), period: period, ch: make(chan time.Time), stopped: make(chan struct{})}
	f.waiters[w] = struct{}{}
	return w.ch, func() {
		w.stopOnce.Do(func() { close(w.stopped) })
		f.mu.Lock()
		delete(f.waiters, w)
		f.mu.Unlock()
	}
}

// timers is the number of timers (not tickers) waiting.
func (f *fakeClock) timers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for w := range f.waiters {
		if w.period == 0 {
			n++
		}
	}
	return n
}

func (f *fakeClock) newTicker(d time.Duration) (<-chan time.Time, func()) { return f.add(d, d) }

func (f *fakeClock) newTimer(d time.Duration) (<-chan time.Time, func()) { return f.add(d, 0) }

func (f *fakeClock) timeNow() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) afterFunc(d time.Duration, fn func()) {
	ch, stop := f.add(d, 0)
	go func() {
		defer stop()
		<-ch
		fn()
	}()
}

// Advance moves the clock forward by d, handing each tick and timer that
// falls due to its receiver, in order of due time. A receiver that takes
// longer than 10 s fails the test (a node that stopped reading its ticker
// without stopping it).
func (f *fakeClock) Advance(t testing.TB, d time.Duration) {
	t.Helper()
	f.mu.Lock()
	end := f.now.Add(d)
	f.mu.Unlock()
	for {
		f.mu.Lock()
		var next *fakeWaiter
		for w := range f.waiters {
			if !w.at.After(end) && (next == nil || w.at.Before(next.at)) {
				next = w
			}
		}
		if next == nil {
			f.now = end
			f.mu.Unlock()
			return
		}
		f.now = next.at
		if next.period > 0 {
			next.at = next.at.Add(next.period)
		} else {
			delete(f.waiters, next)
		}
		now := f.now
		f.mu.Unlock()
		select {
		case next.ch <- now:
		case <-next.stopped:
		case <-time.After(10 * time.Second):
			t.Fatalf("fake clock: a waiter due at %v was not received within 10s", now)
		}
	}
}

func TestFakeClock(t *testing.T) {
	f := newFakeClock()
	ticks, stopTicker := f.newTicker(10 * time.Millisecond)
	timer, _ := f.newTimer(25 * time.Millisecond)
	got := make(chan string, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 4 {
			select {
			case <-ticks:
				got <- "tick"
			case <-timer:
				got <- "timer"
			}
		}
	}()
	f.Advance(t, 5*time.Millisecond) // nothing due
	f.Advance(t, 30*time.Millisecond)
	<-done
	close(got)
	var seq []string
	for s := range got {
		seq = append(seq, s)
	}
	// Due at 10, 20, 25 (timer), 30.
	if want := []string{"tick", "tick", "timer", "tick"}; len(seq) != 4 || seq[0] != want[0] || seq[2] != want[2] || seq[3] != want[3] {
		t.Fatalf("sequence %v, want %v", seq, want)
	}
	// The tick at 40 ms finds no receiver: stopping the ticker must
	// release Advance, as a node's Kill does.
	released := make(chan struct{})
	go func() {
		defer close(released)
		f.Advance(t, 20*time.Millisecond)
	}()
	stopTicker()
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("Advance blocked on a stopped ticker")
	}
}
