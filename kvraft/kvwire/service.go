package kvwire

import (
	"context"
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// Client is a kvclient.Service over a kv.v1 KVService client: the Clerk's
// view of a remote replica. Errors come back through ErrorFromTwirp.
type Client struct {
	kv kvv1.KVService
}

var _ kvclient.Service = Client{}

// NewClient returns a Service that calls kv.
func NewClient(kv kvv1.KVService) Client { return Client{kv: kv} }

// OpenSession implements kvclient.Service.
func (c Client) OpenSession(ctx context.Context, _ *kvclient.OpenSessionRequest) (*kvclient.OpenSessionResponse, error) {
	resp, err := c.kv.OpenSession(ctx, &kvv1.OpenSessionRequest{})
	if err != nil {
		return nil, ErrorFromTwirp(err)
	}
	return &kvclient.OpenSessionResponse{Header: HeaderFromProto(resp.GetHeader()), ClientID: resp.GetClientId(),
		IdleTimeout: time.Duration(resp.GetIdleTimeoutSeconds()) * time.Second}, nil
}

// Get implements kvclient.Service; a not_found answer is Found false.
func (c Client) Get(ctx context.Context, req *kvclient.GetRequest) (*kvclient.GetResponse, error) {
	resp, err := c.kv.Get(ctx, &kvv1.GetRequest{Key: req.Key, Consistency: ConsistencyToProto(req.Consistency)})
	if err != nil {
		var terr twirp.Error
		if !NoAnswer(err) && errors.As(err, &terr) && terr.Code() == twirp.NotFound {
			rev, _ := strconv.ParseUint(terr.Meta(MetaRevision), 10, 64)
			return &kvclient.GetResponse{Header: kvclient.ResponseHeader{Revision: rev}}, nil
		}
		return nil, ErrorFromTwirp(err)
	}
	return &kvclient.GetResponse{Header: HeaderFromProto(resp.GetHeader()), Value: resp.GetValue(), Found: true,
		CreateRevision: resp.GetCreateRevision(), ModRevision: resp.GetModRevision(), Version: resp.GetVersion(),
		Lease: resp.GetLease()}, nil
}

// Put implements kvclient.Service.
func (c Client) Put(ctx context.Context, req *kvclient.PutRequest) (*kvclient.PutResponse, error) {
	resp, err := c.kv.Put(ctx, PutRequestToProto(req))
	if err != nil {
		return nil, ErrorFromTwirp(err)
	}
	return &kvclient.PutResponse{Header: HeaderFromProto(resp.GetHeader())}, nil
}

// Append implements kvclient.Service.
func (c Client) Append(ctx context.Context, req *kvclient.AppendRequest) (*kvclient.AppendResponse, error) {
	resp, err := c.kv.Append(ctx, AppendRequestToProto(req))
	if err != nil {
		return nil, ErrorFromTwirp(err)
	}
	return &kvclient.AppendResponse{Header: HeaderFromProto(resp.GetHeader())}, nil
}

// Delete implements kvclient.Service.
func (c Client) Delete(ctx context.Context, req *kvclient.DeleteRequest) (*kvclient.DeleteResponse, error) {
	resp, err := c.kv.Delete(ctx, DeleteRequestToProto(req))
	if err != nil {
		return nil, ErrorFromTwirp(err)
	}
	return &kvclient.DeleteResponse{Header: HeaderFromProto(resp.GetHeader()), Existed: resp.GetExisted()}, nil
}

// Txn implements kvclient.Service.
func (c Client) Txn(ctx context.Context, req *kvclient.TxnRequest) (*kvclient.TxnResponse, error) {
	resp, err := c.kv.Txn(ctx, TxnRequestToProto(req))
	if err != nil {
		return nil, ErrorFromTwirp(err)
	}
	return TxnResponseFromProto(resp, resp.GetHeader()), nil
}

// ServerOptions configure a Server.
type ServerOptions struct {
	// Status answers the Status RPC; nil answers unimplemented.
	Status func(ctx context.Context) (*kvv1.StatusResponse, error)
	// LeaderURL gives a replica's client URL for leader hints; may be nil.
	LeaderURL func(id int) string
}

// Server exposes a kvclient.Service as the kv.v1 KVService, mapping errors
// with ErrorToTwirp. It does not validate sizes or encodings: durio's
// listeners do that before it.
type Server struct {
	svc  kvclient.Service
	opts ServerOptions
}

var _ kvv1.KVService = Server{}

// NewServer returns a KVService that serves with svc.
func NewServer(svc kvclient.Service, opts ServerOptions) Server { return Server{svc: svc, opts: opts} }

func (s Server) fail(err error) error { return ErrorToTwirp(err, s.opts.LeaderURL) }

// Get implements kvv1.KVService; a missing key is not_found.
func (s Server) Get(ctx context.Context, req *kvv1.GetRequest) (*kvv1.GetResponse, error) {
	resp, err := s.svc.Get(ctx, &kvclient.GetRequest{Key: req.GetKey(), Consistency: ConsistencyFromProto(req.GetConsistency())})
	if err != nil {
		return nil, s.fail(err)
	}
	if !resp.Found {
		return nil, twirp.NotFoundError("no such key").WithMeta("key", req.GetKey()).
			WithMeta(MetaRevision, strconv.FormatUint(resp.Header.Revision, 10))
	}
	// The answer and its header in one allocation.
	m := new(struct {
		resp kvv1.GetResponse
		h    kvv1.ResponseHeader
	})
	m.resp.Header, m.resp.Key, m.resp.Value = headerInto(&m.h, resp.Header), req.GetKey(), resp.Value
	m.resp.CreateRevision, m.resp.ModRevision, m.resp.Version, m.resp.Lease = resp.CreateRevision, resp.ModRevision,
		resp.Version, resp.Lease
	return &m.resp, nil
}

// Put implements kvv1.KVService.
func (s Server) Put(ctx context.Context, req *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	resp, err := s.svc.Put(ctx, PutRequestFromProto(req))
	if err != nil {
		return nil, s.fail(err)
	}
	m := new(struct { // as in Get
		resp kvv1.PutResponse
		h    kvv1.ResponseHeader
	})
	m.resp.Header = headerInto(&m.h, resp.Header)
	return &m.resp, nil
}

// Append implements kvv1.KVService.
func (s Server) Append(ctx context.Context, req *kvv1.AppendRequest) (*kvv1.AppendResponse, error) {
	resp, err := s.svc.Append(ctx, AppendRequestFromProto(req))
	if err != nil {
		return nil, s.fail(err)
	}
	return &kvv1.AppendResponse{Header: HeaderToProto(resp.Header)}, nil
}

// Delete implements kvv1.KVService.
func (s Server) Delete(ctx context.Context, req *kvv1.DeleteRequest) (*kvv1.DeleteResponse, error) {
	resp, err := s.svc.Delete(ctx, DeleteRequestFromProto(req))
	if err != nil {
		return nil, s.fail(err)
	}
	return &kvv1.DeleteResponse{Header: HeaderToProto(resp.Header), Existed: resp.Existed}, nil
}

// Txn implements kvv1.KVService.
func (s Server) Txn(ctx context.Context, req *kvv1.TxnRequest) (*kvv1.TxnResponse, error) {
	resp, err := s.svc.Txn(ctx, TxnRequestFromProto(req))
	if err != nil {
		return nil, s.fail(err)
	}
	return TxnResponseToProto(resp), nil
}

// Status implements kvv1.KVService.
func (s Server) Status(ctx context.Context, _ *kvv1.StatusRequest) (*kvv1.StatusResponse, error) {
	if s.opts.Status == nil {
		return nil, twirp.NewError(twirp.Unimplemented, "no status here")
	}
	return s.opts.Status(ctx)
}

// OpenSession implements kvv1.KVService.
func (s Server) OpenSession(ctx context.Context, _ *kvv1.OpenSessionRequest) (*kvv1.OpenSessionResponse, error) {
	resp, err := s.svc.OpenSession(ctx, &kvclient.OpenSessionRequest{})
	if err != nil {
		return nil, s.fail(err)
	}
	return &kvv1.OpenSessionResponse{Header: HeaderToProto(resp.Header), ClientId: resp.ClientID,
		IdleTimeoutSeconds: uint64(resp.IdleTimeout / time.Second)}, nil
}

// List implements kvv1.KVService.
func (s Server) List(ctx context.Context, req *kvv1.ListRequest) (*kvv1.ListResponse, error) {
	resp, err := s.svc.List(ctx, ListRequestFromProto(req))
	if err != nil {
		return nil, s.fail(err)
	}
	return ListResponseToProto(resp), nil
}

// Watch implements kvv1.KVService.
func (s Server) Watch(ctx context.Context, req *kvv1.WatchRequest) (*kvv1.WatchResponse, error) {
	resp, err := s.svc.Watch(ctx, WatchRequestFromProto(req))
	if err != nil {
		return nil, s.fail(err)
	}
	return WatchResponseToProto(resp), nil
}

// LeaseGrant implements kvv1.KVService.
func (s Server) LeaseGrant(ctx context.Context, req *kvv1.LeaseGrantRequest) (*kvv1.LeaseGrantResponse, error) {
	resp, err := s.svc.LeaseGrant(ctx, &kvclient.LeaseGrantRequest{TTL: time.Duration(min(req.GetTtlMs(), maxMs)) * time.Millisecond,
		Write: WriteIDFromProto(req.GetWrite())})
	if err != nil {
		return nil, s.fail(err)
	}
	return &kvv1.LeaseGrantResponse{Header: HeaderToProto(resp.Header), Id: resp.ID, TtlMs: uint64(resp.TTL.Milliseconds())}, nil
}

// LeaseKeepAlive implements kvv1.KVService.
func (s Server) LeaseKeepAlive(ctx context.Context, req *kvv1.LeaseKeepAliveRequest) (*kvv1.LeaseKeepAliveResponse, error) {
	resp, err := s.svc.LeaseKeepAlive(ctx, &kvclient.LeaseKeepAliveRequest{ID: req.GetId()})
	if err != nil {
		return nil, s.fail(err)
	}
	return &kvv1.LeaseKeepAliveResponse{Header: HeaderToProto(resp.Header), Id: resp.ID, TtlMs: uint64(resp.TTL.Milliseconds())}, nil
}

// LeaseRevoke implements kvv1.KVService.
func (s Server) LeaseRevoke(ctx context.Context, req *kvv1.LeaseRevokeRequest) (*kvv1.LeaseRevokeResponse, error) {
	resp, err := s.svc.LeaseRevoke(ctx, &kvclient.LeaseRevokeRequest{ID: req.GetId(), Write: WriteIDFromProto(req.GetWrite())})
	if err != nil {
		return nil, s.fail(err)
	}
	return &kvv1.LeaseRevokeResponse{Header: HeaderToProto(resp.Header), Existed: resp.Existed}, nil
}

// LeaseTimeToLive implements kvv1.KVService.
func (s Server) LeaseTimeToLive(ctx context.Context, req *kvv1.LeaseTimeToLiveRequest) (*kvv1.LeaseTimeToLiveResponse, error) {
	resp, err := s.svc.LeaseTimeToLive(ctx, &kvclient.LeaseTimeToLiveRequest{ID: req.GetId(), Keys: req.GetKeys()})
	if err != nil {
		return nil, s.fail(err)
	}
	return &kvv1.LeaseTimeToLiveResponse{Header: HeaderToProto(resp.Header), Id: resp.ID, TtlMs: uint64(resp.TTL.Milliseconds()),
		RemainingMs: uint64(resp.Remaining.Milliseconds()), Keys: resp.Keys, MoreKeys: resp.MoreKeys}, nil
}

// List implements kvclient.Service.
func (c Client) List(ctx context.Context, req *kvclient.ListRequest) (*kvclient.ListResponse, error) {
	resp, err := c.kv.List(ctx, ListRequestToProto(req))
	if err != nil {
		return nil, ErrorFromTwirp(err)
	}
	return ListResponseFromProto(resp), nil
}

// Watch implements kvclient.Service.
func (c Client) Watch(ctx context.Context, req *kvclient.WatchRequest) (*kvclient.WatchResponse, error) {
	resp, err := c.kv.Watch(ctx, WatchRequestToProto(req))
	if err != nil {
		return nil, ErrorFromTwirp(err)
	}
	return WatchResponseFromProto(resp), nil
}

// LeaseGrant implements kvclient.Service.
func (c Client) LeaseGrant(ctx context.Context, req *kvclient.LeaseGrantRequest) (*kvclient.LeaseGrantResponse, error) {
	resp, err := c.kv.LeaseGrant(ctx, &kvv1.LeaseGrantRequest{TtlMs: uint64(max(req.TTL, 0).Milliseconds()), Write: WriteIDToProto(req.Write)})
	if err != nil {
		return nil, ErrorFromTwirp(err)
	}
	return &kvclient.LeaseGrantResponse{Header: HeaderFromProto(resp.GetHeader()), ID: resp.GetId(), TTL: msDuration(resp.GetTtlMs())}, nil
}

// LeaseKeepAlive implements kvclient.Service.
func (c Client) LeaseKeepAlive(ctx context.Context, req *kvclient.LeaseKeepAliveRequest) (*kvclient.LeaseKeepAliveResponse, error) {
	resp, err := c.kv.LeaseKeepAlive(ctx, &kvv1.LeaseKeepAliveRequest{Id: req.ID})
	if err != nil {
		return nil, ErrorFromTwirp(err)
	}
	return &kvclient.LeaseKeepAliveResponse{Header: HeaderFromProto(resp.GetHeader()), ID: resp.GetId(), TTL: msDuration(resp.GetTtlMs())}, nil
}

// LeaseRevoke implements kvclient.Service.
func (c Client) LeaseRevoke(ctx context.Context, req *kvclient.LeaseRevokeRequest) (*kvclient.LeaseRevokeResponse, error) {
	resp, err := c.kv.LeaseRevoke(ctx, &kvv1.LeaseRevokeRequest{Id: req.ID, Write: WriteIDToProto(req.Write)})
	if err != nil {
		return nil, ErrorFromTwirp(err)
	}
	return &kvclient.LeaseRevokeResponse{Header: HeaderFromProto(resp.GetHeader()), Existed: resp.GetExisted()}, nil
}

// LeaseTimeToLive implements kvclient.Service.
func (c Client) LeaseTimeToLive(ctx context.Context, req *kvclient.LeaseTimeToLiveRequest) (*kvclient.LeaseTimeToLiveResponse, error) {
	resp, err := c.kv.LeaseTimeToLive(ctx, &kvv1.LeaseTimeToLiveRequest{Id: req.ID, Keys: req.Keys})
	if err != nil {
		return nil, ErrorFromTwirp(err)
	}
	return &kvclient.LeaseTimeToLiveResponse{Header: HeaderFromProto(resp.GetHeader()), ID: resp.GetId(), TTL: msDuration(resp.GetTtlMs()),
		Remaining: msDuration(resp.GetRemainingMs()), Keys: resp.GetKeys(), MoreKeys: resp.GetMoreKeys()}, nil
}

// maxMs is the most milliseconds a time.Duration holds.
const maxMs = uint64(math.MaxInt64 / int64(time.Millisecond))

// msDuration converts milliseconds, saturating.
func msDuration(ms uint64) time.Duration { return time.Duration(min(ms, maxMs)) * time.Millisecond }

// ListRequestFromProto converts a List request.
func ListRequestFromProto(p *kvv1.ListRequest) *kvclient.ListRequest {
	return &kvclient.ListRequest{Prefix: p.GetPrefix(), After: p.GetAfter(), Limit: limitFromProto(p.GetLimit()), KeysOnly: p.GetKeysOnly(),
		Revision: p.GetRevision(), Consistency: ConsistencyFromProto(p.GetConsistency())}
}

// ListRequestToProto converts a List request; a negative limit is 0.
func ListRequestToProto(r *kvclient.ListRequest) *kvv1.ListRequest {
	return &kvv1.ListRequest{Prefix: r.Prefix, After: r.After, Limit: limitToProto(r.Limit), KeysOnly: r.KeysOnly,
		Revision: r.Revision, Consistency: ConsistencyToProto(r.Consistency)}
}

// ListResponseToProto converts a List page.
func ListResponseToProto(r *kvclient.ListResponse) *kvv1.ListResponse {
	out := &kvv1.ListResponse{Header: HeaderToProto(r.Header), More: r.More, Revision: r.Revision, Kvs: make([]*kvv1.KeyValue, len(r.KVs))}
	for i := range r.KVs {
		out.Kvs[i] = KeyValueToProto(&r.KVs[i])
	}
	return out
}

// ListResponseFromProto converts a List page.
func ListResponseFromProto(p *kvv1.ListResponse) *kvclient.ListResponse {
	out := &kvclient.ListResponse{Header: HeaderFromProto(p.GetHeader()), More: p.GetMore(), Revision: p.GetRevision(),
		KVs: make([]kvclient.KeyValue, 0, len(p.GetKvs()))}
	for _, kv := range p.GetKvs() {
		if kv != nil {
			out.KVs = append(out.KVs, *KeyValueFromProto(kv))
		}
	}
	return out
}

// WatchRequestFromProto converts a Watch request.
func WatchRequestFromProto(p *kvv1.WatchRequest) *kvclient.WatchRequest {
	return &kvclient.WatchRequest{Key: p.GetKey(), Prefix: p.GetPrefix(), AfterRevision: p.GetAfterRevision(),
		Wait: msDuration(p.GetWaitMs()), Limit: limitFromProto(p.GetLimit()), PrevKV: p.GetPrevKv()}
}

// WatchRequestToProto converts a Watch request.
func WatchRequestToProto(r *kvclient.WatchRequest) *kvv1.WatchRequest {
	return &kvv1.WatchRequest{Key: r.Key, Prefix: r.Prefix, AfterRevision: r.AfterRevision,
		WaitMs: uint64(max(r.Wait, 0).Milliseconds()), Limit: limitToProto(r.Limit), PrevKv: r.PrevKV}
}

// WatchResponseToProto converts a Watch answer.
func WatchResponseToProto(r *kvclient.WatchResponse) *kvv1.WatchResponse {
	out := &kvv1.WatchResponse{Header: HeaderToProto(r.Header), NextAfterRevision: r.NextAfterRevision, Compacted: r.Compacted,
		CompactRevision: r.CompactRevision, Events: make([]*kvv1.Event, len(r.Events))}
	for i, e := range r.Events {
		out.Events[i] = &kvv1.Event{Type: kvv1.EventType(e.Type), Kv: KeyValueToProto(&e.KV), PrevKv: KeyValueToProto(e.PrevKV)}
	}
	return out
}

// WatchResponseFromProto converts a Watch answer.
func WatchResponseFromProto(p *kvv1.WatchResponse) *kvclient.WatchResponse {
	out := &kvclient.WatchResponse{Header: HeaderFromProto(p.GetHeader()), NextAfterRevision: p.GetNextAfterRevision(),
		Compacted: p.GetCompacted(), CompactRevision: p.GetCompactRevision(), Events: make([]kvclient.Event, 0, len(p.GetEvents()))}
	for _, e := range p.GetEvents() {
		ev := kvclient.Event{Type: kvclient.EventType(e.GetType()), PrevKV: KeyValueFromProto(e.GetPrevKv())}
		if kv := KeyValueFromProto(e.GetKv()); kv != nil {
			ev.KV = *kv
		}
		out.Events = append(out.Events, ev)
	}
	return out
}

// limitToProto converts a page or event limit to the wire: negative is 0, and
// the value saturates at the field's width (int may be 32 or 64 bits).
func limitToProto(n int) uint32 {
	return uint32(min(max(int64(n), 0), math.MaxUint32))
}

// limitFromProto converts a wire limit; on a 32-bit platform a value above
// MaxInt32 saturates instead of turning negative (the server caps limits far
// below either bound).
func limitFromProto(n uint32) int {
	return int(min(int64(n), math.MaxInt32))
}
