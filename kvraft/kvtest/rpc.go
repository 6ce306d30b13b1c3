package kvtest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/twitchtv/twirp"
	"google.golang.org/protobuf/proto"

	"github.com/ruaft/ruaft/internal/simnet"
	"github.com/ruaft/ruaft/kvraft"
	"github.com/ruaft/ruaft/kvraft/kvwire"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// The KV RPCs cross the simulated network as durio's do over HTTP: kv.v1
// protobuf messages, converted by kvwire on both sides, with errors as
// Twirp errors. So every kvtest run also exercises the kvwire mapping of
// each request, response and error. The method name on the network is
// "kv." followed by the KVService method's name.

// errUnknownMethod answers a method that is not a KV RPC.
var errUnknownMethod = errors.New("kvtest: unknown method")

// errCorrupt is returned for bytes that do not decode.
var errCorrupt = errors.New("kvtest: corrupt message")

// Reply status bytes: the first byte of every reply says whether the
// handler succeeded (a response message follows) or failed (a Twirp error
// follows: code, message, and meta pairs, as length-prefixed strings).
const (
	statusOK byte = iota
	statusError
)

// newClient returns a kvraft.Service over one simnet endpoint.
func newClient(kv simKV) kvraft.Service { return kvwire.NewClient(kv) }

// simKV is a kv.v1 KVService client over one simnet endpoint.
type simKV struct {
	end *simnet.End
	// sent, if not nil, is told of every request sent (method without
	// the "kv." prefix, the bytes sent, and the reply, nil if none) once
	// its call returned, whatever the outcome (see replayer.capture).
	sent func(method string, req, reply []byte)
}

var _ kvv1.KVService = simKV{}

// call sends req as method and decodes the reply into resp.
func call[Resp proto.Message](ctx context.Context, c simKV, method string, req proto.Message, resp Resp) (Resp, error) {
	var zero Resp
	b, err := proto.Marshal(req)
	if err != nil {
		return zero, err
	}
	reply, err := c.end.Call(ctx, "kv."+method, b)
	if c.sent != nil {
		c.sent(method, b, reply)
	}
	if err != nil {
		return zero, err
	}
	if len(reply) == 0 {
		return zero, errCorrupt
	}
	switch reply[0] {
	case statusOK:
		if err := proto.Unmarshal(reply[1:], resp); err != nil {
			return zero, fmt.Errorf("%w: %w", errCorrupt, err)
		}
		return resp, nil
	case statusError:
		return zero, decodeTwirp(reply[1:])
	default:
		return zero, fmt.Errorf("%w: status %d", errCorrupt, reply[0])
	}
}

func (c simKV) Get(ctx context.Context, r *kvv1.GetRequest) (*kvv1.GetResponse, error) {
	return call(ctx, c, "Get", r, &kvv1.GetResponse{})
}

func (c simKV) Put(ctx context.Context, r *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	return call(ctx, c, "Put", r, &kvv1.PutResponse{})
}

func (c simKV) Append(ctx context.Context, r *kvv1.AppendRequest) (*kvv1.AppendResponse, error) {
	return call(ctx, c, "Append", r, &kvv1.AppendResponse{})
}

func (c simKV) Delete(ctx context.Context, r *kvv1.DeleteRequest) (*kvv1.DeleteResponse, error) {
	return call(ctx, c, "Delete", r, &kvv1.DeleteResponse{})
}

func (c simKV) Status(ctx context.Context, r *kvv1.StatusRequest) (*kvv1.StatusResponse, error) {
	return call(ctx, c, "Status", r, &kvv1.StatusResponse{})
}

func (c simKV) OpenSession(ctx context.Context, r *kvv1.OpenSessionRequest) (*kvv1.OpenSessionResponse, error) {
	return call(ctx, c, "OpenSession", r, &kvv1.OpenSessionResponse{})
}

func (c simKV) List(ctx context.Context, r *kvv1.ListRequest) (*kvv1.ListResponse, error) {
	return call(ctx, c, "List", r, &kvv1.ListResponse{})
}

func (c simKV) Watch(ctx context.Context, r *kvv1.WatchRequest) (*kvv1.WatchResponse, error) {
	return call(ctx, c, "Watch", r, &kvv1.WatchResponse{})
}

func (c simKV) LeaseGrant(ctx context.Context, r *kvv1.LeaseGrantRequest) (*kvv1.LeaseGrantResponse, error) {
	return call(ctx, c, "LeaseGrant", r, &kvv1.LeaseGrantResponse{})
}

func (c simKV) LeaseKeepAlive(ctx context.Context, r *kvv1.LeaseKeepAliveRequest) (*kvv1.LeaseKeepAliveResponse, error) {
	return call(ctx, c, "LeaseKeepAlive", r, &kvv1.LeaseKeepAliveResponse{})
}

