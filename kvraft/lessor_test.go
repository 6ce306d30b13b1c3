package kvraft

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// The lessor's clock: a lease whose holder stops refreshing is due one TTL
// after its last refresh while the leader ticks on time, but a stall of the
// leader (ticks that did not run) does not count against the lease, since
// the holder's refreshes could not be taken meanwhile.
func TestLessorDiscountsALeaderStall(t *testing.T) {
	const (
		tick  = 100 * time.Millisecond
		ttl   = 2 * time.Second
		retry = time.Second
		term  = 3
	)
	ttls := func(gen uint64) (map[uint64]time.Duration, uint64, bool) {
		return map[uint64]time.Duration{7: ttl}, 1, gen != 1
	}
	var l lessor
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) []uint64 { return l.due(term, t0.Add(d), tick, retry, ttls) }
	every := func(from, to time.Duration) []uint64 { // due on time, every tick in [from, to]
		var out []uint64
		for d := from; d <= to; d += tick {
			out = append(out, at(d)...)
		}
		return out
	}

	// Ticking on time: the deadline starts at the first tick plus the TTL.
	if got := every(0, ttl-tick); len(got) != 0 {
		t.Fatalf("due before the TTL passed: %v", got)
	}
	if !l.renew(7, term, t0.Add(ttl-tick).Add(ttl)) {
		t.Fatal("renew refused")
	}
	// A 7 s stall right after the refresh: the next tick comes 7 s late.
	// Only the tick's own length counts; the lease lives on.
	stallEnd := ttl - tick + 7*time.Second
	if got := at(stallEnd); len(got) != 0 {
		t.Fatalf("due right after a 7s stall of the leader: %v", got)
	}
	// Then on time again: due once the TTL passes in ticks that ran (one
	// tick of the stall counted, as for any tick).
	if got := every(stallEnd+tick, stallEnd+ttl-2*tick); len(got) != 0 {
		t.Fatalf("due before the TTL passed in running time: %v", got)
	}
	if got := every(stallEnd+ttl-tick, stallEnd+ttl+tick); !slices.Equal(got, []uint64{7}) {
		t.Fatalf("due after the TTL passed in running time: %v, want [7] once", got)
	}

	// A late tick within two ticks is not a stall: no lease lives longer
	// for ordinary scheduling noise.
	var m lessor
	at = func(d time.Duration) []uint64 { return m.due(term, t0.Add(d), tick, retry, ttls) }
	var got []uint64
	for d := time.Duration(0); d <= ttl+tick; d += 2 * tick {
		got = append(got, at(d)...)
	}
	if !slices.Equal(got, []uint64{7}) {
		t.Fatalf("ticks two ticks apart: due %v by TTL plus a tick, want [7]", got)
	}
}

// TestLessorExpiresUnderSteadilyLateTicks: ticks that keep coming more than
// two ticks late (a machine busy for good) stretch a lease by at most
// lateness/tick, never keep it alive: each tick still counts one tick.
func TestLessorExpiresUnderSteadilyLateTicks(t *testing.T) {
	const (
		tick  = 100 * time.Millisecond
		every = 3 * tick // each tick comes two ticks late
		ttl   = 2 * time.Second
	)
	ttls := func(gen uint64) (map[uint64]time.Duration, uint64, bool) {
		return map[uint64]time.Duration{7: ttl}, 1, gen != 1
	}
	var l lessor
	t0 := time.Unix(1000, 0)
	var d time.Duration
	for ; d <= 4*ttl*every/tick; d += every {
		if got := l.due(3, t0.Add(d), tick, time.Second, ttls); slices.Equal(got, []uint64{7}) {
			break
		}
	}
	if d < ttl || d > 2*ttl*every/tick {
		t.Fatalf("lease due after %v of ticks every %v, want between %v and %v", d, every, ttl, 2*ttl*every/tick)
	}
}

// A lease's keys come back in order, at most the limit asked, with the
// first ones when there are more; without a limit, none.
func TestLeaseInfoKeysBounded(t *testing.T) {
	s := newState(testLimits)
	applyOp(s, op{kind: opLeaseGrant, lease: 5, ttl: 60_000, limit: 10})
	var all []string
	for i := range 25 {
		k := fmt.Sprintf("k%02d", (i*7)%25) // out of order
		applyOp(s, op{kind: rPut, key: k, value: "v", lease: 5})
		all = append(all, k)
	}
	slices.Sort(all)
	for _, tc := range []struct {
		limit int
		want  []string
		more  bool
	}{{0, nil, false}, {10, all[:10], true}, {1, all[:1], true}, {25, all, false}, {100, all, false}} {
		_, keys, more, ok := s.leaseInfo(5, tc.limit)
		if !ok || !slices.Equal(keys, tc.want) || more != tc.more {
			t.Errorf("limit %d: keys %v more %v, want %v %v", tc.limit, keys, more, tc.want, tc.more)
		}
	}
}
