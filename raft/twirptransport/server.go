package twirptransport

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/raft"
	"github.com/ruaft/ruaft/raft/wire"
	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
)

// Handlers is the part of *raft.Node the server side needs.
type Handlers interface {
	HandleAppendEntries(ctx context.Context, req *raft.AppendEntriesRequest) (*raft.AppendEntriesResponse, error)
	HandleRequestVote(ctx context.Context, req *raft.RequestVoteRequest) (*raft.RequestVoteResponse, error)
	HandleInstallSnapshot(ctx context.Context, req *raft.InstallSnapshotRequest) (*raft.InstallSnapshotResponse, error)
	HandleTimeoutNow(ctx context.Context, req *raft.TimeoutNowRequest) (*raft.TimeoutNowResponse, error)
	HandleReadIndex(ctx context.Context, req *raft.ReadIndexRequest) (*raft.ReadIndexResponse, error)
}

var _ Handlers = (*raft.Node)(nil)

// PathPrefix is the URL path under which NewHandler's handler serves
// ("/twirp/raft.v1.RaftService/"); mount it there.
const PathPrefix = raftv1.RaftServicePathPrefix

// NewHandler serves raft.v1.RaftService by handing each RPC to node. It does
// not authenticate: wrap it in RequireToken, serve it over mutual TLS, or
// both, and bound bodies with LimitBody.
func NewHandler(node Handlers, opts ...twirp.ServerOption) http.Handler {
	args := make([]interface{}, len(opts))
	for i, o := range opts {
		args[i] = o
	}
	return raftv1.NewRaftServiceServer(server{node: node}, args...)
}

// server adapts Handlers to the generated Twirp service interface.
type server struct {
	node Handlers
}

var _ raftv1.RaftService = server{}

// serverErr maps a conversion or node error to a Twirp error: a malformed
// message is the caller's fault (400), anything else means the node cannot
// answer now (503), which raft's senders treat as "no response".
func serverErr(err error) error {
	if errors.Is(err, wire.ErrInvalid) {
		return twirp.NewError(twirp.InvalidArgument, err.Error())
	}
	return twirp.NewError(twirp.Unavailable, err.Error())
}

// serve converts a protobuf request, hands it to the node and converts the
// reply.
func serve[PReq, PResp, Req, Resp any](ctx context.Context, p PReq,
	from func(PReq) (Req, error), handle func(context.Context, Req) (Resp, error), to func(Resp) PResp,
) (PResp, error) {
	var zero PResp
	req, err := from(p)
	if err != nil {
		return zero, serverErr(err)
	}
	resp, err := handle(ctx, req)
	if err != nil {
		return zero, serverErr(err)
	}
	return to(resp), nil
}

func (s server) AppendEntries(ctx context.Context, p *raftv1.AppendEntriesRequest) (*raftv1.AppendEntriesResponse, error) {
	return serve(ctx, p, wire.AppendEntriesRequestFromProto, s.node.HandleAppendEntries, wire.AppendEntriesResponseToProto)
}

func (s server) RequestVote(ctx context.Context, p *raftv1.RequestVoteRequest) (*raftv1.RequestVoteResponse, error) {
	return serve(ctx, p, wire.RequestVoteRequestFromProto, s.node.HandleRequestVote, wire.RequestVoteResponseToProto)
}

func (s server) InstallSnapshot(ctx context.Context, p *raftv1.InstallSnapshotRequest) (*raftv1.InstallSnapshotResponse, error) {
	return serve(ctx, p, wire.InstallSnapshotRequestFromProto, s.node.HandleInstallSnapshot, wire.InstallSnapshotResponseToProto)
}

func (s server) TimeoutNow(ctx context.Context, p *raftv1.TimeoutNowRequest) (*raftv1.TimeoutNowResponse, error) {
	return serve(ctx, p, wire.TimeoutNowRequestFromProto, s.node.HandleTimeoutNow, wire.TimeoutNowResponseToProto)
}

func (s server) ReadIndex(ctx context.Context, p *raftv1.ReadIndexRequest) (*raftv1.ReadIndexResponse, error) {
	return serve(ctx, p, wire.ReadIndexRequestFromProto, s.node.HandleReadIndex, wire.ReadIndexResponseToProto)
}

// RequireToken answers 401 (a Twirp "unauthenticated" error) to every
// request without "Authorization: Bearer <token>", before reading its body,
// and closes the connection after it: a caller without the token keeps no
// connection open.
// The comparison takes constant time. An empty token is a configuration
// error, so RequireToken panics on one rather than let everything through.
func RequireToken(token string, next http.Handler) http.Handler {
	if token == "" {
		panic("twirptransport: RequireToken with an empty token")
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !constantTimeEqual([]byte(r.Header.Get("Authorization")), want) {
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusUnauthorized, twirp.NewError(twirp.Unauthenticated, "missing or wrong peer token"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// LimitBody refuses request bodies over max bytes: one whose Content-Length
// says so gets 413 before a byte of it is read, and one that runs over while
// being read (no or a false Content-Length) fails the read at max bytes and
// closes the connection. So no body is ever read past max.
func LimitBody(max int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > max {
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestEntityTooLarge, ErrBodyTooLarge(max))
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, max)
		}
		next.ServeHTTP(w, r)
	})
}

// ErrBodyTooLarge is the Twirp error for a request body over limit bytes;
// its meta "limit_bytes" holds the limit. Served with HTTP 413.
func ErrBodyTooLarge(limit int64) twirp.Error {
	l := strconv.FormatInt(limit, 10)
	return twirp.NewError(twirp.ResourceExhausted, "request body larger than "+l+" bytes").WithMeta("limit_bytes", l)
}

// writeError writes err as a Twirp error body with the given status.
func writeError(w http.ResponseWriter, status int, err twirp.Error) {
	body := map[string]any{"code": err.Code(), "msg": err.Msg()}
	if meta := err.MetaMap(); len(meta) > 0 {
		body["meta"] = meta
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
