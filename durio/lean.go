package durio

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// leanServer serves the client listener's plain-HTTP connections with a
// lean HTTP/1.1 loop for the key-value routes, and hands everything else to
// net/http unchanged.
//
// Why: beyond the read and the write system call of the exchange,
// net/http's server spends CPU per request on a goroutine reading in the
// background to notice a client that goes away, cancelable contexts per
// connection and per request, a buffered writer and a chunk writer per
// response, four deadline changes. Measured on the machines durio is
// benchmarked on: 5 µs less per request with a handler that answers at
// once (BenchmarkHTTPServer), 8-13 µs less through a replica's whole path
// (BenchmarkRequestPath), a sixth of a get's CPU (docs/benchmarks.md, "The
// lean HTTP/1.1 loop").
//
// What it takes: each request is parsed from the connection's buffer
// without consuming it, and served here only if it is a request this loop
// understands completely — HTTP/1.1, GET, POST or DELETE of a key-value
// route that answers at once (REST under /kvstore/ and the KV Twirp
// service, not watches or blocking queries, see leanRoute), a header that
// fits the buffer and follows the grammar strictly (CRLF line ends, token
// names, no folded lines, one Host and at most one Content-Length, no
// Transfer-Encoding, Expect, Upgrade or Trailer). Anything else — any doubt
// at all — and the connection, with every byte it has sent, goes to
// net/http (srv), which serves it from that request on as it serves every
// connection, and answers the unusual with its own errors. So a request is
// never read two ways: net/http remains the reference for everything this
// loop does not do.
//
// A request served here runs the same handler chain as net/http's, with
// the same timeouts (srv's ReadHeaderTimeout, ReadTimeout, WriteTimeout,
// IdleTimeout). Two differences, both on routes that answer at once: the
// request's context does not end when the client goes away (the request
// runs until it finishes or times out, as it would had the client stayed),
// and the answer is buffered up to leanBuffered bytes before it is sent
// with a Content-Length, chunked past that.
//
// TLS connections do not use it: the client listener with a certificate is
// served by net/http alone (HTTP/2 for browsers, the peer's certificate).
type leanServer struct {
	srv     *http.Server
	ln      net.Listener
	handoff *connQueue
	// handedOff, if not nil, is called per connection handed to srv.
	handedOff func()

	closing atomic.Bool
	mu      sync.Mutex
	conns   map[*leanConn]struct{}
	active  sync.WaitGroup
	served  chan struct{} // closed when srv.Serve(handoff) has returned
}

// leanBuffered is how much of an answer is buffered to send it with a
// Content-Length; past it, the answer is sent chunked as it is written.
const leanBuffered = 64 << 10

// leanDiscard bounds the request body the handler left unread that is read
// and dropped to keep the connection: less than this is; from it on, the
// connection is closed after the answer (as net/http does).
const leanDiscard = 256 << 10

// leanReadBuffer is the size of a connection's read buffer: a request
// whose line and header do not fit in it goes to net/http.
const leanReadBuffer = 8 << 10

func newLeanServer(srv *http.Server, ln net.Listener) *leanServer {
	return &leanServer{srv: srv, ln: ln, handoff: newConnQueue(ln.Addr()), conns: map[*leanConn]struct{}{},
		served: make(chan struct{})}
}

// Serve accepts connections until Shutdown; it returns http.ErrServerClosed
// then, or the listener's error.
func (s *leanServer) Serve() error {
	httpErr := make(chan error, 1)
	go func() {
		httpErr <- s.srv.Serve(s.handoff)
		close(s.served)
	}()
	var backoff time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.closing.Load() {
				<-s.served
				return http.ErrServerClosed
			}
			if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() {
				// Out of file descriptors and the like: wait, as
				// net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			s.handoff.Close()
			<-httpErr
			return err
		}
		backoff = 0
		lc := &leanConn{s: s, c: c}
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			c.Close()
			<-s.served
			return http.ErrServerClosed
		}
		s.conns[lc] = struct{}{}
		s.active.Add(1)
		s.mu.Unlock()
		go lc.serve()
	}
}

