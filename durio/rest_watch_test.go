package durio

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twitchtv/twirp"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// scriptKV is a KVService whose issue 16 methods are scripted by the test,
// recording what reached it, for testing the HTTP layer alone.
type scriptKV struct {
	*mapKV
	mu   sync.Mutex // guards reqs
	reqs []proto.Message

	put    func(*kvv1.PutRequest) (*kvv1.PutResponse, error)
	del    func(*kvv1.DeleteRequest) (*kvv1.DeleteResponse, error)
	list   func(*kvv1.ListRequest) (*kvv1.ListResponse, error)
	watch  func(context.Context, *kvv1.WatchRequest) (*kvv1.WatchResponse, error)
	grant  func(*kvv1.LeaseGrantRequest) (*kvv1.LeaseGrantResponse, error)
	status func() (*kvv1.StatusResponse, error)
}

func newScriptKV() *scriptKV { return &scriptKV{mapKV: &mapKV{m: map[string]string{}}} }

func (s *scriptKV) record(m proto.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, proto.Clone(m))
}

// last returns the last request that reached the service.
func (s *scriptKV) last() proto.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		return nil
	}
	return s.reqs[len(s.reqs)-1]
}

func (s *scriptKV) Put(ctx context.Context, req *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	s.record(req)
	if s.put != nil {
		return s.put(req)
	}
	return s.mapKV.Put(ctx, req)
}

func (s *scriptKV) Delete(ctx context.Context, req *kvv1.DeleteRequest) (*kvv1.DeleteResponse, error) {
	s.record(req)
	if s.del != nil {
		return s.del(req)
	}
	return s.mapKV.Delete(ctx, req)
}

func (s *scriptKV) List(_ context.Context, req *kvv1.ListRequest) (*kvv1.ListResponse, error) {
	s.record(req)
	return s.list(req)
}

func (s *scriptKV) Watch(ctx context.Context, req *kvv1.WatchRequest) (*kvv1.WatchResponse, error) {
	s.record(req)
	return s.watch(ctx, req)
}

func (s *scriptKV) LeaseGrant(_ context.Context, req *kvv1.LeaseGrantRequest) (*kvv1.LeaseGrantResponse, error) {
	s.record(req)
	return s.grant(req)
}

func (s *scriptKV) Status(ctx context.Context, req *kvv1.StatusRequest) (*kvv1.StatusResponse, error) {
	if s.status != nil {
		return s.status()
	}
	return s.mapKV.Status(ctx, req)
}

// idleWatch is a Watch that finds nothing: it waits out wait_ms (or the
// caller's context) and answers empty.
func idleWatch(ctx context.Context, req *kvv1.WatchRequest) (*kvv1.WatchResponse, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Duration(req.GetWaitMs()) * time.Millisecond):
	}
	return &kvv1.WatchResponse{Header: &kvv1.ResponseHeader{Revision: req.GetAfterRevision()}, NextAfterRevision: req.GetAfterRevision()}, nil
}

func serveScript(t *testing.T, kv *scriptKV, limits Limits) string {
	t.Helper()
	srv := httptest.NewServer(clientHandler(kv, limits, nil))
	t.Cleanup(srv.Close)
	return srv.URL
}

