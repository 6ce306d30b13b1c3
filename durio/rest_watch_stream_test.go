package durio

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/durio/client"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// sseMessage is one message of a text/event-stream as the HTML standard
// parses it (the fields durio sends; a comment line alone is a message with
// comment set).
type sseMessage struct {
	id, event, data, retry string
	hasID, comment         bool
}

// sseReader reads the messages of a stream.
type sseReader struct{ r *bufio.Reader }

func newSSEReader(r io.Reader) *sseReader { return &sseReader{r: bufio.NewReader(r)} }

// next returns the next message, or the read's error (io.EOF when the
// server ended the stream).
func (s *sseReader) next() (sseMessage, error) {
	var m sseMessage
	seen := false
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return m, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if seen {
				return m, nil
			}
			continue
		}
		seen = true
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			m.comment = true
		case "id":
			m.id, m.hasID = value, true
		case "event":
			m.event = value
		case "data":
			if m.data != "" {
				m.data += "\n"
			}
			m.data += value
		case "retry":
			m.retry = value
		default:
			return m, errors.New("unexpected field " + field)
		}
	}
}

// nextChange returns the next message of s that carries a change, skipping
// heartbeats.
func nextChange(t *testing.T, s *sseReader) sseMessage {
	t.Helper()
	for {
		m, err := s.next()
		if err != nil {
			t.Fatalf("waiting for a change on the stream: %v", err)
		}
		if m.data != "" {
			return m
		}
	}
}

// openStream starts a watch stream and checks that it is one.
func openStream(t *testing.T, ctx context.Context, url string, header http.Header) (*http.Response, *sseReader) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	if req.Header == nil {
		req.Header = http.Header{"Accept": {"text/event-stream"}}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-store" {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %v %s, want a stream", url, resp.StatusCode, resp.Header, body)
	}
	s := newSSEReader(resp.Body)
	if m, err := s.next(); err != nil || m.retry != "1000" || !m.hasID || m.data != "" {
		t.Fatalf("the stream's first message: %+v %v, want retry: 1000 and the id it starts after", m, err)
	}
	return resp, s
}

// streamKV scripts Watch for the stream tests: a call that may wait takes
// its answer from feed, or answers empty at the replica's revision rev when
// its wait passes; calls counts the calls that waited.
type streamKV struct {
	*scriptKV
	feed  chan *kvv1.WatchResponse
	rev   atomic.Uint64
	calls atomic.Int64
}

func newStreamKV() *streamKV {
	s := &streamKV{scriptKV: newScriptKV(), feed: make(chan *kvv1.WatchResponse)}
	s.watch = func(ctx context.Context, req *kvv1.WatchRequest) (*kvv1.WatchResponse, error) {
		switch req.GetKey() {
		case "compacted":
			return &kvv1.WatchResponse{Compacted: true, CompactRevision: 50}, nil
		case "crowded":
			return nil, twirp.NewError(twirp.ResourceExhausted, "too many watchers").WithMeta("reason", "too_many_watchers")
		}
		idle := &kvv1.WatchResponse{Header: &kvv1.ResponseHeader{Revision: s.rev.Load()},
			NextAfterRevision: max(req.GetAfterRevision(), s.rev.Load())}
		if req.GetWaitMs() == 0 {
			return idle, nil
		}
		s.calls.Add(1)
		select {
		case resp := <-s.feed:
			return resp, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(req.GetWaitMs()) * time.Millisecond):
			idle.NextAfterRevision = max(req.GetAfterRevision(), s.rev.Load())
			return idle, nil
		}
	}
	s.status = func() (*kvv1.StatusResponse, error) { return &kvv1.StatusResponse{Revision: s.rev.Load()}, nil }
	return s
}

// lastWatch returns the last Watch request that reached the service.
func (s *streamKV) lastWatch(t *testing.T) *kvv1.WatchRequest {
	t.Helper()
	w, ok := s.last().(*kvv1.WatchRequest)
	if !ok {
		t.Fatalf("the last request was %v, not a Watch", s.last())
	}
	return w
}

