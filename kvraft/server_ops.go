package kvraft

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// List implements Service: linearizable through ReadIndex (on any replica
// that can get a read index), or from the local state if Stale.
func (s *Server) List(ctx context.Context, req *ListRequest) (*ListResponse, error) {
	limit := req.Limit
	switch {
	case limit < 0:
		return nil, fmt.Errorf("%w: negative limit %d", ErrInvalid, limit)
	case limit == 0:
		limit = min(DefaultListLimit, s.cfg.ListMaxLimit)
	case limit > s.cfg.ListMaxLimit:
		limit = s.cfg.ListMaxLimit
	}
	if req.Consistency != Stale {
		ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		defer cancel()
		if err := s.readIndex(ctx); err != nil {
			return nil, err
		}
	}
	kvs, more, atRev, rev, err := s.state.list(listQuery{prefix: req.Prefix, after: req.After, limit: limit,
		maxBytes: s.cfg.ListMaxBytes, keysOnly: req.KeysOnly, rev: req.Revision})
	if err != nil {
		return nil, err
	}
	return &ListResponse{Header: s.headerAt(rev), KVs: kvs, More: more, Revision: atRev}, nil
}

// DefaultListLimit and DefaultWatchLimit: see kvclient.
const (
	DefaultListLimit  = 1000
	DefaultWatchLimit = 1000
	// maxWatchLimit caps the events of one Watch answer.
	maxWatchLimit = 10000
)

// Watch implements Service from this replica's applied state: it answers
// at once if events after req.AfterRevision match (or they were
// compacted), and otherwise waits until one is applied here, the wait
// (capped by WatchMaxWait) ends, ctx ends, or the server is killed. Events
// that the history drops while it waits are not its concern (none
// matched): it is compacted only if a matching one went before it looked.
func (s *Server) Watch(ctx context.Context, req *WatchRequest) (*WatchResponse, error) {
	if req.Key == "" && !req.Prefix {
		return nil, fmt.Errorf("%w: empty key (watch every key with an empty prefix)", ErrInvalid)
	}
	if req.Limit < 0 || req.Wait < 0 {
		return nil, fmt.Errorf("%w: negative limit or wait", ErrInvalid)
	}
	limit := req.Limit
	if limit == 0 {
		limit = DefaultWatchLimit
	}
	limit = min(limit, maxWatchLimit)
	if n := s.watchers.Add(1); n > int64(s.cfg.MaxWatchers) {
		s.watchers.Add(-1)
		return nil, fmt.Errorf("%w: %d served at once", ErrTooManyWatchers, s.cfg.MaxWatchers)
	}
	defer s.watchers.Add(-1)
	q := watchQuery{key: req.Key, prefix: req.Prefix, after: req.AfterRevision, limit: limit, prevKV: req.PrevKV}
	timer := time.NewTimer(min(req.Wait, s.cfg.WatchMaxWait))
	defer timer.Stop()
	waiting := req.Wait > 0 && s.cfg.WatchMaxWait > 0
	for {
		var w *waiter
		if waiting {
			w = newWaiter(req.Key, req.Prefix)
		}
		res, registered := s.state.watch(q, w)
		if !registered {
			return s.watchResponse(res), nil
		}
		// Nothing matched up to res.next. Until an event that matches
		// wakes w, the history may drop the events after it (a busy store,
		// a quiet key): they did not match, so the next look starts at
		// res.next, or just before the event that woke w, not at the
		// request's revision, which the history may no longer hold.
		q.after = res.next
		select {
		case <-w.ch:
			q.after = w.lookAfter(q.after)
			continue
		case <-timer.C:
			waiting = false
		case <-ctx.Done():
			s.state.hub.remove(w)
			return nil, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
		case <-s.stopTicks:
			s.state.hub.remove(w)
			return nil, ErrKilled
		}
		if res, ok := s.state.unwait(w, q); ok {
			return s.watchResponse(res), nil
		}
		q.after = w.lookAfter(q.after) // woken meanwhile: look once more
	}
}

func (s *Server) watchResponse(res watchResult) *WatchResponse {
	return &WatchResponse{Header: s.headerAt(res.rev), Events: res.events, NextAfterRevision: res.next,
		Compacted: res.compacted, CompactRevision: res.compactRev}
}

