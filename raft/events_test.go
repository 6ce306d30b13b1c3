package raft

import (
	"reflect"
	"testing"
	"time"
)

// nextEvent receives one event or fails the test after timeout.
func nextEvent(t *testing.T, ch <-chan Event, timeout time.Duration) (Event, bool) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		return ev, ok
	case <-time.After(timeout):
		t.Fatalf("no event within %v", timeout)
		return Event{}, false
	}
}

// waitEvent receives events until pred holds, checking the contract on the
// way: Seq grows, terms never go back, LeaderChanges never goes back.
func waitEvent(t *testing.T, ch <-chan Event, last *Event, pred func(Event) bool) Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ev, ok := nextEvent(t, ch, time.Until(deadline))
		if !ok {
			t.Fatal("event channel closed early")
		}
		if ev.Seq <= last.Seq && last.Seq != 0 {
			t.Fatalf("Seq went from %d to %d", last.Seq, ev.Seq)
		}
		if ev.Term < last.Term || ev.LeaderChanges < last.LeaderChanges {
			t.Fatalf("event went back: %+v after %+v", ev, *last)
		}
		*last = ev
		if pred(ev) {
			return ev
		}
	}
}

func TestNodeEventsFollowElectionsAndClose(t *testing.T) {
	cl := newCluster(t, 3, nil)
	subs := make([]<-chan Event, 3)
	cancels := make([]func(), 3)
	lasts := make([]Event, 3)
	for i, n := range cl.nodes {
		subs[i], cancels[i] = n.Subscribe()
	}
	// A subscriber that never reads must not hold anything up.
	idle, cancelIdle := cl.nodes[0].Subscribe()
	defer cancelIdle()

	l := cl.leader()
	term, _ := cl.nodes[l].State()
	for i := range cl.nodes {
		ev := waitEvent(t, subs[i], &lasts[i], func(ev Event) bool { return ev.Term == term && ev.Leader == l })
		if (i == l) != (ev.Role == Leader) {
			t.Fatalf("node %d: event %+v, leader is %d", i, ev, l)
		}
		if ev.LeaderChanges == 0 {
			t.Fatalf("node %d: LeaderChanges 0 in %+v", i, ev)
		}
	}

	// Cut the leader off: the others elect a new one and say so; the old
	// leader steps down (check-quorum) and says so.
	cl.net.isolate(l, true)
	for i := range cl.nodes {
		if i == l {
			continue
		}
		before := lasts[i].LeaderChanges
		ev := waitEvent(t, subs[i], &lasts[i], func(ev Event) bool { return ev.Term > term && ev.Leader != NoLeader })
		if ev.LeaderChanges <= before {
			t.Fatalf("node %d: LeaderChanges %d after a new leader, was %d", i, ev.LeaderChanges, before)
		}
		if ev.Leader == l {
			t.Fatalf("node %d: cut-off node %d reported as the new leader: %+v", i, l, ev)
		}
	}
	waitEvent(t, subs[l], &lasts[l], func(ev Event) bool { return ev.Role != Leader })
	cl.net.isolate(l, false)
	cl.commit("after")

	// The idle subscriber holds only the newest state, not a backlog.
	ev, _ := nextEvent(t, idle, time.Second)
	select {
	case ev2 := <-idle:
		ev = ev2 // at most one more: one published after the first receive
	default:
	}
	if st := cl.nodes[0].Status(); ev.Term > st.Term {
		t.Fatalf("idle subscriber got %+v, node is at term %d", ev, st.Term)
	}

	// cancel closes the channel; Kill closes the others.
	cancels[0]()
	cancels[0]() // idempotent
	for {
		if _, ok := nextEvent(t, subs[0], time.Second); !ok {
			break
		}
	}
	cl.killAll()
	for i := 1; i < 3; i++ {
		for {
			if _, ok := nextEvent(t, subs[i], time.Second); !ok {
				break
			}
		}
	}
	ch, cancel := cl.nodes[1].Subscribe()
	defer cancel()
	if ev, ok := <-ch; !ok || ev.Seq == 0 {
		t.Fatalf("subscribing to a killed node: first receive %+v %v, want the last state", ev, ok)
	}
	if _, ok := <-ch; ok {
		t.Fatal("subscribing to a killed node: channel not closed")
	}
}

func TestEventFeedCoalesces(t *testing.T) {
	var f eventFeed
	f.last = Event{Leader: NoLeader}
	ch := f.subscribe()
	if ev := <-ch; ev.Seq != 0 {
		t.Fatalf("initial event %+v", ev)
	}
	f.observe(1, PreCandidate, NoLeader)
	f.observe(1, PreCandidate, NoLeader) // no change: nothing published
	f.observe(2, Candidate, NoLeader)
	f.observe(2, Leader, 0)
	f.observe(2, Follower, NoLeader) // stepped down in the same term
	f.observe(2, Follower, 0)        // the same leader again in term 2: not a new leader
	f.observe(3, Follower, 1)
	ev := <-ch
	want := Event{Seq: 6, Term: 3, Role: Follower, Leader: 1, LeaderChanges: 2}
	if !reflect.DeepEqual(ev, want) {
		t.Fatalf("coalesced event %+v, want %+v", ev, want)
	}
	select {
	case ev := <-ch:
		t.Fatalf("backlog event %+v", ev)
	default:
	}
	f.close()
	if _, ok := <-ch; ok {
		t.Fatal("channel open after close")
	}
}
