package durio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ruaft/ruaft/raft"
)

// The history a replica keeps for GET /status/history: one sample per
// historyInterval, the last historySamples of them (10 minutes), and the
// last historyEvents events. Its memory is bounded: historySamples
// fixed-size samples (336 bytes on 64-bit) plus, for a leader, at most
// historyMaxPeers follower lags (16 bytes) per sample: about 220 KiB for a
// 3-replica cluster, at most about 350 KiB (TestHistoryMemoryBound checks
// the bound, historyBoundBytes).
const (
	historyInterval = time.Second
	historySamples  = 600
	historyEvents   = 256
	// historyMaxPeers is the most followers whose lag a leader tracks;
	// others (only possible with more than 17 replicas) are left out.
	historyMaxPeers = 16
)

// reqKind is the kind of a client request, for the throughput chart.
type reqKind uint8

const (
	kindGet reqKind = iota
	kindPut
	kindAppend
	kindDelete
	kindList
	kindWatch
	kindSession
	kindLease
	kindTxn
	kindOther
	numKinds
)

var kindNames = [numKinds]string{"get", "put", "append", "delete", "list", "watch", "session", "lease", "txn", "other"}

// outcome is how a client request ended, by HTTP status class.
type outcome uint8

const (
	outcomeOK          outcome = iota // 2xx
	outcomeNotFound                   // 404: a get of a missing key is a normal answer
	outcomeRejected                   // other 4xx: bad input, a failed condition, a limit
	outcomeUnavailable                // 503: no leader in time
	outcomeTimeout                    // 504: the outcome is unknown
	outcomeError                      // other 5xx
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "not_found", "rejected", "unavailable", "timeout", "error"}

func outcomeOf(code int) outcome {
	switch {
	case code < 400:
		return outcomeOK
	case code == 404:
		return outcomeNotFound
	case code < 500:
		return outcomeRejected
	case code == 503:
		return outcomeUnavailable
	case code == 504:
		return outcomeTimeout
	default:
		return outcomeError
	}
}

