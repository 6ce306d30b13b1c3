package twirptransport

// Adversarial tests of the peer stream's pooled frame buffers (review6b):
// every request, reply, error and retained message keeps its own bytes while
// buffers cycle through the pool; frames at and over the limit; connections
// lost while a buffer is out.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twitchtv/twirp"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
)

// review6Payload is the content call (caller, seq) carries: its size
// crosses the pool's boundaries (the 4 KiB default buffer, the 64 KiB
// pooled maximum) and every byte depends on the call.
func review6Payload(caller, seq int) []byte {
	sizes := []int{0, 1, 100, 4090, 4096, 4097, 20000, 65530, 65536, 65537, 70000}
	n := sizes[(caller*7+seq)%len(sizes)]
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(caller*31 + seq*7 + i)
	}
	return b
}

const (
	review6Echo  = "review6.Test/Echo"
	review6Fail  = "review6.Test/Fail"
	review6Block = "review6.Test/Block"
)

// review6Server serves Echo (the request back, after keeping it and handing
// its bytes to another goroutine, as raft hands entries to its log), Fail (a
// twirp error naming the call) and Block (a raw method that holds its
// payload until released and checks it is intact before returning).
type review6Server struct {
	t        *testing.T
	mu       sync.Mutex // guards kept
	kept     []*raftv1.InstallSnapshotRequest
	later    chan keptRequest
	consumer sync.WaitGroup

	blockIn  chan []byte   // Block's payload copy, as it starts
	blockOut chan struct{} // releases Block calls
	blockErr atomic.Value  // string: a Block whose payload changed under it
}

// keptRequest is a request an Echo handler kept, and a copy of its bytes
// when it arrived.
type keptRequest struct {
	req  *raftv1.InstallSnapshotRequest
	data []byte
}

func startReview6Server(t *testing.T, opts StreamServerOptions) (*review6Server, *httptest.Server, *StreamServer) {
	s := &review6Server{t: t, later: make(chan keptRequest, 1024),
		blockIn: make(chan []byte, 16), blockOut: make(chan struct{})}
	ss := NewStreamServer(opts)
	ss.Handle(review6Echo, Unary(func() *raftv1.InstallSnapshotRequest { return new(raftv1.InstallSnapshotRequest) },
		func(_ context.Context, req *raftv1.InstallSnapshotRequest) (*raftv1.InstallSnapshotRequest, error) {
			s.mu.Lock()
			s.kept = append(s.kept, req)
			s.mu.Unlock()
			s.later <- keptRequest{req, bytes.Clone(req.Data)}
			return req, nil
		}))
	ss.Handle(review6Fail, Unary(func() *raftv1.InstallSnapshotRequest { return new(raftv1.InstallSnapshotRequest) },
		func(_ context.Context, req *raftv1.InstallSnapshotRequest) (*raftv1.InstallSnapshotRequest, error) {
			return nil, twirp.NewError(twirp.NotFound, fmt.Sprintf("call %d/%d", req.Term, req.Offset)).
				WithMeta("who", fmt.Sprintf("%d/%d", req.Term, req.Offset))
		}))
	ss.Handle(review6Block, func(ctx context.Context, payload []byte) (proto.Message, error) {
		mine := bytes.Clone(payload)
		s.blockIn <- mine
		<-s.blockOut
		if !bytes.Equal(payload, mine) {
			s.blockErr.Store("a Block call's payload changed while it ran")
		}
		return &raftv1.InstallSnapshotResponse{Term: uint64(len(payload))}, nil
	})
	// The consumer checks each kept request's bytes after the handler has
	// returned (its frame buffer is back in the pool by then).
	s.consumer.Go(func() {
		for k := range s.later {
			time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
			if !bytes.Equal(k.req.Data, k.data) {
				t.Errorf("call %d/%d: the request's bytes changed after its handler returned", k.req.Term, k.req.Offset)
			}
		}
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ss.ServeHTTP(w, r) }))
	t.Cleanup(func() {
		srv.Close()
		ss.Close()
		close(s.later)
		s.consumer.Wait()
	})
	return s, srv, ss
}

