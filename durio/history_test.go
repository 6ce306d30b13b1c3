package durio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/filestore"
	"github.com/ruaft/ruaft/raft"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * historyInterval) }

// The default ring spans ten minutes at one-second resolution.
func TestHistoryDefaults(t *testing.T) {
	h := newHistory(0, t0)
	if got := time.Duration(len(h.ring)) * historyInterval; got != 10*time.Minute || historyInterval != time.Second {
		t.Fatalf("ring spans %v at %v", got, historyInterval)
	}
	if len(h.events) != historyEvents {
		t.Fatalf("%d event slots", len(h.events))
	}
}

// The ring keeps the newest samples, oldest first, however often it wraps.
func TestHistoryRingWraps(t *testing.T) {
	h := newHistorySized(0, t0, 5, 4)
	for i := range 12 {
		h.sample(at(i+1), raft.Status{Term: uint64(i), Commit: uint64(10 * i), Applied: uint64(10 * i), Leader: raft.NoLeader})
	}
	got := h.snapshot(at(12), 0, historySamples)
	if len(got.TimeMS) != 5 {
		t.Fatalf("%d samples kept, want 5", len(got.TimeMS))
	}
	for i, ms := range got.TimeMS {
		if want := at(8 + i).UnixMilli(); ms != want {
			t.Fatalf("sample %d at %d, want %d (newest five, oldest first): %v", i, ms, want, got.TimeMS)
		}
		if got.Term[i] != uint64(7+i) || got.CommitPerS[i] != 10 || got.ApplyPerS[i] != 10 {
			t.Fatalf("sample %d: term %d commits %d applies %d", i, got.Term[i], got.CommitPerS[i], got.ApplyPerS[i])
		}
	}
	// Events wrap the same way: the start, then 6 leader changes, 4 kept.
	h.recordStart(raft.Status{})
	for i := range 6 {
		h.observeEvent(at(20+i), raft.Event{Term: uint64(i + 1), Leader: i % 3, LeaderChanges: uint64(i + 1)})
	}
	evs := h.snapshot(at(30), 0, historySamples).Events
	if len(evs) != 4 || evs[0].TimeMS != at(22).UnixMilli() || evs[3].TimeMS != at(25).UnixMilli() {
		t.Fatalf("events after wrapping: %+v", evs)
	}
}

// Each sample holds what happened in its interval, not before it.
func TestHistoryResolution(t *testing.T) {
	h := newHistorySized(0, t0, 10, 10)
	h.sample(at(1), raft.Status{Commit: 100, Applied: 90})
	for range 7 {
		h.observeRequest("POST", "/kvstore/put", "", 200, time.Millisecond)
	}
	h.observeRequest("GET", "/kvstore/get/a/b", "", 404, time.Millisecond)
	h.observeRequest("POST", "/twirp/kv.v1.KVService/Get", "", 503, 100*time.Millisecond)
	h.observeRequest("GET", "/status", "", 200, time.Second)                        // not a key-value call
	h.observeRequest("GET", "/kvstore/get/a", "index=7&wait=10s", 200, time.Minute) // a long poll: counted, no latency
	h.observeRequest("POST", "/twirp/kv.v1.KVService/Watch", "", 200, time.Minute)
	h.observeAppend(2*time.Millisecond, nil)
	h.observeAppend(0, errors.New("disk"))
	h.observeSnapshot(nil)
	h.sample(at(2), raft.Status{Commit: 130, Applied: 125, LogSizeBytes: 4096, LastIndex: 131, SnapshotIndex: 50, Term: 3, Role: raft.Follower, Leader: 1})
	h.sample(at(3), raft.Status{Commit: 130, Applied: 130, Term: 3, Role: raft.Follower, Leader: 1})

	got := h.snapshot(at(3), 0, historySamples)
	if len(got.TimeMS) != 3 {
		t.Fatalf("%d samples", len(got.TimeMS))
	}
	if got.CommitPerS[0] != 0 || got.ApplyPerS[0] != 0 {
		t.Fatalf("the first sample has no previous indexes, so no rate: %v %v", got.CommitPerS, got.ApplyPerS)
	}
	if got.CommitPerS[1] != 30 || got.ApplyPerS[1] != 35 || got.CommitPerS[2] != 0 || got.ApplyPerS[2] != 5 {
		t.Fatalf("commits %v applies %v", got.CommitPerS, got.ApplyPerS)
	}
	want := map[string]map[string][]uint32{
		"put":   {"ok": {0, 7, 0}},
		"get":   {"ok": {0, 1, 0}, "not_found": {0, 1, 0}, "unavailable": {0, 1, 0}},
		"watch": {"ok": {0, 1, 0}},
	}
	if fmt.Sprint(got.Requests) != fmt.Sprint(want) {
		t.Fatalf("requests %v, want %v", got.Requests, want)
	}
	// 9 requests: 8 at 1 ms, 1 at 100 ms; p50 is 1 ms and p99 (nearest
	// rank: the 9th) 100 ms, to within a bucket (12.5%).
	if !within(got.RequestP50US[1], 1000) || !within(got.RequestP99US[1], 100000) || got.RequestP50US[2] != 0 {
		t.Fatalf("request p50 %v p99 %v", got.RequestP50US, got.RequestP99US)
	}
	if got.StoreAppends[1] != 1 || !within(got.AppendP99US[1], 2000) || got.StoreErrors[1] != 1 || got.Snapshots[1] != 1 || got.Snapshots[2] != 0 {
		t.Fatalf("store: appends %v p99 %v errors %v snapshots %v", got.StoreAppends, got.AppendP99US, got.StoreErrors, got.Snapshots)
	}
	if got.LogBytes[1] != 4096 || got.LastIndex[1] != 131 || got.SnapshotIndex[1] != 50 || got.Term[1] != 3 || got.Role[1] != "follower" || got.Leader[1] != 1 {
		t.Fatalf("state columns: %+v", got)
	}
}