// requestKind classifies a client request by its path, or reports false for
// a request that is not a key-value call (the status page, metrics, health
// checks), which the history does not count.
func requestKind(method, path string) (reqKind, bool) {
	if rest, ok := strings.CutPrefix(path, "/twirp/"); ok {
		switch rest[strings.LastIndexByte(rest, '/')+1:] {
		case "Get":
			return kindGet, true
		case "Put":
			return kindPut, true
		case "Append":
			return kindAppend, true
		case "Delete":
			return kindDelete, true
		case "List":
			return kindList, true
		case "Watch":
			return kindWatch, true
		case "OpenSession":
			return kindSession, true
		case "LeaseGrant", "LeaseKeepAlive", "LeaseRevoke", "LeaseTimeToLive":
			return kindLease, true
		case "Txn":
			return kindTxn, true
		case "Status":
			return 0, false
		}
		return kindOther, true
	}
	rest, ok := strings.CutPrefix(path, "/kvstore/")
	if !ok {
		return 0, false
	}
	if method == "DELETE" {
		return kindDelete, true
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	switch rest {
	case "get":
		return kindGet, true
	case "put":
		return kindPut, true
	case "append":
		return kindAppend, true
	case "list":
		return kindList, true
	case "watch":
		return kindWatch, true
	case "session":
		return kindSession, true
	case "lease":
		return kindLease, true
	case "txn":
		return kindTxn, true
	case "is_leader":
		return 0, false
	}
	return kindOther, true
}

// latencyBucketCount buckets of latencyHist: four per power of two of
// microseconds, from 1 µs to about 4.7 hours (the last bucket takes
// everything longer).
const latencyBucketCount = 128

// latencyHist is a log-linear latency histogram that many goroutines update
// with one atomic add each; the sampler reads it once per interval and
// differences the counts. Quantiles are exact to within a bucket (±12.5%).
type latencyHist struct {
	b [latencyBucketCount]atomic.Uint64
}

// latencyBucket maps a duration to its bucket: 1.024 µs units, four
// sub-buckets per power of two.
func latencyBucket(d time.Duration) int {
	if d < 0 {
		d = 0
	}
	v := uint64(d) >> 10
	if v < 4 {
		return int(v)
	}
	e := bits.Len64(v) - 1 // >= 2
	i := 4 + (e-2)*4 + int((v>>(e-2))&3)
	return min(i, latencyBucketCount-1)
}

// latencyBucketMid is the middle of bucket i, in microseconds.
func latencyBucketMid(i int) float64 {
	const unit = 1.024 // µs
	if i < 4 {
		return (float64(i) + 0.5) * unit
	}
	e, m := (i-4)/4+2, (i-4)%4
	lo := float64(uint64(4+m) << (e - 2))
	hi := float64(uint64(5+m) << (e - 2))
	return (lo + hi) / 2 * unit
}

func (h *latencyHist) observe(d time.Duration) { h.b[latencyBucket(d)].Add(1) }

// read copies the cumulative counts into dst.
func (h *latencyHist) read(dst *[latencyBucketCount]uint64) {
	for i := range h.b {
		dst[i] = h.b[i].Load()
	}
}

// quantiles returns the count of the interval (now - prev) and its p50 and
// p99 in microseconds (0 when empty), then copies now into prev.
func quantiles(now, prev *[latencyBucketCount]uint64) (n uint64, p50, p99 uint32) {
	var d [latencyBucketCount]uint64
	for i := range d {
		d[i] = now[i] - prev[i]
		n += d[i]
	}
	*prev = *now
	if n == 0 {
		return 0, 0, 0
	}
	q := func(f float64) uint32 {
		rank := uint64(math.Ceil(f * float64(n))) // nearest rank, 1-based
		var seen uint64
		for i, c := range d {
			if seen += c; seen >= rank {
				return uint32(min(latencyBucketMid(i), 1<<32-1))
			}
		}
		return uint32(min(latencyBucketMid(latencyBucketCount-1), 1<<32-1))
	}
	return n, q(0.50), q(0.99)
}

// peerLag is what a leader last heard from one follower: written by the
// transport after each AppendEntries (atomics, no lock on the RPC path),
// read by the sampler.
type peerLag struct {
	match   atomic.Uint64 // the follower's last index known to match, valid if known
	known   atomic.Bool   // match is from this leadership
	lastOK  atomic.Int64  // Unix ns of the last answer
	lastErr atomic.Int64  // Unix ns of the last failed call
	// reported is the reachability the timeline last showed (guarded by
	// history.mu): peerUnknown until the sampler first judged it.
	reported peerState
}

type peerState uint8

const (
	peerUnknown peerState = iota
	peerReachable
	peerUnreachable
)

// peerDownAfter is how long a follower must fail every call before the
// timeline marks it unreachable: one lost heartbeat is not an outage.
const peerDownAfter = time.Second

// followerLag is one follower's replication lag in one sample.
type followerLag struct {
	id        int32
	reachable bool
	known     bool   // false: no answer from it yet in this leadership
	lag       uint64 // leader's last index - the follower's match, in entries
}

// sample is one interval of a replica's history. Rates and latencies cover
// the interval; indexes, sizes, term and role are the state at its end.
type sample struct {
	t         int64 // end of the interval, Unix milliseconds
	requests  [numKinds][numOutcomes]uint32
	reqP50    uint32 // µs; 0 with no request
	reqP99    uint32
	commits   uint32 // entries committed in the interval
	applies   uint32
	appends   uint32 // store Append calls
	appendP50 uint32 // µs
	appendP99 uint32
	storeErrs uint32
	snapshots uint32 // snapshots saved in the interval
	logBytes  uint64
	lastIndex uint64
	snapIndex uint64
	term      uint64
	leader    int32
	role      raft.Role
	member    memberKind    // this replica in the configuration in force
	lags      []followerLag // the followers' lag, leader only
}

// memberKind is what a replica is in a configuration.
type memberKind uint8

const (
	memberVoter memberKind = iota
	memberLearner
	memberNone // not in it (removed, or waiting to be added)
)

var memberNames = [...]string{memberVoter: "voter", memberLearner: "learner", memberNone: ""}

// memberOf is what replica id is in m.
func memberOf(m raft.Membership, id int) memberKind {
	for _, x := range m.Members {
		if x.ID == id {
			if x.Learner {
				return memberLearner
			}
			return memberVoter
		}
	}
	return memberNone
}

// describeMembership is a configuration as the timeline shows it:
// "voters 0, 1, 2; learners 3".
func describeMembership(m raft.Membership) string {
	list := func(ids []int) string {
		parts := make([]string, len(ids))
		for i, id := range ids {
			parts[i] = strconv.Itoa(id)
		}
		return strings.Join(parts, ", ")
	}
	d := "voters " + list(m.Voters())
	if l := m.Learners(); len(l) > 0 {
		d += "; learners " + list(l)
	}
	return d
}

// historyEventKind names an event on the leadership timeline.
type historyEventKind uint8

const (
	eventStart           historyEventKind = iota // this replica (process) started
	eventLeader                                  // the known leader changed (Leader may be none)
	eventStoreFailure                            // the store failed; the replica stops
	eventPeerUnreachable                         // as leader: a follower stopped answering
	eventPeerReachable                           // as leader: a follower answers again
	eventMembership                              // the configuration in force changed (detail: the new one)
)

var eventNames = [...]string{"start", "leader", "store_failure", "peer_unreachable", "peer_reachable", "membership"}

type historyEvent struct {
	t      int64 // Unix milliseconds
	kind   historyEventKind
	term   uint64
	leader int32 // eventLeader: the new leader or raft.NoLeader
	peer   int32 // eventPeer*: the follower
	// recovered: eventStart of a replica whose store held state (a restart)
	recovered bool
	detail    string
}

// history is one replica's in-memory history. The request path and the
// store only touch atomics; the sampler, once per interval, turns them into
// a sample under mu.
type history struct {
	id      int
	started time.Time

	requests      [numKinds][numOutcomes]atomic.Uint64
	reqLatency    latencyHist
	appendLatency latencyHist
	storeErrs     atomic.Uint64
	snapshots     atomic.Uint64

	peersMu sync.Mutex                       // serialises additions to peers
	peers   atomic.Pointer[map[int]*peerLag] // copy on write: read lock-free on each RPC

	mu     sync.Mutex // guards everything below
	ring   []sample   // historySamples slots, used as a ring
	next   int        // slot of the next sample
	count  int        // samples stored (<= len(ring))
	events []historyEvent
	// leaderSince is when this replica last became leader.
	leaderSince time.Time
	evNext      int
	evCount     int
	prev        struct {
		requests            [numKinds][numOutcomes]uint64
		reqLat, appLat      [latencyBucketCount]uint64
		storeErrs, snaps    uint64
		commit, applied     uint64
		haveIndexes         bool
		leader              int
		term                uint64
		role                raft.Role
		leaderChangesSeen   uint64
		leaderChangesPrimed bool
		membershipChanges   uint64
		membershipPrimed    bool
	}
}

func newHistory(id int, now time.Time) *history {
	return newHistorySized(id, now, historySamples, historyEvents)
}

func newHistorySized(id int, now time.Time, samples, events int) *history {
	h := &history{id: id, started: now, ring: make([]sample, samples), events: make([]historyEvent, events)}
	peers := map[int]*peerLag{}
	h.peers.Store(&peers)
	h.prev.leader = raft.NoLeader
	return h
}

// recordStart marks this replica's start on the timeline, with the state
// its store gave back (st, read before the node could hear from a peer): a
// replica that recovered a log or a term is a restart, not a first start.
func (h *history) recordStart(st raft.Status) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ev := historyEvent{t: h.started.UnixMilli(), kind: eventStart, term: st.Term, recovered: st.Term > 0 || st.LastIndex > 0}
	if ev.recovered {
		ev.detail = fmt.Sprintf("recovered term %d, log to index %d", st.Term, st.LastIndex)
	}
	h.addEvent(ev)
}

