package raft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ruaft/ruaft/persist"
)

// Node is one Raft replica: the deterministic core driven by daemon
// goroutines (ticker, replication loop, applier, per-peer RPC senders). Its
// methods are safe for concurrent use.
type Node struct {
	cfg   Config
	tr    Transport
	store persist.Store
	app   Application
	// validator is app's SnapshotValidator, or nil.
	validator SnapshotValidator
	logger    *slog.Logger

	// ctx is cancelled by Kill; RPCs and store calls derive from it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// kickCh wakes the replication loop; applyKick wakes the applier.
	kickCh    chan struct{}
	applyKick chan struct{}
	peers     []chan message

	// snapshotAsked is set when SnapshotNeeded was called and cleared by
	// SaveSnapshot.
	snapshotAsked atomic.Bool
	// askedSize is the store size when SnapshotNeeded was last called
	// (applier goroutine only).
	askedSize int64

	killOnce sync.Once
	killErr  error

	// applyMu guards applyQ, the work handed from the loop to the applier.
	applyMu sync.Mutex
	applyQ  []applyItem

	// applied is the last index handed to the application; appliedDone the
	// last one whose Apply returned. The applier stores them without n.mu
	// (one entry at a time, so they must cost nothing when nobody waits);
	// readers load them.
	applied, appliedDone atomic.Uint64
	// appliedWaiting is set (under n.mu) by a waitApplied caller that took
	// appliedCh; the applier then closes and replaces appliedCh. Each side
	// stores its own variable before it loads the other's, so either the
	// waiter sees appliedDone reach its index or the applier sees it
	// waiting.
	appliedWaiting atomic.Bool
	// state is State's answer, term<<1 | isLeader, stored by publishLocked
	// under mu at every change, so State (asked on every request by
	// kvraft) reads it without taking mu, which the loop holds often.
	state atomic.Uint64

	// mu guards core and every field below. It is never held across a store
	// call, an RPC or an application callback.
	mu   sync.Mutex
	core *core
	// killed is set by Kill; err by the first failed store call.
	killed bool
	err    error
	// readySeq counts batches taken from the core; persistedSeq the ones
	// stored. persistCh is closed (and replaced) when persistedSeq grows
	// while persistWaiting says someone waits on it, and on kill or
	// failure.
	readySeq, persistedSeq uint64
	persistCh              chan struct{}
	persistWaiting         bool
	// appliedCh is closed (and replaced) when appliedDone grows while
	// appliedWaiting is set, and on kill.
	appliedCh chan struct{}
	// snapshotIndex is the index of the stored snapshot.
	snapshotIndex uint64
	// compaction is a snapshot from SaveSnapshot waiting for the loop.
	compaction *persist.Snapshot
	// readWaiters maps a read id to the ReadIndex call waiting for it.
	readID      uint64
	readWaiters map[uint64]chan readState
	// violations and panics recorded by the node itself (the core keeps its
	// own list).
	problems []error
	// lastRole and lastTerm are what was last logged.
	lastRole Role
	lastTerm uint64
	// feed publishes role, term and leader changes to subscribers.
	feed eventFeed
	// changedCh is closed (and replaced) whenever the role, term, leader or
	// leadership transfer target changes, for TransferLeadership;
	// transferee is the target last seen.
	changedCh  chan struct{}
	transferee int
	// logGrewCh, when not nil, is closed (and set to nil) the next time an
	// AppendEntries is stepped: appends waiting for their predecessor
	// (awaitPredecessor) wait on it.
	logGrewCh chan struct{}
}

// applyItem is a snapshot or a run of committed entries for the applier.
type applyItem struct {
	snap    *persist.Snapshot
	entries []Entry
}