func within(got uint32, want float64) bool {
	return float64(got) >= want*0.875 && float64(got) <= want*1.125
}

func TestLatencyBuckets(t *testing.T) {
	prev := -1
	for d := time.Duration(0); d < time.Hour; d = d*9/8 + time.Nanosecond {
		b := latencyBucket(d)
		if b < prev || b >= latencyBucketCount {
			t.Fatalf("bucket of %v is %d after %d", d, b, prev)
		}
		prev = b
		us := float64(d) / 1e3
		if mid := latencyBucketMid(b); us > 10 && (mid < us*0.87 || mid > us*1.15) {
			t.Fatalf("%v is in bucket %d, whose middle %.1f µs is more than a bucket away", d, b, mid)
		}
	}
	if latencyBucket(-time.Second) != 0 || latencyBucket(1000*time.Hour) != latencyBucketCount-1 {
		t.Fatal("out-of-range durations are not clamped")
	}
}

// The request path neither allocates nor locks.
func TestHistoryHotPathAllocs(t *testing.T) {
	h := newHistory(0, t0)
	resp := &raft.AppendEntriesResponse{Success: true, MatchIndex: 5}
	h.observeAppendEntries(t0, 1, resp, nil) // creates follower 1's record
	n := testing.AllocsPerRun(1000, func() {
		h.observeRequest("POST", "/twirp/kv.v1.KVService/Put", "", 200, time.Millisecond)
		h.observeAppend(time.Millisecond, nil)
		h.observeAppendEntries(t0, 1, resp, nil)
	})
	if n != 0 {
		t.Fatalf("%v allocations per request", n)
	}
}

// historyBoundBytes is the most memory a history's samples take: the
// figure the doc comment of historySamples states.
const historyBoundBytes = 420 << 10

// Memory is bounded: fixed-size samples, at most historyMaxPeers lags each,
// and no allocation per sample once the ring has wrapped.
func TestHistoryMemoryBound(t *testing.T) {
	bound := historySamples * (int(unsafe.Sizeof(sample{})) + historyMaxPeers*int(unsafe.Sizeof(followerLag{})))
	if bound > historyBoundBytes {
		t.Fatalf("samples may take %d bytes, more than the stated %d", bound, historyBoundBytes)
	}
	h := newHistory(0, t0)
	leader := raft.Status{Role: raft.Leader, Leader: 0, LastIndex: 1000}
	h.observeEvent(t0, raft.Event{Role: raft.Leader, Leader: 0, Term: 1, LeaderChanges: 1})
	for p := 1; p <= historyMaxPeers+10; p++ {
		h.observeAppendEntries(t0, p, &raft.AppendEntriesResponse{Success: true, MatchIndex: 900}, nil)
	}
	if n := len(*h.peers.Load()); n != historyMaxPeers {
		t.Fatalf("tracking %d followers, want at most %d", n, historyMaxPeers)
	}
	for i := range historySamples {
		h.sample(at(i), leader)
	}
	if n := testing.AllocsPerRun(50, func() { h.sample(at(historySamples), leader) }); n != 0 {
		t.Fatalf("%v allocations per sample after the ring wrapped", n)
	}
	got := h.snapshot(at(historySamples+100), 0, historySamples)
	if len(got.Followers) != historyMaxPeers || len(got.TimeMS) != historySamples {
		t.Fatalf("%d followers, %d samples", len(got.Followers), len(got.TimeMS))
	}
	if lag := got.Followers["1"].LagEntries[0]; lag == nil || *lag != 100 {
		t.Fatalf("follower 1's lag %v, want 100", lag)
	}
}

