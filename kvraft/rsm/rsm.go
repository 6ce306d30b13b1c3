package rsm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/ruaft/ruaft/raft"
)

// Raft is the part of *raft.Node an RSM drives. *raft.Node implements it;
// tests may substitute a fake.
type Raft interface {
	Start(cmd []byte) (index, term uint64, isLeader bool)
	State() (term uint64, isLeader bool)
	Status() raft.Status
	ReadIndex(ctx context.Context) (uint64, error)
	SaveSnapshot(index uint64, data []byte) error
	// Subscribe follows role, term and leader changes, with the contract
	// of raft.Node.Subscribe.
	Subscribe() (events <-chan raft.Event, cancel func())
	Kill() error
}

// StateMachine is the deterministic application an RSM replicates. Apply,
// Snapshot and Restore are called from one goroutine at a time, in log
// order; an implementation that also serves reads from other goroutines
// guards its state itself.
type StateMachine interface {
	// Apply applies the committed command at index and returns its result,
	// which is handed to the Submit waiting for that entry, if any. The
	// command slice is the raft log's own (on the leader, the very slice
	// passed to Submit or Propose), still sent to lagging followers after
	// Apply returns: Apply reads it, or copies what it keeps, and never
	// writes into it, or those followers would apply other bytes.
	Apply(index uint64, cmd []byte) any
	// Snapshot returns the serialized state after the last applied command.
	Snapshot() []byte
	// Restore replaces the whole state with a snapshot returned by Snapshot
	// (possibly on another replica). An empty snapshot means the initial state.
	Restore(data []byte) error
}

// SnapshotValidator may be implemented by a StateMachine that can check a
// snapshot without restoring it. The RSM then lets its raft node refuse a
// snapshot that ValidateSnapshot rejects, before storing it (see
// raft.SnapshotValidator): a snapshot it accepts must restore without error.
// ValidateSnapshot runs concurrently with Apply and must not modify data.
type SnapshotValidator interface {
	ValidateSnapshot(data []byte) error
}

// ResultDiscarder may be implemented by a StateMachine whose results cost
// something to return (a struct in an interface is an allocation). The RSM
// then applies a command that no Future waits for (every command on a
// follower) with ApplyDiscard, which must change the state exactly as
// Apply does; it runs under the same rules as Apply.
type ResultDiscarder interface {
	ApplyDiscard(index uint64, cmd []byte)
}

// Errors returned by Submit, Propose and Future.Wait.
var (
	// ErrNotLeader means this replica is not the leader: nothing was proposed.
	ErrNotLeader = errors.New("rsm: not the leader")
	// ErrLostLeadership means the command was proposed but this replica lost
	// leadership (its term changed, or another entry took the command's index,
	// or a snapshot replaced the state) before the command was seen applied.
	// The command may or may not have been applied.
	ErrLostLeadership = errors.New("rsm: leadership lost before the command was applied")
	// ErrKilled means the RSM was killed; a proposed command may or may not
	// have been applied.
	ErrKilled = errors.New("rsm: killed")
)

// Config tunes an RSM.
type Config struct {
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the configuration used when none is given.
func DefaultConfig() Config {
	return Config{}
}

// Validate reports the first field that is out of range (none can be, today).
func (c Config) Validate() error {
	return nil
}

// RSM is a replicated state machine: it turns a StateMachine and a raft node
// into a service whose Submit returns the result of a command once it has
// been committed and applied, or an error saying why the attempt failed.
//
// An RSM is the raft.Application of its node. Build it with New, create the
// node with the RSM as its application, then call Attach before anything
// else.
type RSM struct {
	sm     StateMachine
	cfg    Config
	logger *slog.Logger

	nodeOnce sync.Once
	nodeSet  chan struct{} // closed by Attach
	node     Raft          // written once by Attach before nodeSet closes

	stop chan struct{} // closed by Kill to stop the watcher
	wg   sync.WaitGroup

	killOnce sync.Once
	killErr  error

	// applyMu is held while the state machine applies an entry or restores
	// a snapshot, so Snapshot sees a state at a known index.
	applyMu   sync.Mutex
	applied   uint64 // guarded by applyMu: index of the last entry applied
	appliedAt uint64 // guarded by applyMu: its term

	mu sync.Mutex // guards the fields below
	// pending holds the futures of commands this replica proposed and has not
	// seen applied, by log index.
	pending map[uint64]*Future
	killed  bool
	// npending is len(pending), plus one during a Propose's Start; written
	// under mu, read by Apply without it. None means no future for the
	// entry being applied: a later Propose gets a later index.
	npending atomic.Int64
	// discard is sm as a ResultDiscarder, nil if it is not one.
	discard ResultDiscarder
}

var (
	_ raft.Application       = (*RSM)(nil)
	_ raft.SnapshotValidator = (*RSM)(nil)
)

// New returns an RSM around sm. It does nothing until Attach.
func New(cfg Config, sm StateMachine) (*RSM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	discard, _ := sm.(ResultDiscarder)
	return &RSM{
		sm:      sm,
		discard: discard,
		cfg:     cfg,
		logger:  logger,
		nodeSet: make(chan struct{}),
		stop:    make(chan struct{}),
		pending: make(map[uint64]*Future),
	}, nil
}

// Attach gives the RSM its raft node and starts the leadership watcher. It
// must be called exactly once, right after the node is created.
func (r *RSM) Attach(node Raft) {
	r.nodeOnce.Do(func() {
		r.node = node
		close(r.nodeSet)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.watchLeadership()
		}()
	})
}