// observeRequest counts one client request; nothing here allocates or
// locks. Long polls (watches, blocking queries with ?index=) count as
// requests but stay out of the latency quantiles: they wait by design.
func (h *history) observeRequest(method, path, rawQuery string, code int, d time.Duration) {
	kind, ok := requestKind(method, path)
	if !ok {
		return
	}
	h.requests[kind][outcomeOf(code)].Add(1)
	if kind != kindWatch && !strings.Contains(rawQuery, "index=") {
		h.reqLatency.observe(d)
	}
}

// observeAppend records one store Append.
func (h *history) observeAppend(d time.Duration, err error) {
	if err != nil {
		h.storeErrs.Add(1)
		return
	}
	h.appendLatency.observe(d)
}

// observeSnapshot records one store SaveSnapshot.
func (h *history) observeSnapshot(err error) {
	if err != nil {
		h.storeErrs.Add(1)
		return
	}
	h.snapshots.Add(1)
}

// peer returns the lag record of follower id, creating it on first use, or
// nil past historyMaxPeers.
func (h *history) peer(id int) *peerLag {
	if p := (*h.peers.Load())[id]; p != nil {
		return p
	}
	h.peersMu.Lock()
	defer h.peersMu.Unlock()
	old := *h.peers.Load()
	if p := old[id]; p != nil {
		return p
	}
	if len(old) >= historyMaxPeers {
		return nil
	}
	m := make(map[int]*peerLag, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	p := &peerLag{}
	m[id] = p
	h.peers.Store(&m)
	return p
}

// observeAppendEntries records a follower's answer to an AppendEntries
// (resp nil when the call failed). It runs on every RPC a leader sends.
func (h *history) observeAppendEntries(now time.Time, peer int, resp *raft.AppendEntriesResponse, err error) {
	p := h.peer(peer)
	if p == nil {
		return
	}
	if err != nil || resp == nil {
		p.lastErr.Store(now.UnixNano())
		return
	}
	if resp.Success {
		p.match.Store(resp.MatchIndex)
		p.known.Store(true)
	}
	p.lastOK.Store(now.UnixNano())
}

// storeFailed marks a store failure on the timeline.
func (h *history) storeFailed(now time.Time, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.addEvent(historyEvent{t: now.UnixMilli(), kind: eventStoreFailure, term: h.prev.term, detail: reason})
}

// observeEvent records a raft state change: a leader change as an event,
// and a new leadership of this replica forgets what it knew of followers.
func (h *history) observeEvent(now time.Time, ev raft.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ev.Role == raft.Leader && h.prev.role != raft.Leader {
		h.leaderSince = now
		for _, p := range *h.peers.Load() {
			p.known.Store(false)
			p.reported = peerUnknown
		}
	}
	h.prev.role = ev.Role
	h.prev.term = ev.Term
	changed := ev.Leader != h.prev.leader
	if h.prev.leaderChangesPrimed && ev.LeaderChanges > h.prev.leaderChangesSeen+1 {
		// Coalesced events hid a leader: still a change.
		changed = true
	}
	h.prev.leaderChangesSeen, h.prev.leaderChangesPrimed = ev.LeaderChanges, true
	if h.prev.membershipPrimed && ev.MembershipChanges != h.prev.membershipChanges {
		// The configuration this replica holds changed (a new one
		// appended, or one reverted by a truncation).
		h.addEvent(historyEvent{t: now.UnixMilli(), kind: eventMembership, term: ev.Term, detail: describeMembership(ev.Membership)})
	}
	h.prev.membershipChanges, h.prev.membershipPrimed = ev.MembershipChanges, true
	if !changed {
		return
	}
	h.prev.leader = ev.Leader
	h.addEvent(historyEvent{t: now.UnixMilli(), kind: eventLeader, term: ev.Term, leader: int32(ev.Leader)})
}

// observe records one of the node's events as it arrives (see
// followEvents).
func (h *history) observe(ev raft.Event) { h.observeEvent(time.Now(), ev) }

// run samples once per interval until ctx ends.
func (h *history) run(ctx context.Context, status func() raft.Status) {
	t := time.NewTicker(historyInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			h.sample(now, status())
		}
	}
}