// A watch asked for text/event-stream sends every change as a message whose
// id is its revision, heartbeats that move the resume point on, and a
// "compacted" event before it ends when the history it needs is gone.
func TestRESTWatchStream(t *testing.T) {
	kv := newStreamKV()
	kv.rev.Store(5)
	limits := DefaultLimits()
	limits.MaxWatchWait = 200 * time.Millisecond // the heartbeat
	u := serveScript(t, kv.scriptKV, limits)

	resp, s := openStream(t, context.Background(), u+"/kvstore/watch/k?index=5&prev_kv=true", nil)
	if resp.Header.Get(RevisionHeader) != "5" {
		t.Fatalf("X-Durio-Revision %q, want 5", resp.Header.Get(RevisionHeader))
	}
	kv.feed <- &kvv1.WatchResponse{Header: &kvv1.ResponseHeader{Revision: 9}, NextAfterRevision: 9, Events: []*kvv1.Event{
		{Type: kvv1.EventType_EVENT_TYPE_PUT, Kv: &kvv1.KeyValue{Key: "k", Value: "line1\nline2 <&>", CreateRevision: 3, ModRevision: 8, Version: 2},
			PrevKv: &kvv1.KeyValue{Key: "k", Value: "old", CreateRevision: 3, ModRevision: 3, Version: 1}},
		{Type: kvv1.EventType_EVENT_TYPE_DELETE, Kv: &kvv1.KeyValue{Key: "k", ModRevision: 9}},
	}}
	for i, want := range []struct {
		id, typ, value string
		prev           bool
	}{{"8", "put", "line1\nline2 <&>", true}, {"9", "delete", "", false}} {
		m, err := s.next()
		if err != nil || !m.hasID || m.id != want.id || m.event != "" || strings.Contains(m.data, "\n") {
			t.Fatalf("message %d: %+v %v, want id %s and one data line", i, m, err, want.id)
		}
		var ev restEvent
		if err := json.Unmarshal([]byte(m.data), &ev); err != nil {
			t.Fatalf("message %d: data %q: %v", i, m.data, err)
		}
		if ev.Type != want.typ || ev.KV == nil || ev.KV.Key != "k" || ev.KV.Value != want.value ||
			strconv.FormatUint(ev.KV.ModRevision, 10) != want.id || (ev.PrevKV != nil) != want.prev {
			t.Fatalf("message %d: %+v, want a %s of k at %s", i, ev, want.typ, want.id)
		}
		if want.prev && (ev.PrevKV.Value != "old" || ev.PrevKV.ModRevision != 3) {
			t.Fatalf("prev_kv %+v", ev.PrevKV)
		}
	}
	waitUntil(t, "the stream's next watch", func() bool { return kv.lastWatch(t).GetAfterRevision() != 5 })
	if w := kv.lastWatch(t); w.GetAfterRevision() != 9 || !w.GetPrevKv() || w.GetKey() != "k" || w.GetWaitMs() != 200 {
		t.Fatalf("the stream's next watch: %v, want k after 9 with prev_kv, waiting the 200ms heartbeat", w)
	}

	// Nothing matches while the replica moves on to 40: the heartbeat
	// carries id 40, so a reconnect does not ask for history from 9; the
	// next heartbeat, with nothing newer, is a comment.
	kv.rev.Store(40)
	for {
		// Heartbeats before the move (a slow machine) are comments.
		m, err := s.next()
		if err != nil || m.data != "" || m.hasID && m.id != "40" || !m.hasID && !m.comment {
			t.Fatalf("heartbeat after the replica moved on: %+v %v, want only id 40", m, err)
		}
		if m.hasID {
			break
		}
	}
	if m, err := s.next(); err != nil || !m.comment || m.hasID || m.data != "" {
		t.Fatalf("heartbeat with nothing new: %+v %v, want a comment", m, err)
	}

	// History compacted under a slow stream: a compacted event, then the end.
	kv.feed <- &kvv1.WatchResponse{Compacted: true, CompactRevision: 60}
	m, err := s.next()
	if err != nil || m.event != "compacted" {
		t.Fatalf("after compaction: %+v %v, want a compacted event", m, err)
	}
	var body struct {
		Code string            `json:"code"`
		Meta map[string]string `json:"meta"`
	}
	if err := json.Unmarshal([]byte(m.data), &body); err != nil || body.Code != "out_of_range" ||
		body.Meta["reason"] != "compacted" || body.Meta["compact_revision"] != "60" {
		t.Fatalf("compacted event data %q: %v", m.data, err)
	}
	if m, err := s.next(); err != io.EOF {
		t.Fatalf("after the compacted event: %+v %v, want the end of the stream", m, err)
	}
}

