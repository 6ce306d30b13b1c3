package twirptransport

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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/raft"
	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
)

// streamPeer is a test peer listener: the Twirp routes and the stream,
// behind optional middleware, counting Twirp requests and upgrades.
type streamPeer struct {
	srv      *httptest.Server
	stream   *StreamServer
	twirps   atomic.Int64 // Twirp requests served
	upgrades atomic.Int64 // upgrade requests that reached the stream server
}

// startStreamPeer serves node's RPCs over both paths; wrap, when set,
// wraps the whole handler (authentication). withStream false serves only
// Twirp, as a version without the stream does.
func startStreamPeer(t testing.TB, node Handlers, opts StreamServerOptions, withStream bool, wrap func(http.Handler) http.Handler) *streamPeer {
	t.Helper()
	p := &streamPeer{}
	mux := http.NewServeMux()
	tw := NewHandler(node)
	mux.Handle("POST "+PathPrefix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.twirps.Add(1)
		tw.ServeHTTP(w, r)
	}))
	if withStream {
		p.stream = NewStreamServer(opts)
		p.stream.HandleRaft(node)
		mux.Handle("GET "+StreamPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.upgrades.Add(1)
			p.stream.ServeHTTP(w, r)
		}))
	}
	var h http.Handler = mux
	if wrap != nil {
		h = wrap(h)
	}
	p.srv = httptest.NewServer(h)
	t.Cleanup(p.close)
	return p
}

func (p *streamPeer) close() {
	p.srv.Close()
	if p.stream != nil {
		p.stream.Close()
	}
}

// checkAll sends every RPC through tr to peer 1 and checks the replies.
func checkAll(t *testing.T, tr raft.Transport) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ae, err := tr.AppendEntries(ctx, 1, &raft.AppendEntriesRequest{Term: 3, PrevLogIndex: 10,
		Entries: []raft.Entry{{Index: 11, Term: 3, Type: persist.EntryCommand, Data: []byte("x")}, {Index: 12, Term: 3, Type: persist.EntryNoop}}})
	if err != nil || !ae.Success || ae.Term != 3 || ae.MatchIndex != 12 {
		t.Fatalf("AppendEntries = %+v, %v", ae, err)
	}
	rv, err := tr.RequestVote(ctx, 1, &raft.RequestVoteRequest{Term: 4, PreVote: true})
	if err != nil || rv.Term != 4 || !rv.VoteGranted {
		t.Fatalf("RequestVote = %+v, %v", rv, err)
	}
	is, err := tr.InstallSnapshot(ctx, 1, &raft.InstallSnapshotRequest{Term: 5, Offset: 7, TotalSize: 10, Data: []byte("abc"), Done: true})
	if err != nil || is.Term != 5 || is.NextOffset != 10 || !is.Installed {
		t.Fatalf("InstallSnapshot = %+v, %v", is, err)
	}
	tn, err := tr.TimeoutNow(ctx, 1, &raft.TimeoutNowRequest{Term: 6})
	if err != nil || tn.Term != 6 || !tn.Accepted {
		t.Fatalf("TimeoutNow = %+v, %v", tn, err)
	}
	ri, err := tr.ReadIndex(ctx, 1, &raft.ReadIndexRequest{Term: 7, FollowerID: 2})
	if err != nil || ri.Term != 7 || !ri.OK || ri.ReadIndex != 102 {
		t.Fatalf("ReadIndex = %+v, %v", ri, err)
	}
}