// New loads the replica's state from store and starts the node's daemons.
// A stored snapshot is handed to app (as an ApplyMsg with IsSnapshot) before
// any command. The node uses store exclusively until Kill returns; the caller
// owns it and closes it afterwards (the node closes it itself only after a
// store call failed, as persist.Store requires).
func New(cfg Config, tr Transport, store persist.Store, app Application) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	st, err := store.Load(context.Background())
	if err != nil {
		return nil, fmt.Errorf("raft: load state: %w", err)
	}
	if err := checkLoaded(st); err != nil {
		return nil, err
	}
	validator, _ := app.(SnapshotValidator)
	if validator != nil && st.Snapshot.Index > 0 {
		// Restoring a snapshot the application cannot read would fail in
		// the applier, after the node started; refuse to start instead.
		if err := validator.ValidateSnapshot(st.Snapshot.Index, st.Snapshot.Data); err != nil {
			return nil, fmt.Errorf("%w: stored snapshot at index %d: %w", ErrSnapshotRejected, st.Snapshot.Index, err)
		}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("replica", cfg.ID)
	cc := coreConfigFrom(cfg)
	if cc.seed == 0 {
		cc.seed = uint64(time.Now().UnixNano())
	}
	cc.checkSnapshots = validator != nil
	n := &Node{
		cfg:           cfg,
		tr:            tr,
		store:         store,
		app:           app,
		validator:     validator,
		logger:        logger,
		kickCh:        make(chan struct{}, 1),
		applyKick:     make(chan struct{}, 1),
		core:          newCore(cc, st),
		persistCh:     make(chan struct{}),
		appliedCh:     make(chan struct{}),
		readWaiters:   make(map[uint64]chan readState),
		snapshotIndex: st.Snapshot.Index,
		lastTerm:      st.HardState.Term,
	}
	n.feed.last = Event{Term: st.HardState.Term, Role: Follower, Leader: NoLeader}
	n.changedCh, n.transferee = make(chan struct{}), NoLeader
	n.state.Store(st.HardState.Term << 1)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if st.Snapshot.Index > 0 {
		s := st.Snapshot
		n.applyQ = append(n.applyQ, applyItem{snap: &s})
		n.applyKick <- struct{}{}
	}
	n.peers = make([]chan message, cfg.Peers)
	for p := range cfg.Peers {
		if p == cfg.ID {
			continue
		}
		// Room for a full window of appends besides heartbeats and read
		// rounds: a full queue counts as a failed send, which stalls the
		// peer's replication until the next heartbeat.
		n.peers[p] = make(chan message, cfg.MaxInflightAppends+4*cfg.RPCWorkersPerPeer)
		for range cfg.RPCWorkersPerPeer {
			n.goDaemon("sender", func() { n.sender(n.peers[p]) })
		}
	}
	n.goDaemon("ticker", n.ticker)
	n.goDaemon("loop", n.loop)
	n.goDaemon("applier", n.applier)
	logger.Info("raft: node started", "term", st.HardState.Term, "snapshot", st.Snapshot.Index,
		"last", st.LastIndex(), "commit", st.HardState.Commit)
	return n, nil
}

// checkLoaded rejects a loaded state the core cannot start from.
func checkLoaded(st persist.State) error {
	if st.HardState.Term > MaxTerm {
		return fmt.Errorf("raft: load state: %w: stored term %d is beyond MaxTerm", ErrBadTerm, st.HardState.Term)
	}
	next := st.Snapshot.Index + 1
	for _, e := range st.Entries {
		if e.Index != next {
			return fmt.Errorf("raft: load state: %w: entry %d where %d expected", persist.ErrCorrupt, e.Index, next)
		}
		next++
	}
	return nil
}

// goDaemon runs f in a goroutine that Kill waits for; a panic is recovered,
// recorded for Kill, and stops the node.
func (n *Node) goDaemon(name string, f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer func() {
			if r := recover(); r != nil {
				err := fmt.Errorf("%w: %s: %v\n%s", ErrPanic, name, r, debug.Stack())
				n.mu.Lock()
				n.problems = append(n.problems, err)
				n.mu.Unlock()
				n.logger.Error("raft: daemon panicked", "daemon", name, "panic", r)
				n.fail(err)
			}
		}()
		f()
	}()
}

func (n *Node) kick() {
	select {
	case n.kickCh <- struct{}{}:
	default:
	}
}

// usable returns why the node cannot act, or nil. n.mu must be held.
func (n *Node) usable() error {
	switch {
	case n.killed:
		return ErrKilled
	case n.err != nil:
		return fmt.Errorf("%w: %w", ErrStoreFailed, n.err)
	}
	return nil
}

// fail records the first store failure (or daemon panic): the node
// stops acknowledging anything, steps down, and fails waiting calls.
func (n *Node) fail(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.err != nil || n.killed {
		return
	}
	n.err = err
	n.logger.Error("raft: node failed; it stops accepting writes", "err", err)
	n.core.becomeFollower(n.core.term, NoLeader)
	n.core.readStates = nil
	n.failWaitersLocked(fmt.Errorf("%w: %w", ErrStoreFailed, err))
	n.publishLocked()
}

func (n *Node) failWaitersLocked(err error) {
	close(n.persistCh)
	n.persistCh = make(chan struct{})
	for id, ch := range n.readWaiters {
		ch <- readState{id: id, err: err}
		delete(n.readWaiters, id)
	}
}