// How a stream is asked for, where it starts (index, Last-Event-ID, the
// replica's revision), and the refusals answered before it starts.
func TestRESTWatchStreamRequests(t *testing.T) {
	kv := newStreamKV()
	kv.rev.Store(77)
	limits := DefaultLimits()
	limits.MaxWatchWait = time.Minute
	u := serveScript(t, kv.scriptKV, limits)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	for _, c := range []struct {
		name   string
		query  string
		header http.Header
		after  uint64
	}{
		{"no index: the replica's revision", "", nil, 77},
		{"index", "?index=12", nil, 12},
		{"stream=true without Accept", "?index=13&stream=true", http.Header{}, 13},
		{"Accept with parameters, among others", "?index=14", http.Header{"Accept": {"application/json, text/event-stream;q=0.9"}}, 14},
		{"Accept with a malformed q", "?index=15", http.Header{"Accept": {"text/event-stream;q=x"}}, 15},
		{"a reconnect: Last-Event-ID past the index", "?index=12", http.Header{"Accept": {"text/event-stream"}, "Last-Event-Id": {"30"}}, 30},
		{"Last-Event-ID before the index", "?index=12", http.Header{"Accept": {"text/event-stream"}, "Last-Event-Id": {"3"}}, 12},
	} {
		kv.mu.Lock()
		n := len(kv.reqs)
		kv.mu.Unlock()
		rctx, rcancel := context.WithCancel(ctx)
		openStream(t, rctx, u+"/kvstore/watch/k"+c.query, c.header)
		// The stream's first look (the one request that does not wait; the
		// stream before may still be starting its next wait) is where it
		// starts.
		kv.mu.Lock()
		var first *kvv1.WatchRequest
		for _, m := range kv.reqs[n:] {
			if w := m.(*kvv1.WatchRequest); w.GetWaitMs() == 0 {
				first = w
			}
		}
		kv.mu.Unlock()
		if first == nil || first.GetAfterRevision() != c.after {
			t.Errorf("%s: the stream starts with %v, want after %d", c.name, first, c.after)
		}
		rcancel()
	}

	// wait is the longest silence asked for: the heartbeat, at least a
	// second, at most the replica's own (here a minute, and 15 s).
	for _, c := range []struct {
		wait string
		ms   uint64
	}{{"2s", 2000}, {"1500ms", 1500}, {"10ms", 1000}, {"1h", 15000}} {
		rctx, rcancel := context.WithCancel(ctx)
		openStream(t, rctx, u+"/kvstore/watch/k?index=1&wait="+c.wait, nil)
		// (The stream of an earlier case may still record its own wait.)
		waitUntil(t, fmt.Sprintf("wait=%s gives a heartbeat of %d ms", c.wait, c.ms), func() bool { return kv.lastWatch(t).GetWaitMs() == c.ms })
		rcancel()
	}

	// stream=false, or an Accept without event streams (or refusing them
	// with q=0), is the long poll.
	for _, h := range []http.Header{{"Accept": {"*/*"}}, {"Accept": {"text/event-stream"}}, {"Accept": {"application/json, text/event-stream;q=0"}}} {
		q := "/kvstore/watch/k?index=1&wait=1ms"
		if h.Get("Accept") == "text/event-stream" {
			q += "&stream=false"
		}
		req, _ := http.NewRequest("GET", u+q, nil)
		req.Header = h
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s with %v: %d %s, want the long poll's JSON", q, h, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}

	// Refusals before the stream starts are ordinary answers.
	for _, c := range []struct {
		query  string
		header http.Header
		status int
	}{
		{"/kvstore/watch/compacted?index=3", nil, http.StatusGone},
		{"/kvstore/watch/crowded?index=3", nil, http.StatusTooManyRequests},
		{"/kvstore/watch/k?index=3&wait=soon", nil, http.StatusBadRequest},
		{"/kvstore/watch/k?index=-3", nil, http.StatusBadRequest},
		{"/kvstore/watch/k?stream=maybe", nil, http.StatusBadRequest},
		{"/kvstore/watch/?index=3", nil, http.StatusBadRequest},
		{"/kvstore/watch/k", http.Header{"Accept": {"text/event-stream"}, "Last-Event-Id": {"abc"}}, http.StatusBadRequest},
		{"/kvstore/watch/k", http.Header{"Accept": {"text/event-stream"}, "Last-Event-Id": {"-1"}}, http.StatusBadRequest},
		{"/kvstore/watch/k", http.Header{"Accept": {"text/event-stream"}, "Last-Event-Id": {"4", "5"}}, http.StatusBadRequest},
	} {
		req, _ := http.NewRequest("GET", u+c.query, nil)
		req.Header = c.header
		if req.Header == nil {
			req.Header = http.Header{"Accept": {"text/event-stream"}}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var terr struct{ Code string }
		if resp.StatusCode != c.status || json.Unmarshal(body, &terr) != nil || terr.Code == "" {
			t.Errorf("GET %s %v: %d %s, want %d with a Twirp error body", c.query, c.header, resp.StatusCode, body, c.status)
		}
		if c.status == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Errorf("too many watchers without Retry-After")
		}
	}
}

// A stream outlives the server's write timeout, ends its watch when the
// client leaves, and ends at once when the replica starts shutting down
// (a reader that stops reading: TestRESTWatchStreamCrowdedAndStalled).
func TestRESTWatchStreamLifecycle(t *testing.T) {
	kv := newStreamKV()
	kv.rev.Store(1)
	limits := DefaultLimits()
	limits.MaxWatchWait = 100 * time.Millisecond
	limits.RequestTimeout = 200 * time.Millisecond // a stalled reader is cut off after 1.2 s
	var stop context.CancelFunc
	limits.stop, stop = context.WithCancel(context.Background())
	defer stop()
	var ended atomic.Int64
	inner := clientHandler(kv.scriptKV, limits, nil)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner.ServeHTTP(w, r)
		ended.Add(1)
	}))
	srv.Config.WriteTimeout = 300 * time.Millisecond
	srv.Start()
	defer srv.Close()
	u := srv.URL + "/kvstore/watch/k?index=1"

	// Heartbeats (every 100 ms) for twice the request timeout plus a second
	// and eight times the server's write timeout, then a change still
	// arrives.
	ctx, cancel := context.WithCancel(context.Background())
	_, s := openStream(t, ctx, u, nil)
	for heartbeats := 0; heartbeats < 25; {
		m, err := s.next()
		if err != nil {
			t.Fatalf("after %d heartbeats: %v", heartbeats, err)
		}
		if m.comment || m.hasID && m.data == "" {
			heartbeats++
		}
	}
	kv.feed <- &kvv1.WatchResponse{NextAfterRevision: 2, Events: []*kvv1.Event{{Kv: &kvv1.KeyValue{Key: "k", ModRevision: 2}}}}
	if m := nextChange(t, s); m.id != "2" {
		t.Fatalf("the change after the write timeout: %+v, want id 2", m)
	}
	// The client leaves: its handler ends.
	before := ended.Load()
	cancel()
	waitUntil(t, "the stream's handler ends after its client left", func() bool { return ended.Load() > before })

	// Shutdown ends a stream at once.
	_, s = openStream(t, context.Background(), u, nil)
	stop()
	for {
		if _, err := s.next(); err != nil {
			if err != io.EOF {
				t.Fatalf("a stream ended by shutdown: %v, want its end", err)
			}
			break
		}
	}
}

