package raft

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestNodeEventsNeverBehindState: while leaders are cut off and replaced,
// a reader polls State and then looks at its subscription: the newest event
// it holds (received or waiting in the channel) is never older than what
// State reported, since the node publishes in the critical section that
// made the change. Events arrive in order (Seq grows, terms never go back),
// and a subscriber that never reads holds nothing up: the cluster keeps
// electing and committing.
func TestNodeEventsNeverBehindState(t *testing.T) {
	cl := newCluster(t, 3, nil)
	// A subscriber that never reads.
	_, cancelIdle := cl.nodes[0].Subscribe()
	defer cancelIdle()

	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan string, 3)
	for i := range cl.nodes {
		n := cl.nodes[i]
		ch, cancel := n.Subscribe()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel()
			var last Event
			take := func(ev Event) bool {
				if last.Seq != 0 && ev.Seq <= last.Seq || ev.Term < last.Term || ev.LeaderChanges < last.LeaderChanges {
					errs <- "out of order"
					return false
				}
				last = ev
				return true
			}
			for !stop.Load() {
				term, isLeader := n.State()
				// Everything published so far is in the channel or received.
				for drained := false; !drained; {
					select {
					case ev, ok := <-ch:
						if !ok {
							return
						}
						if !take(ev) {
							return
						}
					default:
						drained = true
					}
				}
				if last.Term < term || (isLeader && last.Term == term && last.Role != Leader) {
					errs <- "an event is behind State"
					return
				}
				time.Sleep(100 * time.Microsecond)
			}
		}()
	}
	// Churn: cut the leader off until a new one commits, then heal.
	for range 4 {
		l := cl.leader()
		cl.net.isolate(l, true)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if nl := cl.leaderExcept(l); nl != NoLeader {
				if _, _, ok := cl.nodes[nl].Start([]byte("x")); ok {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("no new leader within 10 s (is a subscriber holding the node up?)")
			}
			time.Sleep(10 * time.Millisecond)
		}
		cl.net.isolate(l, false)
	}
	cl.commit("done")
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// leaderExcept returns a node other than skip that believes it leads, or
// NoLeader.
func (cl *cluster) leaderExcept(skip int) int {
	for i, n := range cl.nodes {
		if i == skip || n == nil {
			continue
		}
		if _, ok := n.State(); ok {
			return i
		}
	}
	return NoLeader
}
