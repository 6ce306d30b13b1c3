package kvwire

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

func TestValidRequestID(t *testing.T) {
	for id, want := range map[string]bool{
		"abc-123":                              true,
		"0f1e2d3c4b5a69788796a5b4":             true,
		"trace:span_1.2":                       true,
		strings.Repeat("a", MaxRequestIDLen):   true,
		"":                                     false,
		strings.Repeat("a", MaxRequestIDLen+1): false,
		"two words":                            false,
		"line\nbreak":                          false,
		"\x1b[31mred":                          false,
		`"quoted"`:                             false,
		"é":                                    false,
	} {
		if got := ValidRequestID(id); got != want {
			t.Errorf("ValidRequestID(%q) = %v, want %v", id, got, want)
		}
	}
	if id := NewRequestID(); !ValidRequestID(id) || id == NewRequestID() {
		t.Fatalf("NewRequestID gave %q", id)
	}
}

type requestIDKey struct{}

// A Forwarder sends each call's request id on: in the header of a call
// over KVService, and in each write of a batch (the batch's call runs
// under a context of its own, so the id travels with the write).
func TestForwarderSendsRequestIDs(t *testing.T) {
	svc := &fixedKV{delay: 20 * time.Millisecond}
	var mu sync.Mutex // guards headers, ops
	var headers []string
	ops := map[string]string{} // key -> request id
	mux := http.NewServeMux()
	kv := kvv1.NewKVServiceServer(NewServer(svc, ServerOptions{}))
	mux.Handle(kv.PathPrefix(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		headers = append(headers, r.Header.Get(RequestIDHeader))
		mu.Unlock()
		kv.ServeHTTP(w, r)
	}))
	batches := NewBatchServer(svc, 1000)
	fwd := kvv1.NewForwardServiceServer(forwardFunc(func(ctx context.Context, req *kvv1.WriteBatchRequest) (*kvv1.WriteBatchResponse, error) {
		mu.Lock()
		for _, op := range req.GetOps() {
			ops[op.GetPut().GetKey()] = op.GetRequestId()
		}
		mu.Unlock()
		return batches.WriteBatch(ctx, req)
	}))
	mux.Handle(fwd.PathPrefix(), fwd)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	cfg := DefaultForwarderConfig()
	cfg.MaxInFlight = 1 // writes queue behind the call in flight and go in batches
	cfg.RequestID = func(ctx context.Context) string { id, _ := ctx.Value(requestIDKey{}).(string); return id }
	f, err := NewForwarder(kvv1.NewKVServiceProtobufClient(srv.URL, srv.Client()), kvv1.NewForwardServiceProtobufClient(srv.URL, srv.Client()), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			id := "req-" + string(rune('A'+i))
			ctx := context.WithValue(context.Background(), requestIDKey{}, id)
			if _, err := f.Put(ctx, &kvclient.PutRequest{Key: id, Value: "v", Write: kvclient.WriteID{ClientID: 7, Seq: uint64(i + 1)}}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	ctx := context.WithValue(context.Background(), requestIDKey{}, "read-1")
	if _, err := f.Get(ctx, &kvclient.GetRequest{Key: "k"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Get(context.Background(), &kvclient.GetRequest{Key: "k"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ops) != 50 {
		t.Fatalf("%d writes arrived, want 50", len(ops))
	}
	for key, id := range ops {
		if id != key {
			t.Errorf("the write of %s carried request id %q", key, id)
		}
	}
	if len(headers) != 2 || headers[0] != "read-1" || headers[1] != "" {
		t.Fatalf("the gets carried %q, want the id and none", headers)
	}
}

type forwardFunc func(context.Context, *kvv1.WriteBatchRequest) (*kvv1.WriteBatchResponse, error)

func (f forwardFunc) WriteBatch(ctx context.Context, req *kvv1.WriteBatchRequest) (*kvv1.WriteBatchResponse, error) {
	return f(ctx, req)
}

// A BatchServer with a logger logs each write under its request id, or
// under a fresh one when the sender gave none or one that is not usable
// (which never reaches the log); a failure the sender cannot act on is
// logged at info.
func TestBatchServerLogsRequestIDs(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	bad := []string{"", "evil\n" + `{"msg":"forged"}`, strings.Repeat("x", 1000)}
	req := &kvv1.WriteBatchRequest{Ops: []*kvv1.WriteOp{
		{RequestId: "good-1", Op: &kvv1.WriteOp_Put{Put: &kvv1.PutRequest{Key: "a"}}},
		{RequestId: "good-2", Op: &kvv1.WriteOp_Delete{Delete: &kvv1.DeleteRequest{Key: "a"}}},
	}}
	for _, id := range bad {
		req.Ops = append(req.Ops, &kvv1.WriteOp{RequestId: id, Op: &kvv1.WriteOp_Append{Append: &kvv1.AppendRequest{Key: "b"}}})
	}
	if _, err := NewBatchServer(&fixedKV{}, 10).WithLogger(logger).WriteBatch(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if _, err := NewBatchServer(&fixedKV{err: kvclient.ErrTimeout}, 10).WithLogger(logger).WriteBatch(context.Background(),
		&kvv1.WriteBatchRequest{Ops: []*kvv1.WriteOp{{RequestId: "slow-1", Op: &kvv1.WriteOp_Put{Put: &kvv1.PutRequest{Key: "c"}}}}}); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{} // request id -> level, op, result
	for line := range strings.Lines(buf.String()) {
		var rec struct {
			Level, Msg, Op, Result string
			RequestID              string `json:"request_id"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec.Msg != "forwarded write" || !ValidRequestID(rec.RequestID) {
			t.Fatalf("log line %q", line)
		}
		got[rec.RequestID] = rec.Level + " " + rec.Op + " " + rec.Result
	}
	if len(got) != 6 || got["good-1"] != "DEBUG put RESULT_CODE_OK" || got["good-2"] != "DEBUG delete RESULT_CODE_OK" ||
		got["slow-1"] != "INFO put RESULT_CODE_TIMEOUT" {
		t.Fatalf("logged %v", got)
	}
	if strings.Contains(buf.String(), "evil") || strings.Contains(buf.String(), "forged") || strings.Contains(buf.String(), "xxxx") {
		t.Fatalf("a bad id reached the log:\n%s", buf.String())
	}
}
