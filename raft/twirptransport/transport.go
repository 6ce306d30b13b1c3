package twirptransport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/raft"
	"github.com/ruaft/ruaft/raft/wire"
	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
	"google.golang.org/protobuf/proto"
)

// Options configure the client side of the transport. The zero value sends
// plain HTTP without authentication.
type Options struct {
	// HTTPClient carries the RPCs. Nil: NewHTTPClient(TLS).
	HTTPClient *http.Client
	// TLS is used to build the HTTP client when HTTPClient is nil; set it
	// (see MutualTLS) when the peer URLs are https.
	TLS *tls.Config
	// Token, when set, is sent as "Authorization: Bearer <Token>" with every
	// RPC (see RequireToken for the server side).
	Token string
	// Observe, when set, is called after every RPC with its name
	// ("AppendEntries", ...), its start time and its error (nil on success),
	// for metrics.
	Observe func(rpc string, start time.Time, err error)
	// ClientOptions are passed to every Twirp client (hooks, interceptors).
	// They do not apply to calls carried by the peer stream.
	ClientOptions []twirp.ClientOption
	// Stream, when set, is the pool of peer streams the RPCs go through
	// (shared with other users of the peer plane, e.g. forwarded writes).
	// Nil: the transport makes its own from TLS and Token (close it with
	// Close). A peer that does not offer the stream (an older version) is
	// reached over per-request Twirp, as before.
	Stream *StreamPool
	// DisableStream sends every RPC as its own Twirp HTTP request, as
	// versions without the peer stream did.
	DisableStream bool
}

// Transport implements raft.Transport with one Twirp protobuf client per
// peer, found by replica id in an address book that may change while the
// node runs (SetPeers, SetPeer, RemovePeer): replicas join, leave and move
// to new addresses. Per-RPC timeouts come from the caller's context
// (raft.Config's RPCTimeout). It is safe for concurrent use.
type Transport struct {
	self    int
	client  *http.Client
	copts   []twirp.ClientOption
	observe func(rpc string, start time.Time, err error)
	// streams carries the RPCs when not nil; ownStreams says Close closes it.
	streams    *StreamPool
	ownStreams bool

	mu sync.Mutex // serialises writers of book; readers load it without locking
	// book is the current address book: an immutable map, replaced whole
	// on every change, so the RPC path reads it with one atomic load.
	book atomic.Pointer[map[int]peerClient]
}

// peerClient is one address book entry: a peer's URL and the clients for
// it (stream nil when the stream is off).
type peerClient struct {
	url    string
	rpc    raftv1.RaftService
	stream *StreamClient
}

var _ raft.Transport = (*Transport)(nil)

// New returns the transport node self uses to reach its peers: peerURLs[i]
// is the base URL (http://host:port or https://host:port) of node i's
// handler; the entry for self is not used. The address book can be changed
// later (SetPeers).
func New(self int, peerURLs []string, opts Options) *Transport {
	peers := make(map[int]string, len(peerURLs))
	for i, u := range peerURLs {
		peers[i] = u
	}
	return NewWithPeers(self, peers, opts)
}

// NewWithPeers returns the transport node self uses to reach its peers:
// peers maps each peer's replica id to the base URL of its handler; an
// entry for self is not used. peers may be empty (a replica that joins a
// cluster learns its peers later, through SetPeers).
func NewWithPeers(self int, peers map[int]string, opts Options) *Transport {
	client := opts.HTTPClient
	if client == nil {
		client = NewHTTPClient(opts.TLS)
	}
	t := &Transport{self: self, client: WithToken(client, opts.Token), copts: opts.ClientOptions, observe: opts.Observe}
	switch {
	case opts.DisableStream:
	case opts.Stream != nil:
		t.streams = opts.Stream
	default:
		t.streams, t.ownStreams = NewStreamPool(StreamOptions{TLS: opts.TLS, Token: opts.Token}), true
	}
	empty := map[int]peerClient{}
	t.book.Store(&empty)
	t.SetPeers(peers)
	return t
}

// SetPeers replaces the address book: afterwards the transport reaches
// exactly the peers in peers (id to base URL), and an RPC to any other id
// fails at once. Clients of peers whose URL did not change are kept (with
// their pooled connections); the entry for this node is ignored.
func (t *Transport) SetPeers(peers map[int]string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.setLocked(peers)
}

