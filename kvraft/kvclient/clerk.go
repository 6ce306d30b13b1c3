package kvclient

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// ClerkConfig tunes a Clerk.
type ClerkConfig struct {
	// ClientID, if not 0, is a session the caller opened, used for every
	// write. 0 (the default) makes the clerk open sessions itself, through
	// the cluster (OpenSession), when it first writes, when a session is
	// lost (ErrNoSession), and when one has MaxPending writes in flight.
	ClientID uint64
	// MaxPending is the most writes a session may have at or above its ack
	// (in flight, or finished behind one in flight) before the clerk opens
	// another; replicas refuse more (ErrTooManyPending).
	MaxPending int
	// AttemptTimeout bounds one attempt at one replica; the clerk then tries
	// again (the same replica if it is still the known leader, another
	// otherwise). Retrying is safe for writes (they keep their WriteID), so
	// it can be short: on the scale of the election timeout, so that a
	// leader that stopped answering costs about one election.
	AttemptTimeout time.Duration
	// MinBackoff and MaxBackoff bound the pause after a full round of failed
	// attempts; it doubles each round, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// Leader, if not nil, tells the clerk which replica the caller's own
	// raft node believes leads. The clerk sends writes straight there, and
	// abandons an attempt as soon as the known leader changes to another
	// replica (or to none), retrying at the new leader instead of waiting
	// for AttemptTimeout. durio's forwarding frontend sets it.
	Leader LeaderWatch
	// Self is the index of the server that is the caller's own replica,
	// driven by the raft node Leader watches (durio's frontend: its
	// in-process kvraft server), or -1 (the default) if none. Attempts at
	// Self are not watched for leader changes: that node fails its pending
	// writes, and fails or re-addresses its pending reads, as soon as
	// leadership moves, so a watch would only cost a goroutine per request.
	Self int
}

// LeaderWatch reports leadership as a raft node in the caller's process
// sees it.
type LeaderWatch interface {
	// Leader returns the index of the replica known to lead (NoLeader if
	// none) and a channel that is closed at the next change of that value
	// (or of the term).
	Leader() (leader int, changed <-chan struct{})
}

// LeaderSubscriber is a LeaderWatch that also tells the clerk of changes
// itself, so that watching an attempt costs a registration rather than a
// goroutine per attempt (durio's frontend implements it with Attempts).
type LeaderSubscriber interface {
	LeaderWatch
	// AbandonOnMove arranges for abandon to be called, at most once, at the
	// first change after this call of the known leader to a replica other
	// than target (or to none), until stop is called.
	AbandonOnMove(target int, abandon func()) (stop func())
}

// Attempts is the set of attempts a LeaderSubscriber abandons when the
// leader moves. The zero value is ready to use.
type Attempts struct {
	mu   sync.Mutex // guards next and m
	next uint64
	m    map[uint64]attemptAt
}

type attemptAt struct {
	target  int
	abandon func()
}

// Add registers an attempt at target; see LeaderSubscriber.AbandonOnMove.
func (a *Attempts) Add(target int, abandon func()) (stop func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = make(map[uint64]attemptAt)
	}
	a.next++
	id := a.next
	a.m[id] = attemptAt{target: target, abandon: abandon}
	return func() {
		a.mu.Lock()
		delete(a.m, id)
		a.mu.Unlock()
	}
}

// Moved abandons, and forgets, every attempt at a replica other than
// leader (all of them if it is NoLeader). The abandon functions run after
// Attempts' lock is released.
func (a *Attempts) Moved(leader int) {
	var abandon []func()
	a.mu.Lock()
	for id, at := range a.m {
		if at.target != leader {
			abandon = append(abandon, at.abandon)
			delete(a.m, id)
		}
	}
	a.mu.Unlock()
	for _, f := range abandon {
		f()
	}
}

// DefaultClerkConfig returns the configuration used when none is given.
func DefaultClerkConfig() ClerkConfig {
	return ClerkConfig{AttemptTimeout: time.Second, MinBackoff: 5 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		MaxPending: DefaultMaxPending, Self: -1}
}

