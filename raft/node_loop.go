package raft

// The node's loop: the ticker, the ready loop that stores, sends and publishes, and the RPC senders.

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"runtime"
	"time"

	"github.com/ruaft/ruaft/persist"
)

func (n *Node) ticker() {
	ticks, stop := n.cfg.clockOrReal().newTicker(n.cfg.TickInterval)
	defer stop()
	// The store call the loop has been in at the last ticks, and for how
	// many ticks; the ticker sends for it from the heartbeat interval to
	// StallHeartbeats (sendWhileStoringLocked).
	var call uint64
	var callTicks int
	stallTicks := int(n.cfg.StallHeartbeats / n.cfg.TickInterval)
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-ticks:
		}
		n.locked(func() {
			if n.err != nil {
				return
			}
			n.core.tick()
			if c := n.storeCall.Load(); c&1 == 0 {
				callTicks = 0
			} else {
				if c != call {
					call, callTicks = c, 0
				}
				if callTicks++; callTicks >= n.core.cfg.heartbeatTicks && callTicks <= stallTicks {
					n.sendWhileStoringLocked()
				}
			}
		})
		n.kick()
	}
}

// sendWhileStoringLocked sends the core's AppendEntries and snapshot chunks
// (heartbeats among them) while the loop has been in one store call for a
// heartbeat interval or more, up to Config.StallHeartbeats: an Append that a
// disk, or a store's collection, holds for longer than an election timeout
// would otherwise keep a leader's heartbeats from its followers, which then
// elect another leader (and check-quorum makes it step down). A store that
// hangs for longer should cost the leadership: the leader cannot replicate
// new entries meanwhile (the loop takes them from the core), so the ticker
// stops, and the followers elect a leader that can. The loop sends these
// messages before its Append anyway (a leader's appends go out before its
// own write, and it counts itself only once the write is durable), so
// sending them before the Append in progress returns is an order the loop
// could take too; during a compaction stored inline they go out before
// the held batch's own messages, which the core tolerates as it does any
// reordering of the RPCs in flight. Every other message (votes, which must
// follow the store's write, leadership transfers, read-index requests)
// stays for the loop, as do messages to a peer without a send queue yet,
// and all of them while the core's term is not stored yet. n.mu must be
// held.
func (n *Node) sendWhileStoringLocked() {
	if n.core.term != n.savedTerm {
		return // the held call may be the one storing this term
	}
	var failed []message
	n.peersMu.Lock()
	for _, m := range n.core.takeMessages(func(m message) bool {
		return (m.ae != nil || m.is != nil) && n.peers[m.to] != nil
	}) {
		select {
		case n.peers[m.to] <- m:
		default:
			failed = append(failed, m)
		}
	}
	n.peersMu.Unlock()
	for _, m := range failed {
		n.logger.Debug("raft: send queue full", "to", m.to, "rpc", rpcName(m))
		n.core.handleFailure(m)
	}
}

