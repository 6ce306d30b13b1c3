package raft

// The node's applier: committed entries and snapshots handed to the application, and snapshots it saves.

import (
	"bytes"
	"fmt"

	"github.com/ruaft/ruaft/persist"
)

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
		if n.snapDataWanted.Load() {
			n.maybeAskSnapshot(last) // woken by wantSnapshotData, maybe with nothing to apply
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
	n.lastSnapBytes.Store(int64(len(s.Data)))
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
// threshold, once per crossing until the application answers, or when a
// sender wants the snapshot's data (snapDataWanted) and no request is
// unanswered.
func (n *Node) maybeAskSnapshot(last uint64) {
	if n.ctx.Err() != nil {
		return
	}
	if n.snapDataWanted.Swap(false) && !n.snapshotAsked.Load() {
		n.snapshotAsked.Store(true)
		n.askedSize = n.store.Size()
		n.app.SnapshotNeeded(last)
		return
	}
	th := n.cfg.SnapshotThresholdBytes
	if th <= 0 {
		return
	}
	if r := n.cfg.SnapshotStateRatio; r > 0 {
		th = max(th, int64(min(r*float64(n.lastSnapBytes.Load()), 1<<62)))
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

// SaveSnapshot tells the node that data is the application's state after
// applying index; the node stores it and compacts its log up to index in the
// background. index must have been handed to Apply (it may be the index of
// the Apply call in progress); an index at or below the current snapshot is
// ignored. The node may keep data (to send to followers; for good with a
// store that cannot read its snapshot back): the caller must not modify it
// afterwards.
func (n *Node) SaveSnapshot(index uint64, data []byte) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.usable(); err != nil {
		return err
	}
	if applied := n.applied.Load(); index > applied {
		return fmt.Errorf("%w: index %d not applied yet (applied %d)", ErrBadSnapshot, index, applied)
	}
	if index <= n.core.view().snapIndex || (n.compaction != nil && index <= n.compaction.Index) {
		if n.loadUnsupported.Load() {
			// The state at the snapshot's own index (nothing applied
			// since): the data the core dropped, for the senders.
			n.core.restoreSnapshotData(index, data)
		}
		n.snapshotAsked.Store(false)
		return nil
	}
	n.compaction = &persist.Snapshot{Index: index, Data: data}
	n.lastSnapBytes.Store(int64(len(data)))
	n.kick()
	return nil
}