// Shutdown stops accepting, closes idle connections, lets requests being
// served finish (until ctx ends, then closes their connections), and shuts
// srv down with ctx.
func (s *leanServer) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	lnErr := s.ln.Close()
	s.mu.Lock()
	for lc := range s.conns {
		lc.wakeIfIdle()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.active.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		s.mu.Lock()
		for lc := range s.conns {
			lc.c.Close()
		}
		s.mu.Unlock()
		err = ctx.Err()
	}
	if herr := s.srv.Shutdown(ctx); herr != nil && err == nil {
		err = herr
	}
	if err == nil && lnErr != nil && !errors.Is(lnErr, net.ErrClosed) {
		err = lnErr
	}
	return err
}

// leanConn is one connection served by the lean loop.
type leanConn struct {
	s    *leanServer
	c    net.Conn
	br   *bufio.Reader
	idle atomic.Bool // waiting for a request's first byte
	ctx  context.Context
	addr string // remote address, as r.RemoteAddr
	// hdrDeadline is the deadline of the header being read (zero: none);
	// a connection handed to net/http keeps it (handedConn).
	hdrDeadline time.Time
}

// wakeIfIdle ends the wait of an idle connection (Shutdown), which then
// closes. A connection that becomes idle after this sees s.closing.
func (lc *leanConn) wakeIfIdle() {
	if lc.idle.Load() {
		_ = lc.c.SetReadDeadline(aLongTimeAgo)
	}
}

var aLongTimeAgo = time.Unix(1, 0)

func (lc *leanConn) serve() {
	defer lc.s.active.Done()
	handed := false
	defer func() {
		lc.s.mu.Lock()
		delete(lc.s.conns, lc)
		lc.s.mu.Unlock()
		if !handed {
			lc.c.Close()
		}
	}()
	defer func() {
		if v := recover(); v != nil && v != http.ErrAbortHandler {
			if l := lc.s.srv.ErrorLog; l != nil {
				l.Printf("http: panic serving %s: %v\n%s", lc.addr, v, debug.Stack())
			} else {
				log.Printf("http: panic serving %s: %v\n%s", lc.addr, v, debug.Stack())
			}
		}
	}()
	lc.br = bufio.NewReaderSize(lc.c, leanReadBuffer)
	lc.addr = lc.c.RemoteAddr().String()
	lc.ctx = context.WithValue(context.Background(), http.ServerContextKey, lc.s.srv)
	lc.ctx = withCappedConn(context.WithValue(lc.ctx, http.LocalAddrContextKey, lc.c.LocalAddr()), lc.c)
	srv := lc.s.srv
	first, afterPost := true, false
	accepted := time.Now()
	var req leanRequest
	for {
		// Wait for the next request: the first within the header's
		// timeout from the accept, a later one within the idle timeout
		// (as net/http).
		ok := true
		if first {
			ok = lc.c.SetReadDeadline(deadline(accepted, headerTimeout(srv))) == nil
		} else {
			ok = lc.setReadDeadline(cmp.Or(srv.IdleTimeout, srv.ReadTimeout))
		}
		if !ok {
			return
		}
		lc.idle.Store(true)
		if lc.s.closing.Load() {
			return
		}
		// As net/http: a later request is waited for until its first 4
		// bytes have come (under the idle timeout); a connection that
		// ends with fewer ends without an answer.
		wait := 1
		if !first {
			wait = 4
		}
		_, err := lc.br.Peek(wait)
		lc.idle.Store(false)
		if err != nil {
			return
		}
		// The header's deadline: the first request's header (its first
		// byte included) has the header timeout from the accept, as in
		// net/http; a later one has it from its first byte. It is set
		// only if the whole header has not come with its first bytes
		// (the common case: then nothing waits for it).
		start := time.Now()
		if first {
			start = accepted
		}
		lc.hdrDeadline = deadline(start, headerTimeout(srv))
		if !lc.hdrDeadline.IsZero() && !headerBuffered(lc.br) {
			_ = lc.c.SetReadDeadline(lc.hdrDeadline)
		}
		if afterPost {
			// As net/http (RFC 7230 section 3.5): old clients send a
			// CR LF after a POST's body; it is dropped.
			afterPost = false
			b, _ := lc.br.Peek(4)
			_, _ = lc.br.Discard(leadingCRorLF(b))
		}
		n, verdict := req.parse(lc.br, maxHeaderBytes(srv))
		switch verdict {
		case leanFailed:
			return
		case leanHandOff:
			handed = lc.handOff()
			return
		}
		r, ok := lc.request(&req)
		if !ok {
			handed = lc.handOff()
			return
		}
		first = false
		// The header is read: the rest of the request (its body, if
		// it has not all come yet) gets ReadTimeout from its start, the
		// answer WriteTimeout.
		_, _ = lc.br.Discard(n)
		if req.length > int64(lc.br.Buffered()) {
			if d := srv.ReadTimeout; d > 0 {
				_ = lc.c.SetReadDeadline(start.Add(d))
			} else {
				_ = lc.c.SetReadDeadline(time.Time{})
			}
		}
		if d := srv.WriteTimeout; d > 0 {
			_ = lc.c.SetWriteDeadline(time.Now().Add(d))
		}
		keep := lc.serveRequest(r, &req)
		if !keep || lc.s.closing.Load() {
			return
		}
		afterPost = req.method == http.MethodPost
	}
}

