package raft

// The node's clock: the ticker that drives the core and the timer a
// follower waits on for a reordered append. Real time unless a test of this
// package sets Config.clock to a fake clock it advances (clock_test.go), so
// that node tests step time instead of sleeping through it.

import "time"

// clock makes the tickers and timers the node waits on. Each returns the
// channel to receive from and a function that stops it (and, for a fake
// clock, lets it forget the waiter).
type clock interface {
	newTicker(d time.Duration) (<-chan time.Time, func())
	newTimer(d time.Duration) (<-chan time.Time, func())
	// timeNow is the current time; afterFunc calls f in its own goroutine once d
	// has passed.
	timeNow() time.Time
	afterFunc(d time.Duration, f func())
}

// realClock is the time package's.
type realClock struct{}

func (realClock) newTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

func (realClock) newTimer(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}

func (realClock) timeNow() time.Time { return time.Now() }

func (realClock) afterFunc(d time.Duration, f func()) { time.AfterFunc(d, f) }

// clockOrReal returns the configured clock, real time by default.
func (c Config) clockOrReal() clock {
	if c.clock == nil {
		return realClock{}
	}
	return c.clock
}
