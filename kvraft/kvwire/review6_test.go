package kvwire

// Adversarial tests of forwarded writes (review6b): a lone write sent by its
// caller, a batch whose last write runs on the handler's goroutine, a batch
// bounded only by the deadline it carries; over an in-process service, Twirp
// and the peer stream.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	"github.com/ruaft/ruaft/raft/twirptransport"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// sessionKV applies each WriteID at most once, as kvraft's sessions do, and
// plays a replica under churn: before proposing it may refuse as a follower
// (nothing applied); after applying it may answer late (the caller's
// deadline passes first), or as a deposed leader (Proposed).
type sessionKV struct {
	kvclient.Service
	mu      sync.Mutex // guards applied, rev, applies
	applied map[kvclient.WriteID]appliedWrite
	rev     uint64
	applies map[kvclient.WriteID]int // how many times each id reached apply
	churn   bool
}

type appliedWrite struct {
	rev   uint64
	value string // the value of the attempt that applied it
}

func newSessionKV(churn bool) *sessionKV {
	return &sessionKV{applied: map[kvclient.WriteID]appliedWrite{}, applies: map[kvclient.WriteID]int{}, churn: churn}
}

func (s *sessionKV) Put(ctx context.Context, req *kvclient.PutRequest) (*kvclient.PutResponse, error) {
	if s.churn && rand.IntN(8) == 0 {
		return nil, &kvclient.WrongLeaderError{Leader: kvclient.NoLeader}
	}
	if err := ctx.Err(); err != nil {
		return nil, err // not proposed: the request's time was up
	}
	s.mu.Lock()
	w, ok := s.applied[req.Write]
	if !ok {
		s.rev++
		w = appliedWrite{rev: s.rev, value: req.Value}
		s.applied[req.Write] = w
		s.applies[req.Write]++
	}
	s.mu.Unlock()
	if s.churn {
		switch rand.IntN(8) {
		case 0:
			return nil, &kvclient.WrongLeaderError{Leader: kvclient.NoLeader, Proposed: true}
		case 1, 2:
			select {
			case <-time.After(time.Duration(rand.IntN(20)) * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	return &kvclient.PutResponse{Header: kvclient.ResponseHeader{ReplicaID: 2, Revision: w.rev}}, nil
}

// settleGoroutines fails t unless the goroutine count falls back to at most
// before+slack within a generous deadline.
func settleGoroutines(t *testing.T, before, slack int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+slack {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// forwardPath is a way a Forwarder reaches the batch server over svc: in
// process ("direct"), over Twirp, over the peer stream (with its pooled
// frames); stop closes it.
func forwardPath(path string, svc kvclient.Service) (fwd kvv1.ForwardService, stop func()) {
	bs := NewBatchServer(svc, 1000).WithTimeout(5 * time.Second)
	if path == "direct" {
		return bs, func() {}
	}

	tw := kvv1.NewForwardServiceServer(bs)
	mux := http.NewServeMux()
	mux.Handle(tw.PathPrefix(), tw)
	ss := twirptransport.NewStreamServer(twirptransport.StreamServerOptions{})
	ss.Handle("kv.v1.ForwardService/WriteBatch", twirptransport.Unary(func() *kvv1.WriteBatchRequest { return new(kvv1.WriteBatchRequest) }, bs.WriteBatch))
	mux.Handle("GET "+twirptransport.StreamPath, ss)
	srv := httptest.NewServer(mux)
	twc := kvv1.NewForwardServiceProtobufClient(srv.URL, srv.Client())
	if path == "twirp" {
		return twc, srv.Close
	}
	sc := twirptransport.NewStreamClient(srv.URL, twirptransport.StreamOptions{})
	return streamForward{sc: sc, fallback: twc}, func() { sc.Close(); srv.Close(); ss.Close() }
}

type streamForward struct {
	sc       *twirptransport.StreamClient
	fallback kvv1.ForwardService
}

func (s streamForward) WriteBatch(ctx context.Context, req *kvv1.WriteBatchRequest) (*kvv1.WriteBatchResponse, error) {
	return twirptransport.CallStream(ctx, s.sc, "kv.v1.ForwardService/WriteBatch", req, s.fallback.WriteBatch)
}

// Many writers retry their writes through a Forwarder, each attempt under a
// short deadline or cancelled mid-flight, against a replica that refuses,
// answers late and loses leadership. Every write ends applied exactly once;
// every acknowledgement is of the caller's own write, applied (its
// revision); an attempt reported as not applied (!MaybeApplied) is never
// the one that applied; every attempt returns by its deadline; and no
// goroutine is left behind. Lone writes go inline (MaxInFlight 1 makes the
// sender goroutine take over from an inline caller), batches mix with them.
func TestReview6ForwardedWritesExactlyOnce(t *testing.T) {
	for _, inFlight := range []int{1, 2} {
		for _, path := range []string{"direct", "twirp", "stream"} {
			t.Run(fmt.Sprintf("%s/inflight=%d", path, inFlight), func(t *testing.T) {
				before := runtime.NumGoroutine()
				func() {
					svc := newSessionKV(true)
					fwd, stop := forwardPath(path, svc)
					defer stop()
					f, err := NewForwarder(nil, fwd,
						ForwarderConfig{MaxBatchOps: 8, MaxBatchBytes: 1 << 20, MaxInFlight: inFlight, CallTimeout: 2 * time.Second})
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					const writers, writes = 12, 15
					var wg sync.WaitGroup
					var mu sync.Mutex
					// unapplied[v]: the attempt with value v said "not applied".
					unapplied := map[string]bool{}
					for g := range writers {
						wg.Go(func() {
							for i := range writes {
								id := kvclient.WriteID{ClientID: uint64(g + 1), Seq: uint64(i + 1)}
								for attempt := 0; ; attempt++ {
									if attempt > 500 {
										t.Errorf("write %v: no success in 500 attempts", id)
										return
									}
									value := fmt.Sprintf("%d/%d/%d", g, i, attempt)
									timeout := time.Duration(1+rand.IntN(30)) * time.Millisecond
									ctx, cancel := context.WithTimeout(context.Background(), timeout)
									if rand.IntN(4) == 0 {
										time.AfterFunc(time.Duration(rand.IntN(5))*time.Millisecond, cancel)
									}
									start := time.Now()
									resp, err := f.Put(ctx, &kvclient.PutRequest{Key: "k", Value: value, Write: id})
									cancel()
									if took := time.Since(start); took > timeout+3*time.Second {
										t.Errorf("write %v attempt %d: returned after %v, deadline %v", id, attempt, took, timeout)
									}
									if err == nil {
										svc.mu.Lock()
										w, ok := svc.applied[id]
										svc.mu.Unlock()
										if !ok || w.rev != resp.Header.Revision {
											t.Errorf("write %v acknowledged at revision %d, applied %v %+v", id, resp.Header.Revision, ok, w)
										}
										break
									}
									if !kvclient.MaybeApplied(err) {
										mu.Lock()
										unapplied[value] = true
										mu.Unlock()
									}
								}
							}
						})
					}
					wg.Wait()
					svc.mu.Lock()
					defer svc.mu.Unlock()
					if len(svc.applied) != writers*writes {
						t.Errorf("%d writes applied, want %d", len(svc.applied), writers*writes)
					}
					for id, n := range svc.applies {
						if n != 1 {
							t.Errorf("write %v applied %d times", id, n)
						}
					}
					for id, w := range svc.applied {
						if unapplied[w.value] {
							t.Errorf("write %v applied by attempt %q, which reported it not applied", id, w.value)
						}
					}
				}()
				settleGoroutines(t, before, 3)
			})
		}
	}
}

// blockingForward holds every call until its context ends (honouring it, as
// the stream and Twirp clients do), recording what each call carried.
type blockingForward struct {
	started   chan time.Time // a call's deadline (zero: none), when it starts
	mu        sync.Mutex     // guards batches
	batches   [][]string     // the keys of each call's writes
	release   chan struct{}  // closed: calls answer OK at once
	cancelled atomic.Int64
}

func newBlockingForward() *blockingForward {
	return &blockingForward{started: make(chan time.Time, 100), release: make(chan struct{})}
}

func (b *blockingForward) WriteBatch(ctx context.Context, req *kvv1.WriteBatchRequest) (*kvv1.WriteBatchResponse, error) {
	var keys []string
	for _, op := range req.GetOps() {
		keys = append(keys, op.GetPut().GetKey())
	}
	b.mu.Lock()
	b.batches = append(b.batches, keys)
	b.mu.Unlock()
	dl, _ := ctx.Deadline()
	b.started <- dl
	select {
	case <-b.release:
	case <-ctx.Done():
		b.cancelled.Add(1)
		return nil, ctx.Err()
	}
	resp := &kvv1.WriteBatchResponse{}
	for i := range req.GetOps() {
		resp.Results = append(resp.Results, &kvv1.WriteResult{Code: kvv1.ResultCode_RESULT_CODE_OK,
			Header: &kvv1.ResponseHeader{Revision: uint64(100 + i)}})
	}
	return resp, nil
}

// A lone write whose caller is cancelled while it is in flight: the caller
// gets back at once an unknown outcome (it was sent), the call is cancelled
// (nobody else waits for it), and the Forwarder's call slot is free again:
// the next write goes at once, inline, and a write queued behind the
// cancelled one is sent, not stranded.
func TestReview6InlineWriteCancelledMidFlight(t *testing.T) {
	before := runtime.NumGoroutine()
	fwd := newBlockingForward()
	f, err := NewForwarder(nil, fwd, ForwarderConfig{MaxBatchOps: 8, MaxBatchBytes: 1 << 20, MaxInFlight: 1, CallTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := f.Put(ctx, &kvclient.PutRequest{Key: "a", Write: kvclient.WriteID{ClientID: 1, Seq: 1}})
		errc <- err
	}()
	if dl := <-fwd.started; dl.IsZero() || time.Until(dl) > time.Minute {
		t.Errorf("inline call's deadline %v: want CallTimeout's", dl)
	}
	// Queued behind it (MaxInFlight 1): goes once the inline call ends.
	queued := make(chan error, 1)
	go func() {
		qctx, qcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer qcancel()
		_, err := f.Put(qctx, &kvclient.PutRequest{Key: "b", Write: kvclient.WriteID{ClientID: 2, Seq: 1}})
		queued <- err
	}()
	time.Sleep(20 * time.Millisecond) // let b queue
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) || !kvclient.MaybeApplied(err) {
			t.Errorf("cancelled in flight: %v (MaybeApplied %v), want context.Canceled, outcome unknown", err, kvclient.MaybeApplied(err))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled caller still waiting")
	}
	// b's call starts (sent by a sender goroutine that took over).
	select {
	case <-fwd.started:
	case <-time.After(5 * time.Second):
		t.Fatal("the write queued behind a cancelled inline write was never sent")
	}
	close(fwd.release)
	if err := <-queued; err != nil {
		t.Errorf("queued write: %v", err)
	}
	if n := fwd.cancelled.Load(); n != 1 {
		t.Errorf("%d calls cancelled, want 1 (the abandoned inline one)", n)
	}
	// The slot is free: a third write goes inline, alone.
	if _, err := f.Put(context.Background(), &kvclient.PutRequest{Key: "c", Write: kvclient.WriteID{ClientID: 3, Seq: 1}}); err != nil {
		t.Fatal(err)
	}
	fwd.mu.Lock()
	got := fmt.Sprint(fwd.batches)
	fwd.mu.Unlock()
	if got != "[[a] [b] [c]]" {
		t.Errorf("calls %s, want [[a] [b] [c]]", got)
	}
	f.Close()
	settleGoroutines(t, before, 2)
}

// An inline caller's deadline is the call's: a caller with an earlier
// deadline than CallTimeout returns by it, with its outcome unknown, and
// Close afterwards does not wait for anything.
func TestReview6InlineWriteReturnsByDeadline(t *testing.T) {
	fwd := newBlockingForward()
	f, err := NewForwarder(nil, fwd, ForwarderConfig{MaxBatchOps: 8, MaxBatchBytes: 1 << 20, MaxInFlight: 2, CallTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = f.Put(ctx, &kvclient.PutRequest{Key: "a", Write: kvclient.WriteID{ClientID: 1, Seq: 1}})
	if !errors.Is(err, context.DeadlineExceeded) || !kvclient.MaybeApplied(err) {
		t.Errorf("err %v, want DeadlineExceeded with an unknown outcome", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("returned after %v, deadline 50ms", took)
	}
	done := make(chan struct{})
	go func() { f.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waits after the inline caller returned")
	}
}

// countingKV counts the Puts running at once and holds each until its
// context ends or it is released; it records each Put's deadline.
type countingKV struct {
	kvclient.Service
	deadlines chan time.Time
	release   chan struct{}
}

func (c *countingKV) Put(ctx context.Context, req *kvclient.PutRequest) (*kvclient.PutResponse, error) {
	dl, _ := ctx.Deadline()
	c.deadlines <- dl
	select {
	case <-c.release:
		return &kvclient.PutResponse{Header: kvclient.ResponseHeader{Revision: req.Write.Seq}}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// The batch server bounds a batch by the earlier of the deadline it carries
// and its own timeout, whichever that is, and with neither it is not bound
// at all; every write (the last one runs on the handler's goroutine) gets
// its own result.
func TestReview6BatchServerDeadlines(t *testing.T) {
	ops := func(n int) *kvv1.WriteBatchRequest {
		req := &kvv1.WriteBatchRequest{}
		for i := range n {
			req.Ops = append(req.Ops, &kvv1.WriteOp{Op: &kvv1.WriteOp_Put{Put: PutRequestToProto(&kvclient.PutRequest{Key: "k", Write: kvclient.WriteID{ClientID: 1, Seq: uint64(i + 1)}})}})
		}
		return req
	}
	for _, tc := range []struct {
		name    string
		carried time.Duration // 0: none
		timeout time.Duration // 0: none
		want    time.Duration // the bound the writes see (0: none)
	}{
		{"carried earlier", 80 * time.Millisecond, time.Minute, 80 * time.Millisecond},
		{"own earlier", time.Minute, 80 * time.Millisecond, 80 * time.Millisecond},
		{"own only", 0, 80 * time.Millisecond, 80 * time.Millisecond},
		{"carried only", 80 * time.Millisecond, 0, 80 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, n := range []int{1, 3} {
				kv := &countingKV{deadlines: make(chan time.Time, n), release: make(chan struct{})}
				bs := NewBatchServer(kv, 10).WithTimeout(tc.timeout)
				ctx := context.Background()
				if tc.carried > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tc.carried)
					defer cancel()
				}
				start := time.Now()
				resp, err := bs.WriteBatch(ctx, ops(n))
				took := time.Since(start)
				if err != nil || len(resp.Results) != n {
					t.Fatalf("batch of %d: %v, %d results", n, err, len(resp.GetResults()))
				}
				for i, r := range resp.Results {
					if r.Code != kvv1.ResultCode_RESULT_CODE_TIMEOUT {
						t.Errorf("batch of %d: result %d is %v, want TIMEOUT", n, i, r.Code)
					}
				}
				if took < tc.want/2 || took > tc.want+5*time.Second {
					t.Errorf("batch of %d returned after %v, want about %v", n, took, tc.want)
				}
				for range n {
					if dl := <-kv.deadlines; dl.IsZero() || dl.Sub(start) > tc.want+time.Second {
						t.Errorf("batch of %d: a write's deadline is %v after the start, want %v", n, dl.Sub(start), tc.want)
					}
				}
			}
		})
	}
	// Released: each write gets its own result, in order.
	kv := &countingKV{deadlines: make(chan time.Time, 5), release: make(chan struct{})}
	close(kv.release)
	resp, err := NewBatchServer(kv, 10).WriteBatch(context.Background(), ops(5))
	if err != nil {
		t.Fatal(err)
	}
	var revs []string
	for _, r := range resp.Results {
		revs = append(revs, fmt.Sprint(r.GetHeader().GetRevision()))
	}
	if got := strings.Join(revs, ","); got != "1,2,3,4,5" {
		t.Errorf("revisions %s, want 1,2,3,4,5", got)
	}
}

// Close racing writers, inline and queued: every write returns (a result,
// ErrClosed, or its context's error), Close returns, later writes get
// ErrClosed without being sent, and nothing is left running.
func TestReview6CloseRacesInlineWrites(t *testing.T) {
	before := runtime.NumGoroutine()
	for round := range 5 {
		svc := newSessionKV(true)
		f, err := NewForwarder(nil, NewBatchServer(svc, 1000), ForwarderConfig{MaxBatchOps: 4, MaxBatchBytes: 1 << 20, MaxInFlight: 1 + round%2, CallTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var sent atomic.Int64
		for g := range 16 {
			wg.Go(func() {
				for i := 0; ; i++ {
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+rand.IntN(20))*time.Millisecond)
					_, err := f.Put(ctx, &kvclient.PutRequest{Key: "k", Write: kvclient.WriteID{ClientID: uint64(g + 1), Seq: uint64(i + 1)}})
					cancel()
					sent.Add(1)
					if errors.Is(err, ErrClosed) {
						return
					}
				}
			})
		}
		for sent.Load() < 50 {
			time.Sleep(time.Millisecond)
		}
		closed := make(chan struct{})
		go func() { f.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Close still waiting", round)
		}
		wg.Wait()
		svc.mu.Lock()
		n := len(svc.applies)
		svc.mu.Unlock()
		if _, err := f.Put(context.Background(), &kvclient.PutRequest{Key: "late", Write: kvclient.WriteID{ClientID: 99, Seq: 1}}); !errors.Is(err, ErrClosed) {
			t.Errorf("round %d: write after Close: %v", round, err)
		}
		svc.mu.Lock()
		if len(svc.applies) != n {
			t.Errorf("round %d: a write after Close reached the replica", round)
		}
		svc.mu.Unlock()
	}
	settleGoroutines(t, before, 2)
}