// headerBuffered reports whether br's buffer holds a whole header.
func headerBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, crlfcrlf)
}

// deadline is d after t, or none if d is not positive.
func deadline(t time.Time, d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return t.Add(d)
}

// leadingCRorLF is how many CR and LF bytes b starts with.
func leadingCRorLF(b []byte) int {
	n := 0
	for n < len(b) && (b[n] == '\r' || b[n] == '\n') {
		n++
	}
	return n
}

// maxHeaderBytes is srv's MaxHeaderBytes as net/http applies it. The lean
// loop serves no header longer (net/http allows 4 KiB more, for its
// read-ahead: those go to net/http, which decides).
func maxHeaderBytes(srv *http.Server) int {
	if srv.MaxHeaderBytes > 0 {
		return srv.MaxHeaderBytes
	}
	return http.DefaultMaxHeaderBytes
}

// headerTimeout is how long net/http gives a request's line and header.
func headerTimeout(srv *http.Server) time.Duration {
	return cmp.Or(srv.ReadHeaderTimeout, srv.ReadTimeout)
}

func (lc *leanConn) setReadDeadline(d time.Duration) bool {
	var t time.Time
	if d > 0 {
		t = time.Now().Add(d)
	}
	return lc.c.SetReadDeadline(t) == nil
}

// handOff gives the connection, with the bytes read and not consumed, to
// net/http. It reports whether net/http took it.
func (lc *leanConn) handOff() bool {
	_ = lc.c.SetReadDeadline(time.Time{})
	_ = lc.c.SetWriteDeadline(time.Time{})
	var c net.Conn = lc.c
	if lc.br.Buffered() > 0 || !lc.hdrDeadline.IsZero() {
		c = &handedConn{Conn: lc.c, r: lc.br, hdrDeadline: lc.hdrDeadline}
	}
	if lc.s.handedOff != nil {
		lc.s.handedOff()
	}
	return lc.s.handoff.put(c)
}

// request builds the http.Request for a parsed request, or reports that
// the request is not one for the lean loop.
func (lc *leanConn) request(p *leanRequest) (*http.Request, bool) {
	u, err := url.ParseRequestURI(p.target)
	if err != nil {
		return nil, false
	}
	r := &http.Request{
		Method:        p.method,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        p.header,
		Host:          p.host,
		RemoteAddr:    lc.addr,
		RequestURI:    p.target,
		ContentLength: p.length,
		Close:         p.close,
		Body:          http.NoBody,
	}
	if !leanRoute(r) {
		return nil, false
	}
	return r, true
}

// leanRoute reports whether the lean loop serves r: the key-value routes
// that answer at once. Watches and blocking queries go to net/http, which
// ends a request's context when its client goes away.
func leanRoute(r *http.Request) bool {
	p := r.URL.Path
	if !strings.HasPrefix(p, "/kvstore/") && !strings.HasPrefix(p, leanTwirpPrefix) {
		return false
	}
	return !isLongPoll(r) && !strings.HasPrefix(p, "/kvstore/watch/")
}

