package raft

import (
	"bytes"
	"cmp"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/ruaft/ruaft/persist"
)

// coreConfig is Config converted to ticks, as the core sees it.
type coreConfig struct {
	id, peers int
	// electionTicks is the minimum election timeout, also the lease and the
	// check-quorum period; timeouts are drawn from [electionTicks,
	// electionTicksMax).
	electionTicks, electionTicksMax int
	heartbeatTicks                  int
	preVote, checkQuorum            bool
	maxInflight                     int
	maxInflightBytes                int64
	maxEntries                      int
	maxBytes                        int64
	chunkBytes                      int
	seed                            uint64
	// checkSnapshots makes the core hand a received snapshot to the node
	// for the application to validate (c.toCheck) instead of installing it.
	checkSnapshots bool
}

func coreConfigFrom(c Config) coreConfig {
	return coreConfig{
		id:               c.ID,
		peers:            c.Peers,
		electionTicks:    c.ticks(c.ElectionTimeoutMin),
		electionTicksMax: c.ticks(c.ElectionTimeoutMax),
		heartbeatTicks:   c.ticks(c.HeartbeatInterval),
		preVote:          c.PreVote,
		checkQuorum:      c.CheckQuorum,
		maxInflight:      c.MaxInflightAppends,
		maxInflightBytes: c.MaxInflightBytes,
		maxEntries:       c.MaxEntriesPerAppend,
		maxBytes:         c.MaxBytesPerAppend,
		chunkBytes:       c.SnapshotChunkBytes,
		seed:             c.Seed,
	}
}

// message is an RPC request the core wants sent; exactly one of the request
// fields is set. The request may share entry and snapshot buffers with the
// log, which never writes into them again.
type message struct {
	to int
	// round is the leader's read round when the message was created: an
	// answer in the same term proves leadership as of that round.
	round uint64
	// match is the leader's match index for the target when it sent an
	// AppendEntries.
	match uint64
	// batch identifies a follower's read-index request (fwdBatch).
	batch uint64
	ae    *AppendEntriesRequest
	rv    *RequestVoteRequest
	is    *InstallSnapshotRequest
	tn    *TimeoutNowRequest
	ri    *ReadIndexRequest
}

// readState answers a read request: the index to wait for, or an error.
type readState struct {
	id    uint64
	index uint64
	// term is the leader's term in which index was confirmed (the term of
	// the leader that answered, for a forwarded read).
	term uint64
	err  error
}

// pendingRead is a read request waiting for its round to be acknowledged.
type pendingRead struct {
	id, index, round uint64
	// acker is the follower that asked for this read with a ReadIndex
	// request of the leader's term, or NoLeader. The request was sent after
	// the reads it stands for began, in the leader's term: it is that
	// follower's acknowledgement, as of a time after the reads began, that
	// it has not moved to a later term (see addRead).
	acker int
}

// snapshotBuffer collects the chunks of one snapshot sent by one leader in
// one term. A chunk continues it only if it carries the same leader, term,
// snapshot index and term, size and checksum: two leaders' snapshots at the
// same index may differ byte for byte, so a transfer is never resumed
// across a change of leader or term, only restarted.
type snapshotBuffer struct {
	term     uint64 // the sending leader's term
	leader   int
	index    uint64 // the snapshot's last included index and term
	snapTerm uint64
	total    uint64
	checksum uint32
	data     []byte
	// crc is the CRC-32C of data so far.
	crc uint32
	// checking: data is complete and matched the checksum, and the node is
	// having the application validate it (finishSnapshot ends that).
	checking bool
}

// castagnoli is the CRC-32C table used for snapshot checksums.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// matches reports whether req is a chunk of the snapshot b collects.
func (b *snapshotBuffer) matches(req *InstallSnapshotRequest) bool {
	return b.term == req.Term && b.leader == req.LeaderID && b.index == req.LastIncludedIndex &&
		b.snapTerm == req.LastIncludedTerm && b.total == req.TotalSize && b.checksum == req.Checksum
}

// ready is one batch of work for the node (etcd's Ready). The node stores
// snapshot, then hardState and entries with one Append when save is set,
// sends messages (a leader's AppendEntries and InstallSnapshot may go before
// the store call returns, everything else only after), applies committed,
// answers reads, and then calls advance.
type ready struct {
	hardState persist.HardState
	save      bool
	entries   []Entry
	snapshot  *persist.Snapshot
	messages  []message
	committed []Entry
	reads     []readState
}

func (rd *ready) empty() bool {
	return !rd.save && rd.snapshot == nil && len(rd.messages) == 0 && len(rd.committed) == 0 && len(rd.reads) == 0
}

// core is the deterministic Raft state machine: no goroutines, no clock, no
// I/O. It is not safe for concurrent use; the node serializes calls.
type core struct {
	cfg  coreConfig
	rng  *rand.Rand
	id   int
	term uint64
	vote int
	lead int
	role Role
	log  *raftLog

	// prs is the leader's progress per replica (prs[id] unused).
	prs []progress
	// votes per replica in the current (pre-)election: +1, -1 or 0.
	votes []int8

	electionElapsed int
	// timeout is the randomized election timeout in ticks.
	timeout int
	// transferee is the target of a leadership transfer, or NoLeader;
	// transferElapsed counts the ticks since it started.
	transferee      int
	transferElapsed int
	// noopIndex is the index of the leader's no-op of its term.
	noopIndex uint64

	// round is the last read round started; needRound asks flush to start
	// one. confirmed is the highest round a majority acknowledged in this
	// leadership. At most one round is in flight (round > confirmed): reads
	// that arrive meanwhile wait for the next one, so a round costs one
	// heartbeat per peer however many reads it answers (etcd's ReadIndex
	// batching). roundElapsed counts the ticks the round in flight has
	// taken; a round that is not confirmed within heartbeatTicks is
	// presumed lost and no longer holds the next one back.
	round        uint64
	confirmed    uint64
	roundElapsed int
	needRound    bool
	reads        []pendingRead
	// readsAwaitNoop are read ids that wait for the term's no-op to commit.
	readsAwaitNoop []uint64
	// readRounds counts the rounds started, for Status.
	readRounds uint64

	// Follower reads. A follower that knows its leader queues its reads in
	// fwdPending and asks the leader for a read index with one request for
	// all of them (fwdInflight, identified by fwdBatch, at most one in
	// flight). fwdLead and fwdTerm are the leader and term the queued reads
	// are addressed to.
	fwdPending  []uint64
	fwdInflight []uint64
	fwdBatch    uint64
	fwdSeq      uint64
	fwdLead     int
	fwdTerm     uint64
	// fwdRequests counts the read-index requests sent, for Status.
	fwdRequests uint64

	// recv is the snapshot being received, if any; toCheck is set by
	// handleInstallSnapshot to a complete one that the node must have the
	// application validate before calling finishSnapshot.
	recv    *snapshotBuffer
	toCheck *snapshotBuffer

	msgs       []message
	readStates []readState
	// prevHS is the hard state last handed out for storing.
	prevHS persist.HardState

	// violations records broken invariants, reported by Kill.
	violations []string
	// events explains role changes; the node drains and logs them.
	events []string
}