// readyLocked takes the core's ready (which starts the read rounds, or a
// follower's read-index requests, that are due) under
// Config.ReadBatchWindow: it tells the core whether the window of the last
// one is still open, notes when one starts, and, if the core held one back
// for the window, wakes the loop when the window ends. n.mu must be held.
func (n *Node) readyLocked() ready {
	w := n.cfg.ReadBatchWindow
	if w <= 0 {
		return n.core.ready()
	}
	clk := n.cfg.clockOrReal()
	started := n.core.readRounds + n.core.fwdRequests
	// The clock is read only when a round or request may start; reads
	// re-addressed to a new leader (which start one without waiting) are
	// timed after the fact.
	var now time.Time
	if n.core.needRound || len(n.core.fwdPending) > 0 {
		now = clk.timeNow()
	}
	n.core.holdReads = !now.IsZero() && now.Sub(n.readStart) < w
	rd := n.core.ready()
	switch {
	case n.core.readRounds+n.core.fwdRequests != started:
		if now.IsZero() {
			now = clk.timeNow()
		}
		n.readStart = now
	case n.core.readsHeld && !n.readWake:
		n.readWake = true
		clk.afterFunc(n.readStart.Add(w).Sub(now), func() {
			n.mu.Lock()
			n.readWake = false
			n.mu.Unlock()
			n.kick()
		})
	}
	return rd
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

		closeStore bool
		newTerm    bool
	)
	n.locked(func() {
		if n.killed || n.err != nil {
			closeStore, n.compactFailed = n.compactFailed, false
			return
		}
		if !n.compacting {
			// Else it waits for the one being stored, which kicks the
			// loop when done.
			comp = n.compaction
			n.compaction = nil
		}
		if comp != nil && !n.core.prepareCompaction(comp) {
			// A newer snapshot overtook it (one installed from the
			// leader): the request it answered is over all the same, or
			// the applier would never ask again (maybeAskSnapshot).
			comp = nil
			n.snapshotAsked.Store(false)
		}
		stored := n.core.prevHS
		rd = n.readyLocked()
		// A ready that changes the term or the vote sends everything
		// after its Append: a node that wins a term without asking anyone
		// (the only voter, with learners) must not send entries of a term
		// that a crash could make it win again with other entries.
		newTerm = rd.save && (rd.hardState.Term != stored.Term || rd.hardState.VotedFor != stored.VotedFor)
		if rd.empty() && comp == nil {
			n.core.recycleMessages(rd.messages)
			return
		}
		n.readySeq++
		seq = n.readySeq
		n.logStateLocked()
		ok = true
		if comp != nil && n.beside {
			n.compacting = true
		}
	})
	if closeStore {
		// A compaction stored beside the loop failed the node: close the
		// store here, not beside the loop's calls.
		n.waitCompaction()
		n.storeFailed(nil)
	}
	if !ok {
		return false
	}

	if comp != nil {
		if n.beside {
			done, c := make(chan struct{}), *comp
			n.compactDone = done
			n.goDaemon("compaction", func() { n.compactBeside(c, done) })
		} else {
			n.storeCall.Add(1)
			stored := n.storeCompaction(*comp, false)
			n.storeCall.Add(1)
			if !stored {
				return false
			}
		}
	}
	// A leader's appends go out before its own write (thesis 10.2.1); it
	// counts itself only once advance reports the write durable. Votes,
	// and everything of a ready that changes the term or the vote, go out
	// after it.
	var late []message
	for _, m := range rd.messages {
		if m.rv != nil || newTerm {
			late = append(late, m)
		} else {
			n.dispatch(m)
		}
	}
	if rd.snapshot != nil {
		// One SaveSnapshot at a time: a compaction stored beside the
		// loop finishes first (it covers less; the core has no use for
		// it any more, see compactBeside).
		n.storeCall.Add(1)
		n.waitCompaction()
		err := n.store.SaveSnapshot(n.ctx, *rd.snapshot)
		n.storeCall.Add(1)
		if err != nil {
			n.storeFailed(err)
			return false
		}
		n.logger.Info("raft: stored a snapshot received from the leader", "index", rd.snapshot.Index,
			"term", rd.snapshot.Term, "bytes", len(rd.snapshot.Data))
	}
	if rd.save {
		n.storeCall.Add(1)
		err := n.store.Append(n.ctx, rd.hardState, rd.entries)
		n.storeCall.Add(1)
		if err != nil {
			n.fail(err)
			// No Close while a compaction is stored beside the loop
			// (persist.BackgroundSnapshots): the node has failed, so it
			// only waits for the store to return.
			n.waitCompaction()
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
		if rd.save {
			n.savedTerm = rd.hardState.Term
		}
		if rd.snapshot != nil {
			n.snapshotIndex = max(n.snapshotIndex, rd.snapshot.Index)
			if n.canLoad() {
				// Stored, and queued for the applier with its own
				// reference; the checksum came with it from the leader.
				n.core.dropSnapshotData(rd.snapshot.Index, n.core.log.snapChecksum())
			}
		}
		n.persistedSeq = seq
		if n.persistWaiting {
			n.persistWaiting = false
			close(n.persistCh)
			n.persistCh = make(chan struct{})
		}
		// The messages were copied out (dispatch and late).
		n.core.recycleMessages(rd.messages)
		n.releaseSendingLocked() // a lost leadership, a follower removed
		n.pruneSendersLocked()
		for _, rs := range rd.reads {
			if ch, ok := n.readWaiters[rs.id]; ok {
				ch <- rs
				delete(n.readWaiters, rs.id)
			}
		}
	})
	return true
}