// Validate reports the first field that is out of range.
func (c ClerkConfig) Validate() error {
	switch {
	case c.AttemptTimeout <= 0:
		return fmt.Errorf("kvclient: ClerkConfig.AttemptTimeout must be positive, got %v", c.AttemptTimeout)
	case c.MinBackoff <= 0:
		return fmt.Errorf("kvclient: ClerkConfig.MinBackoff must be positive, got %v", c.MinBackoff)
	case c.MaxPending < 1:
		return fmt.Errorf("kvclient: ClerkConfig.MaxPending must be at least 1, got %d", c.MaxPending)
	case c.Self < -1:
		return fmt.Errorf("kvclient: ClerkConfig.Self must be a server index or -1, got %d", c.Self)
	case c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("kvclient: ClerkConfig.MaxBackoff (%v) must be at least MinBackoff (%v)", c.MaxBackoff, c.MinBackoff)
	}
	return nil
}

// DefaultMaxPending is the number of results a replica keeps per session
// (kvraft's cap).
const DefaultMaxPending = 256

// Clerk is the leader-following client: it finds the leader, retries with
// backoff, and numbers its writes so that each is applied exactly once.
//
// A Clerk is safe for concurrent use, and concurrent calls are not
// serialised: each write takes its own sequence number and they proceed in
// parallel. The clerk tracks which of its writes are still in flight and
// sends, with every write, the lowest such sequence number as WriteID.Ack,
// so the servers keep results only for writes that may still be retried
// (see WriteID).
//
// Do runs any request through the same loop, for callers that number
// writes themselves (durio's frontend forwarding a client's own WriteID).
type Clerk struct {
	servers Servers
	cfg     ClerkConfig

	leader atomic.Int64 // id of the last replica that answered

	mu sync.Mutex // guards cur and opening
	// cur is the session new writes go to; nil until one is open.
	cur *session
	// opening is closed when the session being opened is ready (or failed);
	// nil when none is being opened.
	opening chan struct{}
}

// session numbers the writes of one exactly-once session.
type session struct {
	id uint64
	mu sync.Mutex // guards nextSeq, inflight, ack
	// nextSeq is the sequence number of the next write.
	nextSeq uint64
	// inflight holds the sequence numbers of writes not yet finished.
	inflight map[uint64]struct{}
	// ack is the lowest unfinished sequence number (nextSeq if none).
	ack uint64
}

func newSession(id uint64) *session {
	return &session{id: id, nextSeq: 1, ack: 1, inflight: make(map[uint64]struct{})}
}

// Servers is the set of replicas a Clerk talks to, by replica id. It may
// change while the clerk runs, as replicas join and leave the cluster: the
// clerk looks a replica up at every attempt. Implementations must be safe
// for concurrent use.
type Servers interface {
	// Server returns the replica with the given id, or nil if there is none.
	Server(id int) Service
	// IDs returns the ids of the replicas in ascending order. It may be
	// empty for a moment; the clerk then backs off and asks again.
	IDs() []int
}

// ServerList is a fixed Servers: replica i is ServerList[i].
type ServerList []Service

// Server implements Servers.
func (l ServerList) Server(id int) Service {
	if id < 0 || id >= len(l) {
		return nil
	}
	return l[id]
}

// IDs implements Servers.
func (l ServerList) IDs() []int {
	ids := make([]int, len(l))
	for i := range l {
		ids[i] = i
	}
	return ids
}

// errNoSuchReplica is the attempt error for a replica id that left the set
// of servers between choosing it and trying it: nothing was sent.
var errNoSuchReplica = fmt.Errorf("%w: the replica is not in the clerk's set of servers", ErrUnreachable)

// NewClerk returns a clerk that talks to servers; the index of a server in
// the slice must be its replica id, so that leader hints can be followed.
func NewClerk(servers []Service, cfg ClerkConfig) (*Clerk, error) {
	if len(servers) == 0 {
		return nil, fmt.Errorf("kvclient: NewClerk needs at least one server")
	}
	if cfg.Self >= len(servers) {
		return nil, fmt.Errorf("kvclient: ClerkConfig.Self is %d, but there are %d servers", cfg.Self, len(servers))
	}
	return NewClerkOf(ServerList(servers), cfg)
}