func newCore(cfg coreConfig, st persist.State) *core {
	c := &core{
		cfg:        cfg,
		rng:        rand.New(rand.NewPCG(cfg.seed, uint64(cfg.id))),
		id:         cfg.id,
		term:       st.HardState.Term,
		vote:       st.HardState.VotedFor,
		lead:       NoLeader,
		role:       Follower,
		log:        newLog(st),
		prs:        make([]progress, cfg.peers),
		transferee: NoLeader,
		fwdLead:    NoLeader,
	}
	c.prevHS = c.hardState()
	c.resetTimeout()
	return c
}

func (c *core) hardState() persist.HardState {
	return persist.HardState{Term: c.term, VotedFor: c.vote, Commit: c.log.commit}
}

func (c *core) violate(format string, args ...any) {
	c.violations = append(c.violations, fmt.Sprintf("replica %d term %d: ", c.id, c.term)+fmt.Sprintf(format, args...))
}

// note records why the core is changing role, for the node's log.
func (c *core) note(format string, args ...any) {
	if len(c.events) < 64 {
		c.events = append(c.events, fmt.Sprintf(format, args...))
	}
}

func (c *core) resetTimeout() {
	c.timeout = c.cfg.electionTicks
	if d := c.cfg.electionTicksMax - c.cfg.electionTicks; d > 0 {
		c.timeout += c.rng.IntN(d)
	}
}

func (c *core) send(m message) {
	if m.ae != nil || m.is != nil {
		c.prs[m.to].idle = 0
		c.prs[m.to].sentRound = c.round
	}
	if m.ae != nil {
		c.prs[m.to].sentCommit = m.ae.LeaderCommit
	}
	m.round = c.round
	c.msgs = append(c.msgs, m)
}

// --- role changes ---

func (c *core) becomeFollower(term uint64, lead int) {
	if term > c.term {
		c.term = term
		c.vote = persist.NoVote
		c.recv = nil // sent in an older term: never continued
	}
	if c.role == Leader {
		c.failReads(ErrNotLeader)
	}
	c.role = Follower
	c.lead = lead
	c.votes = nil
	c.transferee = NoLeader
	c.electionElapsed = 0
	c.resetTimeout()
}

func (c *core) campaign() {
	if c.term >= MaxTerm {
		c.note("term %d is MaxTerm: not campaigning", c.term)
		c.electionElapsed = 0
		return
	}
	if c.cfg.preVote {
		c.becomePreCandidate()
	} else {
		c.becomeCandidate(false)
	}
}

func (c *core) becomePreCandidate() {
	c.role = PreCandidate
	c.lead = NoLeader
	c.startVotes()
	c.electionElapsed = 0
	c.resetTimeout()
	if tally(c.votes) == voteWon {
		c.becomeCandidate(false)
		return
	}
	c.requestVotes(c.term+1, true, false)
}

func (c *core) becomeCandidate(transfer bool) {
	if c.term >= MaxTerm {
		c.note("term %d is MaxTerm: not campaigning", c.term)
		c.becomeFollower(c.term, NoLeader)
		return
	}
	c.role = Candidate
	c.term++
	c.recv = nil
	c.vote = c.id
	c.lead = NoLeader
	c.startVotes()
	c.electionElapsed = 0
	c.resetTimeout()
	if tally(c.votes) == voteWon {
		c.becomeLeader()
		return
	}
	c.requestVotes(c.term, false, transfer)
}

func (c *core) startVotes() {
	c.votes = make([]int8, c.cfg.peers)
	c.votes[c.id] = 1
}

func (c *core) requestVotes(term uint64, pre, transfer bool) {
	for p := range c.cfg.peers {
		if p == c.id {
			continue
		}
		c.send(message{to: p, rv: &RequestVoteRequest{
			Term:               term,
			CandidateID:        c.id,
			LastLogIndex:       c.log.lastIndex(),
			LastLogTerm:        c.log.lastTerm(),
			PreVote:            pre,
			LeadershipTransfer: transfer,
		}})
	}
}

func (c *core) becomeLeader() {
	c.role = Leader
	c.lead = c.id
	c.votes = nil
	c.transferee = NoLeader
	c.electionElapsed = 0
	last := c.log.lastIndex()
	for p := range c.prs {
		c.prs[p] = progress{match: 0, next: last + 1, state: stateProbe}
	}
	c.confirmed, c.roundElapsed = c.round, 0
	c.noopIndex = last + 1
	c.log.append(Entry{Index: last + 1, Term: c.term, Type: persist.EntryNoop})
	c.maybeCommit()
}

// --- time ---

func (c *core) tick() {
	if c.role == Leader {
		c.tickLeader()
		return
	}
	c.electionElapsed++
	if c.electionElapsed >= c.timeout {
		c.note("election timeout after %d ticks as %v in term %d", c.electionElapsed, c.role, c.term)
		c.campaign()
	}
}