// addEvent appends to the event ring. h.mu must be held.
func (h *history) addEvent(ev historyEvent) {
	h.events[h.evNext] = ev
	h.evNext = (h.evNext + 1) % len(h.events)
	h.evCount = min(h.evCount+1, len(h.events))
}

func clamp32(v uint64) uint32 { return uint32(min(v, 1<<32-1)) }

// sample closes one interval ending at now, with the node's status st.
func (h *history) sample(now time.Time, st raft.Status) {
	var reqLat, appLat [latencyBucketCount]uint64
	h.reqLatency.read(&reqLat)
	h.appendLatency.read(&appLat)
	var reqs [numKinds][numOutcomes]uint64
	for k := range reqs {
		for o := range reqs[k] {
			reqs[k][o] = h.requests[k][o].Load()
		}
	}
	storeErrs, snaps := h.storeErrs.Load(), h.snapshots.Load()

	h.mu.Lock()
	defer h.mu.Unlock()
	s := &h.ring[h.next]
	lags := s.lags[:0] // the slot's slice is reused: no allocation once the ring has wrapped
	*s = sample{t: now.UnixMilli(), term: st.Term, role: st.Role, leader: int32(st.Leader), member: memberOf(st.Membership, h.id),
		logBytes: uint64(max(st.LogSizeBytes, 0)), lastIndex: st.LastIndex, snapIndex: st.SnapshotIndex}
	for k := range reqs {
		for o := range reqs[k] {
			s.requests[k][o] = clamp32(reqs[k][o] - h.prev.requests[k][o])
		}
	}
	h.prev.requests = reqs
	_, s.reqP50, s.reqP99 = quantiles(&reqLat, &h.prev.reqLat)
	var n uint64
	n, s.appendP50, s.appendP99 = quantiles(&appLat, &h.prev.appLat)
	s.appends = clamp32(n)
	s.storeErrs, s.snapshots = clamp32(storeErrs-h.prev.storeErrs), clamp32(snaps-h.prev.snaps)
	h.prev.storeErrs, h.prev.snaps = storeErrs, snaps
	if h.prev.haveIndexes {
		// A snapshot installed from the leader can move both forward at
		// once; a restart cannot move them back (the history is new).
		s.commits = clamp32(st.Commit - min(h.prev.commit, st.Commit))
		s.applies = clamp32(st.Applied - min(h.prev.applied, st.Applied))
	}
	h.prev.commit, h.prev.applied, h.prev.haveIndexes = st.Commit, st.Applied, true
	if st.Role == raft.Leader {
		for id, p := range *h.peers.Load() {
			if id == h.id {
				continue
			}
			fl := followerLag{id: int32(id), reachable: h.judgePeer(now, id, p), known: p.known.Load()}
			if fl.known {
				fl.lag = st.LastIndex - min(p.match.Load(), st.LastIndex)
			}
			lags = append(lags, fl)
		}
	}
	s.lags = lags
	h.next = (h.next + 1) % len(h.ring)
	h.count = min(h.count+1, len(h.ring))
}

