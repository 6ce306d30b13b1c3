package durio

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ruaft/ruaft/internal/rawconn"
	"github.com/ruaft/ruaft/kvraft/kvwire"
	"github.com/twitchtv/twirp"
)

// This file holds what makes the listeners safe to expose: connection caps,
// the in-flight cap, request ids, and the browser rules of the client API
// (origin allowlist, CORS preflight, JSON-only writes, no redirects).

// capListener caps a listener's open connections, so a flood of idle
// connections costs a bounded number of goroutines and buffers, without
// letting that flood lock out the clients and peers that use the listener.
//
// A connection is pending from its accept until the server vouches for it
// (vouchConn): on the client listener once a request's line and header
// have arrived (its body may still be on its way), on the peer listener once
// a request has passed authentication (peer token or client certificate;
// any request where the peer listener has neither, as --insecure-peers or a
// loopback address allow). At the cap, a new connection evicts a pending one
// rather than being refused: the oldest of the remote host (an IPv6 /64
// counts as one, see remoteHost) that has the most pending, so a host that
// opens many idle or unauthenticated connections evicts its own and not a
// peer's fresh one. Only when every open connection is vouched for is the
// new one closed at once.
//
// The connections it hands out read and write with raw system calls
// (package rawconn).
type capListener struct {
	net.Listener
	max     int
	refused func() // called per refused connection; may be nil
	evicted func() // called per evicted pending connection; may be nil

	mu      sync.Mutex
	open    int
	seq     uint64                // accept order, for the oldest pending
	pending map[string]*list.List // remote host -> its pending *cappedConn, oldest first
}

func newCapListener(ln net.Listener, max int, refused, evicted func()) net.Listener {
	return &capListener{Listener: ln, max: max, refused: refused, evicted: evicted, pending: map[string]*list.List{}}
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		cc := &cappedConn{Conn: rawconn.Wrap(c), l: l, host: remoteHost(c)}
		if l.admit(cc) {
			return cc, nil
		}
		c.Close()
		if l.refused != nil {
			l.refused()
		}
	}
}

// admit takes a slot for c, pending, evicting pending connections while
// the listener is at its cap; false if every open connection is vouched
// for.
func (l *capListener) admit(c *cappedConn) bool {
	for {
		l.mu.Lock()
		if l.open < l.max {
			l.open++
			l.seq++
			c.seq = l.seq
			q := l.pending[c.host]
			if q == nil {
				q = list.New()
				l.pending[c.host] = q
			}
			c.elem = q.PushBack(c)
			l.mu.Unlock()
			return true
		}
		victim := l.victimLocked()
		l.mu.Unlock()
		if victim == nil {
			return false
		}
		victim.Close() // frees its slot
		if l.evicted != nil {
			l.evicted()
		}
	}
}

// victimLocked removes from the pending set, and returns, the oldest
// pending connection of the host with the most (the older one on a tie);
// nil if none is pending.
func (l *capListener) victimLocked() *cappedConn {
	var victim *cappedConn
	most := 0
	for _, q := range l.pending {
		c := q.Front().Value.(*cappedConn)
		if q.Len() > most || q.Len() == most && c.seq < victim.seq {
			victim, most = c, q.Len()
		}
	}
	if victim != nil {
		l.unpendLocked(victim)
	}
	return victim
}

func (l *capListener) unpendLocked(c *cappedConn) {
	if c.elem == nil {
		return
	}
	q := l.pending[c.host]
	q.Remove(c.elem)
	c.elem = nil
	if q.Len() == 0 {
		delete(l.pending, c.host)
	}
}

// remoteHost is the host that c comes from, as capListener counts them:
// its remote IPv4 address, or the /64 network of its IPv6 address (one
// machine commonly holds a whole /64, so its addresses count as one
// host); the whole remote address where it has no IP (a Unix socket).
func remoteHost(c net.Conn) string {
	a := c.RemoteAddr()
	if a == nil {
		return ""
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip4 := ta.IP.To4(); ip4 != nil {
			return string(ip4.To16())
		}
		return string(ta.IP.Mask(ipv6Host))
	}
	return a.String()
}

// ipv6Host is the mask of the IPv6 addresses remoteHost counts as one host.
var ipv6Host = net.CIDRMask(64, 128)