// Over HTTP/2 (what browsers speak to a TLS listener) a write deadline
// resets the stream when it passes, written to or not: a stream must not
// leave one set while it waits for the next change (here 1.5 s between
// heartbeats against a 1.01 s write deadline).
func TestRESTWatchStreamIdleOverHTTP2(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("http2=%v", h2), func(t *testing.T) {
			kv := newStreamKV()
			kv.rev.Store(1)
			limits := DefaultLimits()
			limits.MaxWatchWait = 1500 * time.Millisecond // the heartbeat
			limits.RequestTimeout = 10 * time.Millisecond // each write's deadline: 1.01 s
			srv := httptest.NewUnstartedServer(clientHandler(kv.scriptKV, limits, nil))
			srv.EnableHTTP2 = h2
			srv.StartTLS()
			defer srv.Close()
			req, _ := http.NewRequest("GET", srv.URL+"/kvstore/watch/k?index=1", nil)
			req.Header.Set("Accept", "text/event-stream")
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if (resp.ProtoMajor == 2) != h2 {
				t.Fatalf("protocol %s", resp.Proto)
			}
			s := newSSEReader(resp.Body)
			for i := range 3 { // the first message, then two heartbeats
				if _, err := s.next(); err != nil {
					t.Fatalf("%s: message %d of an idle stream: %v", resp.Proto, i, err)
				}
			}
		})
	}
}