func (c *core) tickLeader() {
	c.electionElapsed++
	if c.electionElapsed >= c.cfg.electionTicks {
		c.electionElapsed = 0
	}
	if c.transferee != NoLeader {
		// Give up a transfer that did not happen within the longest
		// election timeout plus the shortest: time for the target to be
		// caught up (its sends may be queued behind calls that time out)
		// and to win.
		c.transferElapsed++
		if c.transferElapsed >= c.cfg.electionTicksMax+c.cfg.electionTicks {
			c.note("leadership transfer to %d abandoned after %d ticks", c.transferee, c.transferElapsed)
			c.endTransfer()
		}
	}
	if c.cfg.checkQuorum {
		// Step down once a majority has not answered within two minimum
		// election timeouts: one lost or late heartbeat answer is no reason
		// to give up leadership.
		window := 2 * c.cfg.electionTicks
		active := 1
		for p := range c.prs {
			if p != c.id {
				c.prs[p].silent++
				if c.prs[p].silent < window {
					active++
				}
			}
		}
		if active < quorum(c.cfg.peers) {
			c.note("check-quorum: only %d of %d answered within %d ticks in term %d; stepping down",
				active, c.cfg.peers, window, c.term)
			c.becomeFollower(c.term, NoLeader)
			return
		}
	}
	if c.round > c.confirmed {
		c.roundElapsed++
		if c.roundElapsed == roundWidenTicks {
			// The peers asked have not confirmed the round within a tick or
			// two: ask the others too.
			for p := range c.prs {
				if p != c.id && c.prs[p].sentRound < c.round {
					c.heartbeat(p)
				}
			}
		}
	}
	for p := range c.prs {
		if p == c.id {
			continue
		}
		pr := &c.prs[p]
		pr.idle++
		// Heartbeat when idle; also tell a follower, at most once a tick,
		// that entries it holds committed, so that it applies them without
		// waiting a whole heartbeat interval.
		if pr.idle >= c.cfg.heartbeatTicks ||
			(pr.state == stateReplicate && min(c.log.commit, pr.match) > pr.sentCommit) {
			c.heartbeat(p)
		}
	}
}

// heartbeat sends p whatever keeps it following and tells it the commit
// index: a retry of a probe or snapshot chunk, or an empty AppendEntries at
// the index known to match.
func (c *core) heartbeat(p int) {
	pr := &c.prs[p]
	pr.backoff = false
	switch pr.state {
	case stateProbe:
		pr.paused = false
		c.sendAppend(p)
	case stateSnapshot:
		if !pr.paused {
			c.sendChunk(p)
		}
	case stateReplicate:
		t, ok := c.log.term(pr.match)
		if !ok {
			pr.becomeSnapshot(c.log.snap.Index)
			c.sendChunk(p)
			return
		}
		c.sendAE(p, pr.match, t, nil)
	}
}

// --- leader replication ---

// flush sends every follower what its progress allows, and starts a read
// round if one is needed.
func (c *core) flush() {
	c.syncForwarded()
	if c.role != Leader {
		c.flushForwardedReads()
		return
	}
	start := c.needRound && c.roundFree()
	if start {
		c.needRound = false
		c.round++
		c.readRounds++
		c.roundElapsed = 0
	}
	// Appends go first: each one carries the new round too.
	for p := range c.prs {
		if p != c.id {
			c.sendAppend(p)
		}
	}
	if start {
		c.askRound()
		c.checkReads()
	}
}

// roundWidenTicks is how long a read round waits for the peers it asked
// before it asks all of them.
const roundWidenTicks = 2

// roundFree reports whether a new read round may start: none is in flight,
// or the one in flight is presumed lost.
func (c *core) roundFree() bool {
	return c.round <= c.confirmed || c.roundElapsed >= c.cfg.heartbeatTicks
}

// askRound sends the current round to just enough peers to confirm it with
// a majority, preferring those that acknowledged the latest rounds (the
// responsive ones); peers that already got a message of this round count.
// If they do not confirm it in time, tickLeader asks the rest. With three
// replicas a round costs one RPC.
func (c *core) askRound() {
	need := quorum(c.cfg.peers) - 1
	var rest []int
	for p := range c.prs {
		if p == c.id {
			continue
		}
		if c.prs[p].sentRound == c.round {
			need--
		} else {
			rest = append(rest, p)
		}
	}
	// Highest ackRound first; ties by id, for determinism.
	slices.SortStableFunc(rest, func(a, b int) int { return cmp.Compare(c.prs[b].ackRound, c.prs[a].ackRound) })
	for _, p := range rest {
		if need <= 0 {
			return
		}
		c.heartbeat(p)
		if c.prs[p].sentRound == c.round {
			need--
		}
	}
}

func (c *core) sendAppend(p int) {
	pr := &c.prs[p]
	if pr.backoff {
		return
	}
	switch pr.state {
	case stateSnapshot:
		if !pr.paused {
			c.sendChunk(p)
		}
	case stateProbe:
		if pr.paused {
			return
		}
		prevTerm, ok := c.log.term(pr.next - 1)
		if !ok {
			pr.becomeSnapshot(c.log.snap.Index)
			c.sendChunk(p)
			return
		}
		ents, _ := c.log.limitedSlice(pr.next, c.cfg.maxEntries, c.cfg.maxBytes)
		c.sendAE(p, pr.next-1, prevTerm, ents)
		pr.paused = true
	case stateReplicate:
		for pr.next <= c.log.lastIndex() && !pr.inflightFull(c.cfg.maxInflight, c.cfg.maxInflightBytes) {
			prevTerm, ok := c.log.term(pr.next - 1)
			if !ok {
				pr.becomeSnapshot(c.log.snap.Index)
				c.sendChunk(p)
				return
			}
			ents, size := c.log.limitedSlice(pr.next, c.cfg.maxEntries, c.cfg.maxBytes)
			c.sendAE(p, pr.next-1, prevTerm, ents)
			last := ents[len(ents)-1].Index
			pr.inflights = append(pr.inflights, inflight{last: last, bytes: size})
			pr.inflightBytes += size
			pr.next = last + 1
		}
	}
}