const leanTwirpPrefix = "/twirp/kv.v1.KVService/"

// serveRequest runs the handler for r and writes its answer. It reports
// whether the connection may serve another request.
func (lc *leanConn) serveRequest(r *http.Request, p *leanRequest) bool {
	var body *leanBody
	if p.length > 0 {
		body = &leanBody{r: lc.br, left: p.length}
		r.Body = body
	}
	ctx, cancel := context.WithCancel(lc.ctx)
	r = r.WithContext(ctx)
	w := &leanWriter{lc: lc, header: make(http.Header, 4), body: body,
		closeAfter: p.close || lc.s.closing.Load()}
	func() {
		defer cancel()
		lc.s.srv.Handler.ServeHTTP(w, r)
	}()
	err := w.finish()
	w.release()
	if err != nil {
		return false
	}
	if body != nil && body.err == nil && body.left > int64(lc.br.Buffered()) {
		// The connection closes with the body unread (see
		// writeHead), and the client may still be sending it:
		// closing now would reset the connection, and a reset can
		// reach the client before it has read the answer. As
		// net/http: end the sending side, give the client time to
		// read, then close.
		closeWrite(lc.c)
		time.Sleep(rstAvoidanceDelay)
	}
	return !w.closeAfter
}

// rstAvoidanceDelay is how long a connection closed with a request body
// unread waits before it closes (net/http's figure).
const rstAvoidanceDelay = 500 * time.Millisecond

// closeWrite shuts down the sending side of c's TCP connection, where it
// has one.
func closeWrite(c net.Conn) {
	for range 4 {
		switch cc := c.(type) {
		case interface{ CloseWrite() error }:
			_ = cc.CloseWrite()
			return
		case *cappedConn:
			c = cc.Conn
		case interface{ NetConn() net.Conn }:
			c = cc.NetConn()
		default:
			return
		}
	}
}

// handedConn is a connection handed to net/http with bytes already read
// into r: reads drain r first.
type handedConn struct {
	net.Conn
	// r holds what the lean loop had read; dropped once drained, so that
	// a connection net/http keeps (a watch, a long poll) does not keep
	// the lean loop's buffer beside net/http's own. net/http reads a
	// connection from one goroutine at a time.
	r *bufio.Reader

	mu sync.Mutex
	// hdrDeadline is the lean loop's deadline for the header net/http
	// reads first (zero: none, or already applied).
	hdrDeadline time.Time
}

func (c *handedConn) Read(b []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(b)
		}
		c.r = nil
	}
	return c.Conn.Read(b)
}

