package twirptransport

// Adversarial tests of the peer stream (review5a): hostile clients and
// servers, calls racing breaks and closes, bounded queues and goroutines.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twitchtv/twirp"
	"google.golang.org/protobuf/proto"

	"github.com/ruaft/ruaft/raft"
	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
)

// fakePeer is a raw TCP peer whose behaviour after reading the upgrade
// request is scripted by serve; it counts the connections it accepted.
type fakePeer struct {
	ln       net.Listener
	accepted atomic.Int64
	conns    sync.WaitGroup
}

func startFakePeer(t *testing.T, serve func(conn net.Conn, br *bufio.Reader)) *fakePeer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &fakePeer{ln: ln}
	var open sync.Map // conns still open, closed at cleanup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.accepted.Add(1)
			open.Store(c, true)
			p.conns.Go(func() {
				defer func() { c.Close(); open.Delete(c) }()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				serve(c, br)
			})
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		open.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		p.conns.Wait()
	})
	return p
}

func (p *fakePeer) url() string { return "http://" + p.ln.Addr().String() }

const switching = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + StreamProtocol + "\r\n\r\n"

// A call whose context is cancelled (the Forwarder cancels a batch all of
// whose writers gave up; raft cancels on Stop) says nothing about the
// connection: it must not close a healthy stream that happened to be quiet
// for StuckAfter, failing the other calls in flight on it.
func TestReview5CancelledCallKeepsHealthyStream(t *testing.T) {
	node := newBlockNode()
	p := startStreamPeer(t, node, StreamServerOptions{}, true, nil)
	c := NewStreamClient(p.srv.URL, StreamOptions{StuckAfter: 100 * time.Millisecond})
	defer c.Close()
	// Open the stream, then let it be quiet for longer than StuckAfter.
	if err := c.Call(context.Background(), MethodTimeoutNow, &raftv1.TimeoutNowRequest{}, &raftv1.TimeoutNowResponse{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	// A long call in flight...
	longErr := make(chan error, 1)
	go func() {
		longErr <- c.Call(context.Background(), MethodAppendEntries, &raftv1.AppendEntriesRequest{Term: 1}, &raftv1.AppendEntriesResponse{})
	}()
	<-node.started
	// ...and a second one whose caller gives up at once.
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- c.Call(ctx, MethodAppendEntries, &raftv1.AppendEntriesRequest{Term: 2}, &raftv1.AppendEntriesResponse{})
	}()
	<-node.started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
	close(node.release)
	if err := <-longErr; err != nil {
		t.Fatalf("a healthy call failed because another call was cancelled: %v", err)
	}
	if n := p.upgrades.Load(); n != 1 {
		t.Fatalf("%d upgrades, want 1 (the stream was torn down)", n)
	}
}

// smallBuffers shrinks the socket buffers of accepted connections, so that
// a peer that does not read blocks writes after a few frames.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(32 << 10)
		_ = tc.SetReadBuffer(32 << 10)
	}
	return c, err
}

// A client that sends calls and never reads their replies must not make the
// server queue replies without bound (replies and resource_exhausted
// refusals alike): the queue stays within twice MaxCallsInFlight, and the
// connection is closed long before the write timeout.
// (TestStreamClientThatDoesNotReadIsClosed tests the close with tiny
// replies; here the replies are large and many calls are refused.)
func TestReview5ServerBoundsRepliesNobodyReads(t *testing.T) {
	const replyBytes = 16 << 10
	var ran atomic.Int64
	s := NewStreamServer(StreamServerOptions{MaxCallsInFlight: 8, WriteTimeout: time.Minute, IdleTimeout: time.Minute})
	s.Handle("test.Big/Get", func(context.Context, []byte) (proto.Message, error) {
		ran.Add(1)
		return &raftv1.InstallSnapshotRequest{Data: make([]byte, replyBytes)}, nil
	})
	mux := http.NewServeMux()
	mux.Handle("GET "+StreamPath, s)
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener = smallBuffers{srv.Listener}
	srv.Start()
	defer func() { srv.Close(); s.Close() }()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(32 << 10)
	br := bufio.NewReader(conn)
	_, _ = io.WriteString(conn, "GET "+StreamPath+" HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: "+StreamProtocol+"\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	const n = 2000
	var frames []byte
	for i := range n {
		b, _ := appendRequest(nil, "test.Big/Get", 0, &raftv1.TimeoutNowRequest{})
		setFrameID(b, uint64(i+1))
		frames = append(frames, b...)
	}
	written := make(chan error, 1)
	go func() { _, err := conn.Write(frames); written <- err }()
	defer func() { conn.Close(); <-written }()
	// Wait until the server stops making progress, watching its queue of
	// replies not yet written.
	queued := func() (n int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for l := range s.conns {
			l.mu.Lock()
			n += len(l.out)
			l.mu.Unlock()
		}
		return n
	}
	last, still, most := int64(-1), 0, 0
	for deadline := time.Now().Add(20 * time.Second); still < 10 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		most = max(most, queued())
		if cur := ran.Load(); cur == last {
			still++
		} else {
			last, still = cur, 0
		}
	}
	if most > 4*8 {
		t.Errorf("the server queued up to %d replies nobody reads (limit 8 calls in flight; %d calls ran)", most, ran.Load())
	}
	waitFor(t, "the server to close the connection", func() bool { return s.Connections() == 0 })
}

