package raft

// The deterministic core: its config, its state, and the helpers every part
// uses. It does no I/O, reads no clock and starts no goroutine: the node feeds
// it ticks and messages and carries out its ready batches. Each concept lives
// in its own file: core_election.go, core_tick.go, core_replicate.go,
// core_snapshot.go, core_read.go, core_transfer.go, core_ready.go, and
// core_view.go, what the node may read of the core (it reads no field).

import (
	"fmt"
	"math/rand/v2"

	"github.com/ruaft/ruaft/persist"
)

// coreConfig is Config converted to ticks, as the core sees it.
type coreConfig struct {
	id int
	// bootstrap is the configuration of a store that holds none.
	bootstrap Membership
	// maxPromoteLag is Config.MaxPromoteLag.
	maxPromoteLag uint64
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
	// appVersion is Config.AppVersion, reported for the leader itself.
	appVersion uint32
	// checkSnapshots makes the core hand a received snapshot to the node
	// for the application to validate (c.toCheck) instead of installing it.
	checkSnapshots bool
}

func coreConfigFrom(c Config) coreConfig {
	return coreConfig{
		id:               c.ID,
		bootstrap:        c.bootstrapMembership(),
		maxPromoteLag:    c.MaxPromoteLag,
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
		appVersion:       c.AppVersion,
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
	// confGen is the leader's configuration generation when it sent an
	// AppendEntries (progress.since).
	confGen uint64
	// batch identifies a follower's read-index request (fwdBatch).
	batch uint64
	ae    *AppendEntriesRequest
	rv    *RequestVoteRequest
	is    *InstallSnapshotRequest
	// fromStore: is carries no Data; the sender reads its chunk from the
	// store's snapshot, which must be the one is describes.
	fromStore bool
	tn        *TimeoutNowRequest
	ri        *ReadIndexRequest
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

	// prs is the leader's progress per other member.
	prs map[int]*progress
	// votes per voter in the current (pre-)election: +1 or -1 (absent:
	// unknown).
	votes map[int]int8

	// confs are the configurations: confs[0] the one in force at the
	// snapshot index, then one per configuration entry of the log, in
	// order; the last is in force (core_config.go). voters are its voters
	// and peerIDs its members but this node, ascending; confGen counts its
	// changes.
	confs   []confAt
	voters  []int
	peerIDs []int
	// leaving are the ids, ascending, that a leader still replicates to
	// after the configuration in force removed them, until they have that
	// configuration and know it committed (or stay silent for an election
	// timeout): a removed node learns of its removal and stops
	// campaigning. They count in no quorum.
	leaving []int
	confGen uint64
	// removedAt, when above the index of the configuration in force, is
	// the index of a committed configuration without this node that a
	// voter told it of in a vote answer (core_election.go): this node was
	// removed while cut off, and does not campaign until its log reaches
	// a configuration at or past removedAt. Not persisted: after a restart
	// the next refused campaign tells it again.
	removedAt uint64

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

	// Read batching (Config.ReadBatchWindow). The node sets holdReads when
	// the last read round (or, on a follower, read-index request) started
	// less than a window ago. readBacklog is set when a read arrives while
	// one is in flight: reads are coming faster than rounds. A round or
	// request with a backlog then waits while holdReads is set, so that
	// the reads arriving meanwhile share it; flush sets readsHeld when it
	// held one back, for the node to wake the loop when the window ends. A
	// read that arrives with nothing in flight starts one at once.
	holdReads   bool
	readBacklog bool
	readsHeld   bool

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
		prs:        make(map[int]*progress),
		transferee: NoLeader,
		fwdLead:    NoLeader,
	}
	// New checked that the configurations decode.
	confs, err := loadConfs(st, cfg.bootstrap)
	if err != nil {
		c.violate("load configurations: %v", err)
		confs = []confAt{{index: st.Snapshot.Index, m: cfg.bootstrap}}
	}
	c.confs = confs
	c.confChanged()
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
	if pr := c.prs[m.to]; pr != nil && (m.ae != nil || m.is != nil) {
		pr.idle = 0
		pr.sentRound = c.round
		if m.ae != nil {
			pr.sentCommit = m.ae.LeaderCommit
		}
	}
	m.round = c.round
	c.msgs = append(c.msgs, m)
}

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
