package kvwire

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// fixedKV answers every request with err (nil: success) and records the
// writes it saw.
type fixedKV struct {
	// Service (nil) stands in for the methods this fake does not serve.
	kvclient.Service
	err   error
	mu    sync.Mutex // guards ids
	ids   []kvclient.WriteID
	delay time.Duration // guarded by mu
}

func (f *fixedKV) record(ctx context.Context, id kvclient.WriteID) error {
	f.mu.Lock()
	f.ids = append(f.ids, id)
	delay := f.delay
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return f.err
}

func (f *fixedKV) OpenSession(ctx context.Context, _ *kvclient.OpenSessionRequest) (*kvclient.OpenSessionResponse, error) {
	if err := f.record(ctx, kvclient.WriteID{}); err != nil {
		return nil, err
	}
	return &kvclient.OpenSessionResponse{ClientID: 1 << 40, IdleTimeout: time.Minute}, nil
}

func (f *fixedKV) Get(ctx context.Context, req *kvclient.GetRequest) (*kvclient.GetResponse, error) {
	if err := f.record(ctx, kvclient.WriteID{}); err != nil {
		return nil, err
	}
	return &kvclient.GetResponse{Header: kvclient.ResponseHeader{ReplicaID: 2, Term: 9}, Value: "v:" + req.Key, Found: req.Key != "missing"}, nil
}

func (f *fixedKV) Put(ctx context.Context, req *kvclient.PutRequest) (*kvclient.PutResponse, error) {
	if err := f.record(ctx, req.Write); err != nil {
		return nil, err
	}
	return &kvclient.PutResponse{Header: kvclient.ResponseHeader{ReplicaID: 2, Term: 9}}, nil
}

func (f *fixedKV) Append(ctx context.Context, req *kvclient.AppendRequest) (*kvclient.AppendResponse, error) {
	if err := f.record(ctx, req.Write); err != nil {
		return nil, err
	}
	return &kvclient.AppendResponse{}, nil
}

func (f *fixedKV) Delete(ctx context.Context, req *kvclient.DeleteRequest) (*kvclient.DeleteResponse, error) {
	if err := f.record(ctx, req.Write); err != nil {
		return nil, err
	}
	return &kvclient.DeleteResponse{Existed: true}, nil
}

