package twirptransport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ruaft/ruaft/internal/rawconn"
	"google.golang.org/protobuf/proto"
)

// StreamOptions configure the client side of the peer stream. Zero fields
// take the defaults shown.
type StreamOptions struct {
	// TLS is used for https peer URLs (see MutualTLS).
	TLS *tls.Config
	// Token, when set, is sent as "Authorization: Bearer <Token>" with the
	// upgrade request (see RequireToken).
	Token string
	// Header holds more header fields for the upgrade request (the
	// cluster id durio's peers check, say); the unary requests get theirs
	// from the HTTP client (WithHeader).
	Header http.Header
	// MaxFrameBytes bounds the payload of one frame in either direction
	// [4 MiB]. Keep it equal to the peers' limit (durio: max-peer-body).
	MaxFrameBytes int
	// MaxCallsInFlight is the most calls in flight on one connection
	// [StreamMaxCallsInFlight]; more fail with ErrTooManyCalls.
	MaxCallsInFlight int
	// DialTimeout bounds a dial, TLS handshake and upgrade [2 s].
	DialTimeout time.Duration
	// IdleTimeout: a connection no call used for this long, and on which
	// no call waits, is closed and redialed on the next call [30 s]. Keep it below the server's idle
	// timeout, so that the client, never the server, closes an idle
	// connection and no call races a close.
	IdleTimeout time.Duration
	// StuckAfter: a call that times out on a connection on which nothing
	// came in from the peer since the call was sent, and nothing for at
	// least StuckAfter, closes the connection as stuck [1 s]; the next call
	// redials. Bytes waiting unread in the socket count as come in, and a
	// call whose timeout this process noticed over StuckAfter/4 late (it
	// was not running: an overloaded machine, a paused VM) does not count.
	StuckAfter time.Duration
	// RetryUpgradeAfter is how long a peer that refused the upgrade is
	// reached over per-request Twirp before the stream is tried again
	// [30 s] (a peer may be upgraded while this one runs).
	RetryUpgradeAfter time.Duration
	// WriteTimeout bounds one write of queued frames to the socket [10 s];
	// a peer that does not read closes the connection.
	WriteTimeout time.Duration
}

// StreamMaxCallsInFlight is the default limit on calls in flight on one
// stream connection, for both sides.
const StreamMaxCallsInFlight = 512

// DefaultMaxFrameBytes is the default limit on a frame's payload.
const DefaultMaxFrameBytes = 4 << 20

func (o StreamOptions) withDefaults() StreamOptions {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if o.MaxCallsInFlight <= 0 {
		o.MaxCallsInFlight = StreamMaxCallsInFlight
	}
	def(&o.DialTimeout, 2*time.Second)
	def(&o.IdleTimeout, 30*time.Second)
	def(&o.StuckAfter, time.Second)
	def(&o.RetryUpgradeAfter, 30*time.Second)
	def(&o.WriteTimeout, 10*time.Second)
	o.Token = strings.TrimSpace(o.Token)
	return o
}

// Backoff between failed dials of one peer: calls in the meantime fail at
// once with the last dial error (raft reads that as an unreachable peer).
const (
	minRedialBackoff = 20 * time.Millisecond
	maxRedialBackoff = 500 * time.Millisecond
)

// StreamPool holds one StreamClient per peer base URL, so that every user
// of the peer plane in a process (raft's transport, forwarded writes) shares
// one connection per peer. It is safe for concurrent use.
type StreamPool struct {
	opts StreamOptions

	mu      sync.Mutex // guards clients, closed
	clients map[string]*StreamClient
	closed  bool
}

// NewStreamPool returns an empty pool whose clients use opts.
func NewStreamPool(opts StreamOptions) *StreamPool {
	return &StreamPool{opts: opts.withDefaults(), clients: map[string]*StreamClient{}}
}

// Client returns the pool's client for the peer at baseURL (http://host:port
// or https://host:port), creating it on first use. It connects lazily.
func (p *StreamPool) Client(baseURL string) *StreamClient {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.clients[baseURL]; c != nil {
		return c
	}
	c := newStreamClient(baseURL, p.opts)
	if p.closed {
		c.Close()
	}
	p.clients[baseURL] = c
	return c
}

