package twirptransport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twitchtv/twirp"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
)

// StreamServerOptions configure a StreamServer. Zero fields take the
// defaults shown.
type StreamServerOptions struct {
	// MaxFrameBytes bounds the payload of a frame a client sends [4 MiB];
	// a larger frame closes the connection before it is read.
	MaxFrameBytes int
	// MaxCallsInFlight is the most calls one connection may have running
	// [StreamMaxCallsInFlight]; a call beyond it is answered at once with
	// a "resource_exhausted" error and not run. Twice as many replies
	// waiting to be written (a client that does not read) close the
	// connection.
	MaxCallsInFlight int
	// IdleTimeout closes a connection that sent nothing for this long
	// while none of its calls runs [60 s]; it also bounds the time to
	// receive one whole frame once its first byte arrived.
	IdleTimeout time.Duration
	// WriteTimeout bounds one write of replies to the socket [10 s].
	WriteTimeout time.Duration
	// Logger receives one line per connection closed on an error.
	Logger *slog.Logger
}

// StreamMethod handles one call: payload is the protobuf encoding of the
// request message, valid until the method returns (its buffer then reads
// the next frames: decode it, as proto.Unmarshal does, copying what is
// kept); the reply is a message or an error (a twirp.Error reaches the
// caller as it is, anything else as an internal error). ctx carries the
// caller's deadline and ends when the connection closes.
type StreamMethod func(ctx context.Context, payload []byte) (proto.Message, error)

// Unary adapts a typed handler (the signature of a Twirp service method)
// to a StreamMethod: the payload is decoded into a fresh Req; one that does
// not decode gets a "malformed" error, as the Twirp route would answer.
func Unary[Req proto.Message, Resp proto.Message](newReq func() Req, h func(context.Context, Req) (Resp, error)) StreamMethod {
	return func(ctx context.Context, payload []byte) (proto.Message, error) {
		req := newReq()
		if err := proto.Unmarshal(payload, req); err != nil {
			return nil, twirp.NewError(twirp.Malformed, "the request could not be decoded: "+err.Error())
		}
		return h(ctx, req)
	}
}

// StreamServer is the server side of the peer stream: an http.Handler for
// StreamPath that upgrades the connection and runs the calls it carries.
// Mount it behind the same authentication as the Twirp routes (RequireToken,
// mutual TLS): the upgrade request is an ordinary request until it is
// answered 101, so a caller that fails authentication never gets a stream.
// Register every method before serving. Close it when the listener closes:
// upgraded connections are no longer the http.Server's.
type StreamServer struct {
	opts    StreamServerOptions
	methods map[string]StreamMethod // written by Handle before serving

	mu     sync.Mutex // guards conns, closed
	conns  map[*link]struct{}
	closed bool
	wg     sync.WaitGroup // each connection's reader (which waits for its calls) and writer
}

// NewStreamServer returns a server with no methods.
func NewStreamServer(opts StreamServerOptions) *StreamServer {
	if opts.MaxFrameBytes <= 0 {
		opts.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if opts.MaxCallsInFlight <= 0 {
		opts.MaxCallsInFlight = StreamMaxCallsInFlight
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 60 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &StreamServer{opts: opts, methods: map[string]StreamMethod{}, conns: map[*link]struct{}{}}
}

// Handle registers m under method, by convention the Twirp route's
// "package.Service/Method" (e.g. "raft.v1.RaftService/AppendEntries").
func (s *StreamServer) Handle(method string, m StreamMethod) {
	if len(method) == 0 || len(method) > 255 {
		panic("twirptransport: stream method name must be 1-255 bytes")
	}
	s.methods[method] = m
}

// Stream method names of raft.v1.RaftService.
const (
	MethodAppendEntries   = "raft.v1.RaftService/AppendEntries"
	MethodRequestVote     = "raft.v1.RaftService/RequestVote"
	MethodInstallSnapshot = "raft.v1.RaftService/InstallSnapshot"
	MethodTimeoutNow      = "raft.v1.RaftService/TimeoutNow"
	MethodReadIndex       = "raft.v1.RaftService/ReadIndex"
)

// HandleRaft registers raft.v1.RaftService's methods, served by node as
// NewHandler serves them.
func (s *StreamServer) HandleRaft(node Handlers) {
	srv := server{node: node}
	s.Handle(MethodAppendEntries, Unary(func() *raftv1.AppendEntriesRequest { return new(raftv1.AppendEntriesRequest) }, srv.AppendEntries))
	s.Handle(MethodRequestVote, Unary(func() *raftv1.RequestVoteRequest { return new(raftv1.RequestVoteRequest) }, srv.RequestVote))
	s.Handle(MethodInstallSnapshot, Unary(func() *raftv1.InstallSnapshotRequest { return new(raftv1.InstallSnapshotRequest) }, srv.InstallSnapshot))
	s.Handle(MethodTimeoutNow, Unary(func() *raftv1.TimeoutNowRequest { return new(raftv1.TimeoutNowRequest) }, srv.TimeoutNow))
	s.Handle(MethodReadIndex, Unary(func() *raftv1.ReadIndexRequest { return new(raftv1.ReadIndexRequest) }, srv.ReadIndex))
}

// ServeHTTP upgrades the request's connection to a stream: it must be a GET
// without a body, with "Connection: Upgrade" and "Upgrade: ruaft-peer-stream/1" over
// HTTP/1.1; anything else gets 400 (426 for another protocol version).
func (s *StreamServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !headerHasToken(r.Header, "Connection", "upgrade") ||
		r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		// A body would be read as frames after the hijack: refused, so
		// that nothing an intermediary may have seen as a body becomes a
		// call.
		writeError(w, http.StatusBadRequest, twirp.NewError(twirp.BadRoute, "peer stream: expected a GET with Connection: Upgrade and no body"))
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), StreamProtocol) {
		w.Header().Set("Upgrade", StreamProtocol)
		writeError(w, http.StatusUpgradeRequired, twirp.NewError(twirp.BadRoute, "peer stream: protocol "+StreamProtocol+" required"))
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		writeError(w, http.StatusHTTPVersionNotSupported, twirp.NewError(twirp.BadRoute, "peer stream: needs HTTP/1.1"))
		return
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		writeError(w, http.StatusServiceUnavailable, twirp.NewError(twirp.Unavailable, "peer stream: server closing"))
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	// The http.Server's read and write deadlines are for one request;
	// the stream sets its own.
	_ = conn.SetDeadline(time.Now().Add(s.opts.WriteTimeout))
	_, err = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + StreamProtocol + "\r\n\r\n")
	if err == nil {
		err = brw.Flush()
	}
	if err != nil {
		_ = conn.Close()
		return
	}
	_ = conn.SetDeadline(time.Time{})
	l := newLink(conn, brw.Reader, s.opts.WriteTimeout)
	l.maxQueued = 2 * s.opts.MaxCallsInFlight
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = conn.Close()
		return
	}
	s.conns[l] = struct{}{}
	s.wg.Add(2)
	s.mu.Unlock()
	go func() { defer s.wg.Done(); l.writeLoop() }()
	go func() {
		defer s.wg.Done()
		s.serveConn(l)
		s.mu.Lock()
		delete(s.conns, l)
		s.mu.Unlock()
	}()
}