func (c *core) sendAE(p int, prev, prevTerm uint64, ents []Entry) {
	c.send(message{to: p, match: c.prs[p].match, ae: &AppendEntriesRequest{
		Term:         c.term,
		LeaderID:     c.id,
		PrevLogIndex: prev,
		PrevLogTerm:  prevTerm,
		Entries:      ents,
		LeaderCommit: c.log.commit,
	}})
}

func (c *core) sendChunk(p int) {
	pr := &c.prs[p]
	snap := c.log.snap
	if pr.snapIndex != snap.Index {
		pr.snapIndex = snap.Index
		pr.snapOffset = 0
	}
	total := uint64(len(snap.Data))
	off := min(pr.snapOffset, total)
	end := min(off+uint64(c.cfg.chunkBytes), total)
	c.send(message{to: p, is: &InstallSnapshotRequest{
		Term:              c.term,
		LeaderID:          c.id,
		LastIncludedIndex: snap.Index,
		LastIncludedTerm:  snap.Term,
		Offset:            off,
		Data:              snap.Data[off:end:end],
		Done:              end == total,
		TotalSize:         total,
		Checksum:          c.log.snapChecksum(),
	}})
	pr.paused = true
}

func (c *core) sendTimeoutNow(p int) {
	c.send(message{to: p, tn: &TimeoutNowRequest{Term: c.term, LeaderID: c.id, LastLogIndex: c.log.lastIndex()}})
}

// maybeCommit advances the commit index to the highest index a majority
// stores, if that entry is of the current term (Raft paper, 5.4.2). The
// leader counts itself only up to its durable index.
func (c *core) maybeCommit() {
	var buf [16]uint64 // no allocation for clusters of up to 16
	matches := buf[:0]
	for p := range c.prs {
		if p == c.id {
			matches = append(matches, c.log.durable)
		} else {
			matches = append(matches, c.prs[p].match)
		}
	}
	mi := quorumMin(matches)
	if mi <= c.log.commit {
		return
	}
	if t, _ := c.log.term(mi); t != c.term {
		return
	}
	wasNoop := c.log.commit >= c.noopIndex
	c.commitTo(mi)
	if !wasNoop && c.log.commit >= c.noopIndex {
		for _, id := range c.readsAwaitNoop {
			c.addRead(id, NoLeader)
		}
		c.readsAwaitNoop = nil
	}
}

func (c *core) commitTo(i uint64) {
	if i > c.log.commit {
		if i > c.log.lastIndex() {
			c.violate("commit %d beyond last index %d", i, c.log.lastIndex())
			return
		}
		c.log.commit = i
	}
}

// propose appends a command to a leader's log.
func (c *core) propose(data []byte) (index, term uint64, ok bool) {
	if c.role != Leader || c.transferee != NoLeader {
		return 0, c.term, false
	}
	index = c.log.lastIndex() + 1
	c.log.append(Entry{Index: index, Term: c.term, Type: persist.EntryCommand, Data: data})
	if c.cfg.peers == 1 {
		c.maybeCommit()
	}
	return index, c.term, true
}

// --- request handlers (receiver side) ---

// observeLeader handles the term of a request from a leader: it reports
// false if the request is stale, and otherwise makes c a follower of leader.
func (c *core) observeLeader(term uint64, leader int) bool {
	if term < c.term {
		return false
	}
	if !c.plausibleTerm(term) {
		c.note("refused a request from %d with implausible term %d (ours %d)", leader, term, c.term)
		return false
	}
	if term > c.term {
		c.note("leader %d has term %d > %d", leader, term, c.term)
		c.becomeFollower(term, leader)
	} else {
		if c.role == Leader {
			c.violate("two leaders in term %d: %d and %d", term, c.id, leader)
			return false
		}
		if c.lead != NoLeader && c.lead != leader {
			c.violate("two leaders in term %d: %d and %d", term, c.lead, leader)
		}
		if c.role != Follower {
			c.becomeFollower(term, leader)
		}
		c.lead = leader
	}
	c.electionElapsed = 0
	return true
}

func (c *core) handleAppendEntries(req *AppendEntriesRequest) *AppendEntriesResponse {
	if !c.observeLeader(req.Term, req.LeaderID) {
		return &AppendEntriesResponse{Term: c.term, LastLogIndex: c.log.lastIndex()}
	}
	prev, prevTerm, ents := req.PrevLogIndex, req.PrevLogTerm, req.Entries
	lastNew := prev + uint64(len(ents))
	// Entries the snapshot covers are committed, so they match the leader's.
	if snap := c.log.snap; prev < snap.Index {
		skip := snap.Index - prev
		if skip >= uint64(len(ents)) {
			return &AppendEntriesResponse{Term: c.term, Success: true, MatchIndex: lastNew, LastLogIndex: c.log.lastIndex()}
		}
		ents = ents[skip:]
		prev, prevTerm = snap.Index, snap.Term
	}
	if !c.log.matchTerm(prev, prevTerm) {
		resp := &AppendEntriesResponse{Term: c.term, LastLogIndex: c.log.lastIndex()}
		if last := c.log.lastIndex(); prev > last {
			resp.ConflictIndex = last + 1
		} else {
			ct, _ := c.log.term(prev)
			resp.ConflictTerm = ct
			resp.ConflictIndex = c.log.firstIndexOfTerm(prev, ct)
		}
		return resp
	}
	for i, e := range ents {
		if e.Index > c.log.lastIndex() {
			c.log.append(cloneEntries(ents[i:])...)
			break
		}
		if t, _ := c.log.term(e.Index); t != e.Term {
			if e.Index <= c.log.commit {
				c.violate("log matching broken: leader %d sends %d/%d over committed %d/%d (commit %d)",
					req.LeaderID, e.Index, e.Term, e.Index, t, c.log.commit)
				return &AppendEntriesResponse{Term: c.term, LastLogIndex: c.log.lastIndex()}
			}
			c.log.truncateAndAppend(cloneEntries(ents[i:]))
			break
		}
	}
	c.commitTo(min(req.LeaderCommit, lastNew))
	return &AppendEntriesResponse{Term: c.term, Success: true, MatchIndex: lastNew, LastLogIndex: c.log.lastIndex()}
}

