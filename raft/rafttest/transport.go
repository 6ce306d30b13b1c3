package rafttest

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/ruaft/ruaft/internal/simnet"
	"github.com/ruaft/ruaft/raft"
	"github.com/ruaft/ruaft/raft/wire"
	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
)

// Method names of the Raft RPCs on the simulated network.
const (
	MethodAppendEntries   = "raft.AppendEntries"
	MethodRequestVote     = "raft.RequestVote"
	MethodInstallSnapshot = "raft.InstallSnapshot"
	MethodTimeoutNow      = "raft.TimeoutNow"
	MethodReadIndex       = "raft.ReadIndex"
)

// ErrUnknownMethod is returned by Handler for a method that is not a Raft
// RPC.
var ErrUnknownMethod = errors.New("rafttest: unknown method")

// Transport is a raft.Transport over simnet endpoints: ends[i] reaches
// replica i (ends[self] is unused). Messages are converted with package wire
// and marshalled, so the network counts real bytes.
type Transport struct {
	ends []*simnet.End
}

var _ raft.Transport = (*Transport)(nil)

// NewTransport returns a transport over ends, indexed by replica id.
func NewTransport(ends []*simnet.End) *Transport {
	return &Transport{ends: ends}
}

func (t *Transport) end(peer int) (*simnet.End, error) {
	if peer < 0 || peer >= len(t.ends) || t.ends[peer] == nil {
		return nil, fmt.Errorf("rafttest: no endpoint for replica %d", peer)
	}
	return t.ends[peer], nil
}

// call marshals req, sends it to peer and converts the reply.
func call[P proto.Message, R any](ctx context.Context, t *Transport, peer int, method string, req proto.Message, resp P, from func(P) (R, error)) (R, error) {
	var zero R
	end, err := t.end(peer)
	if err != nil {
		return zero, err
	}
	b, err := proto.Marshal(req)
	if err != nil {
		return zero, fmt.Errorf("rafttest: marshal %s: %w", method, err)
	}
	reply, err := end.Call(ctx, method, b)
	if err != nil {
		return zero, err
	}
	if err := proto.Unmarshal(reply, resp); err != nil {
		return zero, fmt.Errorf("rafttest: unmarshal %s reply: %w", method, err)
	}
	return from(resp)
}

// AppendEntries implements raft.Transport.
func (t *Transport) AppendEntries(ctx context.Context, peer int, req *raft.AppendEntriesRequest) (*raft.AppendEntriesResponse, error) {
	return call(ctx, t, peer, MethodAppendEntries, wire.AppendEntriesRequestToProto(req), new(raftv1.AppendEntriesResponse), wire.AppendEntriesResponseFromProto)
}

// RequestVote implements raft.Transport.
func (t *Transport) RequestVote(ctx context.Context, peer int, req *raft.RequestVoteRequest) (*raft.RequestVoteResponse, error) {
	return call(ctx, t, peer, MethodRequestVote, wire.RequestVoteRequestToProto(req), new(raftv1.RequestVoteResponse), wire.RequestVoteResponseFromProto)
}

// InstallSnapshot implements raft.Transport.
func (t *Transport) InstallSnapshot(ctx context.Context, peer int, req *raft.InstallSnapshotRequest) (*raft.InstallSnapshotResponse, error) {
	return call(ctx, t, peer, MethodInstallSnapshot, wire.InstallSnapshotRequestToProto(req), new(raftv1.InstallSnapshotResponse), wire.InstallSnapshotResponseFromProto)
}

// TimeoutNow implements raft.Transport.
func (t *Transport) TimeoutNow(ctx context.Context, peer int, req *raft.TimeoutNowRequest) (*raft.TimeoutNowResponse, error) {
	return call(ctx, t, peer, MethodTimeoutNow, wire.TimeoutNowRequestToProto(req), new(raftv1.TimeoutNowResponse), wire.TimeoutNowResponseFromProto)
}

// ReadIndex implements raft.Transport.
func (t *Transport) ReadIndex(ctx context.Context, peer int, req *raft.ReadIndexRequest) (*raft.ReadIndexResponse, error) {
	return call(ctx, t, peer, MethodReadIndex, wire.ReadIndexRequestToProto(req), new(raftv1.ReadIndexResponse), wire.ReadIndexResponseFromProto)
}