// SetReadDeadline sets the connection's read deadline. The first deadline
// net/http sets on a connection is its header timeout for the first
// request; on a connection handed over in the middle of a header that the
// lean loop has been reading under its own header deadline, it is held to
// that one, so that a header that outgrows the lean loop (a slow client)
// gets no second header timeout from net/http.
func (c *handedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	if hd := c.hdrDeadline; !hd.IsZero() {
		c.hdrDeadline = time.Time{}
		if t.IsZero() || t.After(hd) {
			t = hd
		}
	}
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

// NetConn is the connection underneath (withCappedConn looks for it).
func (c *handedConn) NetConn() net.Conn { return c.Conn }

// connQueue is a net.Listener whose Accept returns the connections put in
// it: the lean loop's connections that net/http serves.
type connQueue struct {
	addr   net.Addr
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) put(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.closed.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// leanBody is the body of a request with a Content-Length.
type leanBody struct {
	r    *bufio.Reader
	left int64
	err  error
}

func (b *leanBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		b.err = err
		if n > 0 {
			return n, nil
		}
		return 0, err
	}
	if b.left == 0 {
		return n, io.EOF
	}
	return n, nil
}

func (b *leanBody) Close() error { return nil }

// leanRequest is a request line and header parsed by the lean loop.
type leanRequest struct {
	method, target, host string
	header               http.Header
	length               int64
	close                bool
}

// leanVerdict is what parse made of a request.
type leanVerdict int

const (
	leanServe   leanVerdict = iota // parsed; the lean loop serves it
	leanHandOff                    // net/http serves it, and the connection from here on
	leanFailed                     // the connection failed or timed out before a whole header came
)

// parse parses the request line and header at the start of br's buffer,
// reading more into it as needed, without consuming anything. A header
// longer than limit bytes (or than br's buffer) goes to net/http. With
// leanServe it returns the header's length in bytes.
func (p *leanRequest) parse(br *bufio.Reader, limit int) (int, leanVerdict) {
	limit = min(limit, br.Size())
	var buf []byte
	end := -1
	// scanned bytes of the header have been searched for its end and for
	// bare LFs already: each pass looks only at what arrived since (a
	// header sent a byte at a time must not cost a scan of all of it per
	// byte).
	scanned := 0
	for {
		// Wait for a byte more than was scanned, then look at all that
		// is buffered (a read may have brought many).
		_, err := br.Peek(min(scanned+1, limit))
		b, _ := br.Peek(min(br.Buffered(), limit))
		from := max(scanned-3, 0) // the end may straddle the old and the new bytes
		if i := bytes.Index(b[from:], crlfcrlf); i >= 0 {
			end = from + i
			buf = b[:end+4]
			break
		}
		if bareLF(b, scanned) {
			// Lines that end in LF alone: net/http takes them.
			return 0, leanHandOff
		}
		scanned = len(b)
		switch {
		case err == io.EOF && len(b) > 0:
			// A request cut short by the client's end: net/http
			// answers it (400).
			return 0, leanHandOff
		case err != nil && !errors.Is(err, bufio.ErrBufferFull):
			// A client that sends half a header and stops gets no
			// second header timeout from net/http.
			return 0, leanFailed
		case scanned >= limit:
			// A header larger than the buffer or than
			// MaxHeaderBytes: net/http judges it against
			// MaxHeaderBytes.
			return 0, leanHandOff
		}
	}
	*p = leanRequest{}
	lineEnd := bytes.Index(buf, crlf)
	if !p.requestLine(buf[:lineEnd]) {
		return 0, leanHandOff
	}
	// Three allocations for any header, as net/http's reader does with
	// its values' backing array: the field lines as one string that
	// every value is a part of, one array for the values, the map.
	fields := buf[lineEnd+2 : end+2]
	text := string(fields)
	lines := bytes.Count(fields, crlf)
	values := make([]string, lines)
	// The map's hint is capped: a header of one name repeated on every
	// line (a client's, to make the server allocate) would size it for
	// thousands of names.
	p.header = make(http.Header, min(lines, 32))
	hosts, lengths := 0, 0
	for at := 0; at < len(fields); {
		i := bytes.Index(fields[at:], crlf)
		line := fields[at : at+i]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !leanToken(line[:colon]) {
			return 0, leanHandOff
		}
		from, to := colon+1, len(line)
		for from < to && (line[from] == ' ' || line[from] == '\t') {
			from++
		}
		for to > from && (line[to-1] == ' ' || line[to-1] == '\t') {
			to--
		}
		if !leanFieldValue(line[from:to]) {
			return 0, leanHandOff
		}
		name := leanCanonical(line[:colon])
		v := text[at+from : at+to]
		at += i + 2
		switch name {
		case "Host":
			hosts++
			p.host = v
			continue // net/http keeps Host out of the header map too
		case "Content-Length":
			lengths++
			// Digits only, as net/http (strconv.ParseInt takes a
			// sign: "-0" and "+1").
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || v[0] < '0' || v[0] > '9' {
				return 0, leanHandOff
			}
			p.length = n
		case "Transfer-Encoding", "Expect", "Upgrade", "Trailer", "Te":
			return 0, leanHandOff
		case "Connection":
			for _, tok := range strings.Split(v, ",") {
				switch tok = strings.TrimSpace(tok); {
				case strings.EqualFold(tok, "close"):
					p.close = true
				case strings.EqualFold(tok, "keep-alive"), tok == "":
				default:
					return 0, leanHandOff // upgrade and hop-by-hop lists: net/http
				}
			}
		}
		if vs := p.header[name]; vs != nil {
			p.header[name] = append(vs, v)
		} else {
			values[0] = v
			p.header[name] = values[:1:1] // a second value copies
			values = values[1:]
		}
	}
	if hosts != 1 || lengths > 1 || !leanHost(p.host) {
		return 0, leanHandOff
	}
	if pragma := p.header["Pragma"]; len(pragma) > 0 && pragma[0] == "no-cache" {
		// As net/http (RFC 7234 section 5.4).
		if _, ok := p.header["Cache-Control"]; !ok {
			p.header["Cache-Control"] = []string{"no-cache"}
		}
	}
	return end + 4, leanServe
}

// bareLF reports whether b has an LF without a CR before it, at from or
// after.
func bareLF(b []byte, from int) bool {
	for {
		i := bytes.IndexByte(b[from:], '\n')
		if i < 0 {
			return false
		}
		i += from
		if i == 0 || b[i-1] != '\r' {
			return true
		}
		from = i + 1
	}
}

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)