// Concurrent calls with distinct payloads of every size class, replies and
// errors: each caller gets its own bytes back, each error names its own
// call, and every request a handler kept still holds its bytes at the end.
func TestReview6PooledBuffersKeepTheirBytes(t *testing.T) {
	s, srv, _ := startReview6Server(t, StreamServerOptions{})
	c := NewStreamClient(srv.URL, StreamOptions{})
	defer c.Close()
	const callers, calls = 12, 33
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			for i := range calls {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				req := &raftv1.InstallSnapshotRequest{Term: uint64(g), Offset: uint64(i), Data: review6Payload(g, i)}
				if i%5 == 4 {
					err := c.Call(ctx, review6Fail, req, new(raftv1.InstallSnapshotRequest))
					var terr twirp.Error
					want := fmt.Sprintf("%d/%d", g, i)
					if !errors.As(err, &terr) || terr.Msg() != "call "+want || terr.Meta("who") != want {
						t.Errorf("call %s: error %v, want its own", want, err)
					}
				} else {
					resp := new(raftv1.InstallSnapshotRequest)
					if err := c.Call(ctx, review6Echo, req, resp); err != nil {
						t.Errorf("call %d/%d: %v", g, i, err)
					} else if resp.Term != uint64(g) || resp.Offset != uint64(i) || !bytes.Equal(resp.Data, review6Payload(g, i)) {
						t.Errorf("call %d/%d: got the reply of %d/%d (%d bytes)", g, i, resp.Term, resp.Offset, len(resp.Data))
					}
				}
				cancel()
			}
		})
	}
	wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, req := range s.kept {
		if !bytes.Equal(req.Data, review6Payload(int(req.Term), int(req.Offset))) {
			t.Errorf("kept request %d/%d: its bytes changed", req.Term, req.Offset)
		}
	}
}