// Each condition of the put body and the delete query becomes the matching
// kv.v1 Condition; more than one, or one on append, is refused.
func TestRESTConditionsReachTheService(t *testing.T) {
	kv := newScriptKV()
	u := serveScript(t, kv, DefaultLimits())
	cases := []struct {
		method, path, body string
		want               *kvv1.Condition
	}{
		{"POST", "/kvstore/put", `{"key":"k","value":"v","if_absent":true}`, &kvv1.Condition{Kind: kvv1.ConditionKind_CONDITION_KIND_ABSENT}},
		{"POST", "/kvstore/put", `{"key":"k","value":"v","if_revision":7}`, &kvv1.Condition{Kind: kvv1.ConditionKind_CONDITION_KIND_MOD_REVISION, ModRevision: 7}},
		{"POST", "/kvstore/put", `{"key":"k","value":"v","if_version":0}`, &kvv1.Condition{Kind: kvv1.ConditionKind_CONDITION_KIND_VERSION}},
		{"POST", "/kvstore/put", `{"key":"k","value":"v","if_value":""}`, &kvv1.Condition{Kind: kvv1.ConditionKind_CONDITION_KIND_VALUE}},
		{"POST", "/kvstore/put", `{"key":"k","value":"v"}`, nil},
		{"DELETE", "/kvstore/a/b?if_revision=9", "", &kvv1.Condition{Kind: kvv1.ConditionKind_CONDITION_KIND_MOD_REVISION, ModRevision: 9}},
		{"DELETE", "/kvstore/a/b?if_value=x%26y", "", &kvv1.Condition{Kind: kvv1.ConditionKind_CONDITION_KIND_VALUE, Value: "x&y"}},
		{"DELETE", "/kvstore/a/b?if_version=3", "", &kvv1.Condition{Kind: kvv1.ConditionKind_CONDITION_KIND_VERSION, Version: 3}},
	}
	for _, c := range cases {
		if code, body := do(t, c.method, u+c.path, c.body); code != 200 {
			t.Fatalf("%s %s %s: %d %v", c.method, c.path, c.body, code, body)
		}
		var got *kvv1.Condition
		switch m := kv.last().(type) {
		case *kvv1.PutRequest:
			got = m.GetCondition()
		case *kvv1.DeleteRequest:
			got = m.GetCondition()
		}
		if !proto.Equal(got, c.want) {
			t.Errorf("%s %s %s: condition %v, want %v", c.method, c.path, c.body, got, c.want)
		}
	}
	bad := []struct{ method, path, body string }{
		{"POST", "/kvstore/put", `{"key":"k","value":"v","if_absent":true,"if_revision":1}`},
		{"POST", "/kvstore/put", `{"key":"k","value":"v","if_revision":-1}`},
		{"POST", "/kvstore/put", `{"key":"k","value":"v","if_revision":"1"}`},
		{"POST", "/kvstore/put", `{"key":"k","value":"v","lease":5,"ttl_ms":1000}`},
		{"POST", "/kvstore/append", `{"key":"k","value":"v","if_absent":true}`},
		{"POST", "/kvstore/append", `{"key":"k","value":"v","ttl_ms":1000}`},
		{"DELETE", "/kvstore/k?if_absent=true", ""},
		{"DELETE", "/kvstore/k?if_revision=1&if_value=x", ""},
		{"DELETE", "/kvstore/k?if_revision=x", ""},
		{"DELETE", "/kvstore/k?if_revision=1&if_revision=2", ""},
		// An empty number is none: it stood for 0 (a 409 for
		// if_revision=, a delete of an absent key for if_version=).
		{"DELETE", "/kvstore/k?if_revision=", ""},
		{"DELETE", "/kvstore/k?if_version=", ""},
	}
	n := len(kv.reqs)
	for _, b := range bad {
		if code, body := do(t, b.method, u+b.path, b.body); code != 400 || body["code"] == nil {
			t.Errorf("%s %s %s: %d %v, want 400 with a Twirp error", b.method, b.path, b.body, code, body)
		}
	}
	if len(kv.reqs) != n {
		t.Fatalf("refused requests reached the service: %v", kv.reqs[n:])
	}
}