// A stream never asks the state machine without a wait after its first
// look, however short --max-watch-wait is (the heartbeat is at least 1 ms;
// the configuration refuses less than 10 ms).
func TestRESTWatchStreamNeverSpins(t *testing.T) {
	kv := newStreamKV()
	kv.rev.Store(1)
	limits := DefaultLimits()
	limits.MaxWatchWait = 500 * time.Microsecond
	u := serveScript(t, kv.scriptKV, limits)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	openStream(t, ctx, u+"/kvstore/watch/k?index=1", nil)
	waitUntil(t, "ten waits of the stream", func() bool { return kv.calls.Load() >= 10 })
	kv.mu.Lock()
	reqs := kv.reqs
	kv.mu.Unlock()
	for i, m := range reqs[1:] { // the first look does not wait, by design
		if w := m.(*kvv1.WatchRequest); w.GetWaitMs() == 0 {
			t.Fatalf("watch %d of the stream did not wait (of %d)", i+1, len(reqs))
		}
	}
}

// After a batch of large changes a stream does not keep its large buffer
// while it waits: a client can write values that JSON makes six times
// larger, and a thousand idle streams would hold them all.
func TestRESTWatchStreamDropsLargeBuffers(t *testing.T) {
	rec := httptest.NewRecorder()
	s := eventStream{w: rec, rc: http.NewResponseController(rec), timeout: time.Second}
	val := strings.Repeat("\x01", 1<<20) // 1 MiB, 6 MiB as JSON
	s.events([]*kvv1.Event{{Kv: &kvv1.KeyValue{Key: "k", Value: val, ModRevision: 2},
		PrevKv: &kvv1.KeyValue{Key: "k", Value: val, ModRevision: 1}}})
	if !s.flush() {
		t.Fatal("flush")
	}
	if c := cap(s.buf); c > maxPooledJSON {
		t.Fatalf("after sending one change, an idle stream keeps a %d MiB buffer", c>>20)
	}
	if rec.Body.Len() < 12<<20 {
		t.Fatalf("sent %d bytes, want the whole change", rec.Body.Len())
	}
}