// judgePeer decides whether follower id is reachable at now and marks a
// change on the timeline. h.mu must be held.
func (h *history) judgePeer(now time.Time, id int, p *peerLag) bool {
	ok, bad := p.lastOK.Load(), p.lastErr.Load()
	state := p.reported
	switch {
	case ok >= bad && ok > 0:
		state = peerReachable
	case bad > ok && now.UnixNano()-max(ok, h.leaderSince.UnixNano()) >= int64(peerDownAfter):
		state = peerUnreachable
	}
	if state != p.reported {
		// The first judgement of a leadership is news only if bad.
		if p.reported != peerUnknown || state == peerUnreachable {
			kind := eventPeerReachable
			if state == peerUnreachable {
				kind = eventPeerUnreachable
			}
			h.addEvent(historyEvent{t: now.UnixMilli(), kind: kind, peer: int32(id), term: h.prev.term})
		}
		p.reported = state
	}
	return state != peerUnreachable
}

// historyJSON is one replica's history as GET /status/history returns it:
// columns of equal length, one entry per sample, oldest first (see the
// README, "Status history").
type historyJSON struct {
	ID         int    `json:"id"`
	Reachable  bool   `json:"reachable"`
	Error      string `json:"error,omitempty"`
	StartedMS  int64  `json:"started_ms,omitempty"`
	NowMS      int64  `json:"now_ms,omitempty"`
	IntervalMS int64  `json:"interval_ms,omitempty"`

	TimeMS        []int64                        `json:"t_ms"`
	Requests      map[string]map[string][]uint32 `json:"requests,omitempty"`
	RequestP50US  []uint32                       `json:"request_p50_us"`
	RequestP99US  []uint32                       `json:"request_p99_us"`
	CommitPerS    []uint32                       `json:"commits"`
	ApplyPerS     []uint32                       `json:"applies"`
	StoreAppends  []uint32                       `json:"store_appends"`
	AppendP50US   []uint32                       `json:"store_append_p50_us"`
	AppendP99US   []uint32                       `json:"store_append_p99_us"`
	StoreErrors   []uint32                       `json:"store_errors"`
	Snapshots     []uint32                       `json:"snapshots"`
	LogBytes      []uint64                       `json:"log_bytes"`
	LastIndex     []uint64                       `json:"last_index"`
	SnapshotIndex []uint64                       `json:"snapshot_index"`
	Term          []uint64                       `json:"term"`
	Role          []string                       `json:"role"`
	Member        []string                       `json:"member"` // voter, learner, or "" (not a member)
	Leader        []int32                        `json:"leader"`
	Followers     map[string]*followerJSON       `json:"followers,omitempty"`
	Events        []eventJSON                    `json:"events"`
}