// NewClerkOf returns a clerk that talks to a set of servers that may change
// while it runs (see Servers).
func NewClerkOf(servers Servers, cfg ClerkConfig) (*Clerk, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Clerk{servers: servers, cfg: cfg}
	if cfg.ClientID != 0 {
		c.cur = newSession(cfg.ClientID)
	}
	if ids := servers.IDs(); len(ids) > 0 {
		c.leader.Store(int64(ids[rand.IntN(len(ids))]))
	}
	return c, nil
}

// ClientID returns the id of the session new writes go to; 0 before the
// first write opened one.
func (c *Clerk) ClientID() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return 0
	}
	return c.cur.id
}

// OpenSession opens a new session through the cluster and returns its id.
func (c *Clerk) OpenSession(ctx context.Context) (uint64, error) {
	var resp *OpenSessionResponse
	err := c.Do(ctx, false, func(ctx context.Context, srv Service) error {
		var err error
		resp, err = srv.OpenSession(ctx, &OpenSessionRequest{})
		return err
	})
	if err != nil {
		return 0, err
	}
	return resp.ClientID, nil
}

// Get returns the value of key, read linearizably; ErrNoKey if it is
// missing.
func (c *Clerk) Get(ctx context.Context, key string) (string, error) {
	return c.get(ctx, key, Linearizable)
}

// GetStale returns the value of key as some replica has it, possibly stale.
func (c *Clerk) GetStale(ctx context.Context, key string) (string, error) {
	return c.get(ctx, key, Stale)
}

func (c *Clerk) get(ctx context.Context, key string, cons Consistency) (string, error) {
	var resp *GetResponse
	err := c.Do(ctx, false, func(ctx context.Context, srv Service) error {
		r, err := srv.Get(ctx, &GetRequest{Key: key, Consistency: cons})
		resp = r
		return err
	})
	if err != nil {
		return "", err
	}
	if !resp.Found {
		return "", ErrNoKey
	}
	return resp.Value, nil
}

// Put sets key to value.
func (c *Clerk) Put(ctx context.Context, key, value string) error {
	return c.Write(ctx, func(ctx context.Context, srv Service, id WriteID) error {
		_, err := srv.Put(ctx, &PutRequest{Key: key, Value: value, Write: id})
		return err
	})
}

// Append appends value to key's value.
func (c *Clerk) Append(ctx context.Context, key, value string) error {
	return c.Write(ctx, func(ctx context.Context, srv Service, id WriteID) error {
		_, err := srv.Append(ctx, &AppendRequest{Key: key, Value: value, Write: id})
		return err
	})
}

// Delete removes key and reports whether it existed.
func (c *Clerk) Delete(ctx context.Context, key string) (existed bool, err error) {
	err = c.Write(ctx, func(ctx context.Context, srv Service, id WriteID) error {
		r, err := srv.Delete(ctx, &DeleteRequest{Key: key, Write: id})
		if err == nil {
			existed = r.Existed
		}
		return err
	})
	return existed, err
}

// Write runs one write numbered by the clerk: call is invoked once per
// attempt with the replica to try and the write's id, the same id every
// time (only Ack may grow). It returns as Do does. If the session turns out
// to be gone (expired or evicted, ErrNoSession) and no attempt may have
// applied the write, it runs again in a new session; if one may have, it
// ends with ErrTimeout: a new session could apply it a second time.
func (c *Clerk) Write(ctx context.Context, call func(context.Context, Service, WriteID) error) error {
	return c.write(ctx, time.Time{}, call)
}

// WriteBy is Write under ctx with deadline by, for one timer instead of
// two when the first attempt settles the write (see DoFromBy).
func (c *Clerk) WriteBy(ctx context.Context, by time.Time, call func(context.Context, Service, WriteID) error) error {
	return c.write(ctx, by, call)
}