// --- daemons ---

func (n *Node) ticker() {
	t := time.NewTicker(n.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		n.locked(func() {
			if n.err == nil {
				n.core.tick()
			}
		})
		n.kick()
	}
}

// loop is the replication loop: it takes each batch from the core, stores it
// with one Append, sends its messages and hands committed entries to the
// applier.
func (n *Node) loop() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.kickCh:
		}
		// Let the goroutines that are ready to run (proposers woken by the
		// applier, senders with answers, handlers) step into the core
		// before its state is taken, so one wake-up carries one batch of
		// all of them: the kick that woke the loop hands it the processor
		// at once, which would otherwise send each proposal on its own and
		// keep the others queued behind a chain of such hand-offs.
		runtime.Gosched()
		for n.processReady() {
		}
	}
}

func (n *Node) processReady() bool {
	var (
		rd   ready
		comp *persist.Snapshot
		seq  uint64
		ok   bool
	)
	n.locked(func() {
		if n.killed || n.err != nil {
			return
		}
		comp = n.compaction
		n.compaction = nil
		if comp != nil {
			t, have := n.core.log.term(comp.Index)
			if !have || comp.Index <= n.core.log.snap.Index {
				comp = nil // a snapshot from the leader covered it meanwhile
			} else {
				comp.Term = t
			}
		}
		rd = n.core.ready()
		if rd.empty() && comp == nil {
			n.core.recycleMessages(rd.messages)
			return
		}
		n.readySeq++
		seq = n.readySeq
		n.logStateLocked()
		ok = true
	})
	if !ok {
		return false
	}

	if comp != nil {
		if err := n.store.SaveSnapshot(n.ctx, *comp); err != nil {
			n.storeFailed(err)
			return false
		}
		n.locked(func() {
			if err := n.core.compact(*comp); err != nil {
				n.problems = append(n.problems, fmt.Errorf("%w: %w", ErrInvariant, err))
			}
			n.snapshotIndex = max(n.snapshotIndex, comp.Index)
		})
		// Ask again only once this compaction shows in the store's size.
		n.snapshotAsked.Store(false)
	}
	// A leader's appends go out before its own write (thesis 10.2.1); it
	// counts itself only once advance reports the write durable.
	var late []message
	for _, m := range rd.messages {
		if m.rv != nil {
			late = append(late, m)
		} else {
			n.dispatch(m)
		}
	}
	if rd.snapshot != nil {
		if err := n.store.SaveSnapshot(n.ctx, *rd.snapshot); err != nil {
			n.storeFailed(err)
			return false
		}
		n.logger.Info("raft: stored a snapshot received from the leader", "index", rd.snapshot.Index,
			"term", rd.snapshot.Term, "bytes", len(rd.snapshot.Data))
	}
	if rd.save {
		if err := n.store.Append(n.ctx, rd.hardState, rd.entries); err != nil {
			n.storeFailed(err)
			return false
		}
	}
	for _, m := range late {
		n.dispatch(m)
	}
	if rd.snapshot != nil || len(rd.committed) > 0 {
		n.applyMu.Lock()
		if rd.snapshot != nil {
			n.applyQ = append(n.applyQ, applyItem{snap: rd.snapshot})
		}
		if len(rd.committed) > 0 {
			n.applyQ = append(n.applyQ, applyItem{entries: rd.committed})
		}
		n.applyMu.Unlock()
		select {
		case n.applyKick <- struct{}{}:
		default:
		}
	}

	n.locked(func() {
		n.core.advance(rd)
		if rd.snapshot != nil {
			n.snapshotIndex = max(n.snapshotIndex, rd.snapshot.Index)
		}
		n.persistedSeq = seq
		if n.persistWaiting {
			n.persistWaiting = false
			close(n.persistCh)
			n.persistCh = make(chan struct{})
		}
		// The messages were copied out (dispatch and late).
		n.core.recycleMessages(rd.messages)
		for _, rs := range rd.reads {
			if ch, ok := n.readWaiters[rs.id]; ok {
				ch <- rs
				delete(n.readWaiters, rs.id)
			}
		}
	})
	return true
}

// locked runs f with n.mu held, releasing it even if f panics, and then
// publishes the role, term and leader if f changed them. Every path that
// steps the core goes through here (or through fail), so subscribers learn
// of a change before n.mu is released.
func (n *Node) locked(f func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	f()
	n.publishLocked()
}