func cloneEntries(es []Entry) []Entry {
	out := make([]Entry, len(es))
	for i, e := range es {
		e.Data = bytes.Clone(e.Data)
		out[i] = e
	}
	return out
}

// inLease reports whether c heard from a leader within the minimum election
// timeout, in which case it refuses to help depose it.
func (c *core) inLease() bool {
	return c.cfg.checkQuorum && c.lead != NoLeader && c.electionElapsed < c.cfg.electionTicks
}

func (c *core) handleRequestVote(req *RequestVoteRequest) *RequestVoteResponse {
	if !c.plausibleTerm(req.Term) {
		c.note("refused a vote request from %d with implausible term %d (ours %d)", req.CandidateID, req.Term, c.term)
		return &RequestVoteResponse{Term: c.term}
	}
	if req.Term > c.term && c.inLease() && !req.LeadershipTransfer {
		return &RequestVoteResponse{Term: c.term}
	}
	if req.Term < c.term {
		return &RequestVoteResponse{Term: c.term}
	}
	upToDate := c.log.isUpToDate(req.LastLogIndex, req.LastLogTerm)
	if req.PreVote {
		canVote := req.Term > c.term || c.vote == req.CandidateID || (c.vote == persist.NoVote && c.lead == NoLeader)
		if canVote && upToDate {
			return &RequestVoteResponse{Term: req.Term, VoteGranted: true}
		}
		return &RequestVoteResponse{Term: c.term}
	}
	if req.Term > c.term {
		c.note("vote request from %d has term %d > %d", req.CandidateID, req.Term, c.term)
		c.becomeFollower(req.Term, NoLeader)
	}
	canVote := c.vote == req.CandidateID || (c.vote == persist.NoVote && c.lead == NoLeader)
	if canVote && upToDate {
		c.vote = req.CandidateID
		c.electionElapsed = 0
		return &RequestVoteResponse{Term: c.term, VoteGranted: true}
	}
	return &RequestVoteResponse{Term: c.term}
}

func (c *core) handleInstallSnapshot(req *InstallSnapshotRequest) *InstallSnapshotResponse {
	if !c.observeLeader(req.Term, req.LeaderID) {
		return &InstallSnapshotResponse{Term: c.term}
	}
	idx, st := req.LastIncludedIndex, req.LastIncludedTerm
	// A snapshot never rolls back what is committed or already covered.
	if idx <= c.log.commit || idx <= c.log.snap.Index {
		if b := c.recv; b != nil && (b.index <= c.log.commit || b.index <= c.log.snap.Index) {
			// The partial snapshot being received is covered too: free its
			// buffer (up to its whole size) rather than keep it until the
			// next snapshot or term.
			c.recv = nil
		}
		return &InstallSnapshotResponse{Term: c.term, NextOffset: req.TotalSize, Installed: true}
	}
	// The log already holds the snapshot's last entry: by log matching it
	// holds everything the snapshot covers, so keep the log and its suffix.
	if c.log.matchTerm(idx, st) {
		c.recv = nil
		c.commitTo(idx)
		return &InstallSnapshotResponse{Term: c.term, NextOffset: req.TotalSize, Installed: true}
	}
	b := c.recv
	if b != nil && b.term == req.Term && b.leader == req.LeaderID && idx < b.index {
		// A delayed chunk of a snapshot the same leader has since replaced
		// with a newer one: it must not discard the newer transfer.
		return &InstallSnapshotResponse{Term: c.term}
	}
	if b == nil || !b.matches(req) {
		// Another snapshot, leader or term: what was received so far is
		// never continued, only restarted from offset 0.
		c.recv = nil
		if req.Offset != 0 || req.TotalSize > math.MaxInt {
			return &InstallSnapshotResponse{Term: c.term}
		}
		b = &snapshotBuffer{term: req.Term, leader: req.LeaderID, index: idx, snapTerm: st,
			total: req.TotalSize, checksum: req.Checksum,
			data: make([]byte, 0, min(req.TotalSize, 64<<20))}
		c.recv = b
	}
	next := &InstallSnapshotResponse{Term: c.term, NextOffset: uint64(len(b.data))}
	end := req.Offset + uint64(len(req.Data))
	if b.checking || req.Offset != uint64(len(b.data)) || end < req.Offset || end > b.total ||
		req.Done != (end == b.total) {
		// A duplicate, a reordered or malformed chunk, or a retry while the
		// application validates: say where the transfer stands.
		return next
	}
	b.data = append(b.data, req.Data...)
	b.crc = crc32.Update(b.crc, castagnoli, req.Data)
	next.NextOffset = end
	if !req.Done {
		return next
	}
	if b.crc != b.checksum {
		c.recv = nil
		c.note("snapshot %d/%d from leader %d in term %d: checksum %08x, want %08x; discarded",
			idx, st, req.LeaderID, req.Term, b.crc, b.checksum)
		return &InstallSnapshotResponse{Term: c.term}
	}
	if c.cfg.checkSnapshots {
		b.checking = true
		c.toCheck = b
		return next
	}
	return c.installReceived(b)
}

// finishSnapshot installs b, a complete snapshot that handleInstallSnapshot
// handed out in toCheck, if the application accepted it (err is nil) and it
// is still the snapshot being received; otherwise it drops it, and the
// leader sends it again from offset 0.
func (c *core) finishSnapshot(b *snapshotBuffer, err error) *InstallSnapshotResponse {
	if c.recv != b || b.term != c.term {
		return &InstallSnapshotResponse{Term: c.term}
	}
	c.recv = nil
	if err != nil {
		c.note("snapshot %d/%d from leader %d in term %d refused by the application: %v",
			b.index, b.snapTerm, b.leader, b.term, err)
		return &InstallSnapshotResponse{Term: c.term}
	}
	return c.installReceived(b)
}