// Forget closes and drops the client for baseURL (a peer that moved or
// left); calls in flight on it fail with ErrStreamClosed.
func (p *StreamPool) Forget(baseURL string) {
	p.mu.Lock()
	c := p.clients[baseURL]
	delete(p.clients, baseURL)
	p.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// Close closes every client and waits for their goroutines; clients handed
// out later are closed from the start.
func (p *StreamPool) Close() {
	p.mu.Lock()
	p.closed = true
	clients := p.clients
	p.clients = map[string]*StreamClient{}
	p.mu.Unlock()
	for _, c := range clients {
		c.Close()
	}
}

// StreamClient is the client side of the peer stream to one peer: at most
// one connection at a time, dialed on the first call, redialed (with
// backoff) after it breaks. It is safe for concurrent use.
type StreamClient struct {
	opts   StreamOptions
	addr   string // host:port
	scheme string // http or https
	host   string // for the Host header and TLS server name
	badURL error  // set when the base URL does not parse

	mu sync.Mutex // guards everything below
	// cur is the current connection, nil before the first dial and after
	// it broke.
	cur *link
	// dialing is non-nil while one call dials; others wait for it.
	dialing chan struct{}
	// retryAt and lastErr: after a failed dial, calls fail with lastErr
	// until retryAt; backoff is the next wait.
	retryAt time.Time
	lastErr error
	backoff time.Duration
	// noStreamUntil: the peer refused the upgrade; calls report
	// ErrNoStream (use Twirp) until then.
	noStreamUntil time.Time
	closed        bool
	wg            sync.WaitGroup // the reader and writer goroutines of every link

	// beforeRead, a test hook set before the first call, runs in the
	// reader goroutine before it reads each frame: a test holds the reader
	// back as a stalled process would.
	beforeRead func()
}

func newStreamClient(baseURL string, opts StreamOptions) *StreamClient {
	c := &StreamClient{opts: opts}
	u, err := url.Parse(baseURL)
	switch {
	case err != nil:
		c.badURL = fmt.Errorf("%w: peer URL %q: %w", ErrStream, baseURL, err)
	case u.Scheme != "http" && u.Scheme != "https":
		c.badURL = fmt.Errorf("%w: peer URL %q: scheme must be http or https", ErrStream, baseURL)
	default:
		c.scheme, c.host, c.addr = u.Scheme, u.Host, u.Host
		if u.Port() == "" {
			c.addr = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
		}
	}
	return c
}

// NewStreamClient returns a client for the peer at baseURL that is not part
// of a pool; Close it when done.
func NewStreamClient(baseURL string, opts StreamOptions) *StreamClient {
	return newStreamClient(baseURL, opts.withDefaults())
}

// Close closes the connection (calls in flight fail with ErrStreamClosed)
// and waits for its goroutines. Later calls fail. It is idempotent.
func (c *StreamClient) Close() {
	c.mu.Lock()
	c.closed = true
	cur := c.cur
	c.cur = nil
	c.mu.Unlock()
	if cur != nil {
		cur.fail(fmt.Errorf("%w: client closed", ErrStreamClosed))
	}
	c.wg.Wait()
}

// replyChans recycles the reply channels of calls. Only a call that
// received its reply returns its channel: the reader removed it from
// pending before sending, so nothing else holds it. A call given up keeps
// its channel, which a late reply may still reach.
var replyChans = sync.Pool{New: func() any { return make(chan reply, 1) }}

// Call sends one call and waits for its reply, which it decodes into resp.
// The reply is either resp (nil error), the twirp.Error the peer's handler
// returned, or an error wrapping ErrStream: the call may or may not have
// run on the peer. ErrNoStream means the peer does not offer the stream
// (use its Twirp route). ctx's deadline travels with the call.
func (c *StreamClient) Call(ctx context.Context, method string, req, resp proto.Message) error {
	if len(method) == 0 || len(method) > 255 {
		return fmt.Errorf("%w: method name %q", ErrStream, method)
	}
	var timeoutMs uint32
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return fmt.Errorf("%w: %w", ErrStream, context.DeadlineExceeded)
		}
		timeoutMs = uint32(min(math.MaxUint32, (left+time.Millisecond-1)/time.Millisecond))
	}
	l, err := c.conn(ctx)
	if err != nil {
		return err
	}
	buf, err := appendRequest(getBuf(), method, timeoutMs, req)
	if err != nil {
		return fmt.Errorf("%w: encode %s: %w", ErrStream, method, err)
	}
	if len(buf)-4 > c.opts.MaxFrameBytes+frameSlack {
		putBuf(buf)
		return fmt.Errorf("%w: %s request of %d bytes", ErrFrameTooLarge, method, len(buf)-4)
	}
	ch := replyChans.Get().(chan reply)
	start := time.Now()
	l.mu.Lock()
	if l.closed {
		err := l.err
		l.mu.Unlock()
		putBuf(buf)
		replyChans.Put(ch)
		return err
	}
	if len(l.pending) >= c.opts.MaxCallsInFlight {
		l.mu.Unlock()
		putBuf(buf)
		replyChans.Put(ch)
		return ErrTooManyCalls
	}
	l.nextID++
	id := l.nextID
	setFrameID(buf, id)
	l.pending[id] = ch
	l.out = append(l.out, buf)
	l.mu.Unlock()
	l.poke()

	select {
	case r := <-ch:
		replyChans.Put(ch)
		if r.err != nil {
			return r.err
		}
		// Both decoders copy what they keep: the frame's buffer goes back.
		defer putBuf(r.body)
		if r.typ == frameError {
			return decodeError(r.body)
		}
		if err := proto.Unmarshal(r.body, resp); err != nil {
			return fmt.Errorf("%w: decode %s reply: %w", ErrStream, method, err)
		}
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		delete(l.pending, id)
		l.dropRequestLocked(id)
		l.mu.Unlock()
		// A connection that delivered nothing during this whole call, and
		// nothing for StuckAfter, is dead or its peer is stuck (a
		// partition without a reset leaves TCP retransmitting with a
		// growing backoff): close it, so that the next call redials
		// rather than queue behind it.
		if silence, ok := c.peerSilent(ctx, l, start); ok {
			l.fail(fmt.Errorf("%w: nothing from the peer for %v", ErrStreamClosed, silence.Round(time.Millisecond)))
		}
		return fmt.Errorf("%w: %s: %w", ErrStream, method, ctx.Err())
	}
}

