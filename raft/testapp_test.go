package raft

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// testApp is an Application that records what it applied and lets callers
// wait for an index. Its state is the list of applied commands; a snapshot
// is that list, newline-separated.
//
// Waiting for an index (wait, notifyAt) does not take mu: the benchmarks'
// proposers register for every command they propose, and a lock shared with
// Apply turned the harness into the bottleneck (at 256 proposers the
// applier queued behind them for milliseconds, and every commit with it).
// Registrations live in shards keyed by index instead, and Apply publishes
// applied before it looks in the shard.
type testApp struct {
	mu sync.Mutex // guards every field below, up to applied
	// node answers SnapshotNeeded when set.
	node *Node
	// countOnly makes Apply keep no commands, only the index (benchmarks:
	// the state machine should cost as little as hashicorp/raft's counter).
	countOnly bool
	cmds      []string
	last      uint64
	snaps     int
	errs      []error
	askCount  int
	// closed is set once the node's Kill returned (closeApp).
	closed bool

	// applied is last, for registrations made without mu.
	applied atomic.Uint64
	shards  [16]notifyShard
}

// notifyShard holds the registrations for the indexes equal to its
// position modulo the number of shards.
type notifyShard struct {
	mu      sync.Mutex // guards waiters and notify
	waiters map[uint64][]chan struct{}
	// notify maps an index to a channel that gets the time it was applied
	// (notifyAt; channels reused by the caller).
	notify map[uint64]chan<- time.Time
}

func newTestApp() *testApp {
	a := &testApp{}
	for i := range a.shards {
		a.shards[i].waiters = make(map[uint64][]chan struct{})
		a.shards[i].notify = make(map[uint64]chan<- time.Time)
	}
	return a
}

func (a *testApp) shard(index uint64) *notifyShard {
	return &a.shards[index%uint64(len(a.shards))]
}

func (a *testApp) Apply(msg ApplyMsg) {
	a.mu.Lock()
	if a.closed {
		a.errs = append(a.errs, fmt.Errorf("apply %d after Kill returned", msg.Index))
	}
	if msg.Index <= a.last {
		a.errs = append(a.errs, fmt.Errorf("apply %d after %d", msg.Index, a.last))
	}
	switch {
	case msg.IsSnapshot:
		a.snaps++
		a.cmds = decodeCmds(msg.Snapshot)
	case !a.countOnly:
		a.cmds = append(a.cmds, string(msg.Command))
	}
	a.last = msg.Index
	a.mu.Unlock()
	a.applied.Store(msg.Index)
	if !msg.IsSnapshot {
		// Registrations are for command indexes, so only this one can be
		// due: a lookup, not a scan of the shard (the applier would pay
		// for every waiting proposer on every entry).
		a.shard(msg.Index).releaseIndex(msg.Index)
		return
	}
	for i := range a.shards {
		a.shards[i].release(func(i uint64) bool { return i <= msg.Index })
	}
}

// releaseIndex wakes the registrations for index.
func (s *notifyShard) releaseIndex(index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ws, ok := s.waiters[index]; ok {
		for _, w := range ws {
			close(w)
		}
		delete(s.waiters, index)
	}
	if ch, ok := s.notify[index]; ok {
		ch <- time.Now()
		delete(s.notify, index)
	}
}

// release wakes the registrations whose index is due.
func (s *notifyShard) release(due func(uint64) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, ws := range s.waiters {
		if due(i) {
			for _, w := range ws {
				close(w)
			}
			delete(s.waiters, i)
		}
	}
	for i, ch := range s.notify {
		if due(i) {
			ch <- time.Now()
			delete(s.notify, i)
		}
	}
}

func (a *testApp) SnapshotNeeded(lastApplied uint64) {
	a.mu.Lock()
	a.askCount++
	n, data := a.node, encodeCmds(a.cmds)
	last := a.last
	a.mu.Unlock()
	if n != nil {
		if err := n.SaveSnapshot(last, data); err != nil {
			a.mu.Lock()
			a.errs = append(a.errs, err)
			a.mu.Unlock()
		}
	}
}

func encodeCmds(cmds []string) []byte {
	var b []byte
	for _, c := range cmds {
		b = append(b, c...)
		b = append(b, '\n')
	}
	return b
}

func decodeCmds(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == '\n' {
			out = append(out, string(b[start:i]))
			start = i + 1
		}
	}
	return out
}

// wait returns a channel closed once index is applied.
func (a *testApp) wait(index uint64) <-chan struct{} {
	s := a.shard(index)
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	if a.applied.Load() >= index {
		close(ch)
		return ch
	}
	s.waiters[index] = append(s.waiters[index], ch)
	return ch
}

// notifyAt arranges for the time index is applied to be sent on ch (which
// must have room for it); unlike wait it allocates nothing. If index is
// applied already, the time sent is now.
func (a *testApp) notifyAt(index uint64, ch chan<- time.Time) {
	s := a.shard(index)
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.applied.Load() >= index {
		ch <- time.Now()
		return
	}
	s.notify[index] = ch
}

// cancelNotify forgets a notifyAt registration that was not sent yet.
func (a *testApp) cancelNotify(index uint64) {
	s := a.shard(index)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.notify, index)
}

func (a *testApp) lastApplied() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// closeApp records that the node was killed: an Apply after it is an error
// that the cluster's cleanup reports.
func (a *testApp) closeApp() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
}

func (a *testApp) commands() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.cmds...)
}