// write is Write under ctx with deadline by (none if zero), set only once
// the write needs more than its first attempt in the current session.
func (c *Clerk) write(ctx context.Context, by time.Time, call func(context.Context, Service, WriteID) error) error {
	// A few new sessions at most: a cluster that forgets each one at once
	// (evicting under a flood of opens) gets the error back, not a loop.
	for reopen := 0; ; reopen++ {
		sess, seq, err := c.begin(ctx, by)
		if err != nil {
			return err
		}
		maybe, err := c.doWithinBy(ctx, by, true, -1, c.cfg.AttemptTimeout, func(ctx context.Context, srv Service) error {
			// Ack is read per attempt: it only grows, and a higher one
			// lets the servers forget sooner.
			return call(ctx, srv, sess.writeID(seq))
		})
		sess.finish(seq)
		if !errors.Is(err, ErrNoSession) || c.cfg.ClientID != 0 {
			return err
		}
		c.forget(sess)
		if !by.IsZero() {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, by)
			defer cancel()
			by = time.Time{}
		}
		if maybe {
			return fmt.Errorf("%w: the session ended while the write may have been applied: %w", ErrTimeout, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w (last error: %w)", ErrNoLeader, ctx.Err(), err)
		}
		if reopen == 2 {
			return err // not applied
		}
	}
}

// begin takes the next sequence number in a session with room, opening
// one if needed under ctx with deadline by (none if zero).
func (c *Clerk) begin(ctx context.Context, by time.Time) (*session, uint64, error) {
	for {
		c.mu.Lock()
		if s := c.cur; s != nil {
			if seq, ok := s.begin(c.cfg.MaxPending, c.cfg.ClientID != 0); ok {
				c.mu.Unlock()
				return s, seq, nil
			}
		}
		if !by.IsZero() {
			// Waiting for a session is rare: only then is the deadline
			// worth a timer.
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, by)
			defer cancel()
			by = time.Time{}
		}
		if wait := c.opening; wait != nil {
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, 0, fmt.Errorf("%w: %w (opening a session)", ErrNoLeader, ctx.Err())
			}
		}
		done := make(chan struct{})
		c.opening = done
		c.mu.Unlock()
		id, err := c.OpenSession(ctx)
		c.mu.Lock()
		if err == nil {
			c.cur = newSession(id)
		}
		c.opening = nil
		close(done)
		c.mu.Unlock()
		if err != nil {
			return nil, 0, err
		}
	}
}

// forget drops sess as the current session, if it still is.
func (c *Clerk) forget(sess *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == sess {
		c.cur = nil
	}
}

// begin takes the next sequence number unless the window from ack holds
// max writes already (and always, if unbounded). The window, not the
// number in flight, is what replicas keep results for: one stuck write
// holds ack back while later ones finish.
func (s *session) begin(max int, unbounded bool) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nextSeq-s.ack >= uint64(max) && !unbounded {
		return 0, false
	}
	seq := s.nextSeq
	s.nextSeq++
	s.inflight[seq] = struct{}{}
	return seq, true
}

func (s *session) writeID(seq uint64) WriteID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return WriteID{ClientID: s.id, Seq: seq, Ack: s.ack}
}

// finish marks seq finished and advances ack past finished writes.
func (s *session) finish(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inflight, seq)
	for s.ack < s.nextSeq {
		if _, ok := s.inflight[s.ack]; ok {
			break
		}
		s.ack++
	}
}

// Do calls attempt against replicas until one succeeds, a Definitive error
// comes back, or ctx ends. It starts at the known leader, follows leader
// hints, moves to another replica after a failure, and backs off after each
// full round. A write must carry the same WriteID in every attempt.
//
// When ctx ends it returns an error wrapping ErrTimeout if write is true and
// some attempt may have applied it (MaybeApplied), and ErrNoLeader
// otherwise (a read, or a write no replica took).
func (c *Clerk) Do(ctx context.Context, write bool, attempt func(context.Context, Service) error) error {
	_, err := c.do(ctx, write, -1, attempt)
	return err
}

// DoFrom is Do, starting at replica first instead of the known leader: a
// read that replica may be able to serve itself. A first that names no
// replica (-1) starts at the known leader, as Do does.
func (c *Clerk) DoFrom(ctx context.Context, first int, write bool, attempt func(context.Context, Service) error) error {
	_, err := c.do(ctx, write, first, attempt)
	return err
}