// requestLine parses "METHOD SP origin-form SP HTTP/1.1".
func (p *leanRequest) requestLine(line []byte) bool {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 < 0 {
		return false
	}
	switch string(line[:sp1]) {
	case http.MethodGet:
		p.method = http.MethodGet
	case http.MethodPost:
		p.method = http.MethodPost
	case http.MethodDelete:
		p.method = http.MethodDelete
	case http.MethodOptions:
		// A browser's CORS preflight: served here, it does not hand
		// the browser's connection to net/http for good.
		p.method = http.MethodOptions
	default:
		return false
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 || string(rest[sp2+1:]) != "HTTP/1.1" || rest[0] != '/' {
		return false
	}
	for _, c := range rest[:sp2] {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	p.target = string(rest[:sp2])
	return true
}

// leanToken reports whether b is an RFC 9110 token (a field name).
func leanToken(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 || !tokenChars[c] {
			return false
		}
	}
	return len(b) > 0
}

var tokenChars = asciiSet("!#$%&'*+-.^_`|~")

// asciiSet is the table of letters, digits and the bytes of extra.
func asciiSet(extra string) (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range extra {
		t[c] = true
	}
	return t
}

// leanFieldValue reports whether b is a field value without control
// characters (tab allowed) or bytes past ASCII.
func leanFieldValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c >= 0x7f {
			return false
		}
	}
	return true
}

// leanHost reports whether h is a plain Host value: a name or address and
// an optional port, of the bytes net/http accepts in a Host
// (httpguts.ValidHostHeader); net/http judges anything else.
func leanHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 0x80 || !hostChars[c] {
			return false
		}
	}
	return true
}

// hostChars are the bytes of a Host value: those of a URI's host and
// port, and '%' of IPv6 zones (not all of a token's: '#', '^', '`' and
// '|' are not).
var hostChars = asciiSet("!$%&'()*+,-.:;=[]_~")

// leanCanonical is the canonical form of a field name, without an
// allocation for the common ones.
func leanCanonical(b []byte) string {
	switch string(b) { // no allocation for a switch on string(b)
	case "Host", "host":
		return "Host"
	case "Content-Length", "content-length":
		return "Content-Length"
	case "Content-Type", "content-type":
		return "Content-Type"
	case "User-Agent", "user-agent":
		return "User-Agent"
	case "Accept", "accept":
		return "Accept"
	case "Accept-Encoding", "accept-encoding":
		return "Accept-Encoding"
	case "Connection", "connection":
		return "Connection"
	case "Authorization", "authorization":
		return "Authorization"
	case "Origin", "origin":
		return "Origin"
	case RequestIDHeader:
		return RequestIDHeader
	}
	return textproto.CanonicalMIMEHeaderKey(string(b))
}

// leanWriter is the http.ResponseWriter of a request the lean loop serves.
type leanWriter struct {
	lc     *leanConn
	header http.Header
	// sent is the header as it was at WriteHeader, when the handler
	// asked for the header after WriteHeader and before it was written
	// (net/http sends no change made after WriteHeader).
	sent      http.Header
	status    int
	wroteHead bool // status and header are on their way
	chunked   bool
	declared  int64 // the handler's Content-Length, or -1
	written   int64
	// buf holds the answer until it is sent with its length (see
	// leanBuffered); bw writes to the connection. Both come from pools
	// when first needed and go back after the answer (release): a
	// connection between requests holds neither, and at any moment
	// only the answers being written hold them.
	buf        []byte
	pooled     *[]byte // buf's pooled array, to give back
	bw         *bufio.Writer
	body       *leanBody // the request's body (nil: none)
	closeAfter bool
	err        error
}