// A stream that meets "too many watchers" after it started keeps its
// connection and tries again (a reconnect would meet a 429, which ends an
// EventSource for good); through the listener's connection cap and raw
// system calls, a stalled reader is still cut off.
func TestRESTWatchStreamCrowdedAndStalled(t *testing.T) {
	kv := newStreamKV()
	kv.rev.Store(1)
	var crowded atomic.Int64
	idle := kv.watch
	kv.watch = func(ctx context.Context, req *kvv1.WatchRequest) (*kvv1.WatchResponse, error) {
		if req.GetWaitMs() > 0 && crowded.Add(1) <= 2 {
			return nil, twirp.NewError(twirp.ResourceExhausted, "too many watchers").WithMeta("reason", "too_many_watchers")
		}
		return idle(ctx, req)
	}
	limits := DefaultLimits()
	limits.MaxWatchWait = time.Minute
	u := serveScript(t, kv.scriptKV, limits)
	_, s := openStream(t, context.Background(), u+"/kvstore/watch/k?index=1", nil)
	waitUntil(t, "the stream waits after two crowded tries", func() bool { return kv.calls.Load() == 1 })
	kv.feed <- &kvv1.WatchResponse{NextAfterRevision: 2, Events: []*kvv1.Event{{Kv: &kvv1.KeyValue{Key: "k", ModRevision: 2}}}}
	if m := nextChange(t, s); m.id != "2" {
		t.Fatalf("the change on a crowded stream: %+v, want id 2", m)
	}

	limits.MaxWatchWait = 100 * time.Millisecond
	limits.RequestTimeout = 200 * time.Millisecond
	big := strings.Repeat("x", 256<<10)
	var rev atomic.Uint64
	flooding := newStreamKV()
	flooding.watch = func(ctx context.Context, req *kvv1.WatchRequest) (*kvv1.WatchResponse, error) {
		r := rev.Add(1)
		return &kvv1.WatchResponse{NextAfterRevision: r, Events: []*kvv1.Event{{Kv: &kvv1.KeyValue{Key: "k", Value: big, ModRevision: r}}}}, nil
	}
	var ended atomic.Bool
	inner := clientHandler(flooding.scriptKV, limits, nil)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner.ServeHTTP(w, r)
		ended.Store(true)
	}))
	srv.Listener = newCapListener(srv.Listener, 8, nil, nil)
	srv.Start()
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/kvstore/watch/k?index=1", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close() // never read
	waitUntil(t, "a stalled reader is cut off through the capped listener", ended.Load)
}

// The Go client's FollowStream key reaches the replica's Watch unchanged,
// whatever its characters ("." and ".." included): the REST route
// percent-decodes the path, and the mux must not clean or redirect it to
// another key.
func TestFollowStreamKeyEscaping(t *testing.T) {
	kv := newStreamKV()
	kv.watch = func(ctx context.Context, req *kvv1.WatchRequest) (*kvv1.WatchResponse, error) {
		if req.GetWaitMs() == 0 {
			return &kvv1.WatchResponse{NextAfterRevision: req.GetAfterRevision()}, nil
		}
		// Echo what was watched as the value of one event.
		return &kvv1.WatchResponse{NextAfterRevision: req.GetAfterRevision() + 1, Events: []*kvv1.Event{{
			Type: kvv1.EventType_EVENT_TYPE_PUT,
			Kv: &kvv1.KeyValue{Key: req.GetKey(), Value: fmt.Sprintf("prefix=%v", req.GetPrefix()),
				ModRevision: req.GetAfterRevision() + 1, CreateRevision: 1, Version: 1}}}}, nil
	}
	u := serveScript(t, kv.scriptKV, DefaultLimits())
	c, err := client.New([]string{u}, client.Options{StreamIdleTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	for _, k := range []struct {
		key    string
		prefix bool
	}{
		{"a/b", false}, {"a%b", false}, {"a?b#c", false}, {"a b", false}, {"ünï/ç", false},
		{"a//b", false}, {"../x", false}, {"a/..", false}, {"", true}, {"dir/", true},
		{".", false}, {"..", false}, {".", true}, {"..", true},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		var got string
		err := c.FollowStream(ctx, k.key, k.prefix, 1, func(ev client.Event) error {
			got = fmt.Sprintf("%q %s", ev.KV.Key, ev.KV.Value)
			return stop
		})
		cancel()
		if want := fmt.Sprintf("%q prefix=%v", k.key, k.prefix); err != stop || got != want {
			t.Errorf("FollowStream(%q, prefix=%v): watched %s (err %v), want %s", k.key, k.prefix, got, err, want)
		}
	}
}

// Against a replica from before watch streams (it ignores Accept and
// stream=, and answers a long poll after the request's wait, which the
// client keeps below its idle timeout), FollowStream goes on with long
// polls and still delivers every change.
func TestFollowStreamFallsBackToLongPolls(t *testing.T) {
	kv := newStreamKV()
	kv.rev.Store(5)
	limits := DefaultLimits()
	limits.MaxWatchWait = time.Minute // the old replica would hold a long poll without wait this long
	inner := clientHandler(kv.scriptKV, limits, nil)
	var streamAsks atomic.Int64
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") == "text/event-stream" {
			streamAsks.Add(1)
		}
		r.Header.Del("Accept")
		q := r.URL.Query()
		q.Del("stream")
		r.URL.RawQuery = q.Encode()
		inner.ServeHTTP(w, r)
	}))
	defer old.Close()
	c, err := client.New([]string{old.URL}, client.Options{StreamIdleTimeout: 2 * time.Second}) // it asks for wait=1s
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- c.FollowStream(ctx, "k", false, 5, func(ev client.Event) error {
			got <- fmt.Sprintf("%s@%d", ev.KV.Key, ev.KV.ModRevision)
			return errors.New("enough")
		})
	}()
	// The long poll that answered the stream request, then a Twirp long
	// poll waiting for the change.
	waitUntil(t, "a long poll after the stream request", func() bool { return streamAsks.Load() == 1 && kv.calls.Load() >= 2 })
	kv.feed <- &kvv1.WatchResponse{NextAfterRevision: 6, Events: []*kvv1.Event{{Type: kvv1.EventType_EVENT_TYPE_PUT, Kv: &kvv1.KeyValue{Key: "k", ModRevision: 6}}}}
	select {
	case g := <-got:
		if g != "k@6" {
			t.Fatalf("delivered %s, want k@6", g)
		}
	case err := <-done:
		t.Fatalf("FollowStream ended with %v before delivering the change", err)
	}
	if err := <-done; err == nil || err.Error() != "enough" {
		t.Fatalf("FollowStream = %v, want fn's error", err)
	}
	if n := streamAsks.Load(); n != 1 {
		t.Fatalf("%d stream requests, want 1 before going on with long polls", n)
	}
}

