package durio

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/raft"
)

func TestMetricsScrape(t *testing.T) {
	st := raft.Status{ID: 1, Term: 4, Role: raft.Leader, Leader: 1, Commit: 10, Applied: 8, LastIndex: 11, ReadRounds: 7, ReadIndexRequests: 3}
	m := newMetrics(func() raft.Status { return st })
	store := meteredStore{Store: persist.NewMemory(), m: m}
	ctx := context.Background()
	if err := store.Append(ctx, persist.HardState{Term: 1, VotedFor: persist.NoVote}, []persist.Entry{{Index: 1, Term: 1, Type: persist.EntryNoop}}); err != nil {
		t.Fatal(err)
	}
	if err := store.SaveSnapshot(ctx, persist.Snapshot{Index: 1, Term: 1, Data: []byte("12345")}); err != nil {
		t.Fatal(err)
	}
	m.observeRPC("AppendEntries", time.Now(), nil)
	m.observeRPC("AppendEntries", time.Now(), errors.New("down"))

	srv := httptest.NewServer(m.handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		"durio_raft_term 4",
		"durio_raft_read_rounds_total 7",
		"durio_raft_read_index_requests_total 3",
		"durio_raft_is_leader 1",
		"durio_raft_commit_index 10",
		"durio_raft_apply_lag_entries 2",
		"durio_store_appended_entries_total 1",
		"durio_store_append_duration_seconds_count 1",
		"durio_store_append_inflight_seconds 0",
		"durio_snapshots_total 1",
		"durio_snapshot_size_bytes 5",
		`durio_raft_rpcs_sent_total{result="error",rpc="AppendEntries"} 1`,
		`durio_raft_rpcs_sent_total{result="ok",rpc="AppendEntries"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(string(body), want+"\n") && !strings.Contains(string(body), want+" ") {
			t.Errorf("scrape lacks %q", want)
		}
	}
}

func TestMetricsRouteLabels(t *testing.T) {
	m := newMetrics(func() raft.Status { return raft.Status{Leader: raft.NoLeader} })
	srv := httptest.NewServer(m.instrumentMux(clientHandler(&mapKV{m: map[string]string{}}, DefaultLimits(), nil)))
	defer srv.Close()
	for _, path := range []string{"/kvstore/get/secret-key-1", "/kvstore/get/secret-key-2", "/nope"} {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := srv.Client().Post(srv.URL+"/twirp/kv.v1.KVService/Get", "application/json", strings.NewReader(`{"key":"a"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	rec := httptest.NewRecorder()
	m.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`durio_http_requests_total{code="404",route="GET /kvstore/get/{key...}"} 2`,
		`durio_http_requests_total{code="404",route="unmatched"} 1`,
		`durio_http_requests_total{code="404",route="POST /twirp/kv.v1.KVService/Get"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if strings.Contains(body, "secret-key") {
		t.Error("keys must not become metric labels")
	}
}

// TestMetricsLeaderChangesFromEvents: the counter follows the node's events
// and counts changes that coalesced into one event.
func TestMetricsLeaderChangesFromEvents(t *testing.T) {
	m := newMetrics(func() raft.Status { return raft.Status{Leader: raft.NoLeader} })
	events := make(chan raft.Event, 1)
	events <- raft.Event{Seq: 1, Term: 1, Leader: 0, LeaderChanges: 1}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		followEvents(ctx, func() (<-chan raft.Event, func()) { return events, func() {} }, m.leaderChangeCounter())
	}()
	count := func() float64 {
		rec := httptest.NewRecorder()
		m.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		for line := range strings.Lines(rec.Body.String()) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "durio_raft_leader_changes_total "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		return -1
	}
	waitCount := func(want float64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for count() != want {
			if time.Now().After(deadline) {
				t.Fatalf("durio_raft_leader_changes_total is %v, want %v", count(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitCount(1)
	// Three leaders came and went while the watcher was not looking: one
	// event carries them all.
	events <- raft.Event{Seq: 9, Term: 5, Leader: 2, LeaderChanges: 4}
	waitCount(4)
	close(events)
	<-done
}

// blockingStore's Append waits until release is closed.
type blockingStore struct {
	persist.Store
	entered, release chan struct{}
}

func (s blockingStore) Append(ctx context.Context, hs persist.HardState, es []persist.Entry) error {
	close(s.entered)
	<-s.release
	return s.Store.Append(ctx, hs, es)
}

// An Append in progress shows in appendAge (the stall check's input) and in
// durio_store_append_inflight_seconds, and both are 0 again once it returns.
func TestMetricsAppendInFlight(t *testing.T) {
	m := newMetrics(func() raft.Status { return raft.Status{} })
	bs := blockingStore{Store: persist.NewMemory(), entered: make(chan struct{}), release: make(chan struct{})}
	store := meteredStore{Store: bs, m: m}
	done := make(chan error, 1)
	go func() {
		done <- store.Append(context.Background(), persist.HardState{Term: 1, VotedFor: persist.NoVote},
			[]persist.Entry{{Index: 1, Term: 1, Type: persist.EntryNoop}})
	}()
	<-bs.entered
	waitFor(t, "the Append in progress to show", 5*time.Second, func() bool { return m.appendAge() >= 20*time.Millisecond })
	srv := httptest.NewServer(m.handler())
	defer srv.Close()
	scrape := func() string {
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	running := regexp.MustCompile(`\ndurio_store_append_inflight_seconds (\S+)\n`).FindStringSubmatch(scrape())
	if running == nil {
		t.Fatal("scrape lacks durio_store_append_inflight_seconds")
	}
	if v, err := strconv.ParseFloat(running[1], 64); err != nil || v <= 0 {
		t.Errorf("durio_store_append_inflight_seconds during an Append: %q, want above 0", running[1])
	}
	close(bs.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if age := m.appendAge(); age != 0 {
		t.Errorf("appendAge() = %v after the Append returned, want 0", age)
	}
	if body := scrape(); !strings.Contains(body, "durio_store_append_inflight_seconds 0\n") {
		t.Errorf("scrape after the Append lacks durio_store_append_inflight_seconds 0")
	}
}

// blockingSnapStore's SaveSnapshot waits until release is closed.
type blockingSnapStore struct {
	persist.Store
	entered, release chan struct{}
}

func (s blockingSnapStore) SaveSnapshot(ctx context.Context, snap persist.Snapshot) error {
	close(s.entered)
	<-s.release
	return s.Store.SaveSnapshot(ctx, snap)
}

// A snapshot being stored shows as a store write in progress, as an
// Append does: a plugin that hangs while it stores a snapshot (with the
// raft loop waiting on it) is caught by the stall check too. But the
// check allows it a second per MiB first, so a large state's snapshot on
// a slow card is not taken for a hung disk.
func TestMetricsSnapshotInFlight(t *testing.T) {
	m := newMetrics(func() raft.Status { return raft.Status{} })
	bs := blockingSnapStore{Store: persist.NewMemory(), entered: make(chan struct{}), release: make(chan struct{})}
	store := meteredStore{Store: bs, m: m}
	for _, tc := range []struct {
		size    int
		overdue bool
	}{{0, true}, {64 << 20, false}} {
		bs.entered, bs.release = make(chan struct{}), make(chan struct{})
		store.Store = bs
		done := make(chan error, 1)
		go func() {
			done <- store.SaveSnapshot(context.Background(), persist.Snapshot{Index: uint64(tc.size + 1), Term: 1, Data: make([]byte, tc.size)})
		}()
		<-bs.entered
		waitFor(t, "the snapshot in progress to show", 5*time.Second, func() bool { return m.appendAge() >= 20*time.Millisecond })
		if late := m.writeOverdue() > 0; late != tc.overdue {
			t.Errorf("%d-byte snapshot running %v: overdue %v, want %v (allowance %v)", tc.size, m.appendAge(), m.writeOverdue(), tc.overdue, snapshotAllowance(tc.size))
		}
		close(bs.release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if m.appendAge() != 0 || m.writeOverdue() != 0 {
			t.Errorf("after the snapshot: age %v, overdue %v", m.appendAge(), m.writeOverdue())
		}
	}
	if got := snapshotAllowance(256 << 20); got != 256*time.Second {
		t.Errorf("a 256 MiB snapshot's allowance is %v", got)
	}
}

// blockingBothStore's SaveSnapshot and Append each wait for their own
// release, once a test sets it, as a plugin that takes snapshots beside its
// Appends may leave both in flight.
type blockingBothStore struct {
	*persist.Memory
	snapIn, snapOut     chan struct{}
	appendIn, appendOut chan struct{}
}

func (s blockingBothStore) SaveSnapshot(ctx context.Context, snap persist.Snapshot) error {
	close(s.snapIn)
	<-s.snapOut
	return s.Memory.SaveSnapshot(ctx, snap)
}

func (s blockingBothStore) Append(ctx context.Context, hs persist.HardState, es []persist.Entry) error {
	if s.appendIn != nil {
		close(s.appendIn)
		<-s.appendOut
	}
	return s.Memory.Append(ctx, hs, es)
}

// With a snapshot stored beside the log's Appends, the stall check keeps
// their clocks apart: an Append that hangs beside a large snapshot is
// overdue (the snapshot's allowance does not cover it), one that returns
// does not end the snapshot's clock, and the metered store passes the
// store's persist.BackgroundSnapshots through to raft.
func TestMetricsAppendBesideSnapshot(t *testing.T) {
	m := newMetrics(func() raft.Status { return raft.Status{} })
	mem := persist.NewMemory()
	if err := mem.Append(context.Background(), persist.HardState{Term: 1, VotedFor: persist.NoVote}, []persist.Entry{{Index: 1, Term: 1}}); err != nil {
		t.Fatal(err)
	}
	bs := blockingBothStore{Memory: mem, snapIn: make(chan struct{}), snapOut: make(chan struct{})}
	store := meteredStore{Store: bs, m: m}
	if !store.SnapshotsBesideAppends() {
		t.Fatal("the metered store hides the memory store's SnapshotsBesideAppends")
	}
	if (meteredStore{Store: &persist.Noop{}, m: m}).SnapshotsBesideAppends() {
		t.Fatal("the metered store says Noop takes snapshots beside its Appends")
	}
	snapDone := make(chan error, 1)
	go func() {
		snapDone <- store.SaveSnapshot(context.Background(), persist.Snapshot{Index: 1, Term: 1, Data: make([]byte, 64<<20)})
	}()
	<-bs.snapIn
	// An Append that hangs beside the 64 MiB snapshot (64 s of allowance).
	bs.appendIn, bs.appendOut = make(chan struct{}), make(chan struct{})
	store.Store = bs
	appendDone := make(chan error, 1)
	go func() {
		appendDone <- store.Append(context.Background(), persist.HardState{Term: 1, VotedFor: persist.NoVote}, []persist.Entry{{Index: 2, Term: 1}})
	}()
	<-bs.appendIn
	waitFor(t, "the hung Append to be overdue beside the snapshot", 5*time.Second, func() bool { return m.writeOverdue() >= 20*time.Millisecond })
	close(bs.appendOut)
	if err := <-appendDone; err != nil {
		t.Fatal(err)
	}
	if od := m.writeOverdue(); od != 0 {
		t.Errorf("after the Append returned, beside a snapshot within its allowance: overdue %v", od)
	}
	if age := m.appendAge(); age == 0 {
		t.Error("the Append's return ended the snapshot's clock")
	}
	close(bs.snapOut)
	if err := <-snapDone; err != nil {
		t.Fatal(err)
	}
	if m.appendAge() != 0 || m.writeOverdue() != 0 {
		t.Errorf("after both: age %v, overdue %v", m.appendAge(), m.writeOverdue())
	}
}