// peerSilent reports whether a call sent on l at start that ended with
// ctx shows that l's peer went silent, and for how long. Only what the peer
// did counts, not what this process failed to see: a connection closed as
// stuck fails every other call on it.
func (c *StreamClient) peerSilent(ctx context.Context, l *link, start time.Time) (time.Duration, bool) {
	// Only a call that ran out of time is evidence: one its caller
	// cancelled (a forwarded batch nobody waits for, a node stopping) says
	// nothing about the peer, and must not fail the other calls on a
	// healthy connection that was merely quiet.
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return 0, false
	}
	// Calls shorter than StuckAfter (raft's heartbeats) add up: the
	// silence since the last bytes came in is what counts.
	now := time.Now()
	last := l.lastRead.Load()
	silence := time.Duration(monoNanos(now) - last)
	if last >= monoNanos(start) || silence < c.opts.StuckAfter {
		return 0, false
	}
	// A timeout noticed well after its deadline means this process was
	// not running (an overloaded machine, a VM pause, SIGSTOP, a disk that
	// stalls every thread): then the silence may be its own, the reader
	// not yet having read what came in meanwhile. Timers of a busy but
	// running process are late by milliseconds; a later call, noticed in
	// time, judges the peer.
	if dl, ok := ctx.Deadline(); ok && now.Sub(dl) > c.opts.StuckAfter/4 {
		return 0, false
	}
	// Bytes waiting in the socket came from the peer: the reader is behind
	// (not yet scheduled after such a stall), the peer is not silent.
	if unreadInSocket(l.conn) {
		return 0, false
	}
	return silence, true
}