func (c simKV) LeaseRevoke(ctx context.Context, r *kvv1.LeaseRevokeRequest) (*kvv1.LeaseRevokeResponse, error) {
	return call(ctx, c, "LeaseRevoke", r, &kvv1.LeaseRevokeResponse{})
}

func (c simKV) LeaseTimeToLive(ctx context.Context, r *kvv1.LeaseTimeToLiveRequest) (*kvv1.LeaseTimeToLiveResponse, error) {
	return call(ctx, c, "LeaseTimeToLive", r, &kvv1.LeaseTimeToLiveResponse{})
}

func (c simKV) Txn(ctx context.Context, r *kvv1.TxnRequest) (*kvv1.TxnResponse, error) {
	return call(ctx, c, "Txn", r, &kvv1.TxnResponse{})
}

// WriteBatch implements kvv1.ForwardService: durio's forwarded writes, in
// batches, answered by a kvwire.BatchServer.
func (c simKV) WriteBatch(ctx context.Context, r *kvv1.WriteBatchRequest) (*kvv1.WriteBatchResponse, error) {
	return call(ctx, c, "WriteBatch", r, &kvv1.WriteBatchResponse{})
}

var _ kvv1.ForwardService = simKV{}

// maxBatchOps is the most writes a server takes in one forwarded batch.
const maxBatchOps = 256

// serveKV answers one KV RPC with svc, through kvwire's KVService.
func serveKV(ctx context.Context, svc kvraft.Service, method string, b []byte) ([]byte, error) {
	srv := kvwire.NewServer(svc, kvwire.ServerOptions{})
	switch method {
	case "kv.Get":
		return handle(ctx, b, &kvv1.GetRequest{}, srv.Get)
	case "kv.Put":
		return handle(ctx, b, &kvv1.PutRequest{}, srv.Put)
	case "kv.Append":
		return handle(ctx, b, &kvv1.AppendRequest{}, srv.Append)
	case "kv.Delete":
		return handle(ctx, b, &kvv1.DeleteRequest{}, srv.Delete)
	case "kv.OpenSession":
		return handle(ctx, b, &kvv1.OpenSessionRequest{}, srv.OpenSession)
	case "kv.List":
		return handle(ctx, b, &kvv1.ListRequest{}, srv.List)
	case "kv.Watch":
		return handle(ctx, b, &kvv1.WatchRequest{}, srv.Watch)
	case "kv.LeaseGrant":
		return handle(ctx, b, &kvv1.LeaseGrantRequest{}, srv.LeaseGrant)
	case "kv.LeaseKeepAlive":
		return handle(ctx, b, &kvv1.LeaseKeepAliveRequest{}, srv.LeaseKeepAlive)
	case "kv.LeaseRevoke":
		return handle(ctx, b, &kvv1.LeaseRevokeRequest{}, srv.LeaseRevoke)
	case "kv.LeaseTimeToLive":
		return handle(ctx, b, &kvv1.LeaseTimeToLiveRequest{}, srv.LeaseTimeToLive)
	case "kv.Txn":
		return handle(ctx, b, &kvv1.TxnRequest{}, srv.Txn)
	case "kv.WriteBatch":
		return handle(ctx, b, &kvv1.WriteBatchRequest{}, kvwire.NewBatchServer(svc, maxBatchOps).WriteBatch)
	}
	return nil, fmt.Errorf("%w: %q", errUnknownMethod, method)
}

// handle decodes b into req, calls fn, and encodes its answer.
func handle[Req, Resp proto.Message](ctx context.Context, b []byte, req Req, fn func(context.Context, Req) (Resp, error)) ([]byte, error) {
	if err := proto.Unmarshal(b, req); err != nil {
		return nil, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	resp, err := fn(ctx, req)
	if err != nil {
		var terr twirp.Error
		if !errors.As(err, &terr) {
			terr = twirp.InternalErrorWith(err)
		}
		return encodeTwirp(terr), nil
	}
	out, err := proto.Marshal(resp)
	if err != nil {
		return nil, err
	}
	return append([]byte{statusOK}, out...), nil
}

func encodeTwirp(terr twirp.Error) []byte {
	b := []byte{statusError}
	b = appendString(b, string(terr.Code()))
	b = appendString(b, terr.Msg())
	meta := terr.MetaMap()
	b = binary.AppendUvarint(b, uint64(len(meta)))
	for k, v := range meta {
		b = appendString(appendString(b, k), v)
	}
	return b
}

func decodeTwirp(b []byte) error {
	d := decoder{b: b}
	terr := twirp.NewError(twirp.ErrorCode(d.string()), d.string())
	for n := d.uvarint(); n > 0 && d.err == nil; n-- {
		terr = terr.WithMeta(d.string(), d.string())
	}
	if d.err != nil {
		return d.err
	}
	return terr
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads the encodings above; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