// A peer that stops reading (and does not answer) must not make the client
// keep the frames of calls whose callers gave up: the out-queue holds at most
// the calls still waiting.
func TestReview5ClientDropsAbandonedFrames(t *testing.T) {
	done := make(chan struct{})
	p := startFakePeer(t, func(conn net.Conn, br *bufio.Reader) {
		_, _ = io.WriteString(conn, switching)
		<-done // never reads
	})
	t.Cleanup(func() { close(done) })
	c := NewStreamClient(p.url(), StreamOptions{MaxCallsInFlight: 16, StuckAfter: time.Hour, WriteTimeout: time.Hour})
	defer c.Close()
	payload := &raftv1.AppendEntriesRequest{Entries: []*raftv1.Entry{{Data: make([]byte, 64<<10)}}}
	var wg sync.WaitGroup
	stop := time.Now().Add(1500 * time.Millisecond)
	for range 8 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
				_ = c.Call(ctx, MethodAppendEntries, payload, &raftv1.AppendEntriesResponse{})
				cancel()
			}
		})
	}
	wg.Wait()
	c.mu.Lock()
	l := c.cur
	c.mu.Unlock()
	if l == nil {
		t.Fatal("no connection")
	}
	l.mu.Lock()
	queued, pending := len(l.out), len(l.pending)
	l.mu.Unlock()
	if pending != 0 || queued > 16 {
		t.Fatalf("after every caller gave up: %d frames queued (%d MiB), %d calls pending; want ≤ 16 and 0", queued, queued*64>>10, pending)
	}
}

