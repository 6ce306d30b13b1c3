package durio

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/raft"
	"github.com/ruaft/ruaft/raft/wire"
	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
)

// newPeerHTTPClient is the HTTP client replicas use to reach each other: a
// pooled keep-alive transport with enough idle connections per peer that
// several AppendEntries can be in flight to one peer without new dials.
// Restarted or partitioned peers are redialed on the next call.
func newPeerHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   false,
	}}
}

// peerTransport implements raft.Transport with Twirp protobuf clients, one per
// peer. Per-RPC timeouts come from the caller's context.
type peerTransport struct {
	peers   []raftv1.RaftService // indexed by replica id; nil for this replica
	metrics *metrics             // nil: not recorded
}

var _ raft.Transport = (*peerTransport)(nil)

func newPeerTransport(self int, peerURLs []string, client *http.Client, opts ...twirp.ClientOption) *peerTransport {
	t := &peerTransport{peers: make([]raftv1.RaftService, len(peerURLs))}
	for i, u := range peerURLs {
		if i != self {
			t.peers[i] = raftv1.NewRaftServiceProtobufClient(u, client, opts...)
		}
	}
	return t
}

func (t *peerTransport) peer(id int) (raftv1.RaftService, error) {
	if id < 0 || id >= len(t.peers) || t.peers[id] == nil {
		return nil, fmt.Errorf("durio: no peer %d", id)
	}
	return t.peers[id], nil
}

// roundTrip converts a request to protobuf, sends it and converts the reply.
func roundTrip[Req, Resp, PReq, PResp any](ctx context.Context, t *peerTransport, rpc string, req Req,
	to func(Req) PReq, send func(context.Context, PReq) (PResp, error), from func(PResp) (Resp, error),
) (Resp, error) {
	start := time.Now()
	resp, err := send(ctx, to(req))
	if t.metrics != nil {
		t.metrics.observeRPC(rpc, start, err)
	}
	if err != nil {
		var zero Resp
		return zero, err
	}
	return from(resp)
}

func (t *peerTransport) AppendEntries(ctx context.Context, id int, req *raft.AppendEntriesRequest) (*raft.AppendEntriesResponse, error) {
	p, err := t.peer(id)
	if err != nil {
		return nil, err
	}
	return roundTrip(ctx, t, "AppendEntries", req, wire.AppendEntriesRequestToProto, p.AppendEntries, wire.AppendEntriesResponseFromProto)
}

func (t *peerTransport) RequestVote(ctx context.Context, id int, req *raft.RequestVoteRequest) (*raft.RequestVoteResponse, error) {
	p, err := t.peer(id)
	if err != nil {
		return nil, err
	}
	return roundTrip(ctx, t, "RequestVote", req, wire.RequestVoteRequestToProto, p.RequestVote, wire.RequestVoteResponseFromProto)
}

func (t *peerTransport) InstallSnapshot(ctx context.Context, id int, req *raft.InstallSnapshotRequest) (*raft.InstallSnapshotResponse, error) {
	p, err := t.peer(id)
	if err != nil {
		return nil, err
	}
	return roundTrip(ctx, t, "InstallSnapshot", req, wire.InstallSnapshotRequestToProto, p.InstallSnapshot, wire.InstallSnapshotResponseFromProto)
}

func (t *peerTransport) TimeoutNow(ctx context.Context, id int, req *raft.TimeoutNowRequest) (*raft.TimeoutNowResponse, error) {
	p, err := t.peer(id)
	if err != nil {
		return nil, err
	}
	return roundTrip(ctx, t, "TimeoutNow", req, wire.TimeoutNowRequestToProto, p.TimeoutNow, wire.TimeoutNowResponseFromProto)
}

func (t *peerTransport) ReadIndex(ctx context.Context, id int, req *raft.ReadIndexRequest) (*raft.ReadIndexResponse, error) {
	p, err := t.peer(id)
	if err != nil {
		return nil, err
	}
	return roundTrip(ctx, t, "ReadIndex", req, wire.ReadIndexRequestToProto, p.ReadIndex, wire.ReadIndexResponseFromProto)
}

// raftHandlers is the part of *raft.Node the peer server needs.
type raftHandlers interface {
	HandleAppendEntries(ctx context.Context, req *raft.AppendEntriesRequest) (*raft.AppendEntriesResponse, error)
	HandleRequestVote(ctx context.Context, req *raft.RequestVoteRequest) (*raft.RequestVoteResponse, error)
	HandleInstallSnapshot(ctx context.Context, req *raft.InstallSnapshotRequest) (*raft.InstallSnapshotResponse, error)
	HandleTimeoutNow(ctx context.Context, req *raft.TimeoutNowRequest) (*raft.TimeoutNowResponse, error)
	HandleReadIndex(ctx context.Context, req *raft.ReadIndexRequest) (*raft.ReadIndexResponse, error)
}

// peerServer serves RaftService on the peer listener by handing each RPC to
// the local raft node.
type peerServer struct {
	node raftHandlers
}

var _ raftv1.RaftService = peerServer{}

// peerErr maps a conversion or node error to a Twirp error.
func peerErr(err error) error {
	if errors.Is(err, wire.ErrInvalid) {
		return twirp.NewError(twirp.InvalidArgument, err.Error())
	}
	return twirp.NewError(twirp.Unavailable, err.Error())
}

// serve converts a protobuf request, hands it to the node and converts the
// reply, mapping errors to Twirp codes.
func serve[PReq, PResp, Req, Resp any](ctx context.Context, p PReq,
	from func(PReq) (Req, error), handle func(context.Context, Req) (Resp, error), to func(Resp) PResp,
) (PResp, error) {
	var zero PResp
	req, err := from(p)
	if err != nil {
		return zero, peerErr(err)
	}
	resp, err := handle(ctx, req)
	if err != nil {
		return zero, peerErr(err)
	}
	return to(resp), nil
}

func (s peerServer) AppendEntries(ctx context.Context, p *raftv1.AppendEntriesRequest) (*raftv1.AppendEntriesResponse, error) {
	return serve(ctx, p, wire.AppendEntriesRequestFromProto, s.node.HandleAppendEntries, wire.AppendEntriesResponseToProto)
}

func (s peerServer) RequestVote(ctx context.Context, p *raftv1.RequestVoteRequest) (*raftv1.RequestVoteResponse, error) {
	return serve(ctx, p, wire.RequestVoteRequestFromProto, s.node.HandleRequestVote, wire.RequestVoteResponseToProto)
}

func (s peerServer) InstallSnapshot(ctx context.Context, p *raftv1.InstallSnapshotRequest) (*raftv1.InstallSnapshotResponse, error) {
	return serve(ctx, p, wire.InstallSnapshotRequestFromProto, s.node.HandleInstallSnapshot, wire.InstallSnapshotResponseToProto)
}

func (s peerServer) TimeoutNow(ctx context.Context, p *raftv1.TimeoutNowRequest) (*raftv1.TimeoutNowResponse, error) {
	return serve(ctx, p, wire.TimeoutNowRequestFromProto, s.node.HandleTimeoutNow, wire.TimeoutNowResponseToProto)
}

func (s peerServer) ReadIndex(ctx context.Context, p *raftv1.ReadIndexRequest) (*raftv1.ReadIndexResponse, error) {
	return serve(ctx, p, wire.ReadIndexRequestFromProto, s.node.HandleReadIndex, wire.ReadIndexResponseToProto)
}