// conn returns the current connection, dialing one if there is none.
func (c *StreamClient) conn(ctx context.Context) (*link, error) {
	if c.badURL != nil {
		return nil, c.badURL
	}
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, fmt.Errorf("%w: client closed", ErrStreamClosed)
		}
		if l := c.cur; l != nil {
			now := time.Now()
			if !l.isClosed() && (time.Duration(monoNanos(now)-l.lastUse.Load()) < c.opts.IdleTimeout || l.busy()) {
				// Marked used under c.mu, so no other caller can take it
				// for idle and close it under this call.
				l.lastUse.Store(monoNanos(now))
				c.mu.Unlock()
				return l, nil
			}
			c.cur = nil
			c.mu.Unlock()
			// Outside c.mu: closing a TLS connection writes its close
			// alert and waits for a writer blocked on a full socket, which
			// must not stall the other callers of this peer.
			l.fail(fmt.Errorf("%w: idle", ErrStreamClosed)) // no-op if it already failed
			continue
		}
		now := time.Now()
		if now.Before(c.noStreamUntil) {
			c.mu.Unlock()
			return nil, ErrNoStream
		}
		if now.Before(c.retryAt) {
			err := c.lastErr
			c.mu.Unlock()
			return nil, err
		}
		if wait := c.dialing; wait != nil {
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("%w: waiting for a dial: %w", ErrStream, ctx.Err())
			}
		}
		done := make(chan struct{})
		c.dialing = done
		c.mu.Unlock()

		l, err := c.dial(ctx)

		c.mu.Lock()
		c.dialing = nil
		close(done)
		switch {
		case err == nil && c.closed:
			c.mu.Unlock()
			_ = l.conn.Close()
			return nil, fmt.Errorf("%w: client closed", ErrStreamClosed)
		case err == nil:
			// The backoff is reset by the connection's first frame, not
			// here: a peer that accepts the upgrade and then breaks every
			// stream is backed off as one that refuses connections.
			c.cur, c.lastErr = l, nil
			c.wg.Add(2)
			go func() { defer c.wg.Done(); l.writeLoop() }()
			go func() { defer c.wg.Done(); c.readLoop(l) }()
			c.mu.Unlock()
			return l, nil
		case errors.Is(err, ErrNoStream):
			c.noStreamUntil = time.Now().Add(c.opts.RetryUpgradeAfter)
		case !expired(ctx):
			// The peer is down or unreachable; only a dial that failed
			// on its own (not for the caller's deadline) backs off.
			c.backOffLocked(err)
		}
		c.mu.Unlock()
		return nil, err
	}
}

// expired reports whether ctx ended or its deadline passed: a dial cut
// short by the deadline can return before ctx.Err() is set (the socket's
// connect deadline and ctx's timer fire separately).
func expired(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// backOffLocked makes calls fail with err, without dialing, for the next
// (growing) backoff; c.mu is held.
func (c *StreamClient) backOffLocked(err error) {
	c.backoff = min(max(2*c.backoff, minRedialBackoff), maxRedialBackoff)
	c.retryAt, c.lastErr = time.Now().Add(c.backoff), err
}

// busy reports whether calls wait for replies on l: a connection whose
// last call went out long ago but is still answered is not idle.
func (l *link) busy() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending) > 0
}

// errUpgradeRefused describes a non-101 answer to the upgrade.
type errUpgradeRefused struct{ status int }

func (e errUpgradeRefused) Error() string {
	return fmt.Sprintf("upgrade refused with HTTP %d", e.status)
}

// dial connects, authenticates (TLS, token) and upgrades one connection.
// A peer that answers the upgrade with anything but 101 yields ErrNoStream.
func (c *StreamClient) dial(ctx context.Context) (*link, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer cancel()
	d := &net.Dialer{KeepAlive: 30 * time.Second}
	var conn net.Conn
	var err error
	if c.scheme == "https" {
		cfg := c.opts.TLS.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(c.addr)
			cfg.ServerName = host
		}
		// The upgrade is HTTP/1.1: a config that offers h2 in ALPN (one
		// shared with an HTTP/2 client) would let the server pick h2 and
		// read the upgrade as a broken HTTP/2 preface.
		cfg.NextProtos = []string{"http/1.1"}
		if conn, err = d.DialContext(ctx, "tcp", c.addr); err == nil {
			tc := tls.Client(rawconn.Wrap(conn), cfg)
			if err = tc.HandshakeContext(ctx); err != nil {
				_ = conn.Close()
			}
			conn = tc
		}
	} else if conn, err = d.DialContext(ctx, "tcp", c.addr); err == nil {
		conn = rawconn.Wrap(conn) // see package rawconn
	}
	if err != nil {
		return nil, fmt.Errorf("%w: dial %s: %w", ErrStream, c.addr, err)
	}
	// The handshake below blocks on the socket: bound it by ctx.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	l, err := c.upgrade(conn)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return l, nil
}