// cappedConn is a connection of a capListener.
type cappedConn struct {
	net.Conn
	l       *capListener
	host    string
	seq     uint64
	elem    *list.Element // in l.pending while pending; under l.mu
	vouched atomic.Bool
	once    sync.Once
}

// vouch takes c out of the pending set: the listener no longer evicts it.
func (c *cappedConn) vouch() {
	if c.vouched.Load() {
		return
	}
	c.l.mu.Lock()
	c.l.unpendLocked(c)
	c.l.mu.Unlock()
	c.vouched.Store(true)
}

func (c *cappedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.unpendLocked(c)
		c.l.open--
		c.l.mu.Unlock()
	})
	return err
}

type cappedConnKey struct{}

// withCappedConn is an http.Server's ConnContext: it keeps the
// capListener's connection under a request's context for vouchConn,
// through a TLS layer or the lean loop's hand-off (handedConn) too.
func withCappedConn(ctx context.Context, c net.Conn) context.Context {
	for range 2 {
		switch cc := c.(type) {
		case *cappedConn:
			return context.WithValue(ctx, cappedConnKey{}, cc)
		case *tls.Conn:
			c = cc.NetConn()
		case *handedConn:
			c = cc.Conn
		}
	}
	return ctx
}

// vouchConn vouches for the connection of every request it passes on (see
// capListener): put it where a request has shown it is one the listener
// serves.
func vouchConn(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(cappedConnKey{}).(*cappedConn); ok {
			c.vouch()
		}
		next.ServeHTTP(w, r)
	})
}

// limitInflight answers 503 with Retry-After when max requests are already
// being served. Health and metrics routes are exempt, so monitoring still
// sees an overloaded replica.
func limitInflight(max int, next http.Handler) http.Handler {
	if max <= 0 {
		return next
	}
	slots := make(chan struct{}, max)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz", "/readyz", "/metrics":
			next.ServeHTTP(w, r)
			return
		}
		if isLongPoll(r) { // bounded by --max-watchers instead (see longPolls)
			next.ServeHTTP(w, r)
			return
		}
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			next.ServeHTTP(w, r)
		default:
			w.Header().Set("Retry-After", "1")
			writeError(w, twirp.NewError(twirp.Unavailable, "too many requests in flight; retry shortly").
				WithMeta("max_inflight", strconv.Itoa(max)))
		}
	})
}

// requestInfo travels in a request's context: its id, the detail of an
// internal error kept off the wire, for the log, and its token's grant. Only the goroutine serving
// the request touches it.
type requestInfo struct {
	id    string
	cause error
	// grant is the grant of the request's client token (clientAuth), nil
	// without one.
	grant *grant
}

type requestInfoKey struct{}

// requestCtx is a request's context below withRequestID: its parent plus
// the requestInfo (under requestInfoKey), with the request's status writer
// and id header alongside, so that the three cost one allocation. It works
// with the context package like a context.WithValue would: every other
// key, Done and Deadline are the parent's.
type requestCtx struct {
	context.Context
	info     requestInfo
	sw       statusWriter
	idHeader [1]string
}

func (c *requestCtx) Value(key any) any {
	if key == (requestInfoKey{}) {
		return &c.info
	}
	return c.Context.Value(key)
}

// RequestIDHeader carries a request's id: the caller's if it sent a usable
// one (kvwire.ValidRequestID), else one the replica makes up. It is echoed
// on every answer, logged, and sent on with the request when this replica
// forwards it to the leader, which logs it under the same id.
const RequestIDHeader = kvwire.RequestIDHeader

// requestID is the id of the request ctx belongs to (see withRequestID),
// "" outside one: what this replica's Forwarders send on to the leader.
func requestID(ctx context.Context) string {
	if info, _ := ctx.Value(requestInfoKey{}).(*requestInfo); info != nil {
		return info.id
	}
	return ""
}