func (t *Transport) setLocked(peers map[int]string) {
	old := *t.book.Load()
	next := make(map[int]peerClient, len(peers))
	for id, u := range peers {
		if id == t.self {
			continue
		}
		if p, ok := old[id]; ok && p.url == u {
			next[id] = p
			continue
		}
		pc := peerClient{url: u, rpc: raftv1.NewRaftServiceProtobufClient(u, t.client, t.copts...)}
		if t.streams != nil {
			pc.stream = t.streams.Client(u)
		}
		next[id] = pc
	}
	t.book.Store(&next)
}

// Close closes the peer streams the transport made itself (none when
// Options.Stream or DisableStream was set): calls in flight on them fail,
// and so do later RPCs. Call it after stopping the node.
func (t *Transport) Close() {
	if t.ownStreams {
		t.streams.Close()
	}
}

// SetPeer adds peer id at url, or moves it there.
func (t *Transport) SetPeer(id int, url string) {
	t.update(func(peers map[int]string) { peers[id] = url })
}

// RemovePeer drops peer id from the address book.
func (t *Transport) RemovePeer(id int) {
	t.update(func(peers map[int]string) { delete(peers, id) })
}

func (t *Transport) update(change func(map[int]string)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	peers := t.peersLocked()
	change(peers)
	t.setLocked(peers)
}

// Peers returns a copy of the address book: peer id to base URL.
func (t *Transport) Peers() map[int]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.peersLocked()
}

func (t *Transport) peersLocked() map[int]string {
	book := *t.book.Load()
	out := make(map[int]string, len(book))
	for id, p := range book {
		out[id] = p.url
	}
	return out
}

// MaxConnsPerPeer bounds the connections NewHTTPClient opens to one peer,
// in use and idle: calls beyond it wait for one to be free. A replica's
// peer listener admits a bounded number of connections (durio:
// --max-peer-conns, 256), and a connection a peer authenticated on is never
// evicted for a new one, so each peer must keep to its share: with this
// bound, eight replicas fill 224 slots at most. A node's senders keep at
// most RPCWorkersPerPeer (default 8) RPCs in flight to a peer, well inside
// it; only forwarded client calls come in larger bursts.
const MaxConnsPerPeer = 32

// NewHTTPClient is a pooled keep-alive HTTP/1.1 client suited to peer RPCs:
// enough connections per peer (MaxConnsPerPeer, kept idle between calls)
// that many AppendEntries can be in flight to one peer without new dials,
// short dial and TLS handshake timeouts so a dead peer fails fast, and
// redials of restarted peers on the next call. tlsConfig (nil for plain
// http) is used for https URLs.
func NewHTTPClient(tlsConfig *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: 2 * time.Second,
		MaxIdleConns:        512,
		MaxConnsPerHost:     MaxConnsPerPeer,
		MaxIdleConnsPerHost: MaxConnsPerPeer,
		// Below the servers' idle timeout (durio: 60 s), so the client, not
		// the server, drops an idle connection and no request races a close.
		IdleConnTimeout:   30 * time.Second,
		ForceAttemptHTTP2: false,
	}}
}

// WithToken returns client, or a copy of it that adds
// "Authorization: Bearer <token>" to every request when token is not empty.
func WithToken(client *http.Client, token string) *http.Client {
	token = strings.TrimSpace(token)
	if token == "" {
		return client
	}
	return WithHeader(client, "Authorization", "Bearer "+token)
}

// WithHeader returns a copy of client that sets the header field name to
// value on every request it sends (a deployment's cluster id, say, which
// the peers check). An empty value returns client itself.
func WithHeader(client *http.Client, name, value string) *http.Client {
	if value == "" {
		return client
	}
	c := *client
	base := client.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = headerTransport{base: base, name: http.CanonicalHeaderKey(name), value: value}
	return &c
}

// headerTransport sets one header field on every request it carries.
type headerTransport struct {
	base        http.RoundTripper
	name, value string
}

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(t.name, t.value)
	return t.base.RoundTrip(r)
}

// ErrUnknownPeer is returned (wrapped) by an RPC to an id the address
// book does not hold.
var ErrUnknownPeer = errors.New("twirptransport: no such peer in the address book")