// publishLocked publishes the core's role, term and leader to subscribers if
// they changed. n.mu must be held.
func (n *Node) publishLocked() {
	c := n.core
	seq := n.feed.last.Seq
	n.feed.observe(c.term, c.role, c.lead)
	if n.feed.last.Seq != seq || c.transferee != n.transferee {
		n.transferee = c.transferee
		close(n.changedCh)
		n.changedCh = make(chan struct{})
	}
	// After the event: subscribers hear of a change before State shows it.
	st := c.term << 1
	if c.role == Leader && n.usable() == nil {
		st |= 1
	}
	n.state.Store(st)
}

func (n *Node) storeFailed(err error) {
	n.fail(err)
	if cerr := n.store.Close(); cerr != nil {
		n.logger.Warn("raft: closing failed store", "err", cerr)
	}
}

func (n *Node) logStateLocked() {
	c := n.core
	for _, e := range c.events {
		n.logger.Info("raft: " + e)
	}
	c.events = c.events[:0]
	if c.role != n.lastRole || c.term != n.lastTerm {
		n.logger.Info("raft: state change", "role", c.role, "term", c.term, "leader", c.lead,
			"last", c.log.lastIndex(), "commit", c.log.commit)
		n.lastRole, n.lastTerm = c.role, c.term
	}
}

// dispatch queues m for its peer's senders; a full queue counts as a failed
// RPC.
func (n *Node) dispatch(m message) {
	select {
	case n.peers[m.to] <- m:
	default:
		n.logger.Debug("raft: send queue full", "to", m.to, "rpc", rpcName(m))
		n.locked(func() { n.core.handleFailure(m) })
	}
}

func (n *Node) sender(ch chan message) {
	for {
		select {
		case <-n.ctx.Done():
			return
		case m := <-ch:
			n.call(m)
		}
	}
}

// call sends one RPC and steps its answer (or its failure) into the core.
func (n *Node) call(m message) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RPCTimeout)
	defer cancel()
	var (
		r   answer
		err error
	)
	switch {
	case m.ae != nil:
		r.ae, err = n.tr.AppendEntries(ctx, m.to, m.ae)
	case m.rv != nil:
		r.rv, err = n.tr.RequestVote(ctx, m.to, m.rv)
	case m.is != nil:
		r.is, err = n.tr.InstallSnapshot(ctx, m.to, m.is)
	case m.tn != nil:
		r.tn, err = n.tr.TimeoutNow(ctx, m.to, m.tn)
	case m.ri != nil:
		r.ri, err = n.tr.ReadIndex(ctx, m.to, m.ri)
	}
	if err != nil || !r.valid(m) {
		n.logger.Debug("raft: rpc failed", "to", m.to, "rpc", rpcName(m), "err", err)
		r = answer{}
	}
	n.stepAnswer(m, r)
	n.kick()
}

// answer is the response to a message: the field matching its request, or
// nothing if the RPC failed.
type answer struct {
	ae *AppendEntriesResponse
	rv *RequestVoteResponse
	is *InstallSnapshotResponse
	tn *TimeoutNowResponse
	ri *ReadIndexResponse
}

func (r answer) valid(m message) bool {
	return (m.ae != nil && r.ae != nil) || (m.rv != nil && r.rv != nil) ||
		(m.is != nil && r.is != nil) || (m.tn != nil && r.tn != nil) || (m.ri != nil && r.ri != nil)
}

// stepAnswer steps m's answer, or its failure, into the core.
func (n *Node) stepAnswer(m message, r answer) {
	n.locked(func() {
		switch {
		case n.killed || n.err != nil:
		case !r.valid(m):
			n.core.handleFailure(m)
		case m.ae != nil:
			n.core.handleAppendResponse(m, r.ae)
		case m.rv != nil:
			n.core.handleVoteResponse(m, r.rv)
		case m.is != nil:
			n.core.handleSnapshotResponse(m, r.is)
		case m.tn != nil:
			n.core.handleTimeoutNowResponse(m, r.tn)
		case m.ri != nil:
			n.core.handleReadIndexResponse(m, r.ri)
		}
	})
}

// applier hands committed entries and installed snapshots to the
// application, in order, one at a time.
func (n *Node) applier() {
	var last uint64
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.applyKick:
		}
		for {
			n.applyMu.Lock()
			q := n.applyQ
			n.applyQ = nil
			n.applyMu.Unlock()
			if len(q) == 0 {
				break
			}
			for _, it := range q {
				if it.snap != nil {
					if !n.applySnapshot(it.snap, &last) {
						return
					}
					continue
				}
				for _, e := range it.entries {
					if !n.applyEntry(e, &last) {
						return
					}
				}
			}
			n.maybeAskSnapshot(last)
		}
	}
}