// withRequestID gives every request an id (see RequestIDHeader), echoes it,
// and logs each request with it: failures (5xx) at info, the rest at debug.
func withRequestID(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !kvwire.ValidRequestID(id) {
			id = kvwire.NewRequestID()
		}
		start := time.Now()
		// One allocation for the request's context, its status writer
		// and the header echoing its id.
		rc := &requestCtx{Context: r.Context(), info: requestInfo{id: id}}
		rc.sw = statusWriter{ResponseWriter: w, code: http.StatusOK}
		rc.idHeader[0] = id
		w.Header()[RequestIDHeader] = rc.idHeader[:]
		sw, info := &rc.sw, &rc.info
		next.ServeHTTP(sw, r.WithContext(rc))
		level := slog.LevelDebug
		switch {
		case info.cause != nil:
			level = slog.LevelError
		case sw.code >= 500:
			level = slog.LevelInfo
		}
		if logger.Enabled(r.Context(), level) {
			path := r.URL.EscapedPath()
			if len(path) > 256 {
				path = path[:256] + "..."
			}
			logger.LogAttrs(r.Context(), level, "request", slog.String("request_id", id), slog.String("method", r.Method),
				slog.String("path", path), slog.Int("status", sw.code), slog.Duration("took", time.Since(start)),
				slog.String("remote", r.RemoteAddr), slog.Any("err", info.cause))
		}
	})
}

// browserPolicy is what the client API lets a web browser do. Browsers
// send Origin on cross-origin requests (and on same-origin POSTs); a request
// without one comes from a non-browser client (curl, the Go client) or a
// same-origin page load.
type browserPolicy struct {
	origins map[string]bool // allowed origins, lower case; "*" allows all
	// hosts are host names a same-origin request may use, besides IP
	// literals and localhost: the client URLs' hosts and --client-hosts
	// ("*": any). A same-origin request under any other name could be a
	// DNS-rebinding page, so it is refused.
	hosts map[string]bool
	// memberHost, if not nil, accepts the hosts of the current members'
	// client URLs as well (Limits.memberHost).
	memberHost func(host string) bool
}

func newBrowserPolicy(origins, clientURLs, hosts []string) browserPolicy {
	p := browserPolicy{origins: map[string]bool{}, hosts: map[string]bool{"localhost": true}}
	for _, h := range hosts {
		p.hosts[strings.ToLower(h)] = true
	}
	for _, o := range origins {
		p.origins[strings.ToLower(strings.TrimSuffix(o, "/"))] = true
	}
	for _, u := range clientURLs {
		if pu, err := url.Parse(u); err == nil && pu.Hostname() != "" {
			p.hosts[strings.ToLower(pu.Hostname())] = true
		}
	}
	return p
}

func (p browserPolicy) allowed(origin string) bool {
	return p.origins["*"] || p.origins[strings.ToLower(origin)]
}

// sameOrigin reports whether origin names the host the request was sent to,
// under a name a rebinding attack cannot use.
func (p browserPolicy) sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	if err != nil || !strings.EqualFold(u.Host, r.Host) {
		return false
	}
	return p.knownHost(u.Hostname())
}

// knownHost reports whether host (a Host header's or an origin's name,
// without the port) is one a DNS-rebinding page cannot use: an IP
// address, localhost, or a client URL's host.
func (p browserPolicy) knownHost(host string) bool {
	if net.ParseIP(host) != nil {
		return true
	}
	host = strings.ToLower(host)
	return p.hosts["*"] || p.hosts[host] || (p.memberHost != nil && p.memberHost(host))
}

// rebound reports whether r, sent without an Origin, names a host the
// replica does not know. Browsers send no Origin with a same-origin GET, so
// a page whose name was rebound to this replica's address could read keys
// with one; it cannot choose the Host header, which names its own host.
// An empty Host (HTTP/1.0) comes from no browser. The routes open without
// a token (health checks, metrics) are served under any name, as a
// monitoring system may use a name the cluster does not know.
func (p browserPolicy) rebound(r *http.Request) bool {
	switch r.URL.Path {
	case "/healthz", "/readyz", "/metrics":
		return false
	}
	return r.Host != "" && !p.knownHost((&url.URL{Host: r.Host}).Hostname())
}

// ReasonUnknownHost is the reason (meta "reason") of the permission_denied
// answering a request under a host name the replica does not know (see
// browserPolicy.rebound).
const ReasonUnknownHost = "unknown_host"

