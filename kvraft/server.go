package kvraft

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	"github.com/ruaft/ruaft/kvraft/rsm"
	"github.com/ruaft/ruaft/raft"
)

// Config configures a Server. The snapshot threshold (the lab's
// maxraftstate) belongs to the raft node's configuration.
type Config struct {
	// ID is this replica's id, reported in response headers.
	ID int
	// RequestTimeout bounds how long a handler waits for a write to commit
	// or a read point to be confirmed, on top of the caller's deadline.
	// Past it the handler returns ErrTimeout.
	RequestTimeout time.Duration
	// LogReads serves linearizable Gets by writing them through the raft log
	// instead of with ReadIndex. It is slower; it exists for nodes without a
	// working ReadIndex and for comparisons.
	LogReads bool
	// MaxValueBytes caps a stored value, in bytes, including what an Append
	// grows it to; a write over it fails with ErrTooLarge and is not
	// applied. 0 means no cap. The leader that proposes an Append records
	// the cap in the log entry, so every replica applies the same cap.
	MaxValueBytes int
	// MaxStateBytes is the quota on the state's size: the bytes of every
	// key and its value, plus 64 per key, and the same for the keys that
	// sessions' remembered answers name. A Put, Append or Txn that would
	// grow the state past it is refused with ErrNoSpace and not applied,
	// and so is a conditional write whose failure's answer would not fit;
	// Deletes and writes that do not grow the state still apply. 0 means
	// no quota. The leader that proposes a write records its quota in the
	// log entry, so every replica applies the same rule; from apply level
	// 2 (see ApplyLevel): below it, no write is checked.
	MaxStateBytes int64
	// SessionIdleTimeout is how long a session lives without a write,
	// measured by the leader's clock as recorded in the log. The leader
	// records its clock every SessionTick while sessions exist.
	SessionIdleTimeout time.Duration
	// SessionTick is how often the leader records its clock in the log
	// (which expires idle sessions).
	SessionTick time.Duration
	// MaxSessions bounds the exactly-once table: opening a session beyond
	// it evicts the least recently used one.
	MaxSessions int
	// HistoryMaxEvents and HistoryMaxBytes bound the retained event
	// history (which answers Watch and List at older revisions); the
	// oldest events go first, and the byte bound spares the newest write's
	// events. Use the same on every replica. Every
	// snapshot carries the history: keep HistoryMaxBytes well below the
	// raft snapshot threshold, or snapshots grow to the history's size.
	HistoryMaxEvents int
	HistoryMaxBytes  int
	// ListMaxLimit caps a List page's number of keys, ListMaxBytes its
	// keys and values in bytes (a page always holds one key).
	ListMaxLimit int
	ListMaxBytes int
	// MaxWatchers bounds the Watch calls a replica serves at once; more
	// fail with ErrTooManyWatchers.
	MaxWatchers int
	// WatchMaxWait caps how long a Watch waits for an event.
	WatchMaxWait time.Duration
	// MaxLeases bounds the leases; a grant beyond fails with
	// ErrTooManyLeases. The leader records it in the grant's log entry.
	MaxLeases int
	// MinLeaseTTL and MaxLeaseTTL bound a lease's TTL.
	MinLeaseTTL, MaxLeaseTTL time.Duration
	// LeaseTick is how often the leader looks for expired leases: a lease
	// ends within about LeaseTick after its deadline.
	LeaseTick time.Duration
	// RSM tunes the replicated-state-machine layer.
	RSM rsm.Config
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns a configuration for replica id.
func DefaultConfig(id int) Config {
	return Config{ID: id, RequestTimeout: 2 * time.Second, RSM: rsm.DefaultConfig(),
		SessionIdleTimeout: DefaultSessionIdleTimeout, SessionTick: 10 * time.Second, MaxSessions: DefaultMaxSessions,
		HistoryMaxEvents: 10000, HistoryMaxBytes: 4 << 20, ListMaxLimit: 10000, ListMaxBytes: 4 << 20,
		MaxWatchers: 10000, WatchMaxWait: time.Minute, MaxLeases: 10000, MinLeaseTTL: time.Second,
		MaxLeaseTTL: 24 * time.Hour, LeaseTick: 100 * time.Millisecond}
}

// Validate reports the first field that is out of range.
func (c Config) Validate() error {
	if c.ID < 0 {
		return fmt.Errorf("kvraft: Config.ID must not be negative, got %d", c.ID)
	}
	if c.RequestTimeout <= 0 {
		return fmt.Errorf("kvraft: Config.RequestTimeout must be positive, got %v", c.RequestTimeout)
	}
	if c.MaxValueBytes < 0 {
		return fmt.Errorf("kvraft: Config.MaxValueBytes must not be negative, got %d", c.MaxValueBytes)
	}
	if c.MaxStateBytes < 0 {
		return fmt.Errorf("kvraft: Config.MaxStateBytes must not be negative, got %d", c.MaxStateBytes)
	}
	if c.SessionIdleTimeout < time.Second {
		return fmt.Errorf("kvraft: Config.SessionIdleTimeout must be at least 1s, got %v", c.SessionIdleTimeout)
	}
	if c.SessionTick <= 0 || c.SessionTick > c.SessionIdleTimeout {
		return fmt.Errorf("kvraft: Config.SessionTick must be positive and at most SessionIdleTimeout, got %v", c.SessionTick)
	}
	if c.MaxSessions < 1 {
		return fmt.Errorf("kvraft: Config.MaxSessions must be at least 1, got %d", c.MaxSessions)
	}
	switch {
	case c.HistoryMaxEvents < 0:
		return fmt.Errorf("kvraft: Config.HistoryMaxEvents must not be negative, got %d", c.HistoryMaxEvents)
	case c.HistoryMaxBytes < 0:
		return fmt.Errorf("kvraft: Config.HistoryMaxBytes must not be negative, got %d", c.HistoryMaxBytes)
	case c.ListMaxLimit < 1:
		return fmt.Errorf("kvraft: Config.ListMaxLimit must be at least 1, got %d", c.ListMaxLimit)
	case c.ListMaxBytes < 1:
		return fmt.Errorf("kvraft: Config.ListMaxBytes must be at least 1, got %d", c.ListMaxBytes)
	case c.MaxWatchers < 1:
		return fmt.Errorf("kvraft: Config.MaxWatchers must be at least 1, got %d", c.MaxWatchers)
	case c.WatchMaxWait < 0:
		return fmt.Errorf("kvraft: Config.WatchMaxWait must not be negative, got %v", c.WatchMaxWait)
	case c.MaxLeases < 1:
		return fmt.Errorf("kvraft: Config.MaxLeases must be at least 1, got %d", c.MaxLeases)
	case c.MinLeaseTTL <= 0 || c.MaxLeaseTTL < c.MinLeaseTTL:
		return fmt.Errorf("kvraft: Config.MinLeaseTTL (%v) must be positive and at most MaxLeaseTTL (%v)", c.MinLeaseTTL, c.MaxLeaseTTL)
	case c.LeaseTick <= 0:
		return fmt.Errorf("kvraft: Config.LeaseTick must be positive, got %v", c.LeaseTick)
	}
	return c.RSM.Validate()
}

// Session defaults.
const (
	// DefaultSessionIdleTimeout is how long a session lives without a write.
	DefaultSessionIdleTimeout = 10 * time.Minute
	// DefaultMaxSessions bounds the exactly-once table: with at most 256
	// remembered results per session, a few MB at worst.
	DefaultMaxSessions = 4096
)

// NodeFactory creates the raft node that drives app, the server's state
// machine: NewServer passes its StateMachine. durio uses raft.New; tests may
// pass a fake.
type NodeFactory func(app raft.Application) (rsm.Raft, error)

// Server is one replica of the key-value store. Its methods are the client
// RPC handlers; they are safe for concurrent use and none holds a lock while
// it waits for raft.
type Server struct {
	cfg    Config
	logger *slog.Logger
	state  *state
	rsm    *rsm.RSM

	mu sync.Mutex // guards proposals and sweepAt
	// proposals holds, per identified write, the future of its latest
	// proposal, so that a retry arriving while the write is pending in the
	// same term waits for that proposal instead of proposing it again: at
	// most one proposal per request per term.
	proposals map[writeKey]*rsm.Future
	// sweepAt is the size of proposals at which finished futures are swept.
	sweepAt int

	// lessor holds the leader's lease deadlines.
	lessor lessor
	// watchers counts the Watch calls being served (MaxWatchers).
	watchers atomic.Int64
	// proposedLevel is the highest apply level this replica proposed as
	// leader (JoinLevel).
	proposedLevel atomic.Uint32
	// admitMu makes AdmitMember's check and addition one step against
	// raiseLevel's decision.
	admitMu sync.Mutex

	stopTicks chan struct{}  // closed by Kill
	ticks     sync.WaitGroup // the session clock and lease goroutines
	killOnce  sync.Once
	killErr   error
}

var _ Service = (*Server)(nil)

// NewServer creates a server and its raft node through newNode: it is
// NewStateMachine, newNode, then StartServer. The node restores any
// snapshot it has stored by handing it to the state machine.
func NewServer(cfg Config, newNode NodeFactory) (*Server, error) {
	sm, err := NewStateMachine(cfg)
	if err != nil {
		return nil, err
	}
	node, err := newNode(sm)
	if err != nil {
		return nil, fmt.Errorf("kvraft: start raft node: %w", err)
	}
	return StartServer(sm, node)
}

// tickSessions records the leader's clock in the log every SessionTick
// while sessions exist, which expires the idle ones on every replica.
func (s *Server) tickSessions() {
	t := time.NewTicker(s.cfg.SessionTick)
	defer t.Stop()
	for {
		select {
		case <-s.stopTicks:
			return
		case <-t.C:
		}
		if _, isLeader := s.rsm.Raft().State(); !isLeader || s.state.sessions() == 0 {
			continue
		}
		// Nobody waits for the tick: a lost one is replaced by the next.
		_, _ = s.rsm.Propose(encodeOp(op{kind: opTick, stamp: time.Now().UnixMilli(),
			limit: uint64(s.cfg.SessionIdleTimeout.Milliseconds())}))
	}
}

// OpenSession implements Service: it opens a session through the log with
// a random id below 2^53 (so JSON clients hold it exactly).
func (s *Server) OpenSession(ctx context.Context, _ *OpenSessionRequest) (*OpenSessionResponse, error) {
	ctx, cancel := boundedBy(ctx, s.cfg.RequestTimeout)
	defer cancel()
	for {
		id := rand.Uint64N(1<<53-1) + 1
		res, err := s.submit(ctx, op{kind: opOpenSession, id: WriteID{ClientID: id}, stamp: time.Now().UnixMilli(),
			limit: uint64(s.cfg.MaxSessions)})
		if err != nil {
			// Not an unknown outcome for the caller: an unused session
			// costs nothing but a slot until it expires.
			var wl *WrongLeaderError
			if errors.As(err, &wl) {
				wl.Proposed = false
			}
			return nil, err
		}
		sr, ok := res.(sessionResult)
		if !ok {
			return nil, fmt.Errorf("kvraft: open session: %v", res)
		}
		if sr.opened {
			return &OpenSessionResponse{Header: s.header(), ClientID: id, IdleTimeout: s.cfg.SessionIdleTimeout}, nil
		}
		// The id was taken (one chance in 2^53 per session): draw again.
	}
}

// writeKey identifies a write across its retries (whose Ack may differ).
type writeKey struct{ client, seq uint64 }

// minSweep is the smallest proposals size at which a sweep runs.
const minSweep = 256

// Sessions returns the number of exactly-once sessions in this replica's
// state.
func (s *Server) Sessions() int { return s.state.sessions() }

// Raft returns the server's raft node.
func (s *Server) Raft() rsm.Raft { return s.rsm.Raft() }

// Status returns the raft node's status.
func (s *Server) Status() raft.Status { return s.rsm.Raft().Status() }

// Kill stops the server and its raft node; pending requests fail with
// ErrKilled. It returns the node's Kill error and is idempotent.
func (s *Server) Kill() error {
	s.killOnce.Do(func() {
		close(s.stopTicks)
		s.ticks.Wait()
		s.killErr = s.rsm.Kill()
	})
	return s.killErr
}

// Get implements Service.
func (s *Server) Get(ctx context.Context, req *GetRequest) (*GetResponse, error) {
	if req.Key == "" {
		return nil, fmt.Errorf("%w: empty key", ErrInvalid)
	}
	if req.Consistency == Stale {
		return s.getResponse(s.state.get(req.Key)), nil
	}
	ctx, cancel := boundedBy(ctx, s.cfg.RequestTimeout)
	defer cancel()
	if s.cfg.LogReads {
		res, err := s.submit(ctx, op{kind: opGet, key: req.Key})
		if err != nil {
			return nil, err
		}
		rr, ok := res.(readResult)
		if !ok {
			return nil, fmt.Errorf("kvraft: log read of %q: %v", req.Key, res)
		}
		return s.getResponse(rr.rec, rr.rev), nil
	}
	// raft's ReadIndex returns once the state machine has applied the read
	// point, so the local state is fresh enough. (The RSM cannot wait for
	// the index itself: no-op entries never reach it.)
	if err := s.readIndex(ctx); err != nil {
		return nil, err
	}
	return s.getResponse(s.state.get(req.Key)), nil
}

// readIndex waits for a linearizable read point to be applied locally.
func (s *Server) readIndex(ctx context.Context) error {
	if _, err := s.rsm.ReadIndex(ctx); err != nil {
		return s.failure(ctx, err, false)
	}
	return nil
}

func (s *Server) getResponse(r *record, rev uint64) *GetResponse {
	resp := &GetResponse{Header: s.headerAt(rev)}
	if r != nil {
		resp.Found, resp.Value = true, r.valueString()
		resp.CreateRevision, resp.ModRevision, resp.Version, resp.Lease = r.create, r.mod, r.version, r.lease
	}
	return resp
}

// Put implements Service.
func (s *Server) Put(ctx context.Context, req *PutRequest) (*PutResponse, error) {
	o, err := s.putOp(req)
	if err != nil {
		return nil, err
	}
	res, err := s.write(ctx, o)
	if err != nil {
		return nil, err
	}
	return &PutResponse{Header: s.headerAt(res.rev)}, nil
}

func (s *Server) putOp(req *PutRequest) (op, error) {
	if s.cfg.MaxValueBytes > 0 && len(req.Value) > s.cfg.MaxValueBytes {
		return op{}, fmt.Errorf("%w: %d bytes, the cap is %d", ErrTooLarge, len(req.Value), s.cfg.MaxValueBytes)
	}
	cond, err := conditionOf(req.Condition)
	if err != nil {
		return op{}, err
	}
	return op{kind: opPut | opChecked | opRevisioned, id: req.Write, key: req.Key, value: req.Value,
		lease: req.Lease, cond: cond}, nil
}

// StartPut, StartAppend and StartDelete begin a write: they check and
// propose it and return the function that waits for its answer (as Put,
// Append and Delete answer). A batch of writes forwarded by a follower
// (kvwire.BatchServer) is proposed in full before any write is waited for,
// from one goroutine, instead of a goroutine per write; a write's proposal
// is not withdrawn if its answer is never waited for.
func (s *Server) StartPut(ctx context.Context, req *PutRequest) func() (*PutResponse, error) {
	o, err := s.putOp(req)
	if err != nil {
		return func() (*PutResponse, error) { return nil, err }
	}
	w := s.startWrite(ctx, o)
	return func() (*PutResponse, error) {
		res, err := s.finishWrite(ctx, w)
		if err != nil {
			return nil, err
		}
		return &PutResponse{Header: s.headerAt(res.rev)}, nil
	}
}

// StartAppend: see StartPut.
func (s *Server) StartAppend(ctx context.Context, req *AppendRequest) func() (*AppendResponse, error) {
	o, err := s.appendOp(req)
	if err != nil {
		return func() (*AppendResponse, error) { return nil, err }
	}
	w := s.startWrite(ctx, o)
	return func() (*AppendResponse, error) {
		res, err := s.finishWrite(ctx, w)
		if err != nil {
			return nil, err
		}
		return &AppendResponse{Header: s.headerAt(res.rev)}, nil
	}
}

// StartDelete: see StartPut.
func (s *Server) StartDelete(ctx context.Context, req *DeleteRequest) func() (*DeleteResponse, error) {
	o, err := deleteOp(req)
	if err != nil {
		return func() (*DeleteResponse, error) { return nil, err }
	}
	w := s.startWrite(ctx, o)
	return func() (*DeleteResponse, error) {
		res, err := s.finishWrite(ctx, w)
		if err != nil {
			return nil, err
		}
		return &DeleteResponse{Header: s.headerAt(res.rev), Existed: res.existed}, nil
	}
}

// conditionOf checks and converts a request's condition.
func conditionOf(c Condition) (condition, error) {
	if c.Kind < 0 || c.Kind >= kvclient.ConditionKind(condKinds) {
		return condition{}, fmt.Errorf("%w: condition kind %d", ErrInvalid, c.Kind)
	}
	return condition{kind: condKind(c.Kind), modRev: c.ModRevision, version: c.Version, value: c.Value}, nil
}

// Append implements Service.
func (s *Server) Append(ctx context.Context, req *AppendRequest) (*AppendResponse, error) {
	o, err := s.appendOp(req)
	if err != nil {
		return nil, err
	}
	res, err := s.write(ctx, o)
	if err != nil {
		return nil, err
	}
	return &AppendResponse{Header: s.headerAt(res.rev)}, nil
}

func (s *Server) appendOp(req *AppendRequest) (op, error) {
	if s.cfg.MaxValueBytes > 0 && len(req.Value) > s.cfg.MaxValueBytes {
		return op{}, fmt.Errorf("%w: %d bytes, the cap is %d", ErrTooLarge, len(req.Value), s.cfg.MaxValueBytes)
	}
	return op{kind: opAppend | opChecked | opRevisioned, id: req.Write, key: req.Key, value: req.Value, limit: uint64(s.cfg.MaxValueBytes)}, nil
}

// Delete implements Service.
func (s *Server) Delete(ctx context.Context, req *DeleteRequest) (*DeleteResponse, error) {
	o, err := deleteOp(req)
	if err != nil {
		return nil, err
	}
	res, err := s.write(ctx, o)
	if err != nil {
		return nil, err
	}
	return &DeleteResponse{Header: s.headerAt(res.rev), Existed: res.existed}, nil
}

func deleteOp(req *DeleteRequest) (op, error) {
	cond, err := conditionOf(req.Condition)
	if err != nil {
		return op{}, err
	}
	return op{kind: opDelete | opChecked | opRevisioned, id: req.Write, key: req.Key, cond: cond}, nil
}

// Txn implements Service: a failed condition is an answer (Succeeded
// false), not an error.
func (s *Server) Txn(ctx context.Context, req *TxnRequest) (*TxnResponse, error) {
	o, err := s.txnOp(req)
	if err != nil {
		return nil, err
	}
	res, err := s.write(ctx, o)
	return s.txnResponse(res, err)
}

// StartTxn: see StartPut.
func (s *Server) StartTxn(ctx context.Context, req *TxnRequest) func() (*TxnResponse, error) {
	o, err := s.txnOp(req)
	if err != nil {
		return func() (*TxnResponse, error) { return nil, err }
	}
	w := s.startWrite(ctx, o)
	return func() (*TxnResponse, error) { return s.txnResponse(s.finishWrite(ctx, w)) }
}

func (s *Server) txnResponse(res writeResult, err error) (*TxnResponse, error) {
	var failed *txnFailedError
	switch {
	case err == nil:
		return &TxnResponse{Header: s.headerAt(res.rev), Succeeded: true}, nil
	case errors.As(err, &failed):
		return &TxnResponse{Header: s.headerAt(failed.rev), Failed: failed.failed, Current: failed.current}, nil
	}
	return nil, err
}

// txnOp checks a Txn (see kvclient.TxnRequest) and converts it.
func (s *Server) txnOp(req *TxnRequest) (op, error) {
	switch {
	case len(req.Writes) == 0:
		return op{}, fmt.Errorf("%w: a txn needs at least one write", ErrInvalid)
	case len(req.Writes) > kvclient.MaxTxnOps || len(req.Conditions) > kvclient.MaxTxnOps:
		return op{}, fmt.Errorf("%w: a txn has at most %d conditions and %d writes", ErrInvalid, kvclient.MaxTxnOps, kvclient.MaxTxnOps)
	}
	if size := req.Bytes(); s.cfg.MaxValueBytes > 0 && size > s.cfg.MaxValueBytes {
		return op{}, fmt.Errorf("%w: the txn's keys and values take %d bytes, the cap is %d", ErrTooLarge, size, s.cfg.MaxValueBytes)
	}
	t := &txn{conds: make([]txnCond, len(req.Conditions)), writes: make([]txnWrite, len(req.Writes))}
	for i, c := range req.Conditions {
		cond, err := conditionOf(c.Condition)
		switch {
		case err != nil:
			return op{}, err
		case cond.kind == condNone:
			return op{}, fmt.Errorf("%w: txn condition %d has no kind", ErrInvalid, i)
		case c.Key == "":
			return op{}, fmt.Errorf("%w: txn condition %d has an empty key", ErrInvalid, i)
		}
		t.conds[i] = txnCond{key: c.Key, cond: cond}
	}
	keys := make(map[string]struct{}, len(req.Writes))
	for i, w := range req.Writes {
		if w.Key == "" {
			return op{}, fmt.Errorf("%w: txn write %d has an empty key", ErrInvalid, i)
		}
		if _, dup := keys[w.Key]; dup {
			return op{}, fmt.Errorf("%w: txn writes key %q twice", ErrInvalid, w.Key)
		}
		keys[w.Key] = struct{}{}
		t.writes[i] = txnWrite{del: w.Delete, key: w.Key}
		if !w.Delete {
			t.writes[i].value, t.writes[i].lease = w.Value, w.Lease
		}
	}
	return op{kind: opTxn | opChecked | opRevisioned, id: req.Write, txn: t}, nil
}

// write applies o exactly once per WriteID and returns its result.
func (s *Server) write(ctx context.Context, o op) (writeResult, error) {
	return s.finishWrite(ctx, s.startWrite(ctx, o))
}

// startedWrite is a write between startWrite and finishWrite: the
// proposal to wait for, or the answer if it needs none (a write already
// applied, or one refused before it was proposed).
type startedWrite struct {
	o    op
	f    *rsm.Future
	res  writeResult
	err  error
	done bool
}

// startWrite checks o and proposes it (or joins the pending proposal of
// the same write) without waiting: a batch of writes is proposed before
// any is waited for (StartPut).
func (s *Server) startWrite(ctx context.Context, o op) startedWrite {
	refuse := func(err error) startedWrite { return startedWrite{o: o, err: err, done: true} }
	if o.key == "" && o.kind.base() < opLeaseGrant {
		return refuse(fmt.Errorf("%w: empty key", ErrInvalid))
	}
	if o.id.ClientID == 0 && (o.id.Seq != 0 || o.id.Ack != 0) {
		return refuse(fmt.Errorf("%w: sequence number without a client id", ErrInvalid))
	}
	o = s.withQuota(o)
	if o.id.ClientID != 0 {
		if o.id.Seq == 0 {
			return refuse(fmt.Errorf("%w: client id without a sequence number", ErrInvalid))
		}
		if o.id.Ack == 0 || o.id.Ack > o.id.Seq {
			// A client cannot have finished the write it is sending.
			o.id.Ack = o.id.Seq
		}
		// A write this replica has already applied is answered from the
		// table: it is committed, whoever leads now.
		if res, ok := s.state.lookup(o.id); ok {
			return startedWrite{o: o, res: res, err: refusedError(o, res), done: true}
		}
	}
	f, err := s.propose(o)
	if err != nil {
		return refuse(s.failure(ctx, err, false))
	}
	return startedWrite{o: o, f: f}
}

// finishWrite waits for a started write and returns its result.
func (s *Server) finishWrite(ctx context.Context, w startedWrite) (writeResult, error) {
	if w.done {
		return w.res, w.err
	}
	o := w.o
	ctx, cancel := boundedBy(ctx, s.cfg.RequestTimeout)
	defer cancel()
	res, err := s.wait(ctx, o, w.f)
	if err != nil {
		return writeResult{}, err
	}
	wr, ok := res.(writeResult)
	if !ok {
		return writeResult{}, fmt.Errorf("kvraft: write to %q: %v", o.key, res)
	}
	return wr, refusedError(o, wr)
}

// refusedError returns the error for the write o's result: nil if it was
// applied, else why not, naming the key where the error does not.
func refusedError(o op, wr writeResult) error {
	if wr.refused == nil {
		// Before errors.As: its target escapes, one allocation per write.
		return nil
	}
	var cf *ConditionFailedError
	// The quota o carries is the one the write was refused under only if
	// this answer is o's own: a remembered one (a retry) may have been
	// refused under another leader's.
	switch named := o.quota > 0 && !wr.remembered; {
	case errors.Is(wr.refused, ErrNoSpace) && named && o.key != "":
		return fmt.Errorf("%w (key %q; the quota is %d bytes)", wr.refused, o.key, o.quota)
	case errors.Is(wr.refused, ErrNoSpace) && named:
		return fmt.Errorf("%w (the quota is %d bytes)", wr.refused, o.quota)
	case errors.As(wr.refused, &cf), errors.Is(wr.refused, errLeaseIDTaken), o.key == "":
		return wr.refused
	}
	return fmt.Errorf("%w (key %q)", wr.refused, o.key)
}

// submit proposes o (or joins the pending proposal of the same write in
// the current term) and waits for its result.
func (s *Server) submit(ctx context.Context, o op) (any, error) {
	f, err := s.propose(o)
	if err != nil {
		return nil, s.failure(ctx, err, false)
	}
	return s.wait(ctx, o, f)
}

// wait waits for the proposal f of o and returns its result.
func (s *Server) wait(ctx context.Context, o op, f *rsm.Future) (any, error) {
	res, err := f.Wait(ctx)
	if key := (writeKey{o.id.ClientID, o.id.Seq}); o.id.ClientID != 0 && err == nil {
		s.mu.Lock()
		if s.proposals[key] == f {
			delete(s.proposals, key)
		}
		s.mu.Unlock()
	}
	if err != nil {
		return nil, s.failure(ctx, err, true)
	}
	return res, nil
}

func (s *Server) propose(o op) (*rsm.Future, error) {
	cmd := encodeOp(o)
	if o.id.ClientID == 0 {
		return s.rsm.Propose(cmd)
	}
	key := writeKey{o.id.ClientID, o.id.Seq}
	node := s.rsm.Raft()
	s.mu.Lock()
	defer s.mu.Unlock()
	// The term is read under s.mu so that a proposal registered in this
	// term by another handler is seen here (see proposals).
	term, isLeader := node.State()
	if !isLeader {
		return nil, rsm.ErrNotLeader
	}
	if f := s.proposals[key]; f != nil && f.Term == term && !isDone(f) {
		return f, nil
	}
	f, err := s.rsm.Propose(cmd)
	if err != nil {
		return nil, err
	}
	s.proposals[key] = f
	if len(s.proposals) >= s.sweepAt {
		for id, p := range s.proposals {
			if isDone(p) {
				delete(s.proposals, id)
			}
		}
		s.sweepAt = max(minSweep, 2*len(s.proposals))
	}
	return f, nil
}

// withQuota returns o carrying this replica's quota (opQuota) if o is a
// write that can grow the state, the replica has a quota and the state is
// at apply level 2 or above (every replica can decode it).
func (s *Server) withQuota(o op) op {
	if s.cfg.MaxStateBytes <= 0 || s.state.applyLevel() < 2 {
		return o
	}
	switch o.kind {
	case opPut | opChecked | opRevisioned, opAppend | opChecked | opRevisioned, opTxn | opChecked | opRevisioned:
		o.kind |= opQuota
		o.quota = uint64(s.cfg.MaxStateBytes)
	}
	return o
}

// StateBytes returns the state's size as the quota counts it (see
// Config.MaxStateBytes), and the quota (0: none).
func (s *Server) StateBytes() (size, quota uint64) {
	return s.state.sizeBytes(), uint64(max(s.cfg.MaxStateBytes, 0))
}

// boundedBy is context.WithTimeout(ctx, d), or ctx itself when its
// deadline comes first anyway: a request its caller already bounded (durio
// bounds each attempt) needs no second timer, which costs an allocation,
// a timer and a lock on the parent per request.
func boundedBy(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

func isDone(f *rsm.Future) bool {
	select {
	case <-f.Done():
		return true
	default:
		return false
	}
}

// failure maps an rsm or context error to the Server's errors. proposed says
// whether a write may have entered the log.
func (s *Server) failure(ctx context.Context, err error, proposed bool) error {
	switch {
	case errors.Is(err, rsm.ErrKilled):
		return ErrKilled
	case errors.Is(err, rsm.ErrLostLeadership):
		return &WrongLeaderError{Leader: s.leaderHint(), Proposed: true}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), ctx.Err() != nil:
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	default:
		// ErrNotLeader, or a ReadIndex that failed: a candidate, a follower
		// that knows no leader or could not get a read index from it.
		return &WrongLeaderError{Leader: s.leaderHint(), Proposed: proposed}
	}
}

// leaderHint returns the leader this replica knows of, never itself.
func (s *Server) leaderHint() int {
	st := s.rsm.Raft().Status()
	if st.Leader == s.cfg.ID {
		return raft.NoLeader
	}
	return st.Leader
}

func (s *Server) header() ResponseHeader {
	return s.headerAt(s.state.revision())
}

// headerAt is the header of an answer at store revision rev.
func (s *Server) headerAt(rev uint64) ResponseHeader {
	term, _ := s.rsm.Raft().State()
	return ResponseHeader{ReplicaID: s.cfg.ID, Term: term, Revision: rev}
}

// Revisions returns this replica's store revision, compact revision and
// number of leases.
func (s *Server) Revisions() (rev, compact uint64, leases int) { return s.state.counts() }
