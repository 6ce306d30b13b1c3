package raft

// The node: the concurrent shell around the deterministic core. This file
// holds its state, New, its lifecycle and the public API; Start, the loop,
// the applier, reads and RPC handlers are in node_propose.go, node_loop.go,
// node_apply.go, node_read.go and node_handlers.go. The node reads the core
// only through its methods (core_view.go and the protocol steps).

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
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
	// loader is store if it can read its snapshot back, else nil: the core
	// then keeps the latest snapshot's data in memory for good.
	loader persist.SnapshotLoader
	// loadUnsupported is set once loader answered errors.ErrUnsupported
	// after all (a plugin that announced LoadSnapshot without serving it):
	// from then on the node keeps snapshot data as without a loader, and
	// asks the application for the data it dropped (snapDataWanted).
	loadUnsupported atomic.Bool
	// beside is set if the store takes a compaction's snapshot while the
	// loop goes on appending (persist.BackgroundSnapshots): the loop then
	// hands compactions to compactBeside. compactDone, owned by the loop,
	// is closed when the one it handed over last is done.
	beside      bool
	compactDone chan struct{}
	// snapDataWanted is set by a sender that has no data to send (the
	// store cannot read the snapshot back): the applier asks the
	// application for a snapshot (maybeAskSnapshot), whose data SaveSnapshot
	// gives the core.
	snapDataWanted atomic.Bool
	// sending is the stored snapshot the senders read chunks from
	// (readChunk), kept from a transfer's first chunk to its last; sendMu
	// guards the field only (never held across a store call).
	sendMu  sync.Mutex
	sending *storedSnapshot
	// snapReads are the store reads of a snapshot under way in the
	// senders, each cancelled once no transfer of its snapshot is (see
	// releaseSendingLocked); guarded by sendMu.
	snapReads map[*snapRead]struct{}
	logger    *slog.Logger

	// ctx is cancelled by Kill; RPCs and store calls derive from it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// kickCh wakes the replication loop; applyKick wakes the applier.
	kickCh    chan struct{}
	applyKick chan struct{}
	// peers holds each peer's send queue, created (with its senders) at the
	// first message to it, by the loop goroutine. The queue of a peer this
	// node no longer sends to (it left the configuration, and a leader is
	// done telling it) is closed, which ends its senders (pruneSenders); a
	// later message makes a new one. sendersKey is what the core's send
	// targets were when last pruned; senders counts the running sender
	// goroutines. peersMu guards peers and the sends on its queues: the
	// loop's, and the ticker's while the loop waits for the store
	// (sendWhileStoringLocked); n.mu, when held too, is taken first.
	peersMu    sync.Mutex
	peers      map[int]chan message
	sendersKey sendTargetsKey
	senders    atomic.Int64

	// snapshotAsked is set when SnapshotNeeded was called and cleared by
	// the answer (SaveSnapshot, and the compaction it queued once done or
	// overtaken).
	snapshotAsked atomic.Bool
	// storeCall is odd while the loop is in a store call (or waits for a
	// compaction stored beside it), and counts them: the ticker sends the
	// core's replication messages itself once one call has lasted a
	// heartbeat interval (sendWhileStoringLocked).
	storeCall atomic.Uint64
	// readStart is when the loop last started a read round or read-index
	// request, and readWake is set while a wake-up of the loop for the end
	// of its batch window is pending (Config.ReadBatchWindow); both are
	// guarded by n.mu.
	readStart time.Time
	readWake  bool
	// savedTerm is the term of the hard state last stored (the loop
	// updates it under n.mu once an Append returns): the ticker sends
	// nothing for the loop while the core's term is newer.
	savedTerm uint64
	// askedSize is the store size when SnapshotNeeded was last called
	// (applier goroutine only).
	askedSize int64
	// lastSnapBytes is the size of the last snapshot saved or installed
	// (Config.SnapshotStateRatio).
	lastSnapBytes atomic.Int64

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

	// props holds the Start calls waiting for the holder of mu to propose
	// them (node_propose.go).
	props proposalQueue

	// mu guards core and every field below. It is never held across a store
	// call, an RPC or an application callback. Release it through locked
	// (or call serveQueued after Unlock) where proposals may be queued.
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
	// compacting is set while a compaction is stored beside the loop
	// (compactBeside); the next waits for it.
	compacting bool
	// compactFailed is set when a compaction stored beside the loop failed
	// the node: the loop (or Kill, once the loop is gone) closes the store,
	// so that Close never runs beside the loop's own store calls.
	compactFailed bool
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
	// confGen and confCommitted are the core's configuration generation
	// and whether its configuration in force was committed, as last seen
	// by publishLocked, which also closes changedCh when they change
	// (waitConfChange).
	confGen       uint64
	confCommitted bool
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
	if _, err := loadConfs(st, cfg.bootstrapMembership()); err != nil {
		return nil, fmt.Errorf("raft: load state: %w: %w", persist.ErrCorrupt, err)
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
		savedTerm:     st.HardState.Term,
	}
	n.feed.last = Event{Term: st.HardState.Term, Role: Follower, Leader: NoLeader}
	n.changedCh, n.transferee = make(chan struct{}), NoLeader
	n.state.Store(st.HardState.Term << 1)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if l, ok := store.(persist.SnapshotLoader); ok && l.CanLoadSnapshot() {
		n.loader = l
	}
	n.beside = persist.TakesSnapshotsBesideAppends(store)
	if st.Snapshot.Index > 0 {
		s := st.Snapshot
		n.applyQ = append(n.applyQ, applyItem{snap: &s})
		n.applyKick <- struct{}{}
		if n.loader != nil {
			// The applier hands s to the application; the core need not
			// keep it.
			n.core.dropSnapshotData(s.Index, crc32.Checksum(s.Data, castagnoli))
		}
	}
	n.peers = make(map[int]chan message)
	n.feed.last.Membership = n.core.conf()
	n.confGen = n.core.view().confGen
	n.goDaemon("ticker", n.ticker)
	n.goDaemon("loop", n.loop)
	n.goDaemon("applier", n.applier)
	logger.Info("raft: node started", "term", st.HardState.Term, "snapshot", st.Snapshot.Index,
		"last", st.LastIndex(), "commit", st.HardState.Commit, "configuration", n.core.conf().String())
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

