package kvwire

import (
	"context"
	"errors"
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
			return &kvclient.GetResponse{}, nil
		}
		return nil, ErrorFromTwirp(err)
	}
	return &kvclient.GetResponse{Header: HeaderFromProto(resp.GetHeader()), Value: resp.GetValue(), Found: true}, nil
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
		return nil, twirp.NotFoundError("no such key").WithMeta("key", req.GetKey())
	}
	return &kvv1.GetResponse{Header: HeaderToProto(resp.Header), Key: req.GetKey(), Value: resp.Value}, nil
}

// Put implements kvv1.KVService.
func (s Server) Put(ctx context.Context, req *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	resp, err := s.svc.Put(ctx, PutRequestFromProto(req))
	if err != nil {
		return nil, s.fail(err)
	}
	return &kvv1.PutResponse{Header: HeaderToProto(resp.Header)}, nil
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

// errNotYet answers the methods of issue 16 until the state machine serves
// them (kvcore's next milestone replaces these).
func errNotYet(method string) error {
	return twirp.NewError(twirp.Unimplemented, method+" is not served yet")
}

// List implements kvv1.KVService.
func (s Server) List(context.Context, *kvv1.ListRequest) (*kvv1.ListResponse, error) {
	return nil, errNotYet("List")
}

// Watch implements kvv1.KVService.
func (s Server) Watch(context.Context, *kvv1.WatchRequest) (*kvv1.WatchResponse, error) {
	return nil, errNotYet("Watch")
}

// LeaseGrant implements kvv1.KVService.
func (s Server) LeaseGrant(context.Context, *kvv1.LeaseGrantRequest) (*kvv1.LeaseGrantResponse, error) {
	return nil, errNotYet("LeaseGrant")
}

// LeaseKeepAlive implements kvv1.KVService.
func (s Server) LeaseKeepAlive(context.Context, *kvv1.LeaseKeepAliveRequest) (*kvv1.LeaseKeepAliveResponse, error) {
	return nil, errNotYet("LeaseKeepAlive")
}

// LeaseRevoke implements kvv1.KVService.
func (s Server) LeaseRevoke(context.Context, *kvv1.LeaseRevokeRequest) (*kvv1.LeaseRevokeResponse, error) {
	return nil, errNotYet("LeaseRevoke")
}

// LeaseTimeToLive implements kvv1.KVService.
func (s Server) LeaseTimeToLive(context.Context, *kvv1.LeaseTimeToLiveRequest) (*kvv1.LeaseTimeToLiveResponse, error) {
	return nil, errNotYet("LeaseTimeToLive")
}