func (n *Node) applySnapshot(s *persist.Snapshot, last *uint64) bool {
	if n.ctx.Err() != nil {
		return false
	}
	if s.Index <= *last {
		n.recordViolation("applying snapshot %d after index %d", s.Index, *last)
		return true
	}
	n.applied.Store(s.Index)
	// The core keeps s.Data to send to followers: the application gets a
	// copy it may modify (ApplyMsg.Snapshot).
	n.app.Apply(ApplyMsg{Index: s.Index, Term: s.Term, Snapshot: bytes.Clone(s.Data), IsSnapshot: true})
	*last = s.Index
	n.setAppliedDone(s.Index)
	return true
}

func (n *Node) applyEntry(e Entry, last *uint64) bool {
	if n.ctx.Err() != nil {
		return false
	}
	if e.Index <= *last {
		return true // covered by a snapshot applied meanwhile
	}
	if e.Index != *last+1 {
		n.recordViolation("applying index %d after %d", e.Index, *last)
	}
	n.applied.Store(e.Index)
	if e.Type == persist.EntryCommand {
		n.app.Apply(ApplyMsg{Index: e.Index, Term: e.Term, Command: e.Data})
	}
	*last = e.Index
	n.setAppliedDone(e.Index)
	return true
}

// setAppliedDone records that Apply(i) returned, and wakes waitApplied
// callers only if there are some: no lock, no allocation otherwise.
func (n *Node) setAppliedDone(i uint64) {
	n.appliedDone.Store(i)
	if n.appliedWaiting.Load() {
		n.mu.Lock()
		n.appliedWaiting.Store(false)
		close(n.appliedCh)
		n.appliedCh = make(chan struct{})
		n.mu.Unlock()
	}
}

func (n *Node) recordViolation(format string, args ...any) {
	err := fmt.Errorf("%w: replica %d: %s", ErrInvariant, n.cfg.ID, fmt.Sprintf(format, args...))
	n.logger.Error("raft: invariant violated", "err", err)
	n.mu.Lock()
	n.problems = append(n.problems, err)
	n.mu.Unlock()
}

// maybeAskSnapshot calls SnapshotNeeded when the stored log passed the
// threshold, once per crossing until the application answers.
func (n *Node) maybeAskSnapshot(last uint64) {
	th := n.cfg.SnapshotThresholdBytes
	if th <= 0 || n.ctx.Err() != nil {
		return
	}
	size := n.store.Size()
	if size <= th {
		return
	}
	// An unanswered request is repeated only once the log grew by another
	// threshold.
	if n.snapshotAsked.Load() && size < n.askedSize+th {
		return
	}
	n.snapshotAsked.Store(true)
	n.askedSize = size
	n.app.SnapshotNeeded(last)
}

// --- public API ---

// Start proposes cmd. If this node is the leader it appends cmd to its log
// and returns the index the command will have if it commits, the current
// term and true. Otherwise it returns isLeader false. Start does not wait
// for the command to commit.
//
// The node takes cmd over without copying it: it keeps the slice in its log,
// sends it to followers and hands it to Apply as ApplyMsg.Command. The
// caller must not modify cmd after the call, whatever Start returned; a
// caller that reuses a buffer passes a copy.
func (n *Node) Start(cmd []byte) (index, term uint64, isLeader bool) {
	n.locked(func() {
		if n.usable() != nil {
			term = n.core.term
			return
		}
		index, term, isLeader = n.core.propose(cmd)
	})
	if isLeader {
		n.kick()
	}
	return index, term, isLeader
}

// State returns the current term and whether this node believes it is the
// leader.
func (n *Node) State() (term uint64, isLeader bool) {
	st := n.state.Load()
	return st >> 1, st&1 == 1
}

// Subscribe registers for the node's role, term and leader changes. The
// contract:
//
//   - The channel first holds the current state (an Event with the Seq of
//     the last change), then receives an Event after each change of role,
//     term or known leader, in the order the changes happened.
//   - The node never waits for a subscriber: it publishes with a
//     non-blocking send, while it holds its lock, so consensus is never
//     delayed by a slow reader. The channel has capacity one and keeps only
//     the newest state: an event the subscriber has not received yet is
//     replaced by the next one (coalescing). A subscriber therefore always
//     ends up with the latest state but may skip intermediate ones; Seq and
//     LeaderChanges tell it how many it skipped.
//   - An event is in every subscriber's channel before any other call on
//     the node can observe the change (Status, State, Start, ReadIndex): it
//     is published in the same critical section that made the change.
//   - The channel is closed by cancel (idempotent) or when the node is
//     killed; subscribing to a killed node returns a closed channel holding
//     the last state.
//
// Subscribers must call cancel when done.
func (n *Node) Subscribe() (events <-chan Event, cancel func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ch := n.feed.subscribe()
	return ch, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		n.feed.unsubscribe(ch)
	}
}