// The largest possible answer stays under maxHistoryBytes, which a
// gathering replica refuses to exceed.
func TestHistoryJSONBound(t *testing.T) {
	h := newHistory(0, t0)
	h.observeEvent(t0, raft.Event{Role: raft.Leader, Leader: 0, Term: 1, LeaderChanges: 1})
	for p := 1; p <= historyMaxPeers; p++ {
		h.observeAppendEntries(t0, p+1000000, &raft.AppendEntriesResponse{Success: true, MatchIndex: 0}, nil)
	}
	for i := range historySamples {
		for k := range h.requests {
			for o := range h.requests[k] {
				h.requests[k][o].Add(1 << 40)
			}
		}
		h.sample(at(i), raft.Status{Role: raft.PreCandidate, Leader: 1000000, Term: 1<<64 - 1, Commit: uint64(i) << 40,
			Applied: uint64(i) << 40, LastIndex: 1<<64 - 1, SnapshotIndex: 1<<64 - 1, LogSizeBytes: 1<<63 - 1})
		h.prev.role = raft.Leader // keep the lags without re-electing
		h.ring[(h.next+len(h.ring)-1)%len(h.ring)].role = raft.PreCandidate
	}
	for i := range historyEvents {
		h.storeFailed(at(i), "store failed: persister plugin unavailable")
	}
	body, err := json.Marshal(h.snapshot(at(historySamples), 0, historySamples))
	if err != nil {
		t.Fatal(err)
	}
	if len(body) > maxHistoryBytes {
		t.Fatalf("the largest answer is %d bytes, over maxHistoryBytes (%d)", len(body), maxHistoryBytes)
	}
	t.Logf("largest answer: %d bytes", len(body))
}

// since_ms and seconds select what is new, and the newest.
func TestHistorySinceAndSeconds(t *testing.T) {
	h := newHistorySized(0, t0, 20, 20)
	h.recordStart(raft.Status{Term: 4, LastIndex: 9})
	for i := 1; i <= 10; i++ {
		h.sample(at(i), raft.Status{})
	}
	h.observeEvent(at(5), raft.Event{Term: 5, Leader: 2, LeaderChanges: 1})
	got := h.snapshot(at(10), at(7).UnixMilli(), historySamples)
	if len(got.TimeMS) != 3 || got.TimeMS[0] != at(8).UnixMilli() || len(got.Events) != 0 {
		t.Fatalf("since 7: samples %v events %+v", got.TimeMS, got.Events)
	}
	got = h.snapshot(at(10), 0, 2)
	if len(got.TimeMS) != 2 || got.TimeMS[1] != at(10).UnixMilli() {
		t.Fatalf("newest 2: %v", got.TimeMS)
	}
	if len(got.Events) != 2 || got.Events[0].Kind != "start" || !got.Events[0].Recovered || got.Events[1].Kind != "leader" || *got.Events[1].Leader != 2 {
		t.Fatalf("events: %+v", got.Events)
	}
}