// serve runs svc behind a real Twirp server and returns a Client and a
// Forwarder to it.
func serve(t *testing.T, svc kvclient.Service, fcfg ForwarderConfig) (Client, *Forwarder, *atomic.Int64) {
	t.Helper()
	calls := new(atomic.Int64)
	mux := http.NewServeMux()
	kv := kvv1.NewKVServiceServer(NewServer(svc, ServerOptions{LeaderURL: func(id int) string { return fmt.Sprintf("http://replica-%d", id) }}))
	mux.Handle(kv.PathPrefix(), kv)
	fwd := kvv1.NewForwardServiceServer(NewBatchServer(svc, 1000))
	mux.Handle(fwd.PathPrefix(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		fwd.ServeHTTP(w, r)
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f, err := NewForwarder(kvv1.NewKVServiceProtobufClient(srv.URL, srv.Client()), kvv1.NewForwardServiceProtobufClient(srv.URL, srv.Client()), fcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return NewClient(kvv1.NewKVServiceProtobufClient(srv.URL, srv.Client())), f, calls
}

// Every kvclient error crosses Twirp, and a batch result, and comes back
// as itself, with the same unknown-outcome verdict.
func TestErrorsRoundTrip(t *testing.T) {
	for _, e := range []error{
		&kvclient.WrongLeaderError{Leader: 2},
		&kvclient.WrongLeaderError{Leader: kvclient.NoLeader, Proposed: true},
		kvclient.ErrTimeout, kvclient.ErrKilled, kvclient.ErrInvalid, kvclient.ErrStale,
		kvclient.ErrTooLarge, kvclient.ErrNoSession, kvclient.ErrTooManyPending,
	} {
		client, fwd, _ := serve(t, &fixedKV{err: e}, DefaultForwarderConfig())
		for name, call := range map[string]func() error{
			"twirp": func() error {
				_, err := client.Put(context.Background(), &kvclient.PutRequest{Key: "k"})
				return err
			},
			"batch": func() error {
				_, err := fwd.Put(context.Background(), &kvclient.PutRequest{Key: "k"})
				return err
			},
		} {
			got := call()
			var wantWL *kvclient.WrongLeaderError
			if errors.As(e, &wantWL) {
				var wl *kvclient.WrongLeaderError
				if !errors.As(got, &wl) || *wl != *wantWL {
					t.Errorf("%s: %v came back as %v", name, e, got)
				}
			} else if !errors.Is(got, e) {
				t.Errorf("%s: %v came back as %v", name, e, got)
			}
			if kvclient.MaybeApplied(got) != kvclient.MaybeApplied(e) {
				t.Errorf("%s: %v: MaybeApplied changed across the wire", name, e)
			}
		}
		if e == kvclient.ErrStale || e == kvclient.ErrNoSession {
			// The Twirp error stays in the chain for callers that print it.
			_, err := client.Put(context.Background(), &kvclient.PutRequest{Key: "k"})
			var terr twirp.Error
			if !errors.As(err, &terr) || terr.Code() != twirp.FailedPrecondition {
				t.Errorf("%v: no failed_precondition Twirp error in %v", e, err)
			}
		}
	}
}

// A refusal forwarded from another replica reaches the client as that
// replica worded it, meta included: mapped to Twirp again, it read
// "kvraft: no such session: twirp error failed_precondition: kvraft: no
// such session: open a session (...): open a session (...)", and an
// invalid argument lost its meta, so the answer depended on the replica
// asked.
func TestForwardedRefusalAnswersAsTheRemote(t *testing.T) {
	for _, e := range []error{
		fmt.Errorf("%w: lease TTL 5ms is outside [1s, 24h0m0s]", kvclient.ErrInvalid),
		kvclient.ErrNoSession, kvclient.ErrStale, kvclient.ErrTooManyPending, kvclient.ErrLeaseNotFound,
		kvclient.ErrTooLarge, kvclient.ErrFutureRevision, &kvclient.CompactedError{CompactRevision: 7},
		&kvclient.ConditionFailedError{Revision: 9, Current: &kvclient.KeyValue{Key: "k", Value: "v", ModRevision: 3}},
	} {
		client, _, _ := serve(t, &fixedKV{err: e}, DefaultForwarderConfig())
		_, got := client.Put(context.Background(), &kvclient.PutRequest{Key: "k"})
		var want, answer twirp.Error
		if !errors.As(ErrorToTwirp(e, nil), &want) || !errors.As(ErrorToTwirp(got, nil), &answer) {
			t.Fatalf("%v: not a Twirp error", e)
		}
		if answer.Code() != want.Code() || answer.Msg() != want.Msg() || !maps.Equal(answer.MetaMap(), want.MetaMap()) {
			t.Errorf("%v: forwarded, answered %s %q %v; at the replica itself %s %q %v", e,
				answer.Code(), answer.Msg(), answer.MetaMap(), want.Code(), want.Msg(), want.MetaMap())
		}
	}
}

// A request that cannot be encoded (a key or value that is not valid
// UTF-8) is refused at once as invalid: it came back as an internal error,
// which the clerk retried until its deadline and then called an unknown
// outcome (durio put k $'\xff' waited out --timeout and exited 5).
func TestUnencodableRequestIsInvalid(t *testing.T) {
	client, _, _ := serve(t, &fixedKV{}, DefaultForwarderConfig())
	_, err := client.Put(context.Background(), &kvclient.PutRequest{Key: "k", Value: "\xff"})
	if !errors.Is(err, kvclient.ErrInvalid) || kvclient.MaybeApplied(err) {
		t.Fatalf("put of invalid UTF-8: %v (maybe applied %v), want ErrInvalid, not applied", err, kvclient.MaybeApplied(err))
	}
}

func TestClientGet(t *testing.T) {
	client, _, _ := serve(t, &fixedKV{}, DefaultForwarderConfig())
	resp, err := client.Get(context.Background(), &kvclient.GetRequest{Key: "a"})
	if err != nil || !resp.Found || resp.Value != "v:a" || resp.Header.Term != 9 {
		t.Fatalf("Get(a) = %+v, %v", resp, err)
	}
	resp, err = client.Get(context.Background(), &kvclient.GetRequest{Key: "missing"})
	if err != nil || resp.Found {
		t.Fatalf("Get(missing) = %+v, %v; want not found and no error", resp, err)
	}
}

// A refused connection is a request never sent: not applied.
func TestUnreachableIsNotApplied(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	client := NewClient(kvv1.NewKVServiceProtobufClient(url, http.DefaultClient))
	_, err = client.Put(context.Background(), &kvclient.PutRequest{Key: "k"})
	if !errors.Is(err, kvclient.ErrUnreachable) || kvclient.MaybeApplied(err) {
		t.Fatalf("Put to a closed port = %v, want ErrUnreachable", err)
	}
}

// Writes that arrive while a batch is in flight go together in the next
// one: 200 concurrent writes take far fewer calls, each write keeps its id
// and gets its own result.
func TestForwarderBatches(t *testing.T) {
	svc := &fixedKV{delay: 20 * time.Millisecond}
	cfg := DefaultForwarderConfig()
	cfg.MaxInFlight = 1
	_, fwd, calls := serve(t, svc, cfg)
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id := kvclient.WriteID{ClientID: 7, Seq: uint64(i + 1), Ack: 1}
			if _, err := fwd.Put(context.Background(), &kvclient.PutRequest{Key: "k", Value: "v", Write: id}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if c := calls.Load(); c >= n/4 {
		t.Fatalf("%d writes took %d calls; want batching", n, c)
	}
	seen := map[uint64]bool{}
	svc.mu.Lock()
	for _, id := range svc.ids {
		if seen[id.Seq] {
			t.Errorf("write %d sent twice", id.Seq)
		}
		seen[id.Seq] = true
	}
	svc.mu.Unlock()
	if len(seen) != n {
		t.Fatalf("%d distinct writes arrived, want %d", len(seen), n)
	}
	t.Logf("%d writes in %d calls", n, calls.Load())
}

// A batch bigger than the byte budget is split; a single write over the
// budget still goes alone.
func TestForwarderSplitsByBytes(t *testing.T) {
	svc := &fixedKV{delay: 20 * time.Millisecond}
	cfg := DefaultForwarderConfig()
	cfg.MaxInFlight, cfg.MaxBatchBytes = 1, 100
	_, fwd, calls := serve(t, svc, cfg)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			_, err := fwd.Put(context.Background(), &kvclient.PutRequest{Key: fmt.Sprint(i), Value: string(make([]byte, 150))})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if c := calls.Load(); c != 6 {
		t.Fatalf("6 writes over the byte budget took %d calls, want 6", c)
	}
}

// A caller that stops waiting gets its context's error; once every write of
// a batch is abandoned the call is cancelled, and the forwarder keeps
// working.
func TestForwarderAbandon(t *testing.T) {
	svc := &fixedKV{delay: time.Hour}
	_, fwd, _ := serve(t, svc, DefaultForwarderConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := fwd.Put(ctx, &kvclient.PutRequest{Key: "k", Write: kvclient.WriteID{ClientID: 1, Seq: 1}})
	if !errors.Is(err, context.DeadlineExceeded) || !kvclient.MaybeApplied(err) {
		t.Fatalf("abandoned Put = %v, want an unknown outcome", err)
	}
	svc.mu.Lock()
	svc.delay = 0
	svc.mu.Unlock()
	// The hung call was cancelled, so its sender is free again.
	if _, err := fwd.Put(context.Background(), &kvclient.PutRequest{Key: "k"}); err != nil {
		t.Fatal(err)
	}
}

func TestForwarderClosed(t *testing.T) {
	_, fwd, _ := serve(t, &fixedKV{}, DefaultForwarderConfig())
	fwd.Close()
	if _, err := fwd.Put(context.Background(), &kvclient.PutRequest{Key: "k"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close = %v", err)
	}
}

func TestBatchServerRefusesHugeBatch(t *testing.T) {
	s := NewBatchServer(&fixedKV{}, 2)
	_, err := s.WriteBatch(context.Background(), &kvv1.WriteBatchRequest{Ops: make([]*kvv1.WriteOp, 3)})
	var terr twirp.Error
	if !errors.As(err, &terr) || terr.Code() != twirp.InvalidArgument {
		t.Fatalf("got %v, want invalid_argument", err)
	}
	resp, err := s.WriteBatch(context.Background(), &kvv1.WriteBatchRequest{Ops: []*kvv1.WriteOp{{}}})
	if err != nil || !errors.Is(ResultError(resp.GetResults()[0]), kvclient.ErrInvalid) {
		t.Fatalf("empty op: %v %v", resp, err)
	}
}

// WithTimeout bounds the whole batch: writes still waiting when it passes
// come back as timeouts (an unknown outcome), each in its own result, and
// every write shares the one deadline.
func TestBatchServerTimeout(t *testing.T) {
	kv := &fixedKV{delay: time.Hour}
	s := NewBatchServer(kv, 8).WithTimeout(50 * time.Millisecond)
	put := func(seq uint64) *kvv1.WriteOp {
		return &kvv1.WriteOp{Op: &kvv1.WriteOp_Put{Put: &kvv1.PutRequest{Key: "k",
			Write: &kvv1.WriteHeader{ClientId: 1, Sequence: seq}}}}
	}
	resp, err := s.WriteBatch(context.Background(), &kvv1.WriteBatchRequest{Ops: []*kvv1.WriteOp{put(1), put(2)}})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.GetResults() {
		if r.GetCode() != kvv1.ResultCode_RESULT_CODE_TIMEOUT || !kvclient.MaybeApplied(ResultError(r)) {
			t.Fatalf("result %d: %v, want a timeout whose outcome is unknown", i, r)
		}
	}
}

// The errors of issue 16 cross the wire and come back as the same errors,
// with what they carry.
func TestErrorRoundTripRevisions(t *testing.T) {
	cur := &kvclient.KeyValue{Key: "k", Value: "v", CreateRevision: 2, ModRevision: 5, Version: 3, Lease: 9}
	for _, err := range []error{
		&kvclient.ConditionFailedError{Revision: 7, Current: cur},
		&kvclient.ConditionFailedError{Revision: 8},
		kvclient.ErrLeaseNotFound, kvclient.ErrTooManyLeases, kvclient.ErrFutureRevision,
		&kvclient.CompactedError{CompactRevision: 41}, fmt.Errorf("%w (key \"k\")", kvclient.ErrNoSpace),
	} {
		back := ErrorFromTwirp(ErrorToTwirp(err, nil))
		var sentinel error
		for _, s := range []error{kvclient.ErrConditionFailed, kvclient.ErrLeaseNotFound, kvclient.ErrTooManyLeases,
			kvclient.ErrFutureRevision, kvclient.ErrCompacted, kvclient.ErrNoSpace} {
			if errors.Is(err, s) {
				sentinel = s
			}
		}
		if !errors.Is(back, sentinel) || !kvclient.Definitive(back) {
			t.Fatalf("%v came back as %v", err, back)
		}
		var cf, cfBack *kvclient.ConditionFailedError
		if errors.As(err, &cf) {
			if !errors.As(back, &cfBack) || cfBack.Revision != cf.Revision || (cf.Current == nil) != (cfBack.Current == nil) ||
				cf.Current != nil && *cf.Current != *cfBack.Current {
				t.Fatalf("condition failure %+v came back as %+v", cf, cfBack)
			}
			r := ResultError(ResultToProto(kvclient.ResponseHeader{}, false, err))
			if !errors.As(r, &cfBack) || cfBack.Revision != cf.Revision {
				t.Fatalf("condition failure through a batch result: %v", r)
			}
		}
		var ce, ceBack *kvclient.CompactedError
		if errors.As(err, &ce) && (!errors.As(back, &ceBack) || ceBack.CompactRevision != 41) {
			t.Fatalf("compacted came back as %v", back)
		}
	}
	// Too many watchers: retried elsewhere, not definitive.
	back := ErrorFromTwirp(ErrorToTwirp(kvclient.ErrTooManyWatchers, nil))
	if !errors.Is(back, kvclient.ErrTooManyWatchers) || !errors.Is(back, kvclient.ErrWrongLeader) || kvclient.Definitive(back) {
		t.Fatalf("too many watchers came back as %v", back)
	}
}

// ctxForward is a ForwardService that answers every write OK and records
// whether each call's context carried ctxKey.
type ctxForward struct {
	mu     sync.Mutex // guards tagged, calls
	tagged int
	calls  int
}

type ctxKey struct{}

func (c *ctxForward) WriteBatch(ctx context.Context, req *kvv1.WriteBatchRequest) (*kvv1.WriteBatchResponse, error) {
	c.mu.Lock()
	c.calls++
	if ctx.Value(ctxKey{}) != nil {
		c.tagged++
	}
	c.mu.Unlock()
	resp := &kvv1.WriteBatchResponse{}
	for range req.GetOps() {
		resp.Results = append(resp.Results, &kvv1.WriteResult{Code: kvv1.ResultCode_RESULT_CODE_OK})
	}
	return resp, nil
}

// A write that finds a call free and nothing queued is sent by its caller,
// with its context (no sender goroutine): the call carries the caller's
// context values.
func TestForwarderSendsLoneWriteInline(t *testing.T) {
	fwd := &ctxForward{}
	f, err := NewForwarder(nil, fwd, DefaultForwarderConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := context.WithValue(context.Background(), ctxKey{}, true)
	for i := range 3 {
		if _, err := f.Put(ctx, &kvclient.PutRequest{Key: "k", Write: kvclient.WriteID{ClientID: 1, Seq: uint64(i + 1)}}); err != nil {
			t.Fatal(err)
		}
	}
	fwd.mu.Lock()
	defer fwd.mu.Unlock()
	if fwd.calls != 3 || fwd.tagged != 3 {
		t.Fatalf("%d calls, %d with the caller's context; want 3 and 3", fwd.calls, fwd.tagged)
	}
}

// A write refused for the cluster's quota is a definite refusal on every
// path: a Twirp error (failed_precondition, reason no_space, passed on as
// the leader worded it) and a batch result alike.
func TestErrorNoSpace(t *testing.T) {
	refused := fmt.Errorf("%w (key %q; the quota is 100 bytes)", kvclient.ErrNoSpace, "k")
	terr := ErrorToTwirp(refused, nil).(twirp.Error)
	if terr.Code() != twirp.FailedPrecondition || terr.Meta(MetaReason) != ReasonNoSpace {
		t.Fatalf("as Twirp: %v", terr)
	}
	back := ErrorFromTwirp(terr)
	if !errors.Is(back, kvclient.ErrNoSpace) || !kvclient.Definitive(back) || kvclient.MaybeApplied(back) {
		t.Fatalf("from Twirp: %v", back)
	}
	// What a client (the CLI) prints: the replica's sentence, once.
	var tback twirp.Error
	if back.Error() != terr.Msg() || !errors.As(back, &tback) || tback.Code() != twirp.FailedPrecondition {
		t.Fatalf("from Twirp: %q, want the replica's words %q, as a Twirp error", back, terr.Msg())
	}
	for _, e := range []error{fmt.Errorf("%w (key %q)", kvclient.ErrTooLarge, "k"), fmt.Errorf("%w: 7", kvclient.ErrLeaseNotFound),
		kvclient.ErrTooManyLeases} {
		b := ErrorFromTwirp(ErrorToTwirp(e, nil))
		if b.Error() != e.Error() || !kvclient.Definitive(b) {
			t.Errorf("%v came back as %q", e, b)
		}
	}
	// A follower that forwarded the write answers with the leader's error,
	// worded once.
	again := ErrorToTwirp(back, nil).(twirp.Error)
	if again.Msg() != terr.Msg() || strings.Count(again.Msg(), kvclient.ErrNoSpace.Error()) != 1 {
		t.Fatalf("forwarded: %q, leader said %q", again.Msg(), terr.Msg())
	}
	res := ResultError(ResultToProto(kvclient.ResponseHeader{}, false, refused))
	if !errors.Is(res, kvclient.ErrNoSpace) || !kvclient.Definitive(res) || strings.Count(res.Error(), kvclient.ErrNoSpace.Error()) != 1 {
		t.Fatalf("through a batch result: %v", res)
	}
}