// LeaseGrant implements Service: the leader draws an id (below 2^53) and
// writes the grant to the log, exactly once per WriteID.
func (s *Server) LeaseGrant(ctx context.Context, req *LeaseGrantRequest) (*LeaseGrantResponse, error) {
	if req.TTL < s.cfg.MinLeaseTTL || req.TTL > s.cfg.MaxLeaseTTL {
		return nil, fmt.Errorf("%w: lease TTL %v is outside [%v, %v]", ErrInvalid, req.TTL, s.cfg.MinLeaseTTL, s.cfg.MaxLeaseTTL)
	}
	for {
		id := rand.Uint64N(1<<53-1) + 1
		res, err := s.write(ctx, op{kind: opLeaseGrant, id: req.Write, lease: id, ttl: uint64(req.TTL.Milliseconds()),
			limit: uint64(s.cfg.MaxLeases)})
		if errors.Is(err, errLeaseIDTaken) {
			continue // one chance in 2^53 per lease: draw again
		}
		if err != nil {
			return nil, err
		}
		return &LeaseGrantResponse{Header: s.headerAt(res.rev), ID: res.lease, TTL: req.TTL}, nil
	}
}

// LeaseRevoke implements Service: through the log, exactly once.
func (s *Server) LeaseRevoke(ctx context.Context, req *LeaseRevokeRequest) (*LeaseRevokeResponse, error) {
	res, err := s.write(ctx, op{kind: opLeaseRevoke, id: req.Write, lease: req.ID})
	if err != nil {
		return nil, err
	}
	return &LeaseRevokeResponse{Header: s.headerAt(res.rev), Existed: res.existed}, nil
}

// LeaseKeepAlive implements Service at the leader: after a read round that
// confirms this replica still led when the request arrived, the lease's
// deadline becomes the arrival time plus its TTL. Any later leader starts
// the lease at its full TTL when it takes over, which is after that
// arrival, so the promise holds across leader changes.
func (s *Server) LeaseKeepAlive(ctx context.Context, req *LeaseKeepAliveRequest) (*LeaseKeepAliveResponse, error) {
	arrival := time.Now()
	term, err := s.confirmLeader(ctx)
	if err != nil {
		return nil, err
	}
	ttl, _, _, ok := s.state.leaseInfo(req.ID, 0)
	if !ok || !s.lessor.renew(req.ID, term, arrival.Add(ttl)) {
		return nil, fmt.Errorf("%w: %d", ErrLeaseNotFound, req.ID)
	}
	return &LeaseKeepAliveResponse{Header: s.header(), ID: req.ID, TTL: ttl}, nil
}

// LeaseTimeToLive implements Service at the leader.
func (s *Server) LeaseTimeToLive(ctx context.Context, req *LeaseTimeToLiveRequest) (*LeaseTimeToLiveResponse, error) {
	term, err := s.confirmLeader(ctx)
	if err != nil {
		return nil, err
	}
	var limit int
	if req.Keys {
		limit = s.cfg.ListMaxLimit
	}
	ttl, keys, more, ok := s.state.leaseInfo(req.ID, limit)
	if !ok {
		return nil, fmt.Errorf("%w: %d", ErrLeaseNotFound, req.ID)
	}
	remaining := ttl
	if d, ok := s.lessor.deadline(req.ID, term); ok {
		remaining = max(0, time.Until(d))
	}
	return &LeaseTimeToLiveResponse{Header: s.header(), ID: req.ID, TTL: ttl, Remaining: remaining, Keys: keys, MoreKeys: more}, nil
}

