package twirptransport

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/raft"
	"github.com/ruaft/ruaft/raft/wire"
	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
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
	ClientOptions []twirp.ClientOption
}

// Transport implements raft.Transport with one Twirp protobuf client per
// peer. Per-RPC timeouts come from the caller's context (raft.Config's
// RPCTimeout). It is safe for concurrent use.
type Transport struct {
	peers   []raftv1.RaftService // indexed by node id; nil for this node
	observe func(rpc string, start time.Time, err error)
}

var _ raft.Transport = (*Transport)(nil)

// New returns the transport node self uses to reach its peers: peerURLs[i]
// is the base URL (http://host:port or https://host:port) of node i's
// handler; the entry for self is not used.
func New(self int, peerURLs []string, opts Options) *Transport {
	client := opts.HTTPClient
	if client == nil {
		client = NewHTTPClient(opts.TLS)
	}
	client = WithToken(client, opts.Token)
	t := &Transport{peers: make([]raftv1.RaftService, len(peerURLs)), observe: opts.Observe}
	for i, u := range peerURLs {
		if i != self {
			t.peers[i] = raftv1.NewRaftServiceProtobufClient(u, client, opts.ClientOptions...)
		}
	}
	return t
}

// NewHTTPClient is a pooled keep-alive HTTP/1.1 client suited to peer RPCs:
// enough idle connections per peer that many AppendEntries can be in flight
// to one peer without new dials, short dial and TLS handshake timeouts so a
// dead peer fails fast, and redials of restarted peers on the next call.
// tlsConfig (nil for plain http) is used for https URLs.
func NewHTTPClient(tlsConfig *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: 2 * time.Second,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 128,
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
	c := *client
	base := client.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = bearerTransport{base: base, header: "Bearer " + token}
	return &c
}

// bearerTransport adds the token to every request it carries.
type bearerTransport struct {
	base   http.RoundTripper
	header string
}

func (t bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", t.header)
	return t.base.RoundTrip(r)
}

func (t *Transport) peer(id int) (raftv1.RaftService, error) {
	if id < 0 || id >= len(t.peers) || t.peers[id] == nil {
		return nil, fmt.Errorf("twirptransport: no peer %d", id)
	}
	return t.peers[id], nil
}

// roundTrip converts a request to protobuf, sends it and converts the reply.
func roundTrip[Req, Resp, PReq, PResp any](ctx context.Context, t *Transport, rpc string, req Req,
	to func(Req) PReq, send func(context.Context, PReq) (PResp, error), from func(PResp) (Resp, error),
) (Resp, error) {
	start := time.Now()
	resp, err := send(ctx, to(req))
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
	return roundTrip(ctx, t, "AppendEntries", req, wire.AppendEntriesRequestToProto, p.AppendEntries, wire.AppendEntriesResponseFromProto)
}

// RequestVote implements raft.Transport.
func (t *Transport) RequestVote(ctx context.Context, id int, req *raft.RequestVoteRequest) (*raft.RequestVoteResponse, error) {
	p, err := t.peer(id)
	if err != nil {
		return nil, err
	}
	return roundTrip(ctx, t, "RequestVote", req, wire.RequestVoteRequestToProto, p.RequestVote, wire.RequestVoteResponseFromProto)
}

// InstallSnapshot implements raft.Transport.
func (t *Transport) InstallSnapshot(ctx context.Context, id int, req *raft.InstallSnapshotRequest) (*raft.InstallSnapshotResponse, error) {
	p, err := t.peer(id)
	if err != nil {
		return nil, err
	}
	return roundTrip(ctx, t, "InstallSnapshot", req, wire.InstallSnapshotRequestToProto, p.InstallSnapshot, wire.InstallSnapshotResponseFromProto)
}

// TimeoutNow implements raft.Transport.
func (t *Transport) TimeoutNow(ctx context.Context, id int, req *raft.TimeoutNowRequest) (*raft.TimeoutNowResponse, error) {
	p, err := t.peer(id)
	if err != nil {
		return nil, err
	}
	return roundTrip(ctx, t, "TimeoutNow", req, wire.TimeoutNowRequestToProto, p.TimeoutNow, wire.TimeoutNowResponseFromProto)
}

// ReadIndex implements raft.Transport.
func (t *Transport) ReadIndex(ctx context.Context, id int, req *raft.ReadIndexRequest) (*raft.ReadIndexResponse, error) {
	p, err := t.peer(id)
	if err != nil {
		return nil, err
	}
	return roundTrip(ctx, t, "ReadIndex", req, wire.ReadIndexRequestToProto, p.ReadIndex, wire.ReadIndexResponseFromProto)
}
