package twirptransport

// The stuck rule counts only what the peer did: a reply waiting unread in
// the socket, or a timeout this process noticed late, does not close a
// healthy connection; a silent peer still gets its connection closed.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ruaft/ruaft/internal/rawconn"
	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
)

// firedCtx runs out of time when the test calls fire, not on a timer, so
// that the test decides what has happened by then; Deadline reports
// deadline (a fire before it is a timer on time, one well after it a late
// one).
type firedCtx struct {
	context.Context
	deadline time.Time
	done     chan struct{}
}

func newFiredCtx(deadline time.Time) *firedCtx {
	return &firedCtx{Context: context.Background(), deadline: deadline, done: make(chan struct{})}
}

func (c *firedCtx) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *firedCtx) Done() <-chan struct{}       { return c.done }
func (c *firedCtx) fire()                       { close(c.done) }

func (c *firedCtx) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// holdReader makes c's reader goroutine stop before its second frame (once
// the first reply is in) until release is called; held is closed then.
// Defer release after c.Close: Close waits for the reader.
func holdReader(c *StreamClient) (held <-chan struct{}, release func()) {
	var reads atomic.Int64
	h, r := make(chan struct{}), make(chan struct{})
	c.beforeRead = func() {
		if reads.Add(1) == 2 {
			close(h)
			<-r
		}
	}
	var once sync.Once
	return h, func() { once.Do(func() { close(r) }) }
}

func currentLink(c *StreamClient) *link {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

func timeoutNow(t *testing.T, c *StreamClient, ctx context.Context, term uint64) {
	t.Helper()
	var r raftv1.TimeoutNowResponse
	if err := c.Call(ctx, MethodTimeoutNow, &raftv1.TimeoutNowRequest{Term: term}, &r); err != nil {
		t.Fatalf("call %d: %v", term, err)
	}
	if r.Term != term {
		t.Fatalf("call %d got the reply of call %d", term, r.Term)
	}
}

// A reply that waits unread in the socket while the reader is held back (a
// stalled process whose timers fire before its reader runs) shows that the
// peer is not silent: the call that times out leaves the connection open,
// and once the reader runs the late reply is dropped and later calls get
// their own replies on the same connection. Over TCP and over TLS (the
// socket check unwraps tls.Conn and rawconn's wrapper).
func TestStuckReplyWaitingInSocketKeepsStream(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		t.Skip("the socket's receive queue is not asked here")
	}
	for _, withTLS := range []bool{false, true} {
		name := map[bool]string{false: "tcp", true: "tls"}[withTLS]
		t.Run(name, func(t *testing.T) {
			s := NewStreamServer(StreamServerOptions{})
			s.HandleRaft(echoNode{})
			var upgrades atomic.Int64
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				upgrades.Add(1)
				s.ServeHTTP(w, r)
			}))
			var cfg *tls.Config
			if withTLS {
				srv.StartTLS()
				cfg = srv.Client().Transport.(*http.Transport).TLSClientConfig
			} else {
				srv.Start()
			}
			defer func() { srv.Close(); s.Close() }()
			const stuckAfter = 100 * time.Millisecond
			c := NewStreamClient(srv.URL, StreamOptions{TLS: cfg, StuckAfter: stuckAfter})
			defer c.Close()
			held, release := holdReader(c)
			defer release()

			timeoutNow(t, c, context.Background(), 1)
			<-held
			l := currentLink(c)
			if _, ok := l.conn.(*tls.Conn); ok != withTLS {
				t.Fatalf("connection is a %T", l.conn)
			}
			// Fired long before its deadline: a timer on time, so only the
			// socket tells the peer answered.
			ctx := newFiredCtx(time.Now().Add(time.Minute))
			errc := make(chan error, 1)
			go func() {
				errc <- c.Call(ctx, MethodTimeoutNow, &raftv1.TimeoutNowRequest{Term: 2}, &raftv1.TimeoutNowResponse{})
			}()
			waitFor(t, "the reply to wait in the socket", func() bool { return unreadInSocket(l.conn) })
			time.Sleep(2 * stuckAfter) // the silence, as this process sees it
			ctx.fire()
			if err := <-errc; !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrStream) {
				t.Fatalf("timed-out call: %v", err)
			}
			if l.isClosed() {
				t.Fatalf("connection closed with a reply waiting in its socket: %v", l.err)
			}

			release()
			for term := uint64(3); term < 6; term++ {
				timeoutNow(t, c, context.Background(), term)
			}
			if currentLink(c) != l || upgrades.Load() != 1 {
				t.Fatalf("the connection was replaced (%d upgrades)", upgrades.Load())
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if len(l.pending) != 0 {
				t.Fatalf("%d calls still pending", len(l.pending))
			}
		})
	}
}