// followerJSON is one follower's lag column, as seen by this replica while
// it led: null where it did not lead or had no answer yet.
type followerJSON struct {
	LagEntries []*uint64 `json:"lag_entries"`
	Reachable  []*bool   `json:"reachable"`
}

type eventJSON struct {
	TimeMS int64  `json:"t_ms"`
	Kind   string `json:"kind"`
	Term   uint64 `json:"term,omitempty"`
	Leader *int32 `json:"leader,omitempty"`
	Peer   *int32 `json:"peer,omitempty"`
	// Recovered is true on a start event when the store held state.
	Recovered bool   `json:"recovered,omitempty"`
	Detail    string `json:"detail,omitempty"`
}

// snapshot returns the samples and events after sinceMS (Unix ms) and, of
// those, only the newest maxSamples.
func (h *history) snapshot(now time.Time, sinceMS int64, maxSamples int) *historyJSON {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := &historyJSON{ID: h.id, Reachable: true, StartedMS: h.started.UnixMilli(), NowMS: now.UnixMilli(),
		IntervalMS: historyInterval.Milliseconds()}
	// The samples to return, oldest first: the newest maxSamples after sinceMS.
	first := h.next - h.count
	var picked []*sample
	for i := range h.count {
		s := &h.ring[(first+i+len(h.ring))%len(h.ring)]
		if s.t > sinceMS {
			picked = append(picked, s)
		}
	}
	if len(picked) > maxSamples {
		picked = picked[len(picked)-maxSamples:]
	}
	n := len(picked)
	out.TimeMS = make([]int64, n)
	out.RequestP50US, out.RequestP99US = make([]uint32, n), make([]uint32, n)
	out.CommitPerS, out.ApplyPerS = make([]uint32, n), make([]uint32, n)
	out.StoreAppends, out.AppendP50US, out.AppendP99US = make([]uint32, n), make([]uint32, n), make([]uint32, n)
	out.StoreErrors, out.Snapshots = make([]uint32, n), make([]uint32, n)
	out.LogBytes, out.LastIndex, out.SnapshotIndex, out.Term = make([]uint64, n), make([]uint64, n), make([]uint64, n), make([]uint64, n)
	out.Role, out.Leader, out.Member = make([]string, n), make([]int32, n), make([]string, n)
	for i, s := range picked {
		out.TimeMS[i] = s.t
		out.RequestP50US[i], out.RequestP99US[i] = s.reqP50, s.reqP99
		out.CommitPerS[i], out.ApplyPerS[i] = s.commits, s.applies
		out.StoreAppends[i], out.AppendP50US[i], out.AppendP99US[i] = s.appends, s.appendP50, s.appendP99
		out.StoreErrors[i], out.Snapshots[i] = s.storeErrs, s.snapshots
		out.LogBytes[i], out.LastIndex[i], out.SnapshotIndex[i], out.Term[i] = s.logBytes, s.lastIndex, s.snapIndex, s.term
		out.Role[i], out.Leader[i], out.Member[i] = s.role.String(), s.leader, memberNames[s.member]
		for k := range s.requests {
			for o, c := range s.requests[k] {
				if c == 0 {
					continue
				}
				if out.Requests == nil {
					out.Requests = map[string]map[string][]uint32{}
				}
				byOutcome := out.Requests[kindNames[k]]
				if byOutcome == nil {
					byOutcome = map[string][]uint32{}
					out.Requests[kindNames[k]] = byOutcome
				}
				col := byOutcome[outcomeNames[o]]
				if col == nil {
					col = make([]uint32, n)
					byOutcome[outcomeNames[o]] = col
				}
				col[i] = c
			}
		}
		for _, fl := range s.lags {
			if out.Followers == nil {
				out.Followers = map[string]*followerJSON{}
			}
			key := strconv.Itoa(int(fl.id))
			f := out.Followers[key]
			if f == nil {
				f = &followerJSON{LagEntries: make([]*uint64, n), Reachable: make([]*bool, n)}
				out.Followers[key] = f
			}
			reachable := fl.reachable
			f.Reachable[i] = &reachable
			if fl.known {
				lag := fl.lag
				f.LagEntries[i] = &lag
			}
		}
	}
	out.Events = make([]eventJSON, 0, h.evCount)
	for i := range h.evCount {
		ev := h.events[(h.evNext-h.evCount+i+len(h.events))%len(h.events)]
		if ev.t <= sinceMS {
			continue
		}
		e := eventJSON{TimeMS: ev.t, Kind: eventNames[ev.kind], Term: ev.term, Recovered: ev.recovered, Detail: ev.detail}
		switch ev.kind {
		case eventLeader:
			e.Leader = &ev.leader
		case eventPeerReachable, eventPeerUnreachable:
			e.Peer = &ev.peer
		}
		out.Events = append(out.Events, e)
	}
	return out
}

