package raft

// Event is a node's role, term and known leader, published each time one of
// them changes (see Node.Subscribe).
type Event struct {
	// Seq numbers the changes this node has published since it started, from
	// 1 (0 in the initial event of a node that has not changed yet). A
	// subscriber that sees Seq jump by more than one missed intermediate
	// states, which were coalesced.
	Seq uint64
	// Term, Role and Leader are the node's state after the change. Leader is
	// NoLeader when the node knows of no leader in Term.
	Term   uint64
	Role   Role
	Leader int
	// LeaderChanges counts the terms in which this node learned of a leader
	// (itself included) since it started: a coalescing subscriber counts
	// leader changes exactly by differencing it.
	LeaderChanges uint64
	// Membership is the configuration in force (the latest in the log,
	// committed or not); MembershipChanges counts its changes since the
	// node started (an event is published at each, a truncation that
	// reverts it included).
	Membership        Membership
	MembershipChanges uint64
}

// eventFeed fans a node's state changes out to subscribers. It is guarded by
// Node.mu: every method runs with it held, which also makes publish the only
// sender on each channel (the replace-the-undelivered-event trick below
// relies on that).
type eventFeed struct {
	last Event
	// leaderTerm is the last term in which a leader was known.
	leaderTerm uint64
	subs       map[chan Event]struct{}
	closed     bool
}

// observe publishes the state (term, role, lead) if it differs from the last
// one published.
func (f *eventFeed) observe(term uint64, role Role, lead int) {
	if f.last.Term == term && f.last.Role == role && f.last.Leader == lead {
		return
	}
	ev := f.last
	ev.Seq++
	ev.Term, ev.Role, ev.Leader = term, role, lead
	if lead != NoLeader && term > f.leaderTerm {
		ev.LeaderChanges++
		f.leaderTerm = term
	}
	f.last = ev
	for ch := range f.subs {
		offer(ch, ev)
	}
}

// observeMembership publishes a change of the configuration in force.
func (f *eventFeed) observeMembership(m Membership) {
	ev := f.last
	ev.Seq++
	ev.Membership = m
	ev.MembershipChanges++
	f.last = ev
	for ch := range f.subs {
		offer(ch, ev)
	}
}

// offer puts ev in ch (capacity 1) without blocking, replacing an event the
// subscriber has not received yet. Only safe with a single sender.
func offer(ch chan Event, ev Event) {
	select {
	case ch <- ev:
		return
	default:
	}
	select {
	case <-ch:
	default:
	}
	select {
	case ch <- ev:
	default:
	}
}

func (f *eventFeed) subscribe() chan Event {
	ch := make(chan Event, 1)
	if f.closed {
		ch <- f.last
		close(ch)
		return ch
	}
	if f.subs == nil {
		f.subs = make(map[chan Event]struct{})
	}
	f.subs[ch] = struct{}{}
	ch <- f.last
	return ch
}

func (f *eventFeed) unsubscribe(ch chan Event) {
	if _, ok := f.subs[ch]; ok {
		delete(f.subs, ch)
		close(ch)
	}
}

// close closes every subscriber's channel; later subscriptions get the last
// state and a closed channel.
func (f *eventFeed) close() {
	for ch := range f.subs {
		close(ch)
	}
	f.subs = nil
	f.closed = true
}