// storeCompaction stores comp, a snapshot the application took, and
// compacts the core's log to it; it reports false if the store failed.
func (n *Node) storeCompaction(comp persist.Snapshot, beside bool) bool {
	if err := n.store.SaveSnapshot(n.ctx, comp); err != nil {
		if !beside {
			n.storeFailed(err)
			return false
		}
		// The loop may be in an Append: it closes the store (processReady),
		// or Kill does.
		n.fail(err)
		n.mu.Lock()
		n.compactFailed = true
		n.mu.Unlock()
		return false
	}
	var crc uint32
	load := n.canLoad()
	if load {
		crc = crc32.Checksum(comp.Data, castagnoli) // outside the lock
	}
	n.locked(func() {
		prev := n.core.log.snap.Index
		// A snapshot installed from the leader meanwhile (compactBeside)
		// covers comp: compact does nothing then.
		if err := n.core.compact(comp); err != nil {
			n.problems = append(n.problems, fmt.Errorf("%w: %w", ErrInvariant, err))
		} else if load && prev < comp.Index {
			// The application took it and the store holds it.
			n.core.dropSnapshotData(comp.Index, crc)
		}
		n.snapshotIndex = max(n.snapshotIndex, comp.Index)
	})
	// Ask again only once this compaction shows in the store's size.
	n.snapshotAsked.Store(false)
	return true
}

// compactBeside stores comp while the loop goes on appending, sending and
// committing (a store that takes it, persist.BackgroundSnapshots): a large
// state's snapshot takes seconds to write, which would otherwise hold back
// every commit and heartbeat of the replica, and so cost its leadership or
// a needless election. The store's rules hold: comp.Index is at most the
// applied index, so every entry the loop appends meanwhile lies after it;
// the loop makes no other store call but Append until done is closed
// (waitCompaction).
func (n *Node) compactBeside(comp persist.Snapshot, done chan struct{}) {
	defer func() {
		n.locked(func() { n.compacting = false })
		close(done)
		n.kick() // a compaction that waited for this one
	}()
	n.storeCompaction(comp, true)
}

// waitCompaction waits until the compaction compactBeside stores, if any,
// is done. Only the loop calls it.
func (n *Node) waitCompaction() {
	if n.compactDone != nil {
		<-n.compactDone
		n.compactDone = nil
	}
}

// locked runs f with n.mu held, releasing it even if f panics, and then
// publishes the role, term and leader if f changed them. Every path that
// steps the core goes through here (or through fail), so subscribers learn
// of a change before n.mu is released.
//
// It also proposes the Start calls queued meanwhile (before f, so that a
// batch taken by f includes them, and after), and after releasing n.mu it
// serves the ones queued while it held it (serveQueued).
func (n *Node) locked(f func()) {
	n.mu.Lock()
	func() {
		defer n.mu.Unlock()
		n.proposeQueuedLocked()
		f()
		n.proposeQueuedLocked()
		n.publishLocked()
	}()
	n.serveQueued()
}

// publishLocked publishes the core's role, term and leader to subscribers if
// they changed. n.mu must be held.
func (n *Node) publishLocked() {
	v := n.core.view()
	seq := n.feed.last.Seq
	committed := v.confCommitted()
	if v.confGen != n.confGen {
		n.feed.observeMembership(n.core.conf().Clone())
	}
	n.feed.observe(v.term, v.role, v.lead)
	if n.feed.last.Seq != seq && v.role != Leader {
		// Leadership lost with no message to send (a check-quorum step
		// down): no transfer goes on, so no snapshot read either.
		n.sendMu.Lock()
		n.stopSnapReadsLocked()
		n.sendMu.Unlock()
	}
	if n.feed.last.Seq != seq || v.transferee != n.transferee || v.confGen != n.confGen || committed != n.confCommitted {
		n.transferee = v.transferee
		n.confGen, n.confCommitted = v.confGen, committed
		close(n.changedCh)
		n.changedCh = make(chan struct{})
	}
	// After the event: subscribers hear of a change before State shows it.
	st := v.term << 1
	if v.role == Leader && n.usable() == nil {
		st |= 1
	}
	n.state.Store(st)
}

func (n *Node) storeFailed(err error) {
	if err != nil {
		n.fail(err)
	}
	if cerr := n.store.Close(); cerr != nil {
		n.logger.Warn("raft: closing failed store", "err", cerr)
	}
}