// DoFromBy is DoFrom under ctx with deadline by, for one timer instead of
// two when the first attempt settles the request (the usual case): that
// attempt's own deadline, the earlier of by and AttemptTimeout, bounds it,
// and the request's deadline is set only if a second attempt is needed.
func (c *Clerk) DoFromBy(ctx context.Context, by time.Time, first int, write bool, attempt func(context.Context, Service) error) error {
	_, err := c.doWithinBy(ctx, by, write, first, c.cfg.AttemptTimeout, attempt)
	return err
}

// do is Do, also reporting whether some attempt may have applied the write.
func (c *Clerk) do(ctx context.Context, write bool, first int, attempt func(context.Context, Service) error) (maybeApplied bool, err error) {
	return c.doWithin(ctx, write, first, c.cfg.AttemptTimeout, attempt)
}

// doWithin is do with attempts bounded by attemptTimeout (a long poll
// needs longer than an ordinary request).
func (c *Clerk) doWithin(ctx context.Context, write bool, first int, attemptTimeout time.Duration,
	attempt func(context.Context, Service) error) (maybeApplied bool, err error) {
	return c.doWithinBy(ctx, time.Time{}, write, first, attemptTimeout, attempt)
}

// doWithinBy is doWithin under ctx with deadline by (none if zero), set
// after the first attempt (see DoFromBy).
func (c *Clerk) doWithinBy(ctx context.Context, by time.Time, write bool, first int, attemptTimeout time.Duration,
	attempt func(context.Context, Service) error) (maybeApplied bool, err error) {
	// n is the size of a round; the set may change between rounds.
	n := max(len(c.servers.IDs()), 1)
	target := first
	if c.servers.Server(target) == nil {
		target = c.knownLeader()
	}
	backoff := c.cfg.MinBackoff
	// turn is the replica last chosen in turn (the first counts as one);
	// the round goes on from it, not from where a hint led, and turns
	// counts the failed attempts at replicas chosen in turn.
	turn, how, turns := target, inTurn, 0
	// maybeApplied: some attempt may have reached the log.
	var lastErr error
	for {
		deadline := time.Now().Add(attemptTimeout)
		if !by.IsZero() && by.Before(deadline) {
			deadline = by
		}
		err := c.try(ctx, target, deadline, attempt)
		if !by.IsZero() && err != nil && !Definitive(err) {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, by)
			defer cancel()
			by = time.Time{}
		}
		if err == nil || Definitive(err) {
			if err == nil {
				c.leader.Store(int64(target))
			}
			return maybeApplied || err == nil, err
		}
		n = max(len(c.servers.IDs()), 1)
		if lastErr == nil || ctx.Err() == nil && (!errors.Is(err, ErrUnreachable) || errors.Is(lastErr, ErrUnreachable)) {
			// An attempt cut off by the caller's deadline, or one to a
			// replica that is down (request not sent), says less than an
			// earlier answer from a replica (a 503 from a replica without
			// quorum): keep that one for the caller.
			lastErr = err
		}
		maybeApplied = maybeApplied || MaybeApplied(err)
		if how == inTurn {
			turns++
		}
		next, nextHow := c.next(target, turn, err, how == byHint)
		// The next request starts elsewhere too: a replica that stopped
		// answering must not hold every request for a whole attempt.
		c.leader.CompareAndSwap(int64(target), int64(next))
		if ctx.Err() != nil {
			break
		}
		if nextHow == inTurn && turns%n == 0 || nextHow == byWatch && next == target {
			// A full round without success, or nowhere new to go: give
			// the cluster a moment (an election, a restarting replica).
			// Full jitter in [backoff/2, backoff).
			c.pause(ctx, backoff/2+rand.N(backoff/2+1))
			backoff = min(2*backoff, c.cfg.MaxBackoff)
			if ctx.Err() != nil {
				break
			}
			if nextHow == byWatch {
				next, nextHow = c.next(target, turn, err, how == byHint)
			}
		}
		if nextHow == inTurn {
			turn = next
		}
		target, how = next, nextHow
	}
	if write && maybeApplied {
		return true, fmt.Errorf("%w: %w (last error: %w)", ErrTimeout, ctx.Err(), lastErr)
	}
	// A read, or a write that no replica accepted: nothing happened.
	return false, fmt.Errorf("%w: %w (last error: %w)", ErrNoLeader, ctx.Err(), lastErr)
}