// installReceived installs the complete, verified snapshot b, unless the
// log or commit index has come to cover it meanwhile.
func (c *core) installReceived(b *snapshotBuffer) *InstallSnapshotResponse {
	c.recv = nil
	done := &InstallSnapshotResponse{Term: c.term, NextOffset: b.total, Installed: true}
	switch {
	case b.index <= c.log.commit || b.index <= c.log.snap.Index:
	case c.log.matchTerm(b.index, b.snapTerm):
		c.commitTo(b.index)
	default:
		c.log.restore(persist.Snapshot{Index: b.index, Term: b.snapTerm, Data: b.data}, b.checksum)
	}
	return done
}

func (c *core) handleTimeoutNow(req *TimeoutNowRequest) *TimeoutNowResponse {
	if !c.observeLeader(req.Term, req.LeaderID) {
		return &TimeoutNowResponse{Term: c.term}
	}
	// The leader appends nothing while a transfer runs and an entry when it
	// ends one without stepping down: an entry of its term past the index
	// it sent means this request outlived its transfer.
	if last := c.log.lastIndex(); last > req.LastLogIndex && c.log.lastTerm() == req.Term {
		c.note("ignored a stale TimeoutNow from leader %d (sent at index %d, log at %d)", req.LeaderID, req.LastLogIndex, last)
		return &TimeoutNowResponse{Term: c.term}
	}
	c.note("TimeoutNow from leader %d", req.LeaderID)
	c.becomeCandidate(true)
	return &TimeoutNowResponse{Term: req.Term, Accepted: true}
}

// --- response handlers (sender side) ---

// stepDownIfNewer makes c a follower if term is newer; it reports whether
// the caller must ignore the answer: c stepped down, or term is not
// plausible.
func (c *core) stepDownIfNewer(term uint64) bool {
	if !c.plausibleTerm(term) {
		c.note("ignored an answer with implausible term %d (ours %d)", term, c.term)
		return true
	}
	if term > c.term {
		c.note("an answer has term %d > %d", term, c.term)
		c.becomeFollower(term, NoLeader)
		return true
	}
	return false
}

func (c *core) handleVoteResponse(m message, resp *RequestVoteResponse) {
	if !(m.rv.PreVote && resp.VoteGranted) && c.stepDownIfNewer(resp.Term) {
		return
	}
	switch {
	case c.role == PreCandidate && m.rv.PreVote && m.rv.Term == c.term+1:
	case c.role == Candidate && !m.rv.PreVote && m.rv.Term == c.term && resp.Term == c.term:
	default:
		return // stale
	}
	if resp.VoteGranted {
		c.votes[m.to] = 1
	} else {
		c.votes[m.to] = -1
	}
	switch tally(c.votes) {
	case voteWon:
		if c.role == PreCandidate {
			c.becomeCandidate(false)
		} else {
			c.becomeLeader()
		}
	case voteLost:
		c.note("lost the %v election for term %d", c.role, m.rv.Term)
		c.becomeFollower(c.term, NoLeader)
	}
}

// leaderAck handles the part common to every answer a leader gets in its
// term: the peer is active and acknowledged the message's read round.
func (c *core) leaderAck(m message, reqTerm, respTerm uint64) bool {
	if c.stepDownIfNewer(respTerm) || c.role != Leader || reqTerm != c.term || respTerm != c.term {
		return false
	}
	pr := &c.prs[m.to]
	pr.silent = 0
	if m.round > pr.ackRound {
		pr.ackRound = m.round
		c.checkReads()
	}
	return true
}

// handleReadIndexResponse answers the forwarded reads of m's batch. The
// answer is valid whatever happened to this follower meanwhile: the leader
// confirmed its leadership after it received the request, so its read index
// covers every write acknowledged before the reads began. A batch that was
// re-addressed or failed meanwhile (fwdBatch moved on) is ignored.
func (c *core) handleReadIndexResponse(m message, resp *ReadIndexResponse) {
	if m.batch == 0 || m.batch != c.fwdBatch {
		return
	}
	ids := c.fwdInflight
	c.fwdInflight, c.fwdBatch = nil, 0
	for _, id := range ids {
		if resp.OK {
			c.readStates = append(c.readStates, readState{id: id, index: resp.ReadIndex, term: resp.Term})
		} else {
			c.readStates = append(c.readStates, readState{id: id, err: ErrNotLeader})
		}
	}
}

func (c *core) handleAppendResponse(m message, resp *AppendEntriesResponse) {
	if !c.leaderAck(m, m.ae.Term, resp.Term) {
		return
	}
	p := m.to
	pr := &c.prs[p]
	if resp.Success {
		updated := pr.maybeUpdate(resp.MatchIndex)
		pr.freeInflights(resp.MatchIndex)
		switch pr.state {
		case stateProbe:
			pr.becomeReplicate()
		case stateReplicate:
			// Everything in [match+1, next) is covered by an inflight; if
			// none is left, what was sent is lost: resend from match+1.
			if len(pr.inflights) == 0 && pr.next > pr.match+1 {
				pr.next = pr.match + 1
			}
		case stateSnapshot:
			if pr.match >= pr.snapIndex {
				pr.becomeProbe()
			}
		}
		if updated {
			c.maybeCommit()
		}
		if p == c.transferee && pr.match == c.log.lastIndex() {
			c.sendTimeoutNow(p)
		}
		return
	}
	prev := m.ae.PrevLogIndex
	if pr.state != stateSnapshot && prev <= m.match {
		// The follower had acknowledged prev in this term before this
		// append was sent, and now lacks it: it lost its log (a store that
		// does not survive restarts). Start over from what it has, in
		// either state: in probe state the next probe would otherwise ask
		// for prev again forever.
		pr.match = min(pr.match, resp.LastLogIndex)
		pr.becomeProbe()
		pr.next = c.backupHint(pr, prev, resp)
		return
	}
	switch pr.state {
	case stateReplicate:
		if prev <= pr.match {
			// The follower got this append before an earlier one that the
			// network delayed (pipelined appends may be reordered), and
			// dropped it: the logs match up to match, so restart the
			// pipeline there if the dropped entries are not yet matched.
			if n := len(m.ae.Entries); n > 0 && m.ae.Entries[n-1].Index > pr.match {
				pr.becomeReplicate()
			}
			return
		}
		pr.becomeProbe()
	case stateProbe:
		if prev != pr.next-1 {
			return // stale
		}
		pr.paused = false
	default:
		return
	}
	next := c.backupHint(pr, prev, resp)
	if next >= prev+1 {
		// No progress (only a confused follower answers so): retry at the
		// next heartbeat rather than at once.
		pr.backoff = true
	}
	pr.next = next
}