// Every RPC goes over one stream connection, none as a Twirp request, and
// the Observe hook sees each one.
func TestStreamRoundTripEveryRPC(t *testing.T) {
	p := startStreamPeer(t, echoNode{}, StreamServerOptions{}, true, nil)
	var observed atomic.Int64
	tr := New(0, []string{"", p.srv.URL}, Options{Observe: func(string, time.Time, error) { observed.Add(1) }})
	defer tr.Close()
	checkAll(t, tr)
	checkAll(t, tr)
	if n := p.twirps.Load(); n != 0 {
		t.Errorf("%d RPCs went as Twirp requests, want 0", n)
	}
	if n := p.upgrades.Load(); n != 1 {
		t.Errorf("%d upgrades, want 1 connection for every RPC", n)
	}
	if n := observed.Load(); n != 10 {
		t.Errorf("Observe saw %d RPCs, want 10", n)
	}
	// An error from the node reaches the caller as the Twirp path gives it.
	p2 := startStreamPeer(t, echoNode{fail: errors.New("boom")}, StreamServerOptions{}, true, nil)
	tr.SetPeer(1, p2.srv.URL)
	_, err := tr.AppendEntries(context.Background(), 1, &raft.AppendEntriesRequest{Term: 1})
	var terr twirp.Error
	if !errors.As(err, &terr) || terr.Code() != twirp.Unavailable || !strings.Contains(terr.Msg(), "boom") {
		t.Fatalf("node error over the stream = %v, want a Twirp unavailable error", err)
	}
}

// slowNode answers AppendEntries after a delay that depends on the request,
// so replies come back out of order.
type slowNode struct{ echoNode }

func (s slowNode) HandleAppendEntries(ctx context.Context, r *raft.AppendEntriesRequest) (*raft.AppendEntriesResponse, error) {
	time.Sleep(time.Duration(r.PrevLogIndex%7) * time.Millisecond)
	return s.echoNode.HandleAppendEntries(ctx, r)
}

