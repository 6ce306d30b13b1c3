package raft

// The node's RPC handlers: each answers only once the state it reflects is stored.

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// dirtySeqLocked returns the batch sequence number that must be stored
// before an answer reflecting the core's current state may be sent.
func (n *Node) dirtySeqLocked() uint64 {
	if n.core.unsaved() {
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
		resp.AppVersion = n.cfg.AppVersion
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
	var (
		timer     <-chan time.Time
		stopTimer func()
	)
	for {
		n.mu.Lock()
		v := n.core.view()
		if v.role != Follower || v.term != req.Term || v.lead != req.LeaderID ||
			req.PrevLogIndex <= v.lastIndex || n.usable() != nil {
			n.mu.Unlock()
			break
		}
		if n.logGrewCh == nil {
			n.logGrewCh = make(chan struct{})
		}
		grew := n.logGrewCh
		n.mu.Unlock()
		if timer == nil {
			timer, stopTimer = n.cfg.clockOrReal().newTimer(n.cfg.TickInterval)
		}
		select {
		case <-grew:
			continue
		case <-timer:
		case <-ctx.Done():
		case <-n.ctx.Done():
		}
		break
	}
	if stopTimer != nil {
		stopTimer()
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
		check = n.core.takeSnapshotToCheck()
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
		term = c.view().term
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