// answerFirst is a fake peer that answers the first call on each connection
// and then reads without answering.
func answerFirst(conn net.Conn, br *bufio.Reader) {
	_, _ = io.WriteString(conn, switching)
	b, ok := timeoutNowReply(br)
	if !ok {
		return
	}
	_, _ = conn.Write(b)
	_, _ = io.Copy(io.Discard, br)
}

// timeoutNowReply reads the next TimeoutNow request frame from br and
// returns the reply frame a peer answers it with (the request's term).
func timeoutNowReply(br *bufio.Reader) ([]byte, bool) {
	_, id, rest, err := readFrame(br, 1<<20)
	if err != nil {
		return nil, false
	}
	_, _, payload, err := parseRequest(rest)
	var req raftv1.TimeoutNowRequest
	if err != nil || proto.Unmarshal(payload, &req) != nil {
		return nil, false
	}
	b, err := appendResponse(nil, id, &raftv1.TimeoutNowResponse{Term: req.Term})
	return b, err == nil
}

// A peer that stopped answering still gets its connection closed when a
// call times out on time with nothing in the socket, even with the reader
// held back: the next call dials a new connection.
func TestStuckSilentPeerClosedWithReaderHeld(t *testing.T) {
	p := startFakePeer(t, answerFirst)
	const stuckAfter = 100 * time.Millisecond
	c := NewStreamClient(p.url(), StreamOptions{StuckAfter: stuckAfter})
	defer c.Close()
	held, release := holdReader(c)
	defer release()
	timeoutNow(t, c, context.Background(), 1)
	<-held
	l := currentLink(c)
	ctx := newFiredCtx(time.Now().Add(time.Minute))
	errc := make(chan error, 1)
	go func() {
		errc <- c.Call(ctx, MethodTimeoutNow, &raftv1.TimeoutNowRequest{Term: 2}, &raftv1.TimeoutNowResponse{})
	}()
	time.Sleep(2 * stuckAfter)
	ctx.fire()
	if err := <-errc; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call to a silent peer: %v", err)
	}
	if !l.isClosed() {
		t.Fatal("connection to a silent peer left open")
	}
	release()
	timeoutNow(t, c, context.Background(), 3)
	if n := p.accepted.Load(); n != 2 {
		t.Fatalf("%d connections, want 2 (a redial)", n)
	}
}