// canLoad reports whether the store reads the snapshot back for the
// senders, so that the core need not keep its data.
func (n *Node) canLoad() bool { return n.loader != nil && !n.loadUnsupported.Load() }

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
	n.core.abandon()
	n.failWaitersLocked(fmt.Errorf("%w: %w", ErrStoreFailed, err))
	n.publishLocked()
}

func (n *Node) failWaitersLocked(err error) {
	n.proposeQueuedLocked() // refused: the node is no longer usable
	close(n.persistCh)
	n.persistCh = make(chan struct{})
	for id, ch := range n.readWaiters {
		ch <- readState{id: id, err: err}
		delete(n.readWaiters, id)
	}
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
	v := n.core.view()
	s := Status{
		ID:            n.cfg.ID,
		Term:          v.term,
		Role:          v.role,
		Leader:        v.lead,
		Commit:        v.commit,
		Applied:       n.applied.Load(),
		LastIndex:     v.lastIndex,
		SnapshotIndex: n.snapshotIndex,
		Err:           n.err,

		ReadRounds:        v.readRounds,
		ReadIndexRequests: v.fwdRequests,

		Membership:      n.core.conf().Clone(),
		MembershipIndex: v.confIndex,
		Progress:        n.core.memberProgress(),
		Removed:         n.core.removed(),
	}
	n.mu.Unlock()
	s.LogSizeBytes = n.store.Size()
	return s
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
			start = n.core.view().term
			err = n.core.transferLeadership(to)
		}
	})
	if err != nil || to == n.cfg.ID {
		return err
	}
	n.kick()
	for {
		n.mu.Lock()
		v := n.core.view()
		err := n.usable()
		done := v.term > start && v.lead == to
		aborted := (v.role == Leader && v.term == start && v.transferee == NoLeader) ||
			(v.term > start && v.lead != NoLeader && v.lead != to)
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
		closeStore := n.compactFailed
		n.compactFailed = false
		errs := append([]error(nil), n.problems...)
		for _, v := range n.core.brokenInvariants() {
			errs = append(errs, fmt.Errorf("%w: %s", ErrInvariant, v))
		}
		n.mu.Unlock()
		if closeStore {
			// Not under n.mu, which is never held across a store call.
			if cerr := n.store.Close(); cerr != nil {
				n.logger.Warn("raft: closing failed store", "err", cerr)
			}
		}
		n.killErr = errors.Join(errs...)
		n.logger.Info("raft: node killed", "problems", len(errs))
	})
	return n.killErr
}