// confirmLeader returns the term in which this replica leads, confirmed by
// a read round after the call.
func (s *Server) confirmLeader(ctx context.Context) (uint64, error) {
	node := s.rsm.Raft()
	term, isLeader := node.State()
	if !isLeader {
		return 0, &WrongLeaderError{Leader: s.leaderHint()}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	if err := s.readIndex(ctx); err != nil {
		return 0, err
	}
	if now, still := node.State(); now != term || !still {
		return 0, &WrongLeaderError{Leader: s.leaderHint()}
	}
	return term, nil
}

// tickLeases runs the leader's lease timers: every LeaseTick it starts the
// deadline of each lease it has not seen in its term at the full TTL, and
// proposes the expiry of each lease whose deadline passed. A leader that
// could not run for a while does not count that time against its leases
// (see lessor.due).
func (s *Server) tickLeases() {
	t := time.NewTicker(s.cfg.LeaseTick)
	defer t.Stop()
	for {
		select {
		case <-s.stopTicks:
			return
		case <-t.C:
		}
		term, isLeader := s.rsm.Raft().State()
		if !isLeader {
			s.lessor.reset(0)
			continue
		}
		for _, id := range s.lessor.due(term, time.Now(), s.cfg.LeaseTick, s.cfg.RequestTimeout, s.state.leaseTTLs) {
			// Nobody waits: a lost expiry is proposed again after
			// RequestTimeout, and applying one twice does nothing.
			_, _ = s.rsm.Propose(encodeOp(op{kind: opLeaseExpire, lease: id}))
		}
	}
}

// lessor holds, on the leader, the deadline of each lease in the leader's
// term. Deadlines are not replicated: a new leader starts every lease at
// its full TTL.
type lessor struct {
	mu sync.Mutex // guards the fields below
	// term is the leader term the deadlines belong to; 0 if not leading.
	term uint64
	// gen is the state's lease generation the deadlines were synced at.
	gen uint64
	// ttls is the TTL of each lease as of gen.
	ttls map[uint64]time.Duration
	// deadlines holds each lease's deadline.
	deadlines map[uint64]time.Time
	// expiring holds when the expiry of a lease was proposed.
	expiring map[uint64]time.Time
	// lastDue is when due last ran in term; zero before the first time.
	lastDue time.Time
}

// resetLocked forgets every deadline and starts term.
func (l *lessor) resetLocked(term uint64) {
	l.term, l.gen, l.ttls, l.lastDue = term, 0, nil, time.Time{}
	l.deadlines, l.expiring = make(map[uint64]time.Time), make(map[uint64]time.Time)
}

// reset forgets every deadline unless they belong to term already.
func (l *lessor) reset(term uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.term != term || l.deadlines == nil {
		l.resetLocked(term)
	}
}

// due syncs the deadlines with the state's leases (ttls reads them when
// they changed since gen), starting new ones at now plus their TTL, and
// returns the leases to expire: past their deadline, and not proposed for
// expiry in the last retry. It expects to run every tick.
//
// When it last ran more than two ticks ago, the leader was stalled (not
// scheduled on a busy machine, stopped, paging): it could not take the
// holders' refreshes either, which wait in its sockets, so every deadline
// moves on by the stall (the time beyond one tick) rather than expiring
// leases whose holders kept refreshing. A holder that died meanwhile keeps
// its lease that much longer.
func (l *lessor) due(term uint64, now time.Time, tick, retry time.Duration,
	ttls func(gen uint64) (map[uint64]time.Duration, uint64, bool)) []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.term != term || l.deadlines == nil {
		l.resetLocked(term)
	}
	if gap := now.Sub(l.lastDue); !l.lastDue.IsZero() && gap > 2*tick {
		for id, d := range l.deadlines {
			l.deadlines[id] = d.Add(gap - tick)
		}
	}
	l.lastDue = now
	if m, gen, changed := ttls(l.gen); changed {
		l.ttls, l.gen = m, gen
		for id := range l.deadlines {
			if _, ok := m[id]; !ok {
				delete(l.deadlines, id)
				delete(l.expiring, id)
			}
		}
	}
	var out []uint64
	for id, ttl := range l.ttls {
		d, ok := l.deadlines[id]
		if !ok {
			l.deadlines[id] = now.Add(ttl)
			continue
		}
		if now.Before(d) {
			continue
		}
		if at, ok := l.expiring[id]; ok && now.Sub(at) < retry {
			continue
		}
		l.expiring[id] = now
		out = append(out, id)
	}
	return out
}

// renew moves the lease's deadline to at least until, unless its expiry
// has been proposed; it reports whether the lease lives on.
func (l *lessor) renew(id, term uint64, until time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.term != term || l.deadlines == nil {
		l.resetLocked(term)
	}
	if _, ok := l.expiring[id]; ok {
		return false
	}
	if d, ok := l.deadlines[id]; !ok || d.Before(until) {
		l.deadlines[id] = until
	}
	return true
}

// deadline returns the lease's deadline in term, if one is set.
func (l *lessor) deadline(id, term uint64) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.term != term {
		return time.Time{}, false
	}
	d, ok := l.deadlines[id]
	return d, ok
}