func (w *leanWriter) Header() http.Header {
	if w.status != 0 && !w.wroteHead && w.sent == nil {
		w.sent = w.header.Clone()
	}
	return w.header
}

func (w *leanWriter) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	if code < 200 || code > 999 {
		// 1xx informational answers: not sent by these routes.
		return
	}
	w.status = code
	w.declared = -1
	if cl := w.header.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			w.declared = n
		} else {
			w.header.Del("Content-Length")
		}
	}
}

func (w *leanWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.declared >= 0 {
		if w.written+int64(len(b)) > w.declared {
			return 0, http.ErrContentLength
		}
		if !w.wroteHead {
			w.writeHead(w.declared, false, b)
		}
		w.written += int64(len(b))
		n, err := w.bufw().Write(b)
		w.err = err
		return n, err
	}
	if !w.chunked && len(w.buf)+len(b) <= leanBuffered {
		if w.pooled == nil {
			w.pooled = leanAnswers.Get().(*[]byte)
			w.buf = (*w.pooled)[:0]
		}
		w.buf = append(w.buf, b...)
		w.written += int64(len(b))
		return len(b), nil
	}
	if !w.chunked {
		w.chunked = true
		// As net/http, a missing Content-Type is sniffed from the
		// answer's first 512 bytes: this write's too (past buf's
		// length, buf unchanged).
		first := append(w.buf, b[:min(len(b), max(512-len(w.buf), 0))]...)
		w.writeHead(-1, true, first)
		w.writeChunk(w.buf)
		w.buf = nil
	}
	w.writeChunk(b)
	if w.err != nil {
		return 0, w.err
	}
	w.written += int64(len(b))
	return len(b), nil
}

var errLeanReleased = errors.New("durio: write to an answer already sent")

// Pools of answer buffers and connection writers (see leanWriter.buf).
var (
	leanAnswers = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}
	leanWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

// bufw returns the answer's writer to the connection, taking one from the
// pool on first use.
func (w *leanWriter) bufw() *bufio.Writer {
	if w.bw == nil {
		w.bw = leanWriters.Get().(*bufio.Writer)
		w.bw.Reset(w.lc.c)
	}
	return w.bw
}

// release gives the answer's buffers back to their pools, once the answer
// is finished (whatever became of it).
func (w *leanWriter) release() {
	// A Write after the handler returned (which ResponseWriter forbids)
	// fails rather than reach a buffer that another answer now uses.
	w.err = errLeanReleased
	if w.bw != nil {
		w.bw.Reset(nil)
		leanWriters.Put(w.bw)
		w.bw = nil
	}
	if w.pooled != nil {
		leanAnswers.Put(w.pooled) // its array as it came: buf may have outgrown it
		w.pooled, w.buf = nil, nil
	}
}

func (w *leanWriter) writeChunk(b []byte) {
	if len(b) == 0 || w.err != nil {
		return
	}
	bw := w.bufw()
	var n [16]byte
	_, _ = bw.Write(strconv.AppendInt(n[:0], int64(len(b)), 16))
	_, _ = bw.Write(crlf)
	_, _ = bw.Write(b)
	_, w.err = bw.Write(crlf)
}

// finish completes the answer and flushes it.
func (w *leanWriter) finish() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	switch {
	case w.err != nil:
		return w.err
	case w.chunked:
		_, _ = w.bufw().WriteString("0\r\n\r\n")
	case w.declared >= 0:
		if !w.wroteHead {
			w.writeHead(w.declared, false, nil)
		}
		if w.written != w.declared && bodyAllowed(w.status) {
			// Short of what the handler declared: the client cannot
			// find the next answer, so the connection ends here.
			_ = w.bufw().Flush()
			return io.ErrShortWrite
		}
	default:
		if bodyAllowed(w.status) {
			w.writeHead(int64(len(w.buf)), false, w.buf)
			_, _ = w.bufw().Write(w.buf)
		} else {
			w.writeHead(-1, false, nil)
		}
	}
	return w.bufw().Flush()
}