// corsMethods and corsHeaders are what an allowed origin may use.
const (
	corsMethods = "GET, POST, DELETE"
	corsHeaders = "Authorization, Content-Type, X-Request-Id, Twirp-Version, Last-Event-ID"
)

// guard applies the browser policy and the JSON-only rule for writes, and
// keeps the answers JSON (see jsonOnly).
func (p browserPolicy) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w = &jsonOnly{ResponseWriter: w, r: r}
		origin := r.Header.Get("Origin")
		cors := false
		if origin == "" && p.rebound(r) {
			writeError(w, twirp.NewError(twirp.PermissionDenied, "requests for host "+strconv.Quote(r.Host)+
				" are not allowed: use an IP address, localhost or a replica's client URL (see --client-url)").
				WithMeta(kvwire.MetaReason, ReasonUnknownHost))
			return
		}
		if origin != "" {
			w.Header().Add("Vary", "Origin")
			switch {
			case p.allowed(origin):
				cors = true
			case p.sameOrigin(origin, r):
			default:
				writeError(w, twirp.NewError(twirp.PermissionDenied, "cross-origin requests from "+strconv.Quote(origin)+
					" are not allowed (see --cors-origins)"))
				return
			}
		}
		if cors {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Expose-Headers", "X-Request-Id, Retry-After, WWW-Authenticate, "+RevisionHeader)
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", corsMethods)
				h.Set("Access-Control-Allow-Headers", corsHeaders)
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions && r.Method != http.MethodDelete {
			// Forms (text/plain, urlencoded, multipart) are what a hostile
			// page can post without a preflight: refuse them.
			if !jsonOrProtobuf(r.Header.Get("Content-Type")) {
				writeErrorStatus(w, http.StatusUnsupportedMediaType,
					twirp.InvalidArgumentError("Content-Type", "must be application/json (or application/protobuf for Twirp)"))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// jsonOrProtobuf reports whether a Content-Type is JSON or protobuf. The
// two plain forms every client sends are matched without parsing (which
// allocates a parameter map per request).
func jsonOrProtobuf(ct string) bool {
	switch ct {
	case "application/json", "application/protobuf":
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || mt == "application/protobuf")
}

// jsonOnly keeps every answer of the client listener JSON: the ServeMux's
// redirects (for paths like //a or /x/../y, or a missing trailing slash)
// become JSON bad_route errors, and Twirp's 408 for deadline_exceeded becomes
// the 504 the API documents (proxies retry a 408 on their own).
type jsonOnly struct {
	http.ResponseWriter
	r       *http.Request
	swallow bool // a redirect was replaced: drop its HTML body
}

func (w *jsonOnly) WriteHeader(code int) {
	switch {
	case code >= 300 && code < 400 && w.Header().Get("Location") != "":
		h := w.Header()
		h.Del("Location")
		h.Del("Content-Type")
		writeError(w.ResponseWriter, twirp.NewErrorf(twirp.BadRoute, "no route %s %s (the path is not canonical)",
			w.r.Method, w.r.URL.EscapedPath()))
		w.swallow = true
		return
	case code == http.StatusRequestTimeout:
		code = http.StatusGatewayTimeout
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (long polls move
// their write deadline).
func (w *jsonOnly) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *jsonOnly) Write(b []byte) (int, error) {
	if w.swallow {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// publicError is the text of an error shown on the client port: its first
// line, at most 200 bytes, so a panic's stack trace (with source paths) that
// stopped the node stays in the log.
func publicError(err error) string {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	if len(msg) > 200 {
		msg = strings.ToValidUTF8(msg[:200], "") + "..."
	}
	return msg
}

// public keeps internal errors' details (file paths, stack traces) off the
// client port: an error that is not a Twirp error with a code the client can
// act on becomes a bare "internal" error naming the request id; the detail
// goes to the request's log line (see withRequestID).
func public(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var terr twirp.Error
	if errors.As(err, &terr) && terr.Code() != twirp.Internal && terr.Code() != twirp.Unknown {
		return err
	}
	info, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	if info == nil {
		return twirp.NewError(twirp.Internal, "internal error")
	}
	info.cause = err
	return twirp.NewError(twirp.Internal, "internal error; the replica's log has the detail under request id "+info.id)
}