// historyTransport tells the history each follower's answer to
// AppendEntries (the leader's view of its lag); the rest passes through.
type historyTransport struct {
	raft.Transport
	hist *history
}

// AppendEntries implements raft.Transport.
func (t historyTransport) AppendEntries(ctx context.Context, peer int, req *raft.AppendEntriesRequest) (*raft.AppendEntriesResponse, error) {
	resp, err := t.Transport.AppendEntries(ctx, peer, req)
	t.hist.observeAppendEntries(time.Now(), peer, resp, err)
	return resp, err
}

// historyMembers lists where /status/history reads each replica's history:
// this one in-process, the others (the current configuration's voters and
// learners, from the directory) from their peer listeners.
func (r *Replica) historyMembers(peerHTTP *http.Client) func() []historySource {
	return func() []historySource {
		var srcs []historySource
		for _, id := range r.dir.IDs() {
			if id == r.cfg.ID {
				srcs = append(srcs, localHistory(r.hist))
			} else if u := r.dir.peerURL(id); u != "" {
				srcs = append(srcs, remoteHistory(id, u, peerHTTP))
			}
		}
		return srcs
	}
}

// storeFailureFile, in the data directory, keeps the last store failure
// across the restart it causes: the history lives in memory, and a replica
// whose store fails stops (fail-stop), taking its history with it.
const storeFailureFile = "last-store-failure.json"

// storeFailureRecord is the content of storeFailureFile.
type storeFailureRecord struct {
	TimeMS int64  `json:"t_ms"`
	Reason string `json:"reason"`
}

// recordStoreFailure marks a store failure on the timeline and, best
// effort, in the data directory for the next run (the disk may be what
// failed).
func (r *Replica) recordStoreFailure(now time.Time, err error) {
	reason := publicReason(err)
	r.hist.storeFailed(now, reason)
	if r.cfg.DataDir == "" {
		return
	}
	body, _ := json.Marshal(storeFailureRecord{TimeMS: now.UnixMilli(), Reason: reason})
	if werr := os.WriteFile(filepath.Join(r.cfg.DataDir, storeFailureFile), body, 0o640); werr != nil {
		r.logger.Warn("could not record the store failure for the status history", "err", werr)
	}
}

// loadStoreFailure puts the failure a previous run recorded on the
// timeline, if it is recent enough to be drawn. A file that is missing,
// large or not a record is ignored: it is only a hint for the status page.
func (r *Replica) loadStoreFailure(now time.Time) {
	if r.cfg.DataDir == "" {
		return
	}
	f, err := os.Open(filepath.Join(r.cfg.DataDir, storeFailureFile))
	if err != nil {
		return
	}
	defer f.Close()
	body, err := io.ReadAll(io.LimitReader(f, 4096))
	var rec storeFailureRecord
	if err != nil || json.Unmarshal(body, &rec) != nil {
		return
	}
	window := historySamples * historyInterval
	if t := time.UnixMilli(rec.TimeMS); t.Before(now.Add(-window)) || t.After(now) {
		return
	}
	r.hist.storeFailed(time.UnixMilli(rec.TimeMS), publicError(errors.New(rec.Reason)))
}