func (n *Node) logStateLocked() {
	for _, e := range n.core.takeEvents() {
		n.logger.Info("raft: " + e)
	}
	if v := n.core.view(); v.role != n.lastRole || v.term != n.lastTerm {
		n.logger.Info("raft: state change", "role", v.role, "term", v.term, "leader", v.lead,
			"last", v.lastIndex, "commit", v.commit)
		n.lastRole, n.lastTerm = v.role, v.term
	}
}

// dispatch queues m for its peer's senders; a full queue counts as a failed
// RPC.
func (n *Node) dispatch(m message) {
	n.peersMu.Lock()
	ch := n.peers[m.to]
	if ch == nil {
		// Room for a full window of appends besides heartbeats and read
		// rounds: a full queue counts as a failed send, which stalls the
		// peer's replication until the next heartbeat.
		ch = make(chan message, n.cfg.MaxInflightAppends+4*n.cfg.RPCWorkersPerPeer)
		n.peers[m.to] = ch
		for range n.cfg.RPCWorkersPerPeer {
			n.senders.Add(1) // here, not in sender: counted as soon as started
			n.goDaemon("sender", func() { n.sender(ch) })
		}
	}
	select {
	case ch <- m:
		n.peersMu.Unlock()
	default:
		n.peersMu.Unlock()
		n.logger.Debug("raft: send queue full", "to", m.to, "rpc", rpcName(m))
		n.locked(func() { n.core.handleFailure(m) })
	}
}

func (n *Node) sender(ch chan message) {
	defer n.senders.Add(-1)
	for {
		select {
		case <-n.ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return // pruneSenders: the peer left (queued ones were sent)
			}
			n.call(m)
		}
	}
}

// call sends one RPC and steps its answer (or its failure) into the core.
func (n *Node) call(m message) {
	var (
		r   answer
		err error
		is  = m.is
	)
	if m.fromStore {
		// Before the RPC's clock starts, and bounded by the transfer, not
		// RPCTimeout: reading a large snapshot (through a busy plugin,
		// say) can take longer than RPCTimeout on its own, and every
		// attempt would fail. The read stops once no transfer of the
		// snapshot is under way (leadership lost, the follower gone or
		// caught up) or the node is killed (readChunk).
		is, err = n.readChunk(n.ctx, m.is)
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RPCTimeout)
	defer cancel()
	switch {
	case m.ae != nil:
		r.ae, err = n.tr.AppendEntries(ctx, m.to, m.ae)
	case m.rv != nil:
		r.rv, err = n.tr.RequestVote(ctx, m.to, m.rv)
	case m.is != nil:
		if err == nil {
			r.is, err = n.tr.InstallSnapshot(ctx, m.to, is)
		}
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
		if m.fromStore {
			// After readChunk kept the snapshot, in the same goroutine: a
			// transfer that ended meanwhile does not leave it held.
			n.releaseSendingLocked()
		}
	})
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

// storedSnapshot is a snapshot read from the store to send, with its
// checksum.
type storedSnapshot struct {
	snap persist.Snapshot
	crc  uint32
}

// errSnapshotMoved is readChunk's error when the store holds another
// snapshot than the one the core announces: a newer one stored before the
// core compacted to it. The send fails; the core retries at a later
// heartbeat, by then announcing the store's snapshot.
var errSnapshotMoved = errors.New("raft: the stored snapshot is not the one to send")

// errNoSnapshotData is readChunk's error when the core dropped the
// snapshot's data and the store cannot read it back: the send fails, and
// the application is asked for a snapshot (wantSnapshotData).
var errNoSnapshotData = errors.New("raft: no snapshot data to send yet; asked the application for a snapshot")

// wantSnapshotData has the applier ask the application for a snapshot,
// whose data the core keeps to send (SaveSnapshot).
func (n *Node) wantSnapshotData() {
	n.snapDataWanted.Store(true)
	select {
	case n.applyKick <- struct{}{}:
	default:
	}
}

// releaseSendingLocked forgets the snapshot kept for the senders once no
// transfer of it is under way (the transfer ended early: leadership lost,
// the follower removed or caught up otherwise), so that the node does not
// hold data its store has, and stops the store reads of such snapshots.
// n.mu must be held.
func (n *Node) releaseSendingLocked() {
	n.sendMu.Lock()
	if s := n.sending; s != nil && !n.core.sendingSnapshot(s.snap.Index) {
		n.sending = nil
	}
	n.stopSnapReadsLocked()
	n.sendMu.Unlock()
}