func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified
}

// writeHead writes the status line and header: with length as the
// Content-Length if it is not negative, chunked if asked; a missing
// Content-Type is sniffed from the answer's first bytes.
func (w *leanWriter) writeHead(length int64, chunked bool, first []byte) {
	w.wroteHead = true
	bw := w.bufw()
	var num [20]byte
	_, _ = bw.WriteString("HTTP/1.1 ")
	_, _ = bw.Write(strconv.AppendInt(num[:0], int64(w.status), 10))
	_ = bw.WriteByte(' ')
	_, _ = bw.WriteString(http.StatusText(w.status))
	_, _ = bw.Write(crlf)
	h := w.header
	if w.sent != nil {
		h = w.sent
	}
	// As net/http: the handler's "Connection: close", or a server
	// shutting down, closes the connection after this answer.
	if !w.closeAfter && (w.lc.s.closing.Load() || h.Get("Connection") == "close") {
		w.closeAfter = true
	}
	// As net/http, when the header is sent: the request body the
	// handler left unread is read past if it is short enough, for the
	// connection to serve another request; else (or when the connection
	// closes anyway) it is left, and the answer says the connection
	// closes.
	if b := w.body; b != nil && b.left > 0 && !w.closeAfter {
		if b.left >= leanDiscard || b.err != nil {
			w.closeAfter = true
		} else if n, err := w.lc.br.Discard(int(b.left)); err != nil {
			b.left, b.err = b.left-int64(n), err
			w.closeAfter = true
		} else {
			b.left = 0
		}
	}
	if _, ok := h["Content-Type"]; !ok && bodyAllowed(w.status) && len(first) > 0 {
		// As net/http does.
		h["Content-Type"] = []string{http.DetectContentType(first)}
	}
	for k, vs := range h {
		if k == "Content-Length" || k == "Transfer-Encoding" || k == "Connection" || !leanToken([]byte(k)) ||
			k == "Content-Type" && w.status == http.StatusNotModified { // as net/http
			continue
		}
		for _, v := range vs {
			_, _ = bw.WriteString(k)
			_, _ = bw.WriteString(": ")
			writeFieldValue(bw, v)
			_, _ = bw.Write(crlf)
		}
	}
	if _, ok := h["Date"]; !ok {
		_, _ = bw.WriteString("Date: ")
		_, _ = bw.Write(httpDate())
		_, _ = bw.Write(crlf)
	}
	switch {
	case chunked:
		_, _ = bw.WriteString("Transfer-Encoding: chunked\r\n")
	case length >= 0 && bodyAllowed(w.status):
		_, _ = bw.WriteString("Content-Length: ")
		_, _ = bw.Write(strconv.AppendInt(num[:0], length, 10))
		_, _ = bw.Write(crlf)
	}
	if w.closeAfter {
		_, _ = bw.WriteString("Connection: close\r\n")
	}
	_, w.err = bw.Write(crlf)
}

// writeFieldValue writes v with CR and LF as spaces, as net/http does, so
// a value can never end the header early.
func writeFieldValue(bw *bufio.Writer, v string) {
	for len(v) > 0 {
		i := strings.IndexAny(v, "\r\n")
		if i < 0 {
			_, _ = bw.WriteString(v)
			return
		}
		_, _ = bw.WriteString(v[:i])
		_ = bw.WriteByte(' ')
		v = v[i+1:]
	}
}

// httpDate is the current time in the Date header's format, made at most
// once a second.
func httpDate() []byte {
	now := time.Now().Unix()
	if d := cachedDate.Load(); d != nil && d.unix == now {
		return d.text
	}
	d := &dateText{unix: now, text: time.Unix(now, 0).UTC().AppendFormat(nil, http.TimeFormat)}
	cachedDate.Store(d)
	return d.text
}

type dateText struct {
	unix int64
	text []byte
}

var cachedDate atomic.Pointer[dateText]