func TestHistoryLeaderAndPeerEvents(t *testing.T) {
	h := newHistorySized(0, t0, 20, 20)
	h.observeEvent(at(1), raft.Event{Term: 1, Role: raft.Follower, Leader: 1, LeaderChanges: 1})
	h.observeEvent(at(2), raft.Event{Term: 1, Role: raft.Follower, Leader: 1, LeaderChanges: 1}) // no change
	// Coalesced: term 2's leader (1 again) was never seen on its own.
	h.observeEvent(at(3), raft.Event{Term: 3, Role: raft.Follower, Leader: 1, LeaderChanges: 3})
	h.observeEvent(at(4), raft.Event{Term: 4, Role: raft.Candidate, Leader: raft.NoLeader, LeaderChanges: 3})
	h.observeEvent(at(5), raft.Event{Term: 4, Role: raft.Leader, Leader: 0, LeaderChanges: 4})
	var leaders []string
	for _, e := range h.snapshot(at(5), 0, historySamples).Events {
		if e.Kind == "leader" {
			leaders = append(leaders, fmt.Sprintf("T%d:%d", e.Term, *e.Leader))
		}
	}
	if strings.Join(leaders, " ") != "T1:1 T3:1 T4:-1 T4:0" {
		t.Fatalf("leader events %v", leaders)
	}

	// As leader: follower 1 answers, follower 2 never does, then 1 stops.
	lead := raft.Status{Role: raft.Leader, Leader: 0, Term: 4, LastIndex: 50}
	h.observeAppendEntries(at(5), 1, &raft.AppendEntriesResponse{Success: true, MatchIndex: 45}, nil)
	h.observeAppendEntries(at(5), 2, nil, errors.New("connection refused"))
	h.sample(at(5).Add(500*time.Millisecond), lead) // too early to call 2 unreachable
	h.observeAppendEntries(at(6), 2, nil, errors.New("connection refused"))
	h.sample(at(6), lead)
	h.observeAppendEntries(at(7), 1, nil, errors.New("timeout"))
	h.sample(at(7), lead)
	h.sample(at(8).Add(100*time.Millisecond), lead) // 1 failed since 7, its last answer was at 5
	h.observeAppendEntries(at(9), 1, &raft.AppendEntriesResponse{Success: true, MatchIndex: 50}, nil)
	h.sample(at(9), lead)

	got := h.snapshot(at(9), 0, historySamples)
	var peerEvents []string
	for _, e := range got.Events {
		if e.Peer != nil {
			peerEvents = append(peerEvents, fmt.Sprintf("%s:%d@%d", e.Kind, *e.Peer, (e.TimeMS-t0.UnixMilli())/1000))
		}
	}
	if strings.Join(peerEvents, " ") != "peer_unreachable:2@6 peer_unreachable:1@7 peer_reachable:1@9" {
		t.Fatalf("peer events %v", peerEvents)
	}
	f1, f2 := got.Followers["1"], got.Followers["2"]
	if f1 == nil || f2 == nil {
		t.Fatalf("followers %v", got.Followers)
	}
	lags := func(f *followerJSON) string {
		var s []string
		for i := range f.LagEntries {
			if f.LagEntries[i] == nil {
				s = append(s, fmt.Sprintf("-/%v", *f.Reachable[i]))
			} else {
				s = append(s, fmt.Sprintf("%d/%v", *f.LagEntries[i], *f.Reachable[i]))
			}
		}
		return strings.Join(s, " ")
	}
	if got := lags(f1); got != "5/true 5/true 5/false 5/false 0/true" {
		t.Fatalf("follower 1 lag/reachable: %s", got)
	}
	if got := lags(f2); got != "-/true -/false -/false -/false -/false" {
		t.Fatalf("follower 2 lag/reachable: %s", got)
	}
	// A new leadership forgets the followers' old match indexes.
	h.observeEvent(at(10), raft.Event{Term: 5, Role: raft.Follower, Leader: 1, LeaderChanges: 5})
	h.observeEvent(at(11), raft.Event{Term: 6, Role: raft.Leader, Leader: 0, LeaderChanges: 6})
	h.sample(at(11), lead)
	if lag := h.snapshot(at(11), at(10).UnixMilli(), historySamples).Followers["1"].LagEntries[0]; lag != nil {
		t.Fatalf("lag %d from an earlier leadership", *lag)
	}
}