// Status returns a point-in-time view of the node.
func (n *Node) Status() Status {
	n.mu.Lock()
	c := n.core
	s := Status{
		ID:            n.cfg.ID,
		Term:          c.term,
		Role:          c.role,
		Leader:        c.lead,
		Commit:        c.log.commit,
		Applied:       n.applied.Load(),
		LastIndex:     c.log.lastIndex(),
		SnapshotIndex: n.snapshotIndex,
		Err:           n.err,

		ReadRounds:        c.readRounds,
		ReadIndexRequests: c.fwdRequests,
	}
	n.mu.Unlock()
	s.LogSizeBytes = n.store.Size()
	return s
}

// SaveSnapshot tells the node that data is the application's state after
// applying index; the node stores it and compacts its log up to index in the
// background. index must have been handed to Apply (it may be the index of
// the Apply call in progress); an index at or below the current snapshot is
// ignored. The node keeps data (to send to followers): the caller must not
// modify it afterwards.
func (n *Node) SaveSnapshot(index uint64, data []byte) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.usable(); err != nil {
		return err
	}
	if applied := n.applied.Load(); index > applied {
		return fmt.Errorf("%w: index %d not applied yet (applied %d)", ErrBadSnapshot, index, applied)
	}
	if index <= n.core.log.snap.Index || (n.compaction != nil && index <= n.compaction.Index) {
		n.snapshotAsked.Store(false)
		return nil
	}
	n.compaction = &persist.Snapshot{Index: index, Data: data}
	n.kick()
	return nil
}

// ReadIndex returns an index at which a read of the application's state is
// linearizable, on the leader or on a follower (a follower read).
//
// On the leader the index is its commit index, issued only once its no-op of
// the current term has committed and a majority answered a heartbeat round
// started after the call. Concurrent calls coalesce: at most one round is in
// flight, and every call that arrives meanwhile shares the next one.
//
// On a follower that knows its leader, the follower asks the leader for the
// index, with one request for every read waiting on it (at most one request
// in flight); the leader answers under the same rules as for its own reads.
//
// When ReadIndex returns, this node's application has applied at least that
// index (its Apply call returned), so the caller can read its state at once.
// It returns ErrNotLeader on a node that knows no leader, is a candidate, or
// could not get an answer from the leader (the leader changed, was
// unreachable, or refused); the caller may retry, here or at the leader.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	rs, err := n.readIndex(ctx, func(c *core, id uint64) bool {
		if c.role != Leader && (c.role != Follower || c.lead == NoLeader) {
			return false
		}
		c.readIndex(id)
		return true
	})
	if err != nil {
		return 0, err
	}
	return rs.index, n.waitApplied(ctx, rs.index)
}

// readIndex registers a read with the core through register, which reports
// false if the node cannot take it (ErrNotLeader), and waits for its
// answer.
func (n *Node) readIndex(ctx context.Context, register func(c *core, id uint64) bool) (readState, error) {
	ch := make(chan readState, 1)
	var (
		id  uint64
		err error
	)
	n.locked(func() {
		if err = n.usable(); err != nil {
			return
		}
		n.readID++
		id = n.readID
		if !register(n.core, id) {
			err = ErrNotLeader
			return
		}
		n.readWaiters[id] = ch
	})
	if err != nil {
		return readState{}, err
	}
	n.kick()

	var rs readState
	select {
	case rs = <-ch:
	case <-ctx.Done():
		n.mu.Lock()
		delete(n.readWaiters, id)
		n.mu.Unlock()
		return readState{}, ctx.Err()
	}
	return rs, rs.err
}

// waitApplied waits until the application applied index.
func (n *Node) waitApplied(ctx context.Context, index uint64) error {
	for n.appliedDone.Load() < index {
		n.mu.Lock()
		if err := n.usable(); err != nil {
			n.mu.Unlock()
			return err
		}
		n.appliedWaiting.Store(true)
		ch := n.appliedCh
		// Checked again after announcing the wait (see appliedWaiting).
		done := n.appliedDone.Load() >= index
		n.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.ctx.Done():
			return ErrKilled
		}
	}
	return nil
}