// A hostile or broken peer that answers the upgrade with an endless header
// must not make the client read (and buffer) it until the dial timeout.
func TestReview5HostileUpgradeResponseBounded(t *testing.T) {
	var sent atomic.Int64
	p := startFakePeer(t, func(conn net.Conn, br *bufio.Reader) {
		_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nX-Junk: ")
		junk := []byte(strings.Repeat("a", 32<<10))
		for {
			n, err := conn.Write(junk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	c := NewStreamClient(p.url(), StreamOptions{DialTimeout: 10 * time.Second})
	defer c.Close()
	start := time.Now()
	err := c.Call(context.Background(), MethodTimeoutNow, &raftv1.TimeoutNowRequest{}, &raftv1.TimeoutNowResponse{})
	if err == nil || !errors.Is(err, ErrStream) {
		t.Fatalf("call through a junk upgrade answer: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the client read the junk header for %v (%d MiB) before giving up: %v", d, sent.Load()>>20, err)
	}
}

// A peer that accepts the upgrade and closes the connection at once (or
// breaks every stream before answering anything) must not be redialed on
// every call: such a stream counts as a failed dial and backs off.
func TestReview5RedialBackoffAfterEmptyStream(t *testing.T) {
	p := startFakePeer(t, func(conn net.Conn, br *bufio.Reader) {
		_, _ = io.WriteString(conn, switching)
	})
	c := NewStreamClient(p.url(), StreamOptions{})
	defer c.Close()
	calls := 0
	for stop := time.Now().Add(time.Second); time.Now().Before(stop); calls++ {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := c.Call(ctx, MethodTimeoutNow, &raftv1.TimeoutNowRequest{}, &raftv1.TimeoutNowResponse{})
		cancel()
		if err == nil {
			t.Fatal("call answered by a peer that closes every stream")
		}
		var terr twirp.Error
		if errors.As(err, &terr) {
			t.Fatalf("a stream failure reads as the peer's answer: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	// Backoff 20, 40, 80, 160, 320, 500 ms: about 7 dials in a second.
	if n := p.accepted.Load(); n > 12 {
		t.Fatalf("%d dials in 1 s for %d calls to a peer that closes every stream", n, calls)
	}
}

// An upgrade request with a body is refused: its bytes must not be read as
// frames (a proxy or a confused client could smuggle calls in them).
func TestReview5UpgradeWithBodyRefused(t *testing.T) {
	node := newBlockNode()
	close(node.release)
	p := startStreamPeer(t, node, StreamServerOptions{}, true, nil)
	frame := rawRequest(t, 1, MethodAppendEntries, &raftv1.AppendEntriesRequest{Term: 3})
	for name, hdr := range map[string]string{
		"content-length": fmt.Sprintf("Content-Length: %d\r\n", len(frame)),
		"chunked":        "Transfer-Encoding: chunked\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", strings.TrimPrefix(p.srv.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			body := frame
			if name == "chunked" {
				body = fmt.Appendf(nil, "%x\r\n%s\r\n0\r\n\r\n", len(frame), frame)
			}
			req := "GET " + StreamPath + " HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: " + StreamProtocol + "\r\n" + hdr + "\r\n"
			_, _ = conn.Write(append([]byte(req), body...))
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("upgrade with a body: HTTP %d, want 400", resp.StatusCode)
			}
		})
	}
	if n := len(node.started); n != 0 {
		t.Fatalf("%d calls smuggled in an upgrade body reached the node", n)
	}
}

// A client may send its first frames right behind the upgrade request,
// before the 101: they are served, not lost.
func TestReview5PipelinedFramesAfterUpgrade(t *testing.T) {
	p := startStreamPeer(t, echoNode{}, StreamServerOptions{}, true, nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "GET " + StreamPath + " HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: " + StreamProtocol + "\r\n\r\n"
	msg := append([]byte(req), rawRequest(t, 7, MethodAppendEntries, &raftv1.AppendEntriesRequest{Term: 5})...)
	msg = append(msg, rawRequest(t, 8, MethodAppendEntries, &raftv1.AppendEntriesRequest{Term: 6})...)
	_, _ = conn.Write(msg)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	seen := map[uint64]uint64{}
	for range 2 {
		typ, id, body, err := readFrame(br, 1<<20)
		var r raftv1.AppendEntriesResponse
		if err != nil || typ != frameResponse || proto.Unmarshal(body, &r) != nil {
			t.Fatalf("frame %d id %d: %v", typ, id, err)
		}
		seen[id] = r.Term
	}
	if seen[7] != 5 || seen[8] != 6 {
		t.Fatalf("replies %v", seen)
	}
}

// What a hostile or broken server sends back must never panic the client,
// hand a caller another call's reply, or leave a caller hanging.
func TestReview5HostileServerReplies(t *testing.T) {
	type req struct {
		id     uint64
		method string
		body   []byte
	}
	readReq := func(br *bufio.Reader) (req, error) {
		typ, id, rest, err := readFrame(br, 1<<20)
		if err != nil {
			return req{}, err
		}
		if typ != frameRequest {
			return req{}, fmt.Errorf("type %d", typ)
		}
		_, m, payload, err := parseRequest(rest)
		return req{id, string(m), payload}, err
	}
	frame := func(typ byte, id uint64, body []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(9+len(body)))
		b = append(b, typ)
		b = binary.BigEndian.AppendUint64(b, id)
		return append(b, body...)
	}
	reply := func(id uint64, term uint64) []byte {
		b, _ := appendResponse(nil, id, &raftv1.TimeoutNowResponse{Term: term, Accepted: true})
		return b
	}
	call := func(c *StreamClient, term uint64) (*raftv1.TimeoutNowResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var r raftv1.TimeoutNowResponse
		err := c.Call(ctx, MethodTimeoutNow, &raftv1.TimeoutNowRequest{Term: term}, &r)
		return &r, err
	}
	termOf := func(r req) uint64 {
		var m raftv1.TimeoutNowRequest
		_ = proto.Unmarshal(r.body, &m)
		return m.Term
	}
	cases := []struct {
		name  string
		serve func(conn net.Conn, r req) // answers the one call
		check func(t *testing.T, resp *raftv1.TimeoutNowResponse, err error)
	}{
		{"unknown and duplicate ids around the reply", func(conn net.Conn, r req) {
			var b []byte
			b = append(b, reply(r.id+1000, 99)...)
			b = append(b, reply(0, 98)...)
			b = append(b, reply(r.id, termOf(r))...)
			b = append(b, reply(r.id, 97)...)
			_, _ = conn.Write(b)
		}, func(t *testing.T, resp *raftv1.TimeoutNowResponse, err error) {
			if err != nil {
				t.Fatal(err)
			}
		}},
		{"garbage error JSON", func(conn net.Conn, r req) {
			_, _ = conn.Write(frame(frameError, r.id, []byte("{\"code\":[1,2],\x00\xff")))
		}, func(t *testing.T, _ *raftv1.TimeoutNowResponse, err error) {
			var terr twirp.Error
			if !errors.As(err, &terr) || terr.Code() != twirp.Internal {
				t.Fatalf("garbage error frame: %v, want an internal Twirp error", err)
			}
		}},
		{"error with an invalid code", func(conn net.Conn, r req) {
			_, _ = conn.Write(frame(frameError, r.id, []byte(`{"code":"no_such_code","msg":"x"}`)))
		}, func(t *testing.T, _ *raftv1.TimeoutNowResponse, err error) {
			var terr twirp.Error
			if !errors.As(err, &terr) || terr.Code() != twirp.Internal {
				t.Fatalf("invalid code: %v", err)
			}
		}},
		{"undecodable reply", func(conn net.Conn, r req) {
			_, _ = conn.Write(frame(frameResponse, r.id, []byte{0xff, 0xff, 0xff}))
		}, func(t *testing.T, _ *raftv1.TimeoutNowResponse, err error) {
			var terr twirp.Error
			if !errors.Is(err, ErrStream) || errors.As(err, &terr) {
				t.Fatalf("undecodable reply: %v, want a stream error", err)
			}
		}},
		{"request frame from the server", func(conn net.Conn, r req) {
			_, _ = conn.Write(frame(frameRequest, r.id, make([]byte, 10)))
		}, func(t *testing.T, _ *raftv1.TimeoutNowResponse, err error) {
			if !errors.Is(err, ErrStreamClosed) {
				t.Fatalf("request frame from the server: %v", err)
			}
		}},
		{"frame over the limit", func(conn net.Conn, r req) {
			_, _ = conn.Write(binary.BigEndian.AppendUint32(nil, 1<<30))
		}, func(t *testing.T, _ *raftv1.TimeoutNowResponse, err error) {
			if !errors.Is(err, ErrStreamClosed) {
				t.Fatalf("huge frame: %v", err)
			}
		}},
		{"short frame", func(conn net.Conn, r req) {
			_, _ = conn.Write([]byte{0, 0, 0, 2, 1, 1})
		}, func(t *testing.T, _ *raftv1.TimeoutNowResponse, err error) {
			if !errors.Is(err, ErrStreamClosed) {
				t.Fatalf("short frame: %v", err)
			}
		}},
		{"close mid-frame", func(conn net.Conn, r req) {
			b := reply(r.id, termOf(r))
			_, _ = conn.Write(b[:len(b)-1])
		}, func(t *testing.T, _ *raftv1.TimeoutNowResponse, err error) {
			if !errors.Is(err, ErrStreamClosed) {
				t.Fatalf("close mid-frame: %v", err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			p := startFakePeer(t, func(conn net.Conn, br *bufio.Reader) {
				_, _ = io.WriteString(conn, switching)
				r, err := readReq(br)
				if err != nil {
					return
				}
				tc.serve(conn, r)
			})
			c := NewStreamClient(p.url(), StreamOptions{MaxFrameBytes: 1 << 20})
			defer c.Close()
			resp, err := call(c, 42)
			if err == nil && (resp.Term != 42 || !resp.Accepted) {
				t.Fatalf("got another call's reply: %+v", resp)
			}
			tc.check(t, resp, err)
		})
	}
}

// A reply that arrives after its caller gave up is dropped; the next call
// on the same connection gets its own reply, and nothing stays pending.
func TestReview5LateReplyDropped(t *testing.T) {
	node := newBlockNode()
	p := startStreamPeer(t, node, StreamServerOptions{}, true, nil)
	c := NewStreamClient(p.srv.URL, StreamOptions{})
	defer c.Close()
	// The caller gives up once its request reached the handler (not on a
	// deadline: on a loaded machine a short one could expire before the
	// request is written, and the handler would never start).
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		var r1 raftv1.AppendEntriesResponse
		errc <- c.Call(ctx, MethodAppendEntries, &raftv1.AppendEntriesRequest{Term: 1}, &r1)
	}()
	<-node.started
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("call answered before release")
	}
	// Released, the handler answers the call nobody waits for; the next
	// call must get its own reply, not the late one.
	close(node.release)
	var r2 raftv1.AppendEntriesResponse
	if err := c.Call(context.Background(), MethodAppendEntries, &raftv1.AppendEntriesRequest{Term: 2, PrevLogIndex: 5}, &r2); err != nil {
		t.Fatal(err)
	}
	if r2.Term != 2 || r2.MatchIndex != 5 {
		t.Fatalf("second call got %+v", &r2)
	}
	c.mu.Lock()
	l := c.cur
	c.mu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) != 0 {
		t.Fatalf("%d calls still pending", len(l.pending))
	}
}

// Calls racing Transport.Close and a server close: each returns (an answer
// or an error; nothing hangs), and afterwards no goroutine of the stream is
// left on either side.
func TestReview5CloseRacesCallsNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		p := startStreamPeer(t, slowNode{}, StreamServerOptions{}, true, nil)
		for round := range 3 {
			tr := New(0, []string{"", p.srv.URL}, Options{})
			var wg sync.WaitGroup
			var answered, failed atomic.Int64
			for g := range 16 {
				wg.Go(func() {
					for i := range 50 {
						ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
						_, err := tr.AppendEntries(ctx, 1, &raft.AppendEntriesRequest{Term: 1, PrevLogIndex: uint64(g*100 + i)})
						cancel()
						if err != nil {
							failed.Add(1)
							if !errors.Is(err, ErrStream) {
								t.Errorf("round %d: call racing Close: %v", round, err)
							}
							return
						}
						answered.Add(1)
					}
				})
			}
			waitFor(t, "some answers", func() bool { return answered.Load() > 20 })
			if round == 2 {
				p.stream.Close() // the server side goes first
			}
			tr.Close()
			wg.Wait()
		}
		p.close()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+2 { // +2: the race detector's and httptest's stragglers
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SetPeer while calls are in flight on the old address: those calls finish
// where they were sent (on the old stream), new calls go to the new
// address; RemovePeer fails new calls at once without touching the pool.
func TestReview5SetPeerWhileCallsInFlight(t *testing.T) {
	oldNode := newBlockNode()
	a := startStreamPeer(t, oldNode, StreamServerOptions{}, true, nil)
	b := startStreamPeer(t, echoNode{}, StreamServerOptions{}, true, nil)
	tr := New(0, []string{"", a.srv.URL}, Options{})
	defer tr.Close()
	errc := make(chan error, 4)
	for range 4 {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err := tr.AppendEntries(ctx, 1, &raft.AppendEntriesRequest{Term: 7, PrevLogIndex: 3})
			if err == nil && (r.Term != 7 || r.MatchIndex != 3) {
				err = fmt.Errorf("wrong reply %+v", r)
			}
			errc <- err
		}()
	}
	for range 4 {
		<-oldNode.started
	}
	tr.SetPeer(1, b.srv.URL)
	checkAll(t, tr) // to b, while a's calls wait
	if b.upgrades.Load() != 1 {
		t.Fatalf("new address: %d upgrades", b.upgrades.Load())
	}
	close(oldNode.release)
	for range 4 {
		if err := <-errc; err != nil {
			t.Fatalf("call in flight during SetPeer: %v", err)
		}
	}
	tr.RemovePeer(1)
	if _, err := tr.AppendEntries(context.Background(), 1, &raft.AppendEntriesRequest{}); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("after RemovePeer: %v", err)
	}
}

// The client's idle timeout counts from the last call sent; a call still
// waiting for its reply (a forwarded batch waiting for its commit, a call
// with a long deadline) makes the connection busy, not idle: the next call
// must not close it under the waiting one.
func TestReview5IdleCloseSparesCallsInFlight(t *testing.T) {
	node := newBlockNode()
	p := startStreamPeer(t, node, StreamServerOptions{}, true, nil)
	c := NewStreamClient(p.srv.URL, StreamOptions{IdleTimeout: 200 * time.Millisecond})
	defer c.Close()
	longErr := make(chan error, 1)
	go func() {
		longErr <- c.Call(context.Background(), MethodAppendEntries, &raftv1.AppendEntriesRequest{Term: 1}, &raftv1.AppendEntriesResponse{})
	}()
	<-node.started
	time.Sleep(400 * time.Millisecond) // past the idle timeout, the call still waiting
	if err := c.Call(context.Background(), MethodTimeoutNow, &raftv1.TimeoutNowRequest{}, &raftv1.TimeoutNowResponse{}); err != nil {
		t.Fatal(err)
	}
	close(node.release)
	if err := <-longErr; err != nil {
		t.Fatalf("a call in flight failed when the next call found the connection idle: %v", err)
	}
	if n := p.upgrades.Load(); n != 1 {
		t.Fatalf("%d upgrades, want 1", n)
	}
}

// A server that starts a reply frame at the size limit and never sends its
// bytes: the calls time out at their deadlines (not later), the stuck rule
// closes the connection, and the next call dials a new one.
func TestReview5ServerStallsMidFrame(t *testing.T) {
	p := startFakePeer(t, func(conn net.Conn, br *bufio.Reader) {
		_, _ = io.WriteString(conn, switching)
		if _, _, _, err := readFrame(br, 1<<20); err != nil {
			return
		}
		hdr := binary.BigEndian.AppendUint32(nil, uint32(1<<20+frameSlack))
		hdr = append(hdr, frameResponse, 0, 0, 0, 0, 0, 0, 0, 1)
		_, _ = conn.Write(hdr)
		_, _ = io.Copy(io.Discard, br) // and nothing more
	})
	c := NewStreamClient(p.url(), StreamOptions{MaxFrameBytes: 1 << 20, StuckAfter: 200 * time.Millisecond})
	defer c.Close()
	for calls := 0; p.accepted.Load() < 2; calls++ {
		if calls > 50 {
			t.Fatalf("no redial after %d timed-out calls", calls)
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		err := c.Call(ctx, MethodTimeoutNow, &raftv1.TimeoutNowRequest{}, &raftv1.TimeoutNowResponse{})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call to a peer stalled mid-frame: %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("call took %v, deadline 150 ms", d)
		}
	}
}

// A TLS config that offers HTTP/2 in ALPN (one shared with an HTTP/2
// client) must still get the stream from a server that speaks HTTP/2: the
// upgrade is HTTP/1.1 and must say so, or the server picks h2 and reads the
// upgrade request as a broken HTTP/2 preface.
func TestReview5TLSWithH2InALPN(t *testing.T) {
	s := NewStreamServer(StreamServerOptions{})
	s.HandleRaft(echoNode{})
	mux := http.NewServeMux()
	mux.Handle("GET "+StreamPath, s)
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer func() { srv.Close(); s.Close() }()
	cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{"h2", "http/1.1"}
	c := NewStreamClient(srv.URL, StreamOptions{TLS: cfg})
	defer c.Close()
	var r raftv1.TimeoutNowResponse
	if err := c.Call(context.Background(), MethodTimeoutNow, &raftv1.TimeoutNowRequest{Term: 3}, &r); err != nil || r.Term != 3 {
		t.Fatalf("stream over TLS with h2 offered: %v, %v", &r, err)
	}
	if s.Connections() != 1 {
		t.Fatalf("%d stream connections", s.Connections())
	}
}
