package kvraft

import (
	"errors"
	"log/slog"
	"sync/atomic"

	"github.com/ruaft/ruaft/kvraft/rsm"
	"github.com/ruaft/ruaft/raft"
)

// StateMachine is a server's replicated key-value state: the state itself
// behind the rsm that resolves proposals as entries apply. It is the
// raft.Application of the server's node, so it exists before the node does.
// A server is assembled in three explicit steps:
//
//	sm, err := kvraft.NewStateMachine(cfg)
//	node, err := raft.New(raftCfg, transport, store, sm)
//	srv, err := kvraft.StartServer(sm, node)
//
// NewServer does the same through a NodeFactory. Between raft.New and
// StartServer the node may already apply entries (they update the state)
// and ask for a snapshot (answered once the server starts), so start the
// server right after the node.
type StateMachine struct {
	cfg    Config
	logger *slog.Logger
	state  *state
	rsm    *rsm.RSM
	// served is set by the StartServer that owns this state machine: the
	// rsm takes exactly one node.
	served atomic.Bool
}

var (
	_ raft.Application       = (*StateMachine)(nil)
	_ raft.SnapshotValidator = (*StateMachine)(nil)
)

// errServed is returned by StartServer for a state machine that already has
// a server.
var errServed = errors.New("kvraft: the state machine already has a server")

// NewStateMachine returns the empty state machine of a server configured by
// cfg. It starts nothing: the node created with it restores any stored
// snapshot into it.
func NewStateMachine(cfg Config) (*StateMachine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	st := newState(stateLimits{historyEvents: cfg.HistoryMaxEvents, historyBytes: cfg.HistoryMaxBytes})
	rcfg := cfg.RSM
	if rcfg.Logger == nil {
		rcfg.Logger = logger
	}
	r, err := rsm.New(rcfg, st)
	if err != nil {
		return nil, err
	}
	return &StateMachine{cfg: cfg, logger: logger, state: st, rsm: r}, nil
}

// Apply implements raft.Application.
func (m *StateMachine) Apply(msg raft.ApplyMsg) { m.rsm.Apply(msg) }

// SnapshotNeeded implements raft.Application.
func (m *StateMachine) SnapshotNeeded(lastApplied uint64) { m.rsm.SnapshotNeeded(lastApplied) }

// ValidateSnapshot implements raft.SnapshotValidator: a node never stores a
// snapshot this state cannot restore.
func (m *StateMachine) ValidateSnapshot(index uint64, data []byte) error {
	return m.rsm.ValidateSnapshot(index, data)
}

// StartServer starts the server of sm on node, the raft node created with sm
// as its application, and takes ownership of both: Server.Kill stops them.
// A state machine serves one server.
func StartServer(sm *StateMachine, node rsm.Raft) (*Server, error) {
	if node == nil {
		return nil, errors.New("kvraft: StartServer: nil raft node")
	}
	if !sm.served.CompareAndSwap(false, true) {
		return nil, errServed
	}
	s := &Server{
		cfg:       sm.cfg,
		logger:    sm.logger,
		state:     sm.state,
		rsm:       sm.rsm,
		proposals: make(map[writeKey]*rsm.Future),
		sweepAt:   minSweep,
		stopTicks: make(chan struct{}),
	}
	s.rsm.Attach(node)
	s.ticks.Go(s.tickSessions)
	s.ticks.Go(s.tickLeases)
	s.ticks.Go(s.raiseLevel)
	return s, nil
}