// Bytes of a reply that came in during the call count, though they do not
// make a frame yet (the reader holds part of one in its buffer): the peer
// is sending, so a call that times out meanwhile leaves the connection
// open, and the rest of the reply, arriving later, is dropped.
func TestStuckPartOfAReplyCounts(t *testing.T) {
	finish := make(chan struct{})
	p := startFakePeer(t, func(conn net.Conn, br *bufio.Reader) {
		_, _ = io.WriteString(conn, switching)
		for calls := 1; ; calls++ {
			b, ok := timeoutNowReply(br)
			if !ok {
				return
			}
			if calls == 2 {
				if _, err := conn.Write(b[:10]); err != nil { // the header in part
					return
				}
				<-finish
				b = b[10:]
			}
			if _, err := conn.Write(b); err != nil {
				return
			}
		}
	})
	const stuckAfter = 100 * time.Millisecond
	c := NewStreamClient(p.url(), StreamOptions{StuckAfter: stuckAfter})
	defer c.Close()
	defer close(finish)
	timeoutNow(t, c, context.Background(), 1)
	l := currentLink(c)
	before := l.lastRead.Load()
	ctx := newFiredCtx(time.Now().Add(time.Minute))
	errc := make(chan error, 1)
	go func() {
		errc <- c.Call(ctx, MethodTimeoutNow, &raftv1.TimeoutNowRequest{Term: 2}, &raftv1.TimeoutNowResponse{})
	}()
	waitFor(t, "part of the reply to come in", func() bool { return l.lastRead.Load() != before })
	time.Sleep(2 * stuckAfter)
	ctx.fire()
	if err := <-errc; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timed-out call: %v", err)
	}
	if l.isClosed() {
		t.Fatalf("connection closed while a reply came in: %v", l.err)
	}
	finish <- struct{}{}
	for term := uint64(3); term < 6; term++ {
		timeoutNow(t, c, context.Background(), term)
	}
	if n := p.accepted.Load(); n != 1 || currentLink(c) != l {
		t.Fatalf("the connection was replaced (%d accepted)", n)
	}
}

// A call whose timeout this process noticed well after the deadline (it was
// not running when the timer was due) is no evidence against the peer;
// one noticed in time still closes the connection to a silent peer.
func TestStuckLateTimeoutIsNotEvidence(t *testing.T) {
	p := startFakePeer(t, func(conn net.Conn, br *bufio.Reader) {
		_, _ = io.WriteString(conn, switching)
		_, _ = io.Copy(io.Discard, br) // never answers
	})
	const stuckAfter = 100 * time.Millisecond
	c := NewStreamClient(p.url(), StreamOptions{StuckAfter: stuckAfter})
	defer c.Close()
	ctx := newFiredCtx(time.Now().Add(stuckAfter))
	errc := make(chan error, 1)
	go func() {
		errc <- c.Call(ctx, MethodTimeoutNow, &raftv1.TimeoutNowRequest{}, &raftv1.TimeoutNowResponse{})
	}()
	time.Sleep(stuckAfter + 4*stuckAfter) // late by far more than StuckAfter/4
	ctx.fire()
	if err := <-errc; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("late-noticed call: %v", err)
	}
	l := currentLink(c)
	if l == nil || l.isClosed() {
		t.Fatal("a timeout noticed late closed the connection")
	}
	// On a loaded machine a timer may be late past StuckAfter/4 too:
	// some call is noticed in time.
	for calls := 0; !l.isClosed(); calls++ {
		if calls > 50 {
			t.Fatalf("connection to a silent peer still open after %d timed-out calls", calls)
		}
		ctx, cancel := context.WithTimeout(context.Background(), stuckAfter)
		err := c.Call(ctx, MethodTimeoutNow, &raftv1.TimeoutNowRequest{}, &raftv1.TimeoutNowResponse{})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call to a silent peer: %v", err)
		}
	}
}

// unreadInSocket sees bytes waiting in a socket, through rawconn's wrapper
// too, and answers false for what is not a socket or is closed.
func TestUnreadInSocket(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		t.Skip("the socket's receive queue is not asked here")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		s, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- s
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer s.Close()
	wrapped := rawconn.Wrap(raw)
	for _, c := range []net.Conn{raw, wrapped} {
		if unreadInSocket(c) {
			t.Fatalf("%T: bytes waiting before the peer wrote", c)
		}
	}
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the byte in the socket", func() bool { return unreadInSocket(raw) })
	if !unreadInSocket(wrapped) {
		t.Fatalf("%T: byte not seen through the wrapper", wrapped)
	}
	wrapped.Close()
	if unreadInSocket(wrapped) {
		t.Fatal("closed conn: bytes waiting")
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if unreadInSocket(a) {
		t.Fatal("net.Pipe: bytes waiting")
	}
}