// Handlers is the server side of the Raft RPCs; *raft.Node implements it.
type Handlers interface {
	HandleAppendEntries(ctx context.Context, req *raft.AppendEntriesRequest) (*raft.AppendEntriesResponse, error)
	HandleRequestVote(ctx context.Context, req *raft.RequestVoteRequest) (*raft.RequestVoteResponse, error)
	HandleInstallSnapshot(ctx context.Context, req *raft.InstallSnapshotRequest) (*raft.InstallSnapshotResponse, error)
	HandleTimeoutNow(ctx context.Context, req *raft.TimeoutNowRequest) (*raft.TimeoutNowResponse, error)
	HandleReadIndex(ctx context.Context, req *raft.ReadIndexRequest) (*raft.ReadIndexResponse, error)
}

// serve unmarshals a request, converts it, calls handle and marshals the
// converted response.
func serve[P proto.Message, Q any, S any](b []byte, req P, from func(P) (Q, error), handle func(Q) (S, error), to func(S) proto.Message) ([]byte, error) {
	if err := proto.Unmarshal(b, req); err != nil {
		return nil, fmt.Errorf("rafttest: unmarshal request: %w", err)
	}
	q, err := from(req)
	if err != nil {
		return nil, err
	}
	s, err := handle(q)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(to(s))
}

// Handler returns a simnet handler serving the Raft RPCs with h. Other
// methods get ErrUnknownMethod, so a caller can chain its own services.
func Handler(h Handlers) simnet.Handler {
	return func(ctx context.Context, method string, b []byte) ([]byte, error) {
		switch method {
		case MethodAppendEntries:
			return serve(b, new(raftv1.AppendEntriesRequest), wire.AppendEntriesRequestFromProto,
				func(r *raft.AppendEntriesRequest) (*raft.AppendEntriesResponse, error) {
					return h.HandleAppendEntries(ctx, r)
				},
				func(r *raft.AppendEntriesResponse) proto.Message { return wire.AppendEntriesResponseToProto(r) })
		case MethodRequestVote:
			return serve(b, new(raftv1.RequestVoteRequest), wire.RequestVoteRequestFromProto,
				func(r *raft.RequestVoteRequest) (*raft.RequestVoteResponse, error) {
					return h.HandleRequestVote(ctx, r)
				},
				func(r *raft.RequestVoteResponse) proto.Message { return wire.RequestVoteResponseToProto(r) })
		case MethodInstallSnapshot:
			return serve(b, new(raftv1.InstallSnapshotRequest), wire.InstallSnapshotRequestFromProto,
				func(r *raft.InstallSnapshotRequest) (*raft.InstallSnapshotResponse, error) {
					return h.HandleInstallSnapshot(ctx, r)
				},
				func(r *raft.InstallSnapshotResponse) proto.Message { return wire.InstallSnapshotResponseToProto(r) })
		case MethodReadIndex:
			return serve(b, new(raftv1.ReadIndexRequest), wire.ReadIndexRequestFromProto,
				func(r *raft.ReadIndexRequest) (*raft.ReadIndexResponse, error) { return h.HandleReadIndex(ctx, r) },
				func(r *raft.ReadIndexResponse) proto.Message { return wire.ReadIndexResponseToProto(r) })
		case MethodTimeoutNow:
			return serve(b, new(raftv1.TimeoutNowRequest), wire.TimeoutNowRequestFromProto,
				func(r *raft.TimeoutNowRequest) (*raft.TimeoutNowResponse, error) { return h.HandleTimeoutNow(ctx, r) },
				func(r *raft.TimeoutNowResponse) proto.Message { return wire.TimeoutNowResponseToProto(r) })
		default:
			return nil, fmt.Errorf("%w: %q", ErrUnknownMethod, method)
		}
	}
}

// DecodeAppendEntries decodes the request bytes of an AppendEntries call, for
// interceptor filters.
func DecodeAppendEntries(b []byte) (*raft.AppendEntriesRequest, error) {
	p := new(raftv1.AppendEntriesRequest)
	if err := proto.Unmarshal(b, p); err != nil {
		return nil, err
	}
	return wire.AppendEntriesRequestFromProto(p)
}