// Raft returns the attached node, or nil before Attach.
func (r *RSM) Raft() Raft {
	select {
	case <-r.nodeSet:
		return r.node
	default:
		return nil
	}
}

// Future is the pending outcome of one proposed command.
type Future struct {
	// Index and Term locate the command's entry as Start returned them.
	Index, Term uint64

	done   chan struct{} // closed once result and err are set
	result any
	err    error
}

// Done is closed once the outcome is known.
func (f *Future) Done() <-chan struct{} { return f.done }

// Result returns the outcome; it is meaningful only after Done is closed.
func (f *Future) Result() (any, error) { return f.result, f.err }

// Wait blocks until the outcome is known or ctx ends. A ctx error leaves the
// command pending: it may still be applied.
func (f *Future) Wait(ctx context.Context) (any, error) {
	select {
	case <-f.done:
		return f.result, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// resolve sets the outcome. Each future is resolved exactly once, by
// whoever removed it from RSM.pending.
func (f *Future) resolve(result any, err error) {
	f.result, f.err = result, err
	close(f.done)
}

// Submit proposes cmd and waits until it is applied (returning the state
// machine's result), the attempt fails (ErrNotLeader, ErrLostLeadership,
// ErrKilled), or ctx ends (ctx's error; the command may still be applied).
// As with Propose, cmd must not be modified after the call.
func (r *RSM) Submit(ctx context.Context, cmd []byte) (any, error) {
	f, err := r.Propose(cmd)
	if err != nil {
		return nil, err
	}
	return f.Wait(ctx)
}

// Propose starts cmd through raft and returns its Future without waiting.
// The future resolves on its own (applied, leadership lost, or Kill) whether
// or not anyone waits for it. Raft keeps cmd without copying it (see
// raft.Node.Start): the caller must not modify it after the call, whatever
// the outcome; a caller that reuses a buffer passes a copy.
func (r *RSM) Propose(cmd []byte) (*Future, error) {
	node := r.Raft()
	if node == nil {
		return nil, ErrNotLeader
	}
	// r.mu is held across Start so that the apply path, which takes r.mu
	// before it looks for a future, cannot see the entry before the future
	// is registered. Start does not wait for anything the apply path holds.
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.killed {
		return nil, ErrKilled
	}
	// Counted before Start, as the apply path reads npending without r.mu:
	// it must not see the entry with no future counted.
	r.npending.Add(1)
	defer func() { r.npending.Store(int64(len(r.pending))) }()
	index, term, isLeader := node.Start(cmd)
	if !isLeader {
		return nil, ErrNotLeader
	}
	f := &Future{Index: index, Term: term, done: make(chan struct{})}
	if old := r.pending[index]; old != nil {
		// A future from an older term whose entry was overwritten; the
		// watcher would fail it soon anyway.
		old.resolve(nil, ErrLostLeadership)
	}
	r.pending[index] = f
	return f, nil
}

// ReadIndex returns a linearizable read point from the node. As
// raft.Node.ReadIndex promises, the state machine has applied the read
// point when it returns, so the caller may read its state at once.
func (r *RSM) ReadIndex(ctx context.Context) (uint64, error) {
	node := r.Raft()
	if node == nil {
		return 0, ErrNotLeader
	}
	return node.ReadIndex(ctx)
}

// Apply implements raft.Application.
func (r *RSM) Apply(msg raft.ApplyMsg) {
	if msg.IsSnapshot {
		r.applySnapshot(msg)
		return
	}
	r.applyMu.Lock()
	var result any
	if r.discard != nil && r.npending.Load() == 0 {
		r.discard.ApplyDiscard(msg.Index, msg.Command)
	} else {
		result = r.sm.Apply(msg.Index, msg.Command)
	}
	r.applied, r.appliedAt = msg.Index, msg.Term
	r.applyMu.Unlock()

	r.mu.Lock()
	f := r.pending[msg.Index]
	if f != nil {
		delete(r.pending, msg.Index)
		r.npending.Store(int64(len(r.pending)))
	}
	r.mu.Unlock()

	if f != nil {
		// Raft puts at most one entry at an index in a term, so an entry
		// with the term Start returned is the one proposed.
		if f.Term == msg.Term {
			f.resolve(result, nil)
		} else {
			f.resolve(nil, ErrLostLeadership)
		}
	}
}

// ValidateSnapshot implements raft.SnapshotValidator with the state
// machine's SnapshotValidator, and accepts every snapshot if it has none.
func (r *RSM) ValidateSnapshot(index uint64, data []byte) error {
	v, ok := r.sm.(SnapshotValidator)
	if !ok {
		return nil
	}
	if err := v.ValidateSnapshot(data); err != nil {
		return fmt.Errorf("rsm: snapshot at index %d: %w", index, err)
	}
	return nil
}

func (r *RSM) applySnapshot(msg raft.ApplyMsg) {
	r.applyMu.Lock()
	if err := r.sm.Restore(msg.Snapshot); err != nil {
		// A snapshot this RSM cannot read leaves the state machine unusable;
		// carrying on would diverge from the other replicas. The node
		// validated it (ValidateSnapshot) before storing or loading it, so
		// this is a state machine whose validation and restore disagree:
		// a broken invariant. The node recovers the panic and stops
		// (raft.ErrPanic in its Status().Err).
		panic(fmt.Errorf("rsm: restore snapshot at index %d: %w", msg.Index, err))
	}
	r.applied, r.appliedAt = msg.Index, msg.Term
	r.applyMu.Unlock()
	r.mu.Lock()
	failed := r.takePendingLocked(func(*Future) bool { return true })
	r.mu.Unlock()
	for _, f := range failed {
		f.resolve(nil, ErrLostLeadership)
	}
}

// takePendingLocked removes and returns the pending futures for which fail
// returns true.
func (r *RSM) takePendingLocked(fail func(*Future) bool) []*Future {
	var out []*Future
	for i, f := range r.pending {
		if fail(f) {
			out = append(out, f)
			delete(r.pending, i)
		}
	}
	r.npending.Store(int64(len(r.pending)))
	return out
}

// Snapshot returns the state machine's serialized state and the index and
// term of the last entry it covers. Entries are not applied meanwhile. For a
// state that includes every write acknowledged so far, call ReadIndex first.
func (r *RSM) Snapshot() (index, term uint64, data []byte) {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	return r.applied, r.appliedAt, r.sm.Snapshot()
}

// SnapshotNeeded implements raft.Application: it serializes the state,
// which is the state at lastApplied while this callback runs, and hands it
// to the node.
func (r *RSM) SnapshotNeeded(lastApplied uint64) {
	data := r.sm.Snapshot()
	// The node may ask while New is still returning (a restart with a long
	// log); Attach follows at once. Not answering would leave the node
	// waiting for an answer forever.
	select {
	case <-r.nodeSet:
	case <-r.stop:
		return
	}
	node := r.node
	if err := node.SaveSnapshot(lastApplied, data); err != nil {
		r.logger.Warn("save snapshot", "index", lastApplied, "err", err)
	}
}

// watchLeadership fails pending futures whose term is no longer the node's
// current leader term: their entries may be overwritten, and nobody would
// tell the waiting callers otherwise. It follows the node's events, so a
// future fails as soon as the node publishes the change.
func (r *RSM) watchLeadership() {
	events, cancel := r.node.Subscribe()
	defer cancel()
	for {
		var ev raft.Event
		select {
		case <-r.stop:
			return
		case e, ok := <-events:
			if !ok {
				return // the node was killed; Kill fails what is left
			}
			ev = e
		}
		// The event may be older than a future registered since (the
		// channel holds one event, received before Propose ran): a node
		// never leads again in a term it left, so only a future of an older
		// term, or of this term once the node no longer leads, is lost.
		r.mu.Lock()
		failed := r.takePendingLocked(func(f *Future) bool {
			return f.Term < ev.Term || (f.Term == ev.Term && ev.Role != raft.Leader)
		})
		r.mu.Unlock()
		for _, f := range failed {
			f.resolve(nil, ErrLostLeadership)
		}
	}
}

// Kill stops the node and the RSM, fails every pending command with
// ErrKilled, and returns the node's Kill error. It is idempotent.
func (r *RSM) Kill() error {
	r.killOnce.Do(func() {
		r.mu.Lock()
		r.killed = true
		r.mu.Unlock()
		if node := r.Raft(); node != nil {
			r.killErr = node.Kill()
		}
		close(r.stop)
		r.wg.Wait()
		r.mu.Lock()
		failed := r.takePendingLocked(func(*Future) bool { return true })
		r.mu.Unlock()
		for _, f := range failed {
			f.resolve(nil, ErrKilled)
		}
	})
	return r.killErr
}
