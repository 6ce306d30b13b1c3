package client

import (
	"testing"
	"time"
)

// A lease is given up after a TTL of failed refreshes while the process
// runs, but not at the first failure after the process was stopped for
// longer than the TTL (the whole machine stalled: the leader kept the lease).
func TestLeaseClockDiscountsStalls(t *testing.T) {
	const ttl, every = 3 * time.Second, time.Second
	t0 := time.Unix(1000, 0)

	running := leaseClock{ttl: ttl, lastOK: t0}
	now := t0
	for i := range 3 { // rounds of a pause and a failed attempt that timed out
		start := now
		now = now.Add(2 * every)
		running.round(start, now, 2*every)
		if lost, want := running.lost(now), i >= 1; lost != want {
			t.Fatalf("running, after %v of failed refreshes: lost %v, want %v", now.Sub(t0), lost, want)
		}
	}

	stalled := leaseClock{ttl: ttl, lastOK: t0}
	start := t0
	now = t0.Add(7*time.Second + every + 100*time.Millisecond) // stopped 7s in its pause; a fast failure
	stalled.round(start, now, 2*every)
	if stalled.lost(now) {
		t.Fatalf("lost at the first failure after a 7s stall (%v since the last refresh, %v of it running)",
			now.Sub(t0), every+100*time.Millisecond)
	}
	for range 2 {
		start = now
		now = now.Add(2 * every)
		stalled.round(start, now, 2*every)
	}
	if !stalled.lost(now) {
		t.Fatalf("still held after a stall and then %v of failed refreshes", 4*every)
	}
}