// backupHint computes where to probe next after a rejection at prev, from
// the follower's conflict hints (fast log backup).
func (c *core) backupHint(pr *progress, prev uint64, resp *AppendEntriesResponse) uint64 {
	next := resp.ConflictIndex
	if resp.ConflictTerm != 0 {
		if i := c.log.lastIndexOfTerm(prev, resp.ConflictTerm); i > 0 {
			next = i + 1
		}
	}
	next = min(next, prev)
	next = max(next, pr.match+1)
	return next
}

func (c *core) handleSnapshotResponse(m message, resp *InstallSnapshotResponse) {
	if !c.leaderAck(m, m.is.Term, resp.Term) {
		return
	}
	pr := &c.prs[m.to]
	if resp.Installed {
		if pr.maybeUpdate(m.is.LastIncludedIndex) {
			c.maybeCommit()
		}
		if pr.state == stateSnapshot {
			pr.becomeProbe()
		}
		return
	}
	if pr.state == stateSnapshot && m.is.LastIncludedIndex == pr.snapIndex {
		pr.snapOffset = resp.NextOffset
		pr.paused = false
		// No progress past this chunk (a restart, or the follower still
		// validating): send again at the next heartbeat, not at once.
		pr.backoff = resp.NextOffset <= m.is.Offset
	}
}

func (c *core) handleTimeoutNowResponse(m message, resp *TimeoutNowResponse) {
	c.stepDownIfNewer(resp.Term)
}

// handleFailure notes that m got no answer: replication to its target
// resumes from what is known at the next heartbeat.
func (c *core) handleFailure(m message) {
	if m.ri != nil {
		// The leader did not answer: fail the batch (its reads' callers
		// retry, possibly elsewhere) rather than wait another RPC timeout.
		if m.batch != 0 && m.batch == c.fwdBatch {
			c.failForwarded(c.fwdInflight, ErrNotLeader)
			c.fwdInflight, c.fwdBatch = nil, 0
		}
		return
	}
	if c.role != Leader {
		return
	}
	pr := &c.prs[m.to]
	switch {
	case m.ae != nil && m.ae.Term == c.term:
		switch pr.state {
		case stateReplicate:
			if n := len(m.ae.Entries); n > 0 && m.ae.Entries[n-1].Index > pr.match {
				pr.becomeProbe()
				pr.backoff = true
			}
		case stateProbe:
			if m.ae.PrevLogIndex == pr.next-1 {
				pr.paused = false
				pr.backoff = true
			}
		}
	case m.is != nil && m.is.Term == c.term:
		if pr.state == stateSnapshot {
			pr.paused = false
			pr.backoff = true
		}
	}
}

// --- reads, transfer, compaction ---

// readIndex registers read request id; its answer comes in a later ready.
// A leader confirms it with a round; a follower that knows its leader asks
// the leader (follower read); any other node refuses it.
func (c *core) readIndex(id uint64) {
	switch {
	case c.role == Leader && c.log.commit < c.noopIndex:
		c.readsAwaitNoop = append(c.readsAwaitNoop, id)
	case c.role == Leader:
		c.addRead(id, NoLeader)
	case c.role == Follower && c.lead != NoLeader:
		c.syncForwarded()
		c.fwdPending = append(c.fwdPending, id)
	default:
		c.readStates = append(c.readStates, readState{id: id, err: ErrNotLeader})
	}
}

// syncForwarded keeps the forwarded reads addressed to the current leader.
// When the leader or term changed, the reads queued or in flight are
// re-addressed to the new leader (the answer to the old request, if it
// comes, is ignored: fwdBatch moves on); when no leader is known, or this
// node is no longer a follower, they fail with ErrNotLeader so that their
// callers can go elsewhere.
func (c *core) syncForwarded() {
	if c.role == Follower && c.lead == c.fwdLead && c.term == c.fwdTerm {
		return
	}
	ids := append(c.fwdInflight, c.fwdPending...)
	c.fwdInflight, c.fwdPending, c.fwdBatch = nil, nil, 0
	if c.role == Follower && c.lead != NoLeader {
		c.fwdLead, c.fwdTerm = c.lead, c.term
		c.fwdPending = ids
		return
	}
	c.fwdLead, c.fwdTerm = NoLeader, 0
	c.failForwarded(ids, ErrNotLeader)
}

func (c *core) failForwarded(ids []uint64, err error) {
	for _, id := range ids {
		c.readStates = append(c.readStates, readState{id: id, err: err})
	}
}

// flushForwardedReads sends the queued forwarded reads to the leader in one
// request, unless one is in flight.
func (c *core) flushForwardedReads() {
	if c.fwdBatch != 0 || len(c.fwdPending) == 0 {
		return
	}
	c.fwdSeq++
	c.fwdBatch = c.fwdSeq
	c.fwdInflight, c.fwdPending = c.fwdPending, nil
	c.fwdRequests++
	c.send(message{to: c.fwdLead, batch: c.fwdBatch, ri: &ReadIndexRequest{Term: c.term, FollowerID: c.id}})
}

// handleReadIndex is a leader's side of a follower read: it refuses at once
// unless it leads (and the follower is not ahead of it: then it may be
// deposed), and otherwise registers the request as read id, answered as its
// own reads are. A request of the leader's own term counts as the
// follower's acknowledgement (see addRead).
func (c *core) handleReadIndex(id uint64, req *ReadIndexRequest) bool {
	if c.role != Leader || req.Term > c.term {
		return false
	}
	if c.log.commit < c.noopIndex {
		c.readsAwaitNoop = append(c.readsAwaitNoop, id)
		return true
	}
	acker := NoLeader
	if req.Term == c.term && req.FollowerID != c.id && req.FollowerID >= 0 && req.FollowerID < c.cfg.peers {
		acker = req.FollowerID
	}
	c.addRead(id, acker)
	return true
}