func TestRequestKinds(t *testing.T) {
	for _, c := range []struct {
		method, path string
		want         string // "" for not counted
	}{
		{"GET", "/kvstore/get/a/b", "get"},
		{"POST", "/kvstore/put", "put"},
		{"POST", "/kvstore/append", "append"},
		{"DELETE", "/kvstore/a", "delete"},
		{"GET", "/kvstore/list", "list"},
		{"GET", "/kvstore/watch/x", "watch"},
		{"GET", "/kvstore/is_leader", ""},
		{"GET", "/kvstore/nonsense", "other"},
		{"POST", "/twirp/kv.v1.KVService/Put", "put"},
		{"POST", "/twirp/kv.v1.KVService/OpenSession", "session"},
		{"POST", "/kvstore/session", "session"},
		{"POST", "/kvstore/lease/grant", "lease"},
		{"POST", "/twirp/kv.v1.KVService/LeaseKeepAlive", "lease"},
		{"POST", "/twirp/kv.v1.KVService/Status", ""},
		{"POST", "/twirp/kv.v1.KVService/Txn", "txn"},
		{"POST", "/kvstore/txn", "txn"},
		{"POST", "/twirp/kv.v1.KVService/Bogus", "other"},
		{"POST", "/twirp/", "other"},
		{"GET", "/status/history", ""},
		{"GET", "/", ""},
	} {
		k, ok := requestKind(c.method, c.path)
		got := ""
		if ok {
			got = kindNames[k]
		}
		if got != c.want {
			t.Errorf("%s %s: %q, want %q", c.method, c.path, got, c.want)
		}
	}
	for code, want := range map[int]string{200: "ok", 204: "ok", 404: "not_found", 400: "rejected", 409: "rejected",
		429: "rejected", 503: "unavailable", 504: "timeout", 500: "error"} {
		if got := outcomeNames[outcomeOf(code)]; got != want {
			t.Errorf("%d: %s, want %s", code, got, want)
		}
	}
}