// A batch of changes written in pieces (see appendJSONStringTo) whose last
// piece left nothing to flush still ends with a flush and with the write
// deadline cleared: the stream delivers all of it, outlives its timeout
// idle, and sends the next change.
func TestRESTWatchStreamAfterBatchWrittenInPieces(t *testing.T) {
	kv := newStreamKV()
	kv.rev.Store(1)
	limits := DefaultLimits()
	limits.MaxWatchWait = 1500 * time.Millisecond  // the heartbeat
	limits.RequestTimeout = 100 * time.Millisecond // a batch's write deadline: 1.1 s
	u := serveScript(t, kv.scriptKV, limits)
	_, s := openStream(t, context.Background(), u+"/kvstore/watch/k/?prefix=true&index=1", nil)
	waitUntil(t, "the stream waits", func() bool { return kv.calls.Load() == 1 })
	// Eight changes of 4,000 bytes: the buffer passes jsonChunk at the end
	// of the last, so the batch leaves nothing to flush.
	var evs []*kvv1.Event
	for rev := uint64(2); rev <= 9; rev++ {
		evs = append(evs, &kvv1.Event{Kv: &kvv1.KeyValue{Key: "k/" + strconv.FormatUint(rev, 10), Value: strings.Repeat("v", 4000), ModRevision: rev}})
	}
	kv.feed <- &kvv1.WatchResponse{NextAfterRevision: 9, Events: evs}
	for rev := 2; rev <= 9; rev++ {
		if m := nextChange(t, s); m.id != strconv.Itoa(rev) {
			t.Fatalf("change %+v, want id %d", m, rev)
		}
	}
	waitUntil(t, "a heartbeat after the batch's deadline passed", func() bool { return kv.calls.Load() >= 3 })
	kv.feed <- &kvv1.WatchResponse{NextAfterRevision: 11, Events: []*kvv1.Event{{Kv: &kvv1.KeyValue{Key: "k/c", ModRevision: 11}}}}
	if m := nextChange(t, s); m.id != "11" {
		t.Fatalf("change after the heartbeat: %+v, want id 11", m)
	}
}