func (t *Transport) peer(id int) (peerClient, error) {
	p, ok := (*t.book.Load())[id]
	if !ok {
		return p, fmt.Errorf("%w: %d", ErrUnknownPeer, id)
	}
	return p, nil
}

// roundTrip converts a request to protobuf, sends it (over the peer stream
// when there is one, else or when the peer refuses the stream as a Twirp
// request) and converts the reply.
func roundTrip[Req, Resp any, PReq, PResp proto.Message](ctx context.Context, t *Transport, rpc string, req Req,
	stream *StreamClient, method string, to func(Req) PReq, send func(context.Context, PReq) (PResp, error), from func(PResp) (Resp, error),
) (Resp, error) {
	start := time.Now()
	resp, err := CallStream(ctx, stream, method, to(req), send)
	if t.observe != nil {
		t.observe(rpc, start, err)
	}
	if err != nil {
		var zero Resp
		return zero, err
	}
	return from(resp)
}

// AppendEntries implements raft.Transport.
func (t *Transport) AppendEntries(ctx context.Context, id int, req *raft.AppendEntriesRequest) (*raft.AppendEntriesResponse, error) {
	p, err := t.peer(id)
	if err != nil {
		return nil, err
	}
	return roundTrip(ctx, t, "AppendEntries", req, p.stream, MethodAppendEntries, wire.AppendEntriesRequestToProto, p.rpc.AppendEntries, wire.AppendEntriesResponseFromProto)
}

// RequestVote implements raft.Transport.
func (t *Transport) RequestVote(ctx context.Context, id int, req *raft.RequestVoteRequest) (*raft.RequestVoteResponse, error) {
	p, err := t.peer(id)
	if err != nil {
		return nil, err
	}
	return roundTrip(ctx, t, "RequestVote", req, p.stream, MethodRequestVote, wire.RequestVoteRequestToProto, p.rpc.RequestVote, wire.RequestVoteResponseFromProto)
}

// InstallSnapshot implements raft.Transport.
func (t *Transport) InstallSnapshot(ctx context.Context, id int, req *raft.InstallSnapshotRequest) (*raft.InstallSnapshotResponse, error) {
	p, err := t.peer(id)
	if err != nil {
		return nil, err
	}
	return roundTrip(ctx, t, "InstallSnapshot", req, p.stream, MethodInstallSnapshot, wire.InstallSnapshotRequestToProto, p.rpc.InstallSnapshot, wire.InstallSnapshotResponseFromProto)
}

// TimeoutNow implements raft.Transport.
func (t *Transport) TimeoutNow(ctx context.Context, id int, req *raft.TimeoutNowRequest) (*raft.TimeoutNowResponse, error) {
	p, err := t.peer(id)
	if err != nil {
		return nil, err
	}
	return roundTrip(ctx, t, "TimeoutNow", req, p.stream, MethodTimeoutNow, wire.TimeoutNowRequestToProto, p.rpc.TimeoutNow, wire.TimeoutNowResponseFromProto)
}

// ReadIndex implements raft.Transport.
func (t *Transport) ReadIndex(ctx context.Context, id int, req *raft.ReadIndexRequest) (*raft.ReadIndexResponse, error) {
	p, err := t.peer(id)
	if err != nil {
		return nil, err
	}
	return roundTrip(ctx, t, "ReadIndex", req, p.stream, MethodReadIndex, wire.ReadIndexRequestToProto, p.rpc.ReadIndex, wire.ReadIndexResponseFromProto)
}

// CallStream sends req as method over stream and returns the reply; when
// stream is nil, or its peer does not offer the stream, it sends req with
// fallback (the method's Twirp client) instead. Use it to carry other
// services' calls (e.g. kv.v1.ForwardService) over the peer stream.
func CallStream[PReq, PResp proto.Message](ctx context.Context, stream *StreamClient, method string, req PReq,
	fallback func(context.Context, PReq) (PResp, error),
) (PResp, error) {
	if stream != nil {
		var resp PResp
		resp = resp.ProtoReflect().Type().New().Interface().(PResp)
		err := stream.Call(ctx, method, req, resp)
		if !errors.Is(err, ErrNoStream) {
			if err != nil {
				var zero PResp
				return zero, err
			}
			return resp, nil
		}
	}
	return fallback(ctx, req)
}