// TransferLeadership hands leadership to replica to: the leader stops
// accepting proposals, brings to's log up to date, then asks it to start an
// election at once (pre-vote and leases do not hold it back). It returns
// once this node has seen to lead a newer term, ErrTransferFailed if the
// transfer was abandoned (after ElectionTimeoutMax + ElectionTimeoutMin
// without a new leader) or another node won,
// ErrNotLeader if this node is not the leader, or ctx's error.
func (n *Node) TransferLeadership(ctx context.Context, to int) error {
	var (
		start uint64
		err   error
	)
	n.locked(func() {
		if err = n.usable(); err == nil {
			start = n.core.term
			err = n.core.transferLeadership(to)
		}
	})
	if err != nil || to == n.cfg.ID {
		return err
	}
	n.kick()
	for {
		n.mu.Lock()
		c := n.core
		err := n.usable()
		done := c.term > start && c.lead == to
		aborted := (c.role == Leader && c.term == start && c.transferee == NoLeader) ||
			(c.term > start && c.lead != NoLeader && c.lead != to)
		changed := n.changedCh
		n.mu.Unlock()
		switch {
		case err != nil:
			return err
		case done:
			return nil
		case aborted:
			return ErrTransferFailed
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.ctx.Done():
			return ErrKilled
		case <-changed:
		}
	}
}

// Kill stops the node: it stops every daemon, waits for them (an Apply call
// in progress finishes first), and returns an error joining every recorded
// invariant violation and recovered daemon panic, or nil. No Application
// method is called after Kill returns. Kill is idempotent; later calls
// return the same error.
func (n *Node) Kill() error {
	n.killOnce.Do(func() {
		n.mu.Lock()
		n.killed = true
		n.failWaitersLocked(ErrKilled)
		n.publishLocked()
		n.feed.close()
		n.mu.Unlock()
		n.cancel()
		n.wg.Wait()
		n.mu.Lock()
		errs := append([]error(nil), n.problems...)
		for _, v := range n.core.violations {
			errs = append(errs, fmt.Errorf("%w: %s", ErrInvariant, v))
		}
		n.mu.Unlock()
		n.killErr = errors.Join(errs...)
		n.logger.Info("raft: node killed", "problems", len(errs))
	})
	return n.killErr
}

// --- RPC handlers ---

// dirtySeqLocked returns the batch sequence number that must be stored
// before an answer reflecting the core's current state may be sent.
func (n *Node) dirtySeqLocked() uint64 {
	c := n.core
	if c.log.unstable <= c.log.lastIndex() || c.log.snapUnstable ||
		c.term != c.prevHS.Term || c.vote != c.prevHS.VotedFor {
		return n.readySeq + 1
	}
	return n.readySeq
}

// waitPersisted waits until batch seq is stored.
func (n *Node) waitPersisted(ctx context.Context, seq uint64) error {
	n.mu.Lock()
	for n.persistedSeq < seq {
		if err := n.usable(); err != nil {
			n.mu.Unlock()
			return err
		}
		n.persistWaiting = true
		ch := n.persistCh
		n.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		n.mu.Lock()
	}
	n.mu.Unlock()
	return nil
}

// handle steps a request into the core and returns its answer once what
// the answer claims is stored.
func handle[Resp any](n *Node, ctx context.Context, step func() *Resp) (*Resp, error) {
	var (
		resp *Resp
		seq  uint64
		err  error
	)
	n.locked(func() {
		if err = n.usable(); err == nil {
			resp = step()
			seq = n.dirtySeqLocked()
		}
	})
	if err != nil {
		return nil, err
	}
	n.kick()
	if err := n.waitPersisted(ctx, seq); err != nil {
		return nil, err
	}
	return resp, nil
}

// HandleAppendEntries serves an AppendEntries RPC from a leader. It answers
// only once the entries it acknowledges are stored; it returns an error (no
// answer) if the node is killed or its store failed.
func (n *Node) HandleAppendEntries(ctx context.Context, req *AppendEntriesRequest) (*AppendEntriesResponse, error) {
	n.awaitPredecessor(ctx, req)
	return handle(n, ctx, func() *AppendEntriesResponse {
		resp := n.core.handleAppendEntries(req)
		if n.logGrewCh != nil {
			close(n.logGrewCh)
			n.logGrewCh = nil
		}
		return resp
	})
}

