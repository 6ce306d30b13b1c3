package durio

import (
	"context"
	"errors"
	"strconv"
	"syscall"
	"time"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/kvraft"
	"github.com/ruaft/ruaft/raft"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// localKV serves kv.v1 from this replica's kvraft server alone: it never
// forwards. It is what the peer listener exposes to other replicas, and the
// frontend's first choice.
type localKV struct {
	id         int
	kv         kvraft.Service
	status     func() *kvv1.StatusResponse
	clientURLs []string // by replica id; may be empty
}

var _ kvv1.KVService = localKV{}

// kvErr maps a kvraft error to the Twirp error durio answers with.
func (l localKV) kvErr(err error) error {
	var wl *kvraft.WrongLeaderError
	switch {
	case errors.As(err, &wl):
		terr := twirp.NewError(twirp.Unavailable, "not the leader")
		if wl.Leader != raft.NoLeader {
			terr = terr.WithMeta("leader_id", strconv.Itoa(wl.Leader))
			if wl.Leader < len(l.clientURLs) {
				terr = terr.WithMeta("leader_url", l.clientURLs[wl.Leader])
			}
		}
		if wl.Proposed {
			terr = terr.WithMeta("proposed", "true")
		}
		return terr
	case errors.Is(err, kvraft.ErrTimeout):
		return twirp.NewError(twirp.DeadlineExceeded, "timed out; the outcome is unknown").WithMeta("proposed", "true")
	case errors.Is(err, kvraft.ErrKilled):
		return twirp.NewError(twirp.Unavailable, "replica shutting down")
	case errors.Is(err, kvraft.ErrInvalid):
		return twirp.NewError(twirp.InvalidArgument, err.Error())
	case errors.Is(err, kvraft.ErrStale):
		return twirp.NewError(twirp.FailedPrecondition, err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return twirp.NewError(twirp.DeadlineExceeded, err.Error()).WithMeta("proposed", "true")
	default:
		return twirp.InternalErrorWith(err)
	}
}

func (l localKV) header(h kvraft.ResponseHeader) *kvv1.ResponseHeader {
	return &kvv1.ResponseHeader{ReplicaId: uint32(h.ReplicaID), LeaderId: uint32(h.ReplicaID), Term: h.Term}
}

func writeID(h *kvv1.WriteHeader) kvraft.WriteID {
	return kvraft.WriteID{ClientID: h.GetClientId(), Seq: h.GetSequence(), Ack: h.GetAck()}
}

func (l localKV) Get(ctx context.Context, req *kvv1.GetRequest) (*kvv1.GetResponse, error) {
	c := kvraft.Linearizable
	if req.GetConsistency() == kvv1.ReadConsistency_READ_CONSISTENCY_STALE {
		c = kvraft.Stale
	}
	resp, err := l.kv.Get(ctx, &kvraft.GetRequest{Key: req.GetKey(), Consistency: c})
	if err != nil {
		return nil, l.kvErr(err)
	}
	if !resp.Found {
		return nil, twirp.NotFoundError("no such key").WithMeta("key", req.GetKey())
	}
	return &kvv1.GetResponse{Header: l.header(resp.Header), Key: req.GetKey(), Value: resp.Value}, nil
}

func (l localKV) Put(ctx context.Context, req *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	resp, err := l.kv.Put(ctx, &kvraft.PutRequest{Key: req.GetKey(), Value: req.GetValue(), Write: writeID(req.GetWrite())})
	if err != nil {
		return nil, l.kvErr(err)
	}
	return &kvv1.PutResponse{Header: l.header(resp.Header)}, nil
}

func (l localKV) Append(ctx context.Context, req *kvv1.AppendRequest) (*kvv1.AppendResponse, error) {
	resp, err := l.kv.Append(ctx, &kvraft.AppendRequest{Key: req.GetKey(), Value: req.GetValue(), Write: writeID(req.GetWrite())})
	if err != nil {
		return nil, l.kvErr(err)
	}
	return &kvv1.AppendResponse{Header: l.header(resp.Header)}, nil
}

func (l localKV) Delete(ctx context.Context, req *kvv1.DeleteRequest) (*kvv1.DeleteResponse, error) {
	resp, err := l.kv.Delete(ctx, &kvraft.DeleteRequest{Key: req.GetKey(), Write: writeID(req.GetWrite())})
	if err != nil {
		return nil, l.kvErr(err)
	}
	return &kvv1.DeleteResponse{Header: l.header(resp.Header), Existed: resp.Existed}, nil
}

func (l localKV) Status(context.Context, *kvv1.StatusRequest) (*kvv1.StatusResponse, error) {
	return l.status(), nil
}

// frontend is the KVService of the client listener. It serves a request
// locally when this replica leads and otherwise forwards it to the leader's
// peer listener, following leader hints and retrying until the request
// timeout. Writes without a header get one from the frontend, so its own
// retries never apply a write twice. Requests run concurrently; nothing
// serialises them.
type frontend struct {
	self    int
	replica []kvv1.KVService // by id: localKV for self, peer-listener clients for the others
	timeout time.Duration
	// backoff is the pause before retrying when no leader is known.
	backoff time.Duration
	// writes numbers the writes that arrive without a header.
	clientID uint64
	writes   seqWindow
}

var _ kvv1.KVService = (*frontend)(nil)

// withHeader returns h, or a fresh header of the frontend's own (and the
// func that finishes it) when the client sent none.
func (f *frontend) withHeader(h *kvv1.WriteHeader) (*kvv1.WriteHeader, func()) {
	if h.GetClientId() != 0 {
		return h, func() {}
	}
	seq, ack := f.writes.begin()
	return &kvv1.WriteHeader{ClientId: f.clientID, Sequence: seq, Ack: ack}, func() { f.writes.end(seq) }
}

func (f *frontend) Get(ctx context.Context, req *kvv1.GetRequest) (*kvv1.GetResponse, error) {
	if req.GetConsistency() == kvv1.ReadConsistency_READ_CONSISTENCY_STALE {
		return f.replica[f.self].Get(ctx, req)
	}
	return route(ctx, f, false, func(ctx context.Context, kv kvv1.KVService) (*kvv1.GetResponse, error) { return kv.Get(ctx, req) })
}

func (f *frontend) Put(ctx context.Context, req *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	hdr, done := f.withHeader(req.GetWrite())
	defer done()
	fwd := &kvv1.PutRequest{Key: req.GetKey(), Value: req.GetValue(), Write: hdr}
	return route(ctx, f, true, func(ctx context.Context, kv kvv1.KVService) (*kvv1.PutResponse, error) { return kv.Put(ctx, fwd) })
}

func (f *frontend) Append(ctx context.Context, req *kvv1.AppendRequest) (*kvv1.AppendResponse, error) {
	hdr, done := f.withHeader(req.GetWrite())
	defer done()
	fwd := &kvv1.AppendRequest{Key: req.GetKey(), Value: req.GetValue(), Write: hdr}
	return route(ctx, f, true, func(ctx context.Context, kv kvv1.KVService) (*kvv1.AppendResponse, error) { return kv.Append(ctx, fwd) })
}

func (f *frontend) Delete(ctx context.Context, req *kvv1.DeleteRequest) (*kvv1.DeleteResponse, error) {
	hdr, done := f.withHeader(req.GetWrite())
	defer done()
	fwd := &kvv1.DeleteRequest{Key: req.GetKey(), Write: hdr}
	return route(ctx, f, true, func(ctx context.Context, kv kvv1.KVService) (*kvv1.DeleteResponse, error) { return kv.Delete(ctx, fwd) })
}

func (f *frontend) Status(ctx context.Context, req *kvv1.StatusRequest) (*kvv1.StatusResponse, error) {
	return f.replica[f.self].Status(ctx, req)
}

// route sends op to this replica or to the leader it names, retrying until it
// succeeds, fails for good, or the request timeout passes. A write whose
// outcome became unknown along the way (proposed somewhere, or lost in
// transit) ends in deadline_exceeded (HTTP 504); one that was never handed to
// a leader ends in unavailable (HTTP 503).
func route[Resp any](ctx context.Context, f *frontend, isWrite bool, op func(context.Context, kvv1.KVService) (Resp, error)) (Resp, error) {
	var zero Resp
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	target, uncertain := f.self, false
	var last error
	for {
		resp, err := op(ctx, f.replica[target])
		if err == nil {
			return resp, nil
		}
		last = err
		var terr twirp.Error
		isTwirp := !noAnswer(err) && errors.As(err, &terr)
		switch {
		case isTwirp && terr.Code() == twirp.Unavailable:
			uncertain = uncertain || terr.Meta("proposed") == "true"
		case isTwirp && terr.Code() == twirp.DeadlineExceeded:
			uncertain = true
		case isTwirp:
			return zero, err // a definite answer: not found, invalid, ...
		default:
			// The request may have reached the peer unless it was refused
			// before anything was sent.
			uncertain = uncertain || !errors.Is(err, syscall.ECONNREFUSED)
		}
		if ctx.Err() != nil {
			break
		}
		next, hinted := f.self, false
		if isTwirp {
			if id, perr := strconv.Atoi(terr.Meta("leader_id")); perr == nil && id >= 0 && id < len(f.replica) && id != target {
				next, hinted = id, true
			}
		}
		if !hinted {
			// No new leader to try: give the cluster a moment (an election,
			// a restarting peer) before asking again.
			select {
			case <-ctx.Done():
			case <-time.After(f.backoff):
			}
			if ctx.Err() != nil {
				break
			}
		}
		target = next
	}
	if isWrite && uncertain {
		return zero, twirp.NewError(twirp.DeadlineExceeded, "timed out; the write may or may not have been applied: retry it with the same client_id and sequence").
			WithMeta("cause", last.Error())
	}
	return zero, twirp.NewError(twirp.Unavailable, "no leader reachable in time").WithMeta("cause", last.Error())
}