// GET /status/history gathers every replica's history, says which did not
// answer and why, and refuses bad queries and hostile peer answers.
func TestStatusHistoryHandler(t *testing.T) {
	local := newHistorySized(1, t0, 10, 10)
	local.recordStart(raft.Status{})
	local.sample(at(1), raft.Status{Term: 2, Role: raft.Leader, Leader: 1})
	peer := newHistorySized(2, t0, 10, 10)
	peer.sample(at(1), raft.Status{Term: 2, Leader: 1})
	peerMux := http.NewServeMux()
	peerMux.Handle("GET "+historyPeerPath, peerHistoryHandler(peer))
	peerSrv := httptest.NewServer(peerMux)
	defer peerSrv.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, `{"id":4,"t_ms":[%s0]}`, strings.Repeat("0,", maxHistoryBytes))
	}))
	defer huge.Close()
	impostor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"id":2,"reachable":true}`))
	}))
	defer impostor.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer slow.Close()

	// Every source but the silent one answers at once; the deadline is
	// generous so that a loaded machine does not turn a slow answer into
	// "unreachable". The silent peer is checked on its own below, against a
	// short deadline.
	members := func() []historySource {
		return []historySource{
			remoteHistory(0, down.URL, http.DefaultClient),
			localHistory(local),
			remoteHistory(2, peerSrv.URL, http.DefaultClient),
			remoteHistory(3, impostor.URL, http.DefaultClient),
			remoteHistory(4, huge.URL, http.DefaultClient),
		}
	}
	srv := httptest.NewServer(clientHandler(&mapKV{m: map[string]string{}}, DefaultLimits(), historyHandlers(1, members, time.Minute)))
	defer srv.Close()
	out := getClusterHistory(t, srv.URL)
	if out.Self != 1 || out.IntervalMS != 1000 || len(out.Replicas) != 5 {
		t.Fatalf("%+v", out)
	}
	for i, r := range out.Replicas {
		if r.ID != i {
			t.Errorf("replica %d answered as %d", i, r.ID)
		}
		wantUp := i == 1 || i == 2
		if r.Reachable != wantUp || (wantUp && len(r.TimeMS) != 1) || (!wantUp && !strings.HasPrefix(r.Error, "unreachable: ")) {
			t.Errorf("replica %d: reachable %v samples %d error %q", i, r.Reachable, len(r.TimeMS), r.Error)
		}
	}
	if !strings.Contains(out.Replicas[3].Error, "not this replica's history") || !strings.Contains(out.Replicas[4].Error, "larger than") {
		t.Errorf("impostor: %q; huge: %q", out.Replicas[3].Error, out.Replicas[4].Error)
	}

	// A peer that never answers is given up on at the deadline; the others
	// are still shown.
	const deadline = 200 * time.Millisecond
	silent := httptest.NewServer(clientHandler(&mapKV{m: map[string]string{}}, DefaultLimits(), historyHandlers(1, func() []historySource {
		return []historySource{localHistory(local), remoteHistory(5, slow.URL, http.DefaultClient)}
	}, deadline)))
	defer silent.Close()
	start := time.Now()
	out = getClusterHistory(t, silent.URL)
	if elapsed := time.Since(start); elapsed > deadline+5*time.Second {
		t.Fatalf("a silent peer held the answer for %v", elapsed)
	}
	if len(out.Replicas) != 2 || !out.Replicas[0].Reachable || out.Replicas[1].Reachable || !strings.HasPrefix(out.Replicas[1].Error, "unreachable: ") {
		t.Fatalf("with a silent peer: %+v", out.Replicas)
	}

	for _, q := range []string{"since_ms=-1", "since_ms=abc", "since_ms=99999999999999999999", "seconds=0", "seconds=601", "seconds=x",
		"seconds=1&seconds=2", "since_ms=1&since_ms=2"} {
		for _, base := range []string{srv.URL + "/status/history", peerSrv.URL + historyPeerPath} {
			resp, err := http.Get(base + "?" + q)
			if err != nil {
				t.Fatal(err)
			}
			var body map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != 400 || body["code"] != "invalid_argument" {
				t.Errorf("%s?%s: %d %v, want 400 invalid_argument", base, q, resp.StatusCode, body)
			}
		}
	}
}

// The transport wrapper records each follower's match index as it answers.
func TestHistoryTransportObservesAppendEntries(t *testing.T) {
	h := newHistorySized(0, t0, 4, 4)
	tr := historyTransport{Transport: fakeAETransport{}, hist: h}
	if _, err := tr.AppendEntries(context.Background(), 2, &raft.AppendEntriesRequest{}); err != nil {
		t.Fatal(err)
	}
	p := (*h.peers.Load())[2]
	if p == nil || !p.known.Load() || p.match.Load() != 77 {
		t.Fatalf("follower 2's match not recorded: %+v", p)
	}
}

type fakeAETransport struct{ raft.Transport }

func (fakeAETransport) AppendEntries(context.Context, int, *raft.AppendEntriesRequest) (*raft.AppendEntriesResponse, error) {
	return &raft.AppendEntriesResponse{Success: true, MatchIndex: 77}, nil
}

// A store failure is on the failing replica's timeline and, through the
// data directory, on the timeline of the replica restarted after it.
func TestStoreFailureOnTimelineAcrossRestart(t *testing.T) {
	fs := filestore.NewMemFS()
	o := filestore.DefaultOptions()
	o.FS = fs
	store, err := filestore.Open("/data/store", o)
	if err != nil {
		t.Fatal(err)
	}
	cfg := oneMemberConfig(t)
	cfg.RequestTimeout = time.Second
	r, err := StartReplica(cfg, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	failures := func(r *Replica) []eventJSON {
		resp, err := http.Get("http://" + r.ClientAddr() + "/status/history")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Replicas []historyJSON }
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Replicas) != 1 {
			t.Fatalf("history: %v %+v", err, out)
		}
		var evs []eventJSON
		for _, e := range out.Replicas[0].Events {
			if e.Kind == "store_failure" {
				evs = append(evs, e)
			}
		}
		return evs
	}
	waitFor(t, "a put acknowledged", 10*time.Second, func() bool {
		resp, err := http.Post("http://"+r.ClientAddr()+"/kvstore/put", "application/json", strings.NewReader(`{"key":"a","value":"v"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	if evs := failures(r); len(evs) != 0 {
		t.Fatalf("failures before any: %+v", evs)
	}
	fs.SetFault(func(op filestore.Op, name string) error {
		if op == filestore.OpSync {
			return syscall.EIO
		}
		return nil
	})
	resp, err := http.Post("http://"+r.ClientAddr()+"/kvstore/put", "application/json", strings.NewReader(`{"key":"b","value":"v"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case <-r.Failed():
	case <-time.After(10 * time.Second):
		t.Fatal("no failure within 10s")
	}
	evs := failures(r)
	if len(evs) != 1 || !strings.HasPrefix(evs[0].Detail, "store failed") {
		t.Fatalf("failures on the failing replica's timeline: %+v", evs)
	}
	r.Close(context.Background())

	// The restart (with a working store) shows the failure at its time.
	r2, err := StartReplica(cfg, persist.NewMemory(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close(context.Background())
	if again := failures(r2); len(again) != 1 || again[0].TimeMS != evs[0].TimeMS || again[0].Detail != evs[0].Detail {
		t.Fatalf("failures after the restart: %+v, want %+v", again, evs)
	}
	r2.Close(context.Background())

	// A damaged, huge or stale record is ignored.
	for _, body := range []string{"{not json", strings.Repeat("x", 10000),
		fmt.Sprintf(`{"t_ms":%d,"reason":"old"}`, time.Now().Add(-time.Hour).UnixMilli()),
		fmt.Sprintf(`{"t_ms":%d,"reason":"future"}`, time.Now().Add(time.Hour).UnixMilli())} {
		if err := os.WriteFile(filepath.Join(cfg.DataDir, storeFailureFile), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		r3, err := StartReplica(cfg, persist.NewMemory(), nil)
		if err != nil {
			t.Fatal(err)
		}
		got := failures(r3)
		r3.Close(context.Background())
		if len(got) != 0 {
			t.Fatalf("record %.40q put %+v on the timeline", body, got)
		}
	}
}

// BenchmarkInstrumentMux is the request path's metrics cost with and
// without the history, side by side (go test -bench InstrumentMux ./durio).
func BenchmarkInstrumentMux(b *testing.B) {
	for _, withHistory := range []bool{false, true} {
		b.Run(fmt.Sprintf("history=%v", withHistory), func(b *testing.B) {
			m := newMetrics(func() raft.Status { return raft.Status{} })
			if withHistory {
				m.hist = newHistory(0, t0)
			}
			mux := http.NewServeMux()
			mux.HandleFunc("POST /kvstore/put", func(w http.ResponseWriter, r *http.Request) {})
			h := m.instrumentMux(mux)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req := httptest.NewRequest("POST", "/kvstore/put", nil)
				w := httptest.NewRecorder()
				for pb.Next() {
					h.ServeHTTP(w, req)
				}
			})
		})
	}
}

// getClusterHistory fetches GET /status/history from base and decodes it.
func getClusterHistory(t *testing.T, base string) (out struct {
	Self       int           `json:"self"`
	IntervalMS int64         `json:"interval_ms"`
	Replicas   []historyJSON `json:"replicas"`
}) {
	t.Helper()
	resp, err := http.Get(base + "/status/history")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %v", resp.StatusCode, err)
	}
	return out
}

// A change of the configuration in force is an event naming the new one
// (not the one a replica starts with), and each sample says what the
// replica was in it.
func TestHistoryMembership(t *testing.T) {
	h := newHistory(3, t0)
	three := raft.Membership{Members: []raft.Member{{ID: 0}, {ID: 1}, {ID: 2}}}
	withLearner := raft.Membership{Members: append(slices.Clone(three.Members), raft.Member{ID: 3, Learner: true})}
	promoted := raft.Membership{Members: []raft.Member{{ID: 0}, {ID: 1}, {ID: 2}, {ID: 3}}}
	h.observeEvent(at(1), raft.Event{Term: 1, Leader: 0, LeaderChanges: 1, Membership: three, MembershipChanges: 2})
	h.sample(at(1), raft.Status{Term: 1, Leader: 0, Membership: three})
	h.observeEvent(at(2), raft.Event{Term: 1, Leader: 0, LeaderChanges: 1, Membership: withLearner, MembershipChanges: 3})
	h.sample(at(2), raft.Status{Term: 1, Leader: 0, Membership: withLearner})
	h.observeEvent(at(3), raft.Event{Term: 1, Leader: 0, LeaderChanges: 1, Membership: withLearner, MembershipChanges: 3}) // no change
	h.observeEvent(at(4), raft.Event{Term: 1, Leader: 0, LeaderChanges: 1, Membership: promoted, MembershipChanges: 4})
	h.sample(at(4), raft.Status{Term: 1, Leader: 0, Membership: promoted})
	out := h.snapshot(at(5), 0, historySamples)
	var got []string
	for _, e := range out.Events {
		if e.Kind == "membership" {
			got = append(got, e.Detail)
		}
	}
	if want := []string{"voters 0, 1, 2; learners 3", "voters 0, 1, 2, 3"}; !slices.Equal(got, want) {
		t.Errorf("membership events %q, want %q", got, want)
	}
	if want := []string{"", "learner", "voter"}; !slices.Equal(out.Member, want) {
		t.Errorf("member column %q, want %q", out.Member, want)
	}
}