func (c *StreamClient) upgrade(conn net.Conn) (*link, error) {
	var b strings.Builder
	b.WriteString("GET " + StreamPath + " HTTP/1.1\r\nHost: " + c.host +
		"\r\nConnection: Upgrade\r\nUpgrade: " + StreamProtocol + "\r\n")
	if c.opts.Token != "" {
		b.WriteString("Authorization: Bearer " + c.opts.Token + "\r\n")
	}
	_ = c.opts.Header.Write(&b) // never fails on a strings.Builder; drops CR and LF from values
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return nil, fmt.Errorf("%w: upgrade %s: %w", ErrStream, c.addr, err)
	}
	// The answer's head is read through a limit (http.ReadResponse has
	// none): a peer that sends an endless header must not make this side
	// buffer it until the dial timeout. The limit is lifted for the frames.
	lr := &handshakeReader{r: conn, left: maxUpgradeResponseBytes}
	br := bufio.NewReaderSize(lr, 32<<10)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return nil, fmt.Errorf("%w: upgrade %s: %w", ErrStream, c.addr, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols ||
		!strings.EqualFold(resp.Header.Get("Upgrade"), StreamProtocol) {
		// Not resp.Body.Close: it would read the whole body; the
		// connection is closed instead.
		return nil, fmt.Errorf("%w (%s): %w", ErrNoStream, c.addr, errUpgradeRefused{resp.StatusCode})
	}
	l := newLink(conn, br, c.opts.WriteTimeout)
	// Before the reader goroutine starts: it reads lr unlocked.
	lr.left, lr.arrived = -1, &l.lastRead
	return l, nil
}

// maxUpgradeResponseBytes bounds the head of the answer to the upgrade.
const maxUpgradeResponseBytes = 64 << 10

// handshakeReader reads from r at most left bytes in all, or, once the
// stream runs (left < 0), without limit, noting in arrived when bytes came
// in: the stuck rule asks when the peer last sent anything, and bytes not
// yet made into a frame (part of one, or frames waiting in the reader's
// buffer, which only the reader goroutine may look at) answer that as well
// as a whole frame.
type handshakeReader struct {
	r       io.Reader
	left    int64
	arrived *atomic.Int64 // monoNanos; set with left < 0
}

func (h *handshakeReader) Read(p []byte) (int, error) {
	if h.left < 0 {
		n, err := h.r.Read(p)
		if n > 0 {
			h.arrived.Store(monoNanos(time.Now()))
		}
		return n, err
	}
	if h.left == 0 {
		return 0, fmt.Errorf("%w: answer to the upgrade over %d bytes", ErrStream, maxUpgradeResponseBytes)
	}
	if int64(len(p)) > h.left {
		p = p[:h.left]
	}
	n, err := h.r.Read(p)
	h.left -= int64(n)
	return n, err
}

// readLoop hands each reply to its caller until the connection breaks.
func (c *StreamClient) readLoop(l *link) {
	max := c.opts.MaxFrameBytes + frameSlack
	answered := false
	for {
		if c.beforeRead != nil {
			c.beforeRead()
		}
		typ, id, body, err := readFrame(l.br, max)
		if err != nil {
			err = fmt.Errorf("%w: read: %w", ErrStreamClosed, err)
			if l.fail(err) && !answered {
				// The peer broke the stream before answering anything
				// (it closes right after the upgrade, or dies at once):
				// back off as after a failed dial, or every call would
				// dial it again.
				c.mu.Lock()
				c.backOffLocked(err)
				c.mu.Unlock()
			}
			return
		}
		if !answered {
			answered = true
			c.mu.Lock()
			c.backoff = 0
			c.mu.Unlock()
		}
		if typ != frameResponse && typ != frameError {
			l.fail(fmt.Errorf("%w: read: %w: type %d from the server", ErrStreamClosed, ErrBadFrame, typ))
			return
		}
		l.mu.Lock()
		ch := l.pending[id]
		delete(l.pending, id)
		l.mu.Unlock()
		if ch != nil { // nil: the caller gave up
			ch <- reply{typ: typ, body: body}
		} else {
			putBuf(body)
		}
	}
}