// errLeaderChanged wraps the error of an attempt abandoned because the
// leader changed.
var errLeaderChanged = errors.New("kvclient: leader changed; attempt abandoned")

// try makes one attempt at target, bounded by deadline and, with a
// LeaderWatch, abandoned when the known leader moves away from target.
func (c *Clerk) try(ctx context.Context, target int, deadline time.Time, attempt func(context.Context, Service) error) error {
	srv := c.servers.Server(target)
	if srv == nil {
		return errNoSuchReplica
	}
	actx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if c.cfg.Leader == nil || target == c.cfg.Self {
		return attempt(actx, srv)
	}
	// Abandoning cancels actx itself rather than a context of its own
	// (whose cause would name the change): one context fewer per attempt.
	// Nothing else cancels actx before the attempt returns, so actx
	// cancelled while ctx is not means abandoned.
	//
	// Only a change after the attempt starts abandons it: a hint from
	// another replica may be newer than the local view.
	if sub, ok := c.cfg.Leader.(LeaderSubscriber); ok {
		defer sub.AbandonOnMove(target, cancel)()
	} else {
		var watcher sync.WaitGroup
		defer func() {
			cancel() // ends the watcher
			watcher.Wait()
		}()
		_, changed := c.cfg.Leader.Leader()
		watcher.Go(func() {
			for {
				select {
				case <-actx.Done():
					return
				case <-changed:
					var l int
					l, changed = c.cfg.Leader.Leader()
					if l != target {
						cancel()
						return
					}
				}
			}
		})
	}
	err := attempt(actx, srv)
	if err != nil && errors.Is(actx.Err(), context.Canceled) && ctx.Err() == nil {
		err = fmt.Errorf("%w: %w", errLeaderChanged, err)
	}
	return err
}

// knownLeader is where a request starts: the leader the LeaderWatch knows,
// else the replica that answered last.
func (c *Clerk) knownLeader() int {
	if c.cfg.Leader != nil {
		if l, _ := c.cfg.Leader.Leader(); l >= 0 && c.servers.Server(l) != nil {
			return l
		}
	}
	if l := int(c.leader.Load()); c.servers.Server(l) != nil {
		return l
	}
	if ids := c.servers.IDs(); len(ids) > 0 {
		return ids[rand.IntN(len(ids))]
	}
	return 0
}

// choice is how the clerk chose the replica of an attempt.
type choice int

const (
	// inTurn: the next replica of the round, nothing better being known.
	inTurn choice = iota
	// byHint: the leader hint in the previous attempt's answer.
	byHint
	// byWatch: the leader the LeaderWatch knows.
	byWatch
)

// next picks the replica to try after target failed with err: the leader
// hint in err, else the leader the LeaderWatch knows, else the next replica
// in turn after turn.
//
// Hints can be stale and lead in a circle: a replica removed from the
// cluster, or cut off, keeps naming the leader it last knew, which may be
// another such replica or one that is down. So the round goes on from turn
// whatever hints were followed in between, and a hint is not taken from a
// replica that was itself tried on a hint (fromHint): every replica of the
// round is then tried within two attempts of the one before.
func (c *Clerk) next(target, turn int, err error, fromHint bool) (int, choice) {
	var wl *WrongLeaderError
	if !fromHint && errors.As(err, &wl) && wl.Leader >= 0 && wl.Leader != target && c.servers.Server(wl.Leader) != nil {
		return wl.Leader, byHint
	}
	if c.cfg.Leader != nil {
		if l, _ := c.cfg.Leader.Leader(); l >= 0 && c.servers.Server(l) != nil {
			return l, byWatch
		}
	}
	// The next id after turn (wrapping), whether or not turn is still in
	// the set.
	ids := c.servers.IDs()
	if len(ids) == 0 {
		return target, inTurn
	}
	for _, id := range ids {
		if id > turn {
			return id, inTurn
		}
	}
	return ids[0], inTurn
}

// pause waits d, or less if ctx ends or the known leader changes.
func (c *Clerk) pause(ctx context.Context, d time.Duration) {
	var changed <-chan struct{}
	if c.cfg.Leader != nil {
		_, changed = c.cfg.Leader.Leader()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-changed:
	}
}