// Many calls in flight at once on one connection, answered out of order:
// each caller gets its own reply.
func TestStreamConcurrentCallsMatchReplies(t *testing.T) {
	p := startStreamPeer(t, slowNode{}, StreamServerOptions{}, true, nil)
	tr := New(0, []string{"", p.srv.URL}, Options{})
	defer tr.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 64 {
		wg.Go(func() {
			for i := range 20 {
				prev := uint64(g*1000 + i)
				n := (g + i) % 5
				req := &raft.AppendEntriesRequest{Term: uint64(g), PrevLogIndex: prev, Entries: make([]raft.Entry, n)}
				for k := range req.Entries {
					req.Entries[k] = raft.Entry{Index: prev + uint64(k) + 1, Term: 1, Type: persist.EntryNoop}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := tr.AppendEntries(ctx, 1, req)
				cancel()
				if err != nil {
					errs <- err
					return
				}
				if resp.Term != uint64(g) || resp.MatchIndex != prev+uint64(n) {
					errs <- fmt.Errorf("caller %d call %d got %+v", g, i, resp)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := p.upgrades.Load(); n != 1 {
		t.Errorf("%d upgrades, want 1", n)
	}
}

// blockNode blocks AppendEntries until release is closed or its context
// ends, and counts the calls that started.
type blockNode struct {
	echoNode
	release  chan struct{}
	started  chan struct{} // one send per call that started (buffered)
	ended    atomic.Int64  // calls that returned
	deadline atomic.Int64  // unix nanos of the last call's context deadline (0: none)
	arrived  atomic.Int64  // unix nanos when the last call reached the handler
}

func newBlockNode() *blockNode {
	return &blockNode{release: make(chan struct{}), started: make(chan struct{}, 1024)}
}

func (b *blockNode) HandleAppendEntries(ctx context.Context, r *raft.AppendEntriesRequest) (*raft.AppendEntriesResponse, error) {
	b.arrived.Store(time.Now().UnixNano())
	if dl, ok := ctx.Deadline(); ok {
		b.deadline.Store(dl.UnixNano())
	}
	b.started <- struct{}{}
	defer b.ended.Add(1)
	select {
	case <-b.release:
		return b.echoNode.HandleAppendEntries(ctx, r)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A connection that breaks fails the calls in flight on it at once (not at
// their deadlines), and the next call redials.
func TestStreamConnectionLossFailsCallsPromptly(t *testing.T) {
	node := newBlockNode()
	p := startStreamPeer(t, node, StreamServerOptions{}, true, nil)
	tr := New(0, []string{"", p.srv.URL}, Options{})
	defer tr.Close()
	errc := make(chan error, 3)
	for range 3 {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := tr.AppendEntries(ctx, 1, &raft.AppendEntriesRequest{Term: 1})
			errc <- err
		}()
	}
	for range 3 {
		<-node.started
	}
	start := time.Now()
	p.srv.CloseClientConnections() // no effect on hijacked connections
	p.stream.Close()               // closes the upgraded connection
	for range 3 {
		if err := <-errc; !errors.Is(err, ErrStreamClosed) {
			t.Fatalf("call on a broken connection: %v, want ErrStreamClosed", err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("calls failed %v after the connection broke", d)
	}
	// A fresh stream server at the same address: the next call redials.
	p.stream = NewStreamServer(StreamServerOptions{})
	p.stream.HandleRaft(echoNode{})
	waitFor(t, "a call over a new connection", func() bool {
		_, err := tr.RequestVote(context.Background(), 1, &raft.RequestVoteRequest{Term: 1})
		return err == nil
	})
	if n := p.upgrades.Load(); n < 2 {
		t.Fatalf("%d upgrades, want a redial", n)
	}
}

// A peer that stops and comes back at the same address is reached again:
// calls fail (fast, with backoff) while it is down and succeed after.
func TestStreamPeerRestart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	serve := func(ln net.Listener) (*http.Server, *StreamServer) {
		s := NewStreamServer(StreamServerOptions{})
		s.HandleRaft(echoNode{})
		mux := http.NewServeMux()
		mux.Handle("GET "+StreamPath, s)
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = hs.Serve(ln) }()
		return hs, s
	}
	hs, s := serve(ln)
	tr := New(0, []string{"", "http://" + addr}, Options{})
	defer tr.Close()
	checkAll(t, tr)
	_ = hs.Close()
	s.Close()
	_, err = tr.RequestVote(context.Background(), 1, &raft.RequestVoteRequest{Term: 1})
	if err == nil {
		t.Fatal("call to a stopped peer succeeded")
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken again: %v", addr, err)
	}
	hs, s = serve(ln)
	defer func() { _ = hs.Close(); s.Close() }()
	waitFor(t, "the restarted peer", func() bool {
		_, err := tr.RequestVote(context.Background(), 1, &raft.RequestVoteRequest{Term: 1})
		return err == nil
	})
	checkAll(t, tr)
}

// SetPeer moves a peer: the next call goes to the new address, over its own
// stream.
func TestStreamSetPeerMovesAddress(t *testing.T) {
	a := startStreamPeer(t, echoNode{}, StreamServerOptions{}, true, nil)
	b := startStreamPeer(t, echoNode{}, StreamServerOptions{}, true, nil)
	tr := New(0, []string{"", a.srv.URL}, Options{})
	defer tr.Close()
	checkAll(t, tr)
	tr.SetPeer(1, b.srv.URL)
	checkAll(t, tr)
	if a.upgrades.Load() != 1 || b.upgrades.Load() != 1 {
		t.Fatalf("upgrades a=%d b=%d, want 1 each", a.upgrades.Load(), b.upgrades.Load())
	}
	tr.RemovePeer(1)
	if _, err := tr.TimeoutNow(context.Background(), 1, &raft.TimeoutNowRequest{}); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("call to a removed peer: %v", err)
	}
}

// A peer without the stream (an older version) is reached over per-request
// Twirp, and one with the stream turned off on this side as well.
func TestStreamFallbackToTwirp(t *testing.T) {
	old := startStreamPeer(t, echoNode{}, StreamServerOptions{}, false, nil)
	tr := New(0, []string{"", old.srv.URL}, Options{})
	defer tr.Close()
	checkAll(t, tr)
	checkAll(t, tr)
	if n := old.twirps.Load(); n != 10 {
		t.Fatalf("%d Twirp requests, want 10", n)
	}
	// The refusal is remembered: one upgrade attempt, not one per call
	// (the old peer's mux answers it 404 or 405).
	c := tr.streams.Client(old.srv.URL)
	if err := c.Call(context.Background(), MethodTimeoutNow, &raftv1.TimeoutNowRequest{}, &raftv1.TimeoutNowResponse{}); !errors.Is(err, ErrNoStream) {
		t.Fatalf("stream call to a peer without the stream: %v, want ErrNoStream", err)
	}

	cur := startStreamPeer(t, echoNode{}, StreamServerOptions{}, true, nil)
	off := New(0, []string{"", cur.srv.URL}, Options{DisableStream: true})
	checkAll(t, off)
	if cur.upgrades.Load() != 0 || cur.twirps.Load() != 5 {
		t.Fatalf("DisableStream: %d upgrades, %d Twirp requests; want 0 and 5", cur.upgrades.Load(), cur.twirps.Load())
	}
}

// rawUpgrade dials url's host and asks for the stream with the given
// Authorization header (none if empty); it returns the connection and the
// status of the answer.
func rawUpgrade(t *testing.T, url, auth string) (net.Conn, *bufio.Reader, int) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req := "GET " + StreamPath + " HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: " + StreamProtocol + "\r\n"
	if auth != "" {
		req += "Authorization: " + auth + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return conn, br, resp.StatusCode
}

// expectClosed waits for the server to close conn (EOF or reset) and fails
// if a frame arrives instead.
func expectClosed(t *testing.T, conn net.Conn, br *bufio.Reader) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := br.ReadByte()
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("connection still open (read: %v)", err)
	}
}

// rawRequest encodes a request frame for a raw client.
func rawRequest(t *testing.T, id uint64, method string, msg *raftv1.AppendEntriesRequest) []byte {
	t.Helper()
	b, err := appendRequest(nil, method, 0, msg)
	if err != nil {
		t.Fatal(err)
	}
	setFrameID(b, id)
	return b
}

// With RequireToken in front, an upgrade without the token or with a wrong
// one gets 401 and no stream; a client with the wrong token cannot call;
// one with the right token gets a stream.
func TestStreamRequiresToken(t *testing.T) {
	node := newBlockNode()
	close(node.release)
	p := startStreamPeer(t, node, StreamServerOptions{}, true, func(h http.Handler) http.Handler { return RequireToken("s3cret", h) })
	for _, auth := range []string{"", "Bearer wrong", "Bearer s3cret2", "s3cret"} {
		conn, br, status := rawUpgrade(t, p.srv.URL, auth)
		if status != http.StatusUnauthorized {
			t.Fatalf("upgrade with Authorization %q: HTTP %d, want 401", auth, status)
		}
		// Whatever is sent next is not read as frames.
		_, _ = conn.Write(rawRequest(t, 1, MethodAppendEntries, &raftv1.AppendEntriesRequest{Term: 9}))
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if b, err := br.Peek(5); err == nil && b[4] == frameResponse {
			t.Fatalf("unauthenticated frame answered")
		}
	}
	if p.upgrades.Load() != 0 || len(node.started) != 0 {
		t.Fatalf("unauthenticated upgrades reached the stream server (%d) or the node (%d)", p.upgrades.Load(), len(node.started))
	}
	wrong := New(0, []string{"", p.srv.URL}, Options{Token: "wrong"})
	defer wrong.Close()
	if _, err := wrong.AppendEntries(context.Background(), 1, &raft.AppendEntriesRequest{}); err == nil {
		t.Fatal("AppendEntries with the wrong token succeeded")
	}
	right := New(0, []string{"", p.srv.URL}, Options{Token: "s3cret"})
	defer right.Close()
	if _, err := right.AppendEntries(context.Background(), 1, &raft.AppendEntriesRequest{}); err != nil {
		t.Fatal(err)
	}
	if p.upgrades.Load() != 1 || p.twirps.Load() != 0 {
		t.Fatalf("%d upgrades and %d Twirp requests, want 1 and 0", p.upgrades.Load(), p.twirps.Load())
	}
}

// A header field given with StreamOptions.Header reaches the peer with the
// stream's upgrade, and one given with WithHeader with every unary request;
// a peer that requires it refuses a client that does not send it, on
// either path.
func TestExtraHeaderOnBothPaths(t *testing.T) {
	node := newBlockNode()
	close(node.release)
	var refused atomic.Int64
	p := startStreamPeer(t, node, StreamServerOptions{}, true, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Test-Cluster") != "c1" {
				refused.Add(1)
				w.WriteHeader(http.StatusPreconditionFailed)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	withHeader := WithHeader(NewHTTPClient(nil), "test-cluster", "c1")

	pool := NewStreamPool(StreamOptions{Header: http.Header{"Test-Cluster": {"c1"}}})
	defer pool.Close()
	streamed := New(0, []string{"", p.srv.URL}, Options{HTTPClient: withHeader, Stream: pool})
	defer streamed.Close()
	if _, err := streamed.AppendEntries(ctx, 1, &raft.AppendEntriesRequest{}); err != nil {
		t.Fatalf("over the stream, with the header: %v", err)
	}
	if p.upgrades.Load() != 1 || p.twirps.Load() != 0 {
		t.Fatalf("%d upgrades and %d Twirp requests, want 1 and 0", p.upgrades.Load(), p.twirps.Load())
	}
	unary := New(0, []string{"", p.srv.URL}, Options{HTTPClient: withHeader, DisableStream: true})
	defer unary.Close()
	if _, err := unary.AppendEntries(ctx, 1, &raft.AppendEntriesRequest{}); err != nil {
		t.Fatalf("per-request Twirp, with the header: %v", err)
	}
	if p.twirps.Load() != 1 || refused.Load() != 0 {
		t.Fatalf("%d Twirp requests and %d refusals, want 1 and 0", p.twirps.Load(), refused.Load())
	}

	bareStream := New(0, []string{"", p.srv.URL}, Options{})
	defer bareStream.Close()
	if _, err := bareStream.AppendEntries(ctx, 1, &raft.AppendEntriesRequest{}); err == nil {
		t.Fatal("a client without the header was served (stream, then Twirp)")
	}
	bareUnary := New(0, []string{"", p.srv.URL}, Options{DisableStream: true})
	defer bareUnary.Close()
	if _, err := bareUnary.AppendEntries(ctx, 1, &raft.AppendEntriesRequest{}); err == nil {
		t.Fatal("a client without the header was served (Twirp)")
	}
	if refused.Load() < 2 || p.upgrades.Load() != 1 || p.twirps.Load() != 1 {
		t.Fatalf("%d refusals, %d upgrades, %d Twirp requests served; want at least 2, 1 and 1",
			refused.Load(), p.upgrades.Load(), p.twirps.Load())
	}
}

// A frame over the limit closes the connection before it is read; so does
// a frame that does not parse; neither reaches the node.
func TestStreamOversizedAndGarbageFramesClose(t *testing.T) {
	node := newBlockNode()
	p := startStreamPeer(t, node, StreamServerOptions{MaxFrameBytes: 1024}, true, nil)
	bad := map[string][]byte{
		"oversized header": binary.BigEndian.AppendUint32(nil, 1024+frameSlack+1),
		"short frame":      {0, 0, 0, 3, 1, 2, 3},
		"unknown type":     append(binary.BigEndian.AppendUint32(nil, 9), 7, 0, 0, 0, 0, 0, 0, 0, 1),
		"response type":    append(binary.BigEndian.AppendUint32(nil, 9), frameResponse, 0, 0, 0, 0, 0, 0, 0, 1),
		"no method":        append(binary.BigEndian.AppendUint32(nil, 14), frameRequest, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0),
		"method past end":  append(binary.BigEndian.AppendUint32(nil, 14), frameRequest, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 200),
	}
	big := rawRequest(t, 1, MethodAppendEntries, &raftv1.AppendEntriesRequest{Entries: []*raftv1.Entry{{Data: make([]byte, 4096)}}})
	bad["oversized request"] = big
	for name, frame := range bad {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			conn, br, status := rawUpgrade(t, p.srv.URL, "")
			if status != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade: HTTP %d", status)
			}
			if _, err := conn.Write(frame); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, conn, br)
		})
	}
	if len(node.started) != 0 {
		t.Fatal("a bad frame reached the node")
	}
	// An unknown method is answered with an error; the connection stays.
	conn, br, _ := rawUpgrade(t, p.srv.URL, "")
	_, _ = conn.Write(rawRequest(t, 5, "raft.v1.RaftService/Nope", &raftv1.AppendEntriesRequest{}))
	typ, id, body, err := readFrame(br, 1<<20)
	if err != nil || typ != frameError || id != 5 {
		t.Fatalf("unknown method: frame %d id %d err %v", typ, id, err)
	}
	var terr twirp.Error
	if !errors.As(decodeError(body), &terr) || terr.Code() != twirp.BadRoute {
		t.Fatalf("unknown method answered %v", decodeError(body))
	}
	// An undecodable payload is the caller's fault (malformed).
	frame := rawRequest(t, 6, MethodAppendEntries, &raftv1.AppendEntriesRequest{})
	frame = append(frame, 0xff, 0xff)
	binary.BigEndian.PutUint32(frame, uint32(len(frame)-4))
	_, _ = conn.Write(frame)
	typ, id, body, err = readFrame(br, 1<<20)
	if err != nil || typ != frameError || id != 6 || !errors.As(decodeError(body), &terr) || terr.Code() != twirp.Malformed {
		t.Fatalf("garbage payload: frame %d id %d err %v %v", typ, id, err, decodeError(body))
	}
}

// Calls beyond the server's in-flight limit are refused at once with
// resource_exhausted and not run; the ones within it complete.
func TestStreamTooManyCallsInFlight(t *testing.T) {
	node := newBlockNode()
	p := startStreamPeer(t, node, StreamServerOptions{MaxCallsInFlight: 4}, true, nil)
	conn, br, _ := rawUpgrade(t, p.srv.URL, "")
	for i := range 4 {
		_, _ = conn.Write(rawRequest(t, uint64(i+1), MethodAppendEntries, &raftv1.AppendEntriesRequest{Term: 1}))
	}
	for range 4 {
		<-node.started
	}
	for i := range 3 {
		_, _ = conn.Write(rawRequest(t, uint64(100+i), MethodAppendEntries, &raftv1.AppendEntriesRequest{Term: 1}))
	}
	for range 3 {
		typ, id, body, err := readFrame(br, 1<<20)
		var terr twirp.Error
		if err != nil || typ != frameError || id < 100 || !errors.As(decodeError(body), &terr) || terr.Code() != twirp.ResourceExhausted {
			t.Fatalf("call over the limit: frame %d id %d err %v", typ, id, err)
		}
	}
	close(node.release)
	seen := map[uint64]bool{}
	for range 4 {
		typ, id, _, err := readFrame(br, 1<<20)
		if err != nil || typ != frameResponse || id < 1 || id > 4 {
			t.Fatalf("call within the limit: frame %d id %d err %v", typ, id, err)
		}
		seen[id] = true
	}
	if len(seen) != 4 || len(node.started) != 0 {
		t.Fatalf("replies %v, extra calls started %d", seen, len(node.started))
	}

	// The client side has the same limit.
	node2 := newBlockNode()
	p2 := startStreamPeer(t, node2, StreamServerOptions{}, true, nil)
	c := NewStreamClient(p2.srv.URL, StreamOptions{MaxCallsInFlight: 2})
	defer c.Close()
	errc := make(chan error, 2)
	for range 2 {
		go func() {
			errc <- c.Call(context.Background(), MethodAppendEntries, &raftv1.AppendEntriesRequest{}, &raftv1.AppendEntriesResponse{})
		}()
	}
	<-node2.started
	<-node2.started
	if err := c.Call(context.Background(), MethodAppendEntries, &raftv1.AppendEntriesRequest{}, &raftv1.AppendEntriesResponse{}); !errors.Is(err, ErrTooManyCalls) {
		t.Fatalf("third call: %v, want ErrTooManyCalls", err)
	}
	close(node2.release)
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// A connection that sends nothing is closed after the idle timeout, and so
// is one that starts a frame and stalls (slowloris after the upgrade); a
// connection whose calls are still running is not idle.
func TestStreamIdleAndSlowFramesClose(t *testing.T) {
	node := newBlockNode()
	p := startStreamPeer(t, node, StreamServerOptions{IdleTimeout: 300 * time.Millisecond}, true, nil)
	conn, br, _ := rawUpgrade(t, p.srv.URL, "")
	expectClosed(t, conn, br)

	conn, br, _ = rawUpgrade(t, p.srv.URL, "")
	frame := rawRequest(t, 1, MethodAppendEntries, &raftv1.AppendEntriesRequest{Term: 1})
	_, _ = conn.Write(frame[:6])
	expectClosed(t, conn, br)

	// A longer idle timeout here, so that a loaded machine cannot delay
	// the frame past it before the call starts.
	p = startStreamPeer(t, node, StreamServerOptions{IdleTimeout: time.Second}, true, nil)
	conn, br, _ = rawUpgrade(t, p.srv.URL, "")
	_, _ = conn.Write(frame)
	<-node.started
	time.Sleep(2500 * time.Millisecond) // over two idle timeouts with a call running
	close(node.release)
	if typ, id, _, err := readFrame(br, 1<<20); err != nil || typ != frameResponse || id != 1 {
		t.Fatalf("reply after a long call: frame %d id %d err %v", typ, id, err)
	}
	expectClosed(t, conn, br)
}

// The caller's deadline travels with the call and bounds the handler.
func TestStreamDeadlineReachesHandler(t *testing.T) {
	node := newBlockNode() // never released: the handler returns at its deadline
	p := startStreamPeer(t, node, StreamServerOptions{}, true, nil)
	tr := New(0, []string{"", p.srv.URL}, Options{})
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	want, _ := ctx.Deadline()
	sent := time.Now()
	// Either side may notice the deadline first: the caller's context
	// (ErrStream) or the handler's, whose error comes back from the peer.
	if _, err := tr.AppendEntries(ctx, 1, &raft.AppendEntriesRequest{}); err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("call past its deadline: %v", err)
	}
	waitFor(t, "the handler to see its deadline", func() bool { return node.ended.Load() == 1 })
	// The call carries what is left of the deadline (rounded up to a
	// millisecond), so the handler's is later by the time in transit: at
	// most from sending to the handler's start, which a busy machine can
	// stretch to seconds.
	got, transit := time.Unix(0, node.deadline.Load()), time.Unix(0, node.arrived.Load()).Sub(sent)
	if d := got.Sub(want); d < -10*time.Millisecond || d > transit+time.Millisecond {
		t.Fatalf("handler deadline %v, caller's %v: %v later, with %v in transit", got, want, d, transit)
	}
}

// A connection on which nothing at all arrives while a call waits (a peer
// that accepted the upgrade and then hangs) is closed when the call times
// out; the next call dials a new one.
func TestStreamStuckConnectionRedials(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	var conns sync.WaitGroup
	defer conns.Wait()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			conns.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+StreamProtocol+"\r\n\r\n")
				_, _ = io.Copy(io.Discard, br) // reads, never answers
			})
		}
	}()
	// Calls (100 ms) shorter than StuckAfter (300 ms): the silence adds up
	// over calls, as raft's heartbeats' would.
	c := NewStreamClient("http://"+ln.Addr().String(), StreamOptions{StuckAfter: 300 * time.Millisecond})
	defer c.Close()
	calls, first := 0, time.Now()
	for accepted.Load() < 2 {
		if calls++; calls > 50 {
			t.Fatalf("no redial after %d timed-out calls", calls)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := c.Call(ctx, MethodTimeoutNow, &raftv1.TimeoutNowRequest{}, &raftv1.TimeoutNowResponse{})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrStream) {
			t.Fatalf("call to a hung peer: %v", err)
		}
	}
	if d := time.Since(first); d < 300*time.Millisecond {
		t.Fatalf("redialed after %v (%d calls of 100 ms), before 300 ms of silence", d, calls)
	}
}