// stopSnapReadsLocked cancels the store reads of snapshots no transfer
// needs any more. n.mu and sendMu must be held.
func (n *Node) stopSnapReadsLocked() {
	for r := range n.snapReads {
		if !n.core.sendingSnapshot(r.index) {
			r.cancel()
			delete(n.snapReads, r)
		}
	}
}

// snapRead is a sender's store read of the snapshot at index (readChunk).
type snapRead struct {
	index  uint64
	cancel context.CancelFunc
}

// startSnapRead returns the context for a store read of the snapshot at
// index: it ends with parent (Kill), or once no transfer of that snapshot
// is under way (releaseSendingLocked), which may be already. endSnapRead
// releases it.
func (n *Node) startSnapRead(index uint64, parent context.Context) (context.Context, *snapRead) {
	ctx, cancel := context.WithCancel(parent)
	r := &snapRead{index: index, cancel: cancel}
	n.mu.Lock()
	n.sendMu.Lock()
	if n.core.sendingSnapshot(index) {
		if n.snapReads == nil {
			n.snapReads = make(map[*snapRead]struct{})
		}
		n.snapReads[r] = struct{}{}
	} else {
		cancel()
	}
	n.sendMu.Unlock()
	n.mu.Unlock()
	return ctx, r
}

// endSnapRead forgets r, whose read is over.
func (n *Node) endSnapRead(r *snapRead) {
	n.sendMu.Lock()
	delete(n.snapReads, r)
	n.sendMu.Unlock()
	r.cancel()
}

// readChunk returns is with its chunk of data, read from the store's
// snapshot outside the node's lock. It sends only what is describes: the
// stored snapshot must have its index, term, size and checksum, so the
// follower gets the snapshot (and configuration) the core announced, never
// another one. The snapshot read is kept for the transfer's next chunks and
// dropped after its last one, or when it does not match (a transfer is
// restarted then).
func (n *Node) readChunk(ctx context.Context, is *InstallSnapshotRequest) (*InstallSnapshotRequest, error) {
	n.sendMu.Lock() // not held across the store call
	s := n.sending
	n.sendMu.Unlock()
	if s == nil || s.snap.Index != is.LastIncludedIndex || s.snap.Term != is.LastIncludedTerm {
		if !n.canLoad() {
			n.wantSnapshotData()
			return nil, errNoSnapshotData
		}
		// Only a read of the store is bound to the transfer; chunks of
		// the snapshot read already are sent without taking n.mu.
		rctx, sr := n.startSnapRead(is.LastIncludedIndex, ctx)
		snap, err := n.loader.LoadSnapshot(rctx)
		n.endSnapRead(sr)
		if errors.Is(err, errors.ErrUnsupported) {
			if !n.loadUnsupported.Swap(true) {
				n.logger.Warn("raft: the store cannot read its snapshot back after all; keeping snapshot data in memory from now on",
					"err", err)
			}
			n.wantSnapshotData()
		}
		if err != nil {
			return nil, err
		}
		s = &storedSnapshot{snap: snap, crc: crc32.Checksum(snap.Data, castagnoli)}
	}
	ok := s.snap.Index == is.LastIncludedIndex && s.snap.Term == is.LastIncludedTerm &&
		uint64(len(s.snap.Data)) == is.TotalSize && s.crc == is.Checksum
	n.sendMu.Lock()
	if ok && !is.Done {
		n.sending = s
	} else if n.sending == s {
		n.sending = nil
	}
	n.sendMu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: store has %d/%d (%d bytes, crc %08x), sending %d/%d (%d bytes, crc %08x)",
			errSnapshotMoved, s.snap.Index, s.snap.Term, len(s.snap.Data), s.crc,
			is.LastIncludedIndex, is.LastIncludedTerm, is.TotalSize, is.Checksum)
	}
	// The core cut the chunk the same way (sendChunk); cfg never changes.
	end := min(is.Offset+uint64(n.core.cfg.chunkBytes), is.TotalSize)
	req := *is // the core keeps is to match the answer
	req.Data = s.snap.Data[is.Offset:end:end]
	return &req, nil
}