// A failed condition is 409 with the key's current state and the store
// revision, in the body and the X-Durio-Revision header.
func TestRESTConditionFailedIs409(t *testing.T) {
	kv := newScriptKV()
	failed := func(exists bool) error {
		err := twirp.NewError(twirp.FailedPrecondition, "condition failed").WithMeta("reason", "condition_failed").
			WithMeta("revision", "42").WithMeta("exists", strconv.FormatBool(exists))
		if exists {
			err = err.WithMeta("value", "theirs").WithMeta("create_revision", "3").WithMeta("mod_revision", "40").WithMeta("version", "5")
		}
		return err
	}
	kv.put = func(*kvv1.PutRequest) (*kvv1.PutResponse, error) { return nil, failed(true) }
	kv.del = func(*kvv1.DeleteRequest) (*kvv1.DeleteResponse, error) { return nil, failed(false) }
	u := serveScript(t, kv, DefaultLimits())

	req, _ := http.NewRequest("POST", u+"/kvstore/put", strings.NewReader(`{"key":"doc/1","value":"mine","if_revision":39}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || resp.Header.Get(RevisionHeader) != "42" {
		t.Fatalf("put: %d, %s %q", resp.StatusCode, RevisionHeader, resp.Header.Get(RevisionHeader))
	}
	code, body := do(t, "POST", u+"/kvstore/put", `{"key":"doc/1","value":"mine","if_revision":39}`)
	cur, _ := body["current"].(map[string]any)
	if code != 409 || body["code"] != "failed_precondition" || body["revision"] != 42.0 || cur == nil ||
		cur["key"] != "doc/1" || cur["value"] != "theirs" || cur["mod_revision"] != 40.0 || cur["version"] != 5.0 || cur["create_revision"] != 3.0 {
		t.Fatalf("put: %d %v", code, body)
	}
	code, body = do(t, "DELETE", u+"/kvstore/doc/1?if_revision=39", "")
	if code != 409 || body["current"] != nil || body["revision"] != 42.0 {
		t.Fatalf("delete of a missing key: %d %v", code, body)
	}
	if _, has := body["current"]; !has {
		t.Fatalf("delete: no current field (null for an absent key): %v", body)
	}
}

// List passes its parameters through, lowers a limit above the cap, refuses
// malformed ones, and answers with the page's revision in the header.
func TestRESTList(t *testing.T) {
	kv := newScriptKV()
	kv.list = func(req *kvv1.ListRequest) (*kvv1.ListResponse, error) {
		return &kvv1.ListResponse{Header: &kvv1.ResponseHeader{Revision: 12}, Revision: 11, More: true,
			Kvs: []*kvv1.KeyValue{{Key: req.Prefix + "a", Value: "1", CreateRevision: 2, ModRevision: 5, Version: 3}}}, nil
	}
	u := serveScript(t, kv, DefaultLimits())
	resp, err := http.Get(u + "/kvstore/list?prefix=users/&after=users/0&limit=1000000&keys_only=true&revision=11&stale=true")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get(RevisionHeader) != "11" {
		t.Fatalf("list: %d %s=%q", resp.StatusCode, RevisionHeader, resp.Header.Get(RevisionHeader))
	}
	want := &kvv1.ListRequest{Prefix: "users/", After: "users/0", Limit: MaxPageKeys, KeysOnly: true, Revision: 11,
		Consistency: kvv1.ReadConsistency_READ_CONSISTENCY_STALE}
	if got := kv.last(); !proto.Equal(got, want) {
		t.Fatalf("list request %v, want %v", got, want)
	}
	code, body := do(t, "GET", u+"/kvstore/list?prefix=p/", "")
	kvs, _ := body["kvs"].([]any)
	if code != 200 || body["more"] != true || body["revision"] != 11.0 || len(kvs) != 1 {
		t.Fatalf("list: %d %v", code, body)
	}
	if first := kvs[0].(map[string]any); first["key"] != "p/a" || first["mod_revision"] != 5.0 || first["version"] != 3.0 {
		t.Fatalf("list entry: %v", first)
	}
	n := len(kv.reqs)
	for _, q := range []string{"limit=-1", "limit=ten", "revision=1.5", "keys_only=maybe", "prefix=a&prefix=b",
		"prefix=" + strings.Repeat("x", DefaultLimits().MaxKeyBytes+1), "prefix=%FF", "wait=5s", "index=1&wait=forever", "index=x", "%zz"} {
		if code, body := do(t, "GET", u+"/kvstore/list?"+q, ""); code != 400 || body["code"] == nil {
			t.Errorf("list?%s: %d %v, want 400", q, code, body)
		}
	}
	if len(kv.reqs) != n {
		t.Fatalf("refused listings reached the service: %v", kv.reqs[n:])
	}
}

// A blocking get waits for a change after ?index, then answers the current
// state; a wait above --max-watch-wait is lowered to it; a watch answers
// the events with next_index, compacted history is 410, and too many
// watchers 429 with Retry-After.
func TestRESTBlockingQueriesAndWatch(t *testing.T) {
	kv := newScriptKV()
	changed := make(chan struct{})
	kv.watch = func(ctx context.Context, req *kvv1.WatchRequest) (*kvv1.WatchResponse, error) {
		switch {
		case req.GetKey() == "compacted":
			return &kvv1.WatchResponse{Compacted: true, CompactRevision: 50}, nil
		case req.GetKey() == "crowded":
			return nil, twirp.NewError(twirp.ResourceExhausted, "too many watchers").WithMeta("reason", "too_many_watchers")
		case req.GetKey() == "k":
			select {
			case <-changed:
				return &kvv1.WatchResponse{Header: &kvv1.ResponseHeader{Revision: 8}, NextAfterRevision: 8,
					Events: []*kvv1.Event{{Type: kvv1.EventType_EVENT_TYPE_PUT, Kv: &kvv1.KeyValue{Key: "k", Value: "new", ModRevision: 8, Version: 2}},
						{Type: kvv1.EventType_EVENT_TYPE_DELETE, Kv: &kvv1.KeyValue{Key: "k", ModRevision: 9}}}}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(req.GetWaitMs()) * time.Millisecond):
				return &kvv1.WatchResponse{NextAfterRevision: req.GetAfterRevision()}, nil
			}
		}
		return idleWatch(ctx, req)
	}
	kv.status = func() (*kvv1.StatusResponse, error) { return &kvv1.StatusResponse{Revision: 77}, nil }
	limits := DefaultLimits()
	limits.MaxWatchWait = 300 * time.Millisecond
	u := serveScript(t, kv, limits)
	kv.m["k"] = "old"

	// The wait is lowered to the cap: an hour ends after about 300 ms.
	done := make(chan int, 1)
	go func() {
		resp, err := http.Get(u + "/kvstore/get/k?index=7&wait=1h")
		if err != nil {
			done <- -1
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	select {
	case code := <-done:
		if code != 200 {
			t.Fatalf("blocking get after the wait: %d", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a blocking get with wait=1h did not end at --max-watch-wait (300ms)")
	}
	for _, m := range kv.reqs {
		if w, ok := m.(*kvv1.WatchRequest); ok && (w.GetWaitMs() > 300 || w.GetKey() != "k" || w.GetAfterRevision() != 7) {
			t.Fatalf("watch request %v: want key k after 7, wait at most 300ms", w)
		}
	}

	// A change wakes it, and the answer is the state after the change.
	go func() {
		code, body := do(t, "GET", u+"/kvstore/get/k?index=7&wait=250ms", "")
		if code != 200 || body["value"] != "new" {
			t.Errorf("blocking get woken by a change: %d %v", code, body)
		}
		done <- code
	}()
	time.Sleep(20 * time.Millisecond) // let it block (either order is correct)
	kv.mu.Lock()
	kv.m["k"] = "new"
	kv.mu.Unlock()
	close(changed)
	<-done

	code, body := do(t, "GET", u+"/kvstore/watch/k?index=7&wait=250ms", "")
	events, _ := body["events"].([]any)
	if code != 200 || body["next_index"] != 8.0 || len(events) != 2 {
		t.Fatalf("watch: %d %v", code, body)
	}
	if ev := events[1].(map[string]any); ev["type"] != "delete" || ev["kv"].(map[string]any)["mod_revision"] != 9.0 {
		t.Fatalf("watch event: %v", ev)
	}
	// Without index, a watch starts at the replica's current revision.
	if code, body := do(t, "GET", u+"/kvstore/watch/idle?wait=10ms", ""); code != 200 || body["next_index"] != 77.0 {
		t.Fatalf("watch without index: %d %v", code, body)
	}
	if w := kv.last().(*kvv1.WatchRequest); w.GetAfterRevision() != 77 {
		t.Fatalf("watch without index asked after %d, want 77", w.GetAfterRevision())
	}
	if code, body := do(t, "GET", u+"/kvstore/watch/compacted?index=3", ""); code != http.StatusGone || body["meta"].(map[string]any)["compact_revision"] != "50" {
		t.Fatalf("compacted watch: %d %v", code, body)
	}
	// A blocking get over compacted history has certainly changed: it answers.
	if code, _ := do(t, "GET", u+"/kvstore/get/k?index=3&wait=1s", ""); code != 200 {
		t.Fatalf("blocking get over compacted history: %d", code)
	}
	resp, err := http.Get(u + "/kvstore/watch/crowded?index=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("too many watchers: %d Retry-After=%q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	for _, q := range []string{"/kvstore/watch/k?index=-1", "/kvstore/watch/k?wait=-1s", "/kvstore/watch/k?prefix=yes", "/kvstore/watch/?index=1"} {
		if code, body := do(t, "GET", u+q, ""); code != 400 {
			t.Errorf("GET %s: %d %v, want 400", q, code, body)
		}
	}
}

// Long polls take no --max-inflight slot, end when the client leaves, and
// end (with an empty answer) when the replica starts shutting down; their
// answer is not cut off by the server's write timeout.
func TestRESTLongPollLifecycle(t *testing.T) {
	kv := newScriptKV()
	cancelled := make(chan struct{}, 8)
	kv.watch = func(ctx context.Context, req *kvv1.WatchRequest) (*kvv1.WatchResponse, error) {
		resp, err := idleWatch(ctx, req)
		if err != nil {
			cancelled <- struct{}{}
		}
		return resp, err
	}
	limits := DefaultLimits()
	limits.MaxInflight = 1
	limits.MaxWatchWait = time.Minute
	var stop context.CancelFunc
	limits.stop, stop = context.WithCancel(context.Background())
	defer stop()
	srv := httptest.NewUnstartedServer(clientHandler(kv, limits, nil))
	srv.Config.WriteTimeout = 300 * time.Millisecond
	srv.Start()
	defer srv.Close()
	u := srv.URL

	// A watch that outlives the write timeout still gets its answer.
	code, body := do(t, "GET", u+"/kvstore/watch/a?index=1&wait=800ms", "")
	if code != 200 || body["next_index"] != 1.0 {
		t.Fatalf("watch longer than the write timeout: %d %v", code, body)
	}

	// Two watchers wait while the single in-flight slot serves a put; a
	// HEAD waits like a GET (it took an in-flight slot for its whole
	// wait: 512 of them held off every other request).
	results := make(chan int, 2)
	for _, method := range []string{"GET", "HEAD"} {
		go func() {
			code, _ := do(t, method, u+"/kvstore/watch/a?index=1&wait=1m", "")
			results <- code
		}()
	}
	waitUntil(t, "two watchers waiting", func() bool {
		kv.mu.Lock()
		defer kv.mu.Unlock()
		n := 0
		for _, m := range kv.reqs {
			if w, ok := m.(*kvv1.WatchRequest); ok && w.GetWaitMs() > 10000 {
				n++
			}
		}
		return n == 2
	})
	if code, body := do(t, "POST", u+"/kvstore/put", `{"key":"a","value":"b"}`); code != 200 {
		t.Fatalf("put while two watchers wait with --max-inflight 1: %d %v", code, body)
	}
	// Shutdown ends both, promptly and with an empty answer.
	stop()
	for range 2 {
		select {
		case code := <-results:
			if code != 200 {
				t.Fatalf("watcher ended by shutdown: %d", code)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a watcher did not end when the replica began shutting down")
		}
	}

	// A client that leaves cancels its watch.
	limits.stop = nil
	srv2 := httptest.NewServer(clientHandler(kv, limits, nil))
	defer srv2.Close()
	for len(cancelled) > 0 {
		<-cancelled
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv2.URL+"/kvstore/watch/a?index=1&wait=1m", nil)
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	select {
	case <-cancelled:
	case <-time.After(20 * time.Second):
		t.Fatal("the watch went on after its client left")
	}
}

// A Twirp Watch's wait above --max-watch-wait is lowered to it before it
// reaches the service, and a watch of an empty key without prefix is
// refused there.
func TestTwirpWatchLimits(t *testing.T) {
	kv := newScriptKV()
	kv.watch = idleWatch
	limits := DefaultLimits()
	limits.MaxWatchWait = 50 * time.Millisecond
	u := serveScript(t, kv, limits)
	c := kvv1.NewKVServiceJSONClient(u, http.DefaultClient)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Watch(ctx, &kvv1.WatchRequest{Key: "k", WaitMs: uint64(time.Hour / time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	if w := kv.last().(*kvv1.WatchRequest); w.GetWaitMs() != 50 {
		t.Fatalf("wait_ms %d reached the service, want it lowered to 50", w.GetWaitMs())
	}
	n := len(kv.reqs)
	if _, err := c.Watch(ctx, &kvv1.WatchRequest{}); err == nil || !strings.Contains(err.Error(), "key") {
		t.Fatalf("a watch of nothing: %v, want invalid_argument on key", err)
	}
	if len(kv.reqs) != n {
		t.Fatalf("refused requests reached the service")
	}
}