// A peer that refused the stream is asked again after RetryUpgradeAfter: a
// peer upgraded during a rolling upgrade gets the stream without a restart
// of this side.
func TestStreamRetriesUpgradeAfterRefusal(t *testing.T) {
	var upgraded atomic.Bool
	s := NewStreamServer(StreamServerOptions{})
	s.HandleRaft(echoNode{})
	defer s.Close()
	var upgrades atomic.Int64
	mux := http.NewServeMux()
	mux.Handle("POST "+PathPrefix, NewHandler(echoNode{}))
	mux.HandleFunc("GET "+StreamPath, func(w http.ResponseWriter, r *http.Request) {
		if !upgraded.Load() {
			http.NotFound(w, r) // an old version
			return
		}
		upgrades.Add(1)
		s.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	pool := NewStreamPool(StreamOptions{RetryUpgradeAfter: 100 * time.Millisecond})
	defer pool.Close()
	tr := New(0, []string{"", srv.URL}, Options{Stream: pool})
	checkAll(t, tr) // over Twirp
	upgraded.Store(true)
	waitFor(t, "the stream after the peer's upgrade", func() bool {
		checkAll(t, tr)
		return upgrades.Load() == 1
	})
	checkAll(t, tr)
	if n := upgrades.Load(); n != 1 {
		t.Fatalf("%d upgrades, want 1", n)
	}
}

// Transport.Close ends its own streams: a call after it fails rather than
// dialing again, and the peer sees the connection go.
func TestStreamTransportClose(t *testing.T) {
	p := startStreamPeer(t, echoNode{}, StreamServerOptions{}, true, nil)
	tr := New(0, []string{"", p.srv.URL}, Options{})
	checkAll(t, tr)
	tr.Close()
	if _, err := tr.RequestVote(context.Background(), 1, &raft.RequestVoteRequest{}); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("call after Close: %v, want ErrStreamClosed", err)
	}
	waitFor(t, "the peer to see the connection close", func() bool { return p.stream.Connections() == 0 })
	if n := p.upgrades.Load(); n != 1 {
		t.Fatalf("%d upgrades, want 1", n)
	}
}

// A client that sends calls and does not read their replies does not grow
// the server's memory: once twice MaxCallsInFlight replies wait to be
// written, the connection is closed (well before the write timeout). A
// client within the limit (StreamClient) never has that many outstanding.
func TestStreamClientThatDoesNotReadIsClosed(t *testing.T) {
	p := startStreamPeer(t, echoNode{}, StreamServerOptions{MaxCallsInFlight: 4, WriteTimeout: time.Minute}, true, nil)
	conn, _, _ := rawUpgrade(t, p.srv.URL, "")
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096) // fill up sooner
	}
	frame, err := appendRequest(nil, MethodTimeoutNow, 0, &raftv1.TimeoutNowRequest{Term: 1})
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 0, 1000*len(frame))
	for range 1000 {
		chunk = append(chunk, frame...)
	}
	_ = conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err = conn.Write(chunk); err != nil {
			break
		}
	}
	if err == nil || isTimeout(err) {
		t.Fatalf("the server kept reading from a client that does not read (last write: %v)", err)
	}
	waitFor(t, "the server to drop the connection", func() bool { return p.stream.Connections() == 0 })
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