// addRead registers a read at the leader's commit index, to be answered
// once a majority is known to have been in the leader's term at some time
// after the read began: then no leader of a later term was elected before
// it began (that takes a majority in a later term, and terms never go
// back), so every write acknowledged before it began is at or below the
// index. The leader counts itself (it still leads); a round started after
// the read arrived (at the next flush) gets the others' acknowledgements.
// The follower of a forwarded read (acker) already acknowledged: its
// request, sent after its reads began, carried the leader's term. With three
// replicas that makes a majority, and the read needs no round at all.
func (c *core) addRead(id uint64, acker int) {
	r := pendingRead{id: id, index: c.log.commit, round: c.round + 1, acker: acker}
	if c.readAcks(r) >= quorum(c.cfg.peers) {
		c.readStates = append(c.readStates, readState{id: id, index: r.index, term: c.term})
		return
	}
	c.reads = append(c.reads, r)
	c.needRound = true
}

// readAcks counts the replicas known to have been in the leader's term at
// some time after read r began: the leader, r's acker, and the peers that
// acknowledged r's round or a later one.
func (c *core) readAcks(r pendingRead) int {
	n := 1
	for p := range c.prs {
		switch {
		case p == c.id:
		case p == r.acker:
			n++
		case c.prs[p].ackRound >= r.round:
			n++
		}
	}
	return n
}

// checkReads notes the highest round a majority acknowledged and answers the
// reads that are confirmed.
func (c *core) checkReads() {
	rounds := make([]uint64, c.cfg.peers)
	for p := range c.prs {
		if p == c.id {
			rounds[p] = c.round
		} else {
			rounds[p] = c.prs[p].ackRound
		}
	}
	c.confirmed = max(c.confirmed, quorumMin(rounds))
	q := quorum(c.cfg.peers)
	kept := c.reads[:0]
	for _, r := range c.reads {
		if r.round <= c.confirmed || c.readAcks(r) >= q {
			c.readStates = append(c.readStates, readState{id: r.id, index: r.index, term: c.term})
		} else {
			kept = append(kept, r)
		}
	}
	c.reads = kept
}

func (c *core) failReads(err error) {
	for _, r := range c.reads {
		c.readStates = append(c.readStates, readState{id: r.id, err: err})
	}
	for _, id := range c.readsAwaitNoop {
		c.readStates = append(c.readStates, readState{id: id, err: err})
	}
	c.reads, c.readsAwaitNoop = nil, nil
	c.needRound = false
}

// transferLeadership starts handing leadership to replica to.
func (c *core) transferLeadership(to int) error {
	if c.role != Leader {
		return ErrNotLeader
	}
	if to < 0 || to >= c.cfg.peers {
		return fmt.Errorf("%w: %d", ErrBadPeer, to)
	}
	if to == c.id {
		return nil
	}
	if c.transferee != NoLeader && c.transferee != to {
		c.note("leadership transfer to %d replaced by one to %d", c.transferee, to)
		c.endTransfer()
	}
	c.transferee = to
	// The transfer is abandoned after a while (tickLeader).
	c.transferElapsed = 0
	pr := &c.prs[to]
	pr.backoff = false
	if pr.match == c.log.lastIndex() {
		c.sendTimeoutNow(to)
	} else if pr.state == stateProbe {
		pr.paused = false
	}
	return nil
}

// endTransfer ends the running leadership transfer without stepping down.
// It appends a no-op so that a TimeoutNow sent for the transfer, which
// carries the last index at the time, is recognisably stale wherever it
// arrives late (handleTimeoutNow).
func (c *core) endTransfer() {
	c.transferee = NoLeader
	last := c.log.lastIndex()
	c.log.append(Entry{Index: last + 1, Term: c.term, Type: persist.EntryNoop})
	if c.cfg.peers == 1 {
		c.maybeCommit()
	}
}

// compact drops the log up to snap, which the node has stored.
func (c *core) compact(snap persist.Snapshot) error {
	return c.log.compact(snap)
}

// --- batches ---

func (c *core) ready() ready {
	c.flush()
	var rd ready
	rd.hardState = c.hardState()
	if last := c.log.lastIndex(); c.log.unstable <= last {
		rd.entries = c.log.slice(c.log.unstable, last+1)
		c.log.unstable = last + 1
	}
	if c.log.snapUnstable {
		s := c.log.snap
		rd.snapshot = &s
		c.log.snapUnstable = false
	}
	rd.save = len(rd.entries) > 0 || rd.snapshot != nil ||
		rd.hardState.Term != c.prevHS.Term || rd.hardState.VotedFor != c.prevHS.VotedFor
	if rd.save {
		if rd.hardState.Commit < c.prevHS.Commit || rd.hardState.Term < c.prevHS.Term {
			c.violate("hard state went back from %+v to %+v", c.prevHS, rd.hardState)
		}
		c.prevHS = rd.hardState
	}
	if hi := min(c.log.commit, c.log.durable); hi > c.log.applied {
		rd.committed = c.log.slice(c.log.applied+1, hi+1)
		c.log.applied = hi
	}
	rd.messages, c.msgs = c.msgs, nil
	rd.reads, c.readStates = c.readStates, nil
	return rd
}

// recycleMessages gives back the slice of a ready's messages, which the
// caller copied out and no longer reads, so that the next batches append to
// it instead of allocating.
func (c *core) recycleMessages(msgs []message) {
	if len(c.msgs) == 0 && cap(msgs) > cap(c.msgs) {
		// Dropping what they point to lets the requests be freed once
		// answered.
		clear(msgs)
		c.msgs = msgs[:0]
	}
}

// advance tells the core that rd was stored.
func (c *core) advance(rd ready) {
	if rd.snapshot != nil {
		c.log.durable = max(c.log.durable, rd.snapshot.Index)
	}
	if n := len(rd.entries); n > 0 {
		if last := rd.entries[n-1]; c.log.matchTerm(last.Index, last.Term) {
			c.log.durable = max(c.log.durable, last.Index)
		}
	}
	if c.role == Leader {
		c.maybeCommit()
	}
}