// awaitPredecessor holds back an append from this node's leader that
// arrived before the one preceding it, until that one has been stepped or
// a tick has passed. A leader pipelines appends over several RPC workers,
// so they may arrive out of order; stepped at once, the early one would be
// refused (a gap in the log), every append after it too, and the leader
// would fall back to probing, one append per round trip, until the
// pipeline restarts: a stall of milliseconds for every commit behind it.
// An append whose predecessor was lost waits the tick and is refused as
// before.
func (n *Node) awaitPredecessor(ctx context.Context, req *AppendEntriesRequest) {
	var timer *time.Timer
	for {
		n.mu.Lock()
		c := n.core
		if c.role != Follower || c.term != req.Term || c.lead != req.LeaderID ||
			req.PrevLogIndex <= c.log.lastIndex() || n.usable() != nil {
			n.mu.Unlock()
			break
		}
		if n.logGrewCh == nil {
			n.logGrewCh = make(chan struct{})
		}
		grew := n.logGrewCh
		n.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(n.cfg.TickInterval)
		}
		select {
		case <-grew:
			continue
		case <-timer.C:
		case <-ctx.Done():
		case <-n.ctx.Done():
		}
		break
	}
	if timer != nil {
		timer.Stop()
	}
}

// HandleRequestVote serves a RequestVote RPC (vote or pre-vote). A granted
// vote is stored before the answer.
func (n *Node) HandleRequestVote(ctx context.Context, req *RequestVoteRequest) (*RequestVoteResponse, error) {
	return handle(n, ctx, func() *RequestVoteResponse { return n.core.handleRequestVote(req) })
}

// HandleInstallSnapshot serves one InstallSnapshot chunk. The last chunk's
// answer comes once the snapshot is checked (its checksum, and the
// application's SnapshotValidator if it has one) and stored.
func (n *Node) HandleInstallSnapshot(ctx context.Context, req *InstallSnapshotRequest) (*InstallSnapshotResponse, error) {
	var check *snapshotBuffer
	resp, err := handle(n, ctx, func() *InstallSnapshotResponse {
		r := n.core.handleInstallSnapshot(req)
		check, n.core.toCheck = n.core.toCheck, nil
		return r
	})
	if check == nil {
		return resp, err
	}
	// The core handed out check (even if ctx ended meanwhile): it stays
	// "being validated", refusing the rest of the transfer, until
	// finishSnapshot, so always finish it.
	// The application validates without n.mu held; meanwhile the core
	// answers retries of the chunk with "not installed yet".
	verr := n.validateSnapshot(check)
	if verr != nil {
		n.logger.Warn("raft: refused a snapshot the application cannot restore", "index", check.index,
			"leader", check.leader, "term", check.term, "bytes", len(check.data), "err", verr)
	}
	return handle(n, ctx, func() *InstallSnapshotResponse { return n.core.finishSnapshot(check, verr) })
}

// HandleTimeoutNow serves a TimeoutNow RPC: the node starts an election at
// once.
func (n *Node) HandleTimeoutNow(ctx context.Context, req *TimeoutNowRequest) (*TimeoutNowResponse, error) {
	return handle(n, ctx, func() *TimeoutNowResponse { return n.core.handleTimeoutNow(req) })
}

// HandleReadIndex serves a follower's read-index request: if this node
// leads, it treats the request as one read of its own (same round, same
// rules) and answers with the read index once its leadership is confirmed;
// otherwise it answers OK false at once. It returns an error (no answer) if
// the node is killed, its store failed, or ctx ends first.
func (n *Node) HandleReadIndex(ctx context.Context, req *ReadIndexRequest) (*ReadIndexResponse, error) {
	var term uint64
	rs, err := n.readIndex(ctx, func(c *core, id uint64) bool {
		term = c.term
		return c.handleReadIndex(id, req)
	})
	switch {
	case errors.Is(err, ErrNotLeader):
		return &ReadIndexResponse{Term: max(term, rs.term)}, nil
	case err != nil:
		return nil, err
	}
	return &ReadIndexResponse{Term: rs.term, OK: true, ReadIndex: rs.index}, nil
}

// validateSnapshot asks the application whether it can restore b; a panic
// counts as a refusal, so that the receive buffer is always released.
func (n *Node) validateSnapshot(b *snapshotBuffer) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("ValidateSnapshot panicked: %v", r)
		}
	}()
	return n.validator.ValidateSnapshot(b.index, b.data)
}

func rpcName(m message) string {
	switch {
	case m.ae != nil:
		return "AppendEntries"
	case m.rv != nil:
		return "RequestVote"
	case m.is != nil:
		return "InstallSnapshot"
	case m.ri != nil:
		return "ReadIndex"
	default:
		return "TimeoutNow"
	}
}
