package raft

// progressState is how a leader replicates to one follower (etcd's
// tracker.StateType).
type progressState int

const (
	// stateProbe: the leader does not know where the follower's log matches
	// and sends one AppendEntries at a time until one succeeds.
	stateProbe progressState = iota
	// stateReplicate: the logs match up to match; the leader pipelines
	// AppendEntries optimistically, bounded by the inflight window.
	stateReplicate
	// stateSnapshot: the follower needs entries the leader compacted; the
	// leader sends its snapshot chunk by chunk.
	stateSnapshot
)

func (s progressState) String() string {
	switch s {
	case stateProbe:
		return "probe"
	case stateReplicate:
		return "replicate"
	default:
		return "snapshot"
	}
}

// inflight is one outstanding AppendEntries in the replicate state.
type inflight struct {
	last  uint64 // index of its last entry
	bytes int64
}

// progress is the leader's view of one follower.
type progress struct {
	match, next uint64
	state       progressState
	// paused: in probe state, a probe is outstanding (or failed and waits for
	// the next heartbeat); in snapshot state, a chunk is.
	paused bool
	// backoff: the last send failed; nothing more is sent until the next
	// heartbeat, so an unreachable peer is not retried in a tight loop.
	backoff bool
	// inflights, oldest first, and their total bytes (replicate state).
	inflights     []inflight
	inflightBytes int64
	// silent counts ticks since the follower last answered in this term
	// (check-quorum).
	silent int
	// idle counts ticks since the leader last sent this follower anything.
	idle int
	// sentCommit is the commit index the last AppendEntries carried.
	sentCommit uint64
	// ackRound is the highest read round the follower acknowledged;
	// sentRound the round of the last AppendEntries or snapshot chunk sent
	// to it.
	ackRound, sentRound uint64
	// appVersion is the AppVersion of the follower's latest AppendEntries
	// answer in this term.
	appVersion uint32
	// since is the leader's confGen when the member got this progress or
	// was added again while leaving: an answer to an AppendEntries sent
	// before (by a removed incarnation, perhaps of another version) does
	// not set appVersion.
	since uint64
	// Snapshot state: the snapshot index being sent and the offset the
	// follower expects next.
	snapIndex, snapOffset uint64
}

func (p *progress) becomeProbe() {
	p.state = stateProbe
	p.next = p.match + 1
	p.paused = false
	p.resetInflights()
}

func (p *progress) becomeReplicate() {
	p.state = stateReplicate
	p.next = p.match + 1
	p.paused = false
	p.resetInflights()
}

func (p *progress) becomeSnapshot(index uint64) {
	p.state = stateSnapshot
	p.snapIndex = index
	p.snapOffset = 0
	p.paused = false
	p.resetInflights()
}

func (p *progress) resetInflights() {
	p.inflights = p.inflights[:0]
	p.inflightBytes = 0
}

// inflightFull reports whether the window allows no further AppendEntries.
func (p *progress) inflightFull(maxMsgs int, maxBytes int64) bool {
	return len(p.inflights) >= maxMsgs || p.inflightBytes >= maxBytes
}

// freeInflights drops the inflights acknowledged up to index.
func (p *progress) freeInflights(index uint64) {
	i := 0
	for i < len(p.inflights) && p.inflights[i].last <= index {
		p.inflightBytes -= p.inflights[i].bytes
		i++
	}
	p.inflights = append(p.inflights[:0], p.inflights[i:]...)
}

// maybeUpdate raises match (and next) to index; it reports whether match
// grew.
func (p *progress) maybeUpdate(index uint64) bool {
	if index <= p.match {
		return false
	}
	p.match = index
	p.next = max(p.next, index+1)
	return true
}