// headerHasToken reports whether the comma-separated header name holds
// token (case-insensitive).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// Connections is the number of upgraded connections open.
func (s *StreamServer) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close closes every upgraded connection and waits until their calls have
// returned; later upgrade requests get 503. Handlers see their context end.
func (s *StreamServer) Close() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*link, 0, len(s.conns))
	for l := range s.conns {
		conns = append(conns, l)
	}
	s.mu.Unlock()
	for _, l := range conns {
		l.fail(fmt.Errorf("%w: server closed", ErrStreamClosed))
	}
	s.wg.Wait()
}

// serveConn reads requests and runs each on its own goroutine (a handler
// may block: a snapshot, a read index, a write waiting for its commit),
// until the connection breaks; then it waits for the calls still running.
func (s *StreamServer) serveConn(l *link) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls sync.WaitGroup
	var running atomic.Int64
	defer func() {
		cancel()
		calls.Wait()
	}()
	max := s.opts.MaxFrameBytes + frameSlack
	for {
		if err := s.awaitFrame(l, &running); err != nil {
			l.fail(err)
			return
		}
		typ, id, rest, err := readFrame(l.br, max)
		if err == nil && typ != frameRequest {
			err = fmt.Errorf("%w: type %d from a client", ErrBadFrame, typ)
		}
		var timeoutMs uint32
		var method, payload []byte
		if err == nil {
			timeoutMs, method, payload, err = parseRequest(rest)
		}
		if err != nil {
			s.opts.Logger.Info("peer stream closed", "remote", l.conn.RemoteAddr().String(), "err", err)
			l.fail(fmt.Errorf("%w: %w", ErrStreamClosed, err))
			return
		}
		m := s.methods[string(method)]
		if m == nil {
			msg := "no stream method " + string(method)
			putBuf(rest)
			_ = l.send(appendError(getBuf(), id, twirp.NewError(twirp.BadRoute, msg)))
			continue
		}
		if running.Add(1) > int64(s.opts.MaxCallsInFlight) {
			running.Add(-1)
			putBuf(rest)
			_ = l.send(appendError(getBuf(), id, twirp.NewError(twirp.ResourceExhausted,
				fmt.Sprintf("more than %d calls in flight on one peer stream", s.opts.MaxCallsInFlight))))
			continue
		}
		calls.Go(func() {
			defer running.Add(-1)
			s.call(ctx, l, id, m, timeoutMs, payload)
			putBuf(rest) // the reply is encoded: nothing refers to the payload
		})
	}
}

// awaitFrame waits for the first bytes of the next frame, under the idle
// timeout; a connection with calls running is not idle, so the wait starts
// again. Then the rest of the frame must arrive within the idle timeout.
func (s *StreamServer) awaitFrame(l *link, running *atomic.Int64) error {
	for {
		_ = l.conn.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout))
		if _, err := l.br.Peek(4); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && l.br.Buffered() == 0 && running.Load() > 0 {
				continue
			}
			return fmt.Errorf("%w: read: %w", ErrStreamClosed, err)
		}
		return l.conn.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout))
	}
}

// call runs one handler and queues its reply.
func (s *StreamServer) call(ctx context.Context, l *link, id uint64, m StreamMethod, timeoutMs uint32, payload []byte) {
	if timeoutMs > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(timeoutMs)*time.Millisecond)
		defer cancel()
	}
	resp, err := runMethod(ctx, m, payload)
	var b []byte
	if err == nil {
		if b, err = appendResponse(getBuf(), id, resp); err != nil {
			err = twirp.InternalErrorWith(err)
		}
	}
	if err != nil {
		b = appendError(b[:0], id, err)
	}
	_ = l.send(b) // fails only when the connection is gone, with the caller
}

// runMethod runs m, turning a panic into an internal error as a Twirp
// server does (the stream and its other calls go on).
func runMethod(ctx context.Context, m StreamMethod, payload []byte) (resp proto.Message, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, twirp.InternalError(fmt.Sprintf("peer stream: handler panic: %v", p))
		}
	}()
	resp, err = m(ctx, payload)
	if err == nil && resp == nil {
		err = twirp.InternalError("peer stream: handler returned no reply")
	}
	return resp, err
}