// Callers that give up while their replies are on the way (the reader then
// gives the reply's buffer back) race callers that wait: the waiting ones
// still get their own bytes.
func TestReview6AbandonedRepliesRecycled(t *testing.T) {
	_, srv, _ := startReview6Server(t, StreamServerOptions{})
	// Not the stuck rule (tested on its own): a process that a busy machine
	// freezes for a second sees its sub-millisecond calls time out with the
	// reader not yet run, and would close the stream under the waiting calls.
	c := NewStreamClient(srv.URL, StreamOptions{StuckAfter: time.Hour})
	defer c.Close()
	var wg sync.WaitGroup
	var ok atomic.Int64
	for g := range 8 {
		wg.Go(func() {
			for i := range 33 {
				req := &raftv1.InstallSnapshotRequest{Term: uint64(g), Offset: uint64(i), Data: review6Payload(g, i)}
				resp := new(raftv1.InstallSnapshotRequest)
				if g%2 == 0 {
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(300))*time.Microsecond)
					err := c.Call(ctx, review6Echo, req, resp)
					cancel()
					if err == nil && !bytes.Equal(resp.Data, req.Data) {
						t.Errorf("call %d/%d: not its bytes", g, i)
					}
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				err := c.Call(ctx, review6Echo, req, resp)
				cancel()
				if err != nil || resp.Term != uint64(g) || resp.Offset != uint64(i) || !bytes.Equal(resp.Data, req.Data) {
					t.Errorf("call %d/%d: %v, got %d/%d", g, i, err, resp.Term, resp.Offset)
				} else {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != 4*33 {
		t.Errorf("%d waiting calls answered, want %d", ok.Load(), 4*33)
	}
}

// A frame exactly at the limit goes (request and reply); one byte more is
// refused by the client before it is sent; a server with a lower limit
// closes the stream on a frame over its limit, and the client's next call
// on a new stream still gets its own bytes.
func TestReview6FramesAtTheLimit(t *testing.T) {
	const limit = 100 << 10 // above the pooled maximum
	_, srv, _ := startReview6Server(t, StreamServerOptions{MaxFrameBytes: limit})
	c := NewStreamClient(srv.URL, StreamOptions{MaxFrameBytes: limit})
	defer c.Close()
	// sized returns a request whose encoding is n bytes.
	sized := func(n int) *raftv1.InstallSnapshotRequest {
		req := &raftv1.InstallSnapshotRequest{Term: 1, Offset: 2}
		for d := n; d > 0 && (req.Data == nil || proto.Size(req) > n); d-- {
			req.Data = make([]byte, d)
			for i := range req.Data {
				req.Data[i] = byte(i * 13)
			}
		}
		if proto.Size(req) != n {
			t.Fatalf("no request of %d bytes (%d)", n, proto.Size(req))
		}
		return req
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	at := sized(limit)
	resp := new(raftv1.InstallSnapshotRequest)
	if err := c.Call(ctx, review6Echo, at, resp); err != nil || !bytes.Equal(resp.Data, at.Data) {
		t.Fatalf("frame at the limit: %v (%d bytes back)", err, len(resp.Data))
	}
	big := &raftv1.InstallSnapshotRequest{Data: make([]byte, limit+frameSlack)}
	if err := c.Call(ctx, review6Echo, big, resp); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("frame over the limit: %v, want ErrFrameTooLarge", err)
	}

	// A client with a higher limit than its server: the server closes the
	// stream without reading the frame; the call fails as "no answer".
	c2 := NewStreamClient(srv.URL, StreamOptions{MaxFrameBytes: 2 * limit})
	defer c2.Close()
	if err := c2.Call(ctx, review6Echo, sized(limit+frameSlack+1), resp); !errors.Is(err, ErrStream) {
		t.Errorf("frame over the server's limit: %v, want a stream error", err)
	}
	for i := range 20 {
		data := review6Payload(3, i)
		data = data[:min(len(data), limit/2)]
		req := &raftv1.InstallSnapshotRequest{Term: 3, Offset: uint64(i), Data: data}
		var err error
		for range 50 { // the broken stream backs off its redial
			if err = c2.Call(ctx, review6Echo, req, resp); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil || !bytes.Equal(resp.Data, req.Data) {
			t.Fatalf("call %d after the broken stream: %v", i, err)
		}
	}
}

// A raw method holds its payload while its connection is lost and other
// connections cycle buffers through the pool: the payload stays intact
// until the method returns, and nothing is left running afterwards.
func TestReview6ConnectionLostWhileBufferOut(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		s, srv, ss := startReview6Server(t, StreamServerOptions{})
		defer func() { srv.Close(); ss.Close() }()
		c1 := NewStreamClient(srv.URL, StreamOptions{})
		errc := make(chan error, 4)
		for i := range 4 {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				errc <- c1.Call(ctx, review6Block, &raftv1.InstallSnapshotRequest{Term: 9, Offset: uint64(i), Data: review6Payload(9, i)}, new(raftv1.InstallSnapshotResponse))
			}()
		}
		for range 4 {
			<-s.blockIn
		}
		c1.Close() // the connection goes while the four payloads are out
		for range 4 {
			if err := <-errc; !errors.Is(err, ErrStreamClosed) {
				t.Errorf("call on a closed client: %v", err)
			}
		}
		c2 := NewStreamClient(srv.URL, StreamOptions{})
		defer c2.Close()
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 40 {
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					req := &raftv1.InstallSnapshotRequest{Term: uint64(g), Offset: uint64(i), Data: review6Payload(g, i)}
					resp := new(raftv1.InstallSnapshotRequest)
					if err := c2.Call(ctx, review6Echo, req, resp); err != nil || !bytes.Equal(resp.Data, req.Data) {
						t.Errorf("call %d/%d: %v", g, i, err)
					}
					cancel()
				}
			})
		}
		wg.Wait()
		close(s.blockOut)
		waitFor(t, "the held calls to return", func() bool { return ss.Connections() == 1 })
		if e := s.blockErr.Load(); e != nil {
			t.Error(e)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+3 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A dial cut short by its caller's own deadline says nothing about the
// peer: the next caller, with time to spare, must dial rather than fail at
// once with the first caller's timeout (a backoff meant for a peer that is
// down). The socket's connect deadline can fire before the context's timer
// marks ctx done, so ctx.Err() alone does not tell.
func TestReview6DialCutByCallerDeadlineNoBackoff(t *testing.T) {
	_, srv, _ := startReview6Server(t, StreamServerOptions{})
	failed := 0
	for i := range 200 {
		c := NewStreamClient(srv.URL, StreamOptions{})
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(20+rand.IntN(200))*time.Microsecond)
		_ = c.Call(ctx, review6Echo, &raftv1.InstallSnapshotRequest{}, new(raftv1.InstallSnapshotRequest))
		cancel()
		ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
		req := &raftv1.InstallSnapshotRequest{Term: 1, Offset: uint64(i)}
		if err := c.Call(ctx, review6Echo, req, new(raftv1.InstallSnapshotRequest)); err != nil {
			failed++
			if failed <= 3 {
				t.Errorf("call %d after a dial cut by its caller's deadline: %v", i, err)
			}
		}
		cancel()
		c.Close()
	}
	if failed > 0 {
		t.Errorf("%d of 200 calls failed after another caller's deadline cut its dial", failed)
	}
}
