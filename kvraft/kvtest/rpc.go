package kvtest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/ruaft/ruaft/internal/simnet"
	"github.com/ruaft/ruaft/kvraft"
	"github.com/ruaft/ruaft/kvraft/kvwire"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// Method names of the KV RPCs on the simulated network.
const (
	MethodGet    = "kv.Get"
	MethodPut    = "kv.Put"
	MethodAppend = "kv.Append"
	MethodDelete = "kv.Delete"
	MethodOpen   = "kv.OpenSession"
)

// errUnknownMethod answers a method that is not a KV RPC.
var errUnknownMethod = errors.New("kvtest: unknown method")

// errCorrupt is returned for bytes that do not decode.
var errCorrupt = errors.New("kvtest: corrupt message")

// Reply status bytes: the first byte of every reply says whether the
// handler succeeded; an error follows as a kv.v1 WriteResult, mapped by
// kvwire like every other hop, so that kvraft's errors cross the network
// as values, not as Go pointers.
const (
	statusOK byte = iota
	statusError
)

// client is a kvraft.Service over one simnet endpoint.
type client struct {
	end *simnet.End
}

var _ kvraft.Service = client{}

func (c client) call(ctx context.Context, method string, req []byte) (decoder, error) {
	reply, err := c.end.Call(ctx, method, req)
	if err != nil {
		return decoder{}, err
	}
	d := decoder{b: reply}
	switch st := d.byte(); st {
	case statusOK:
		return d, d.err
	case statusError:
		var res kvv1.WriteResult
		if err := proto.Unmarshal(d.b, &res); err != nil {
			return d, fmt.Errorf("%w: %w", errCorrupt, err)
		}
		return d, kvwire.ResultError(&res)
	default:
		return d, fmt.Errorf("%w: status %d", errCorrupt, st)
	}
}

func (c client) OpenSession(ctx context.Context, _ *kvraft.OpenSessionRequest) (*kvraft.OpenSessionResponse, error) {
	d, err := c.call(ctx, MethodOpen, nil)
	if err != nil {
		return nil, err
	}
	resp := &kvraft.OpenSessionResponse{Header: d.header(), ClientID: d.uvarint()}
	return resp, d.err
}

func (c client) Get(ctx context.Context, req *kvraft.GetRequest) (*kvraft.GetResponse, error) {
	b := appendString(nil, req.Key)
	b = binary.AppendUvarint(b, uint64(req.Consistency))
	d, err := c.call(ctx, MethodGet, b)
	if err != nil {
		return nil, err
	}
	resp := &kvraft.GetResponse{Header: d.header(), Value: d.string(), Found: d.byte() != 0}
	return resp, d.err
}

func (c client) Put(ctx context.Context, req *kvraft.PutRequest) (*kvraft.PutResponse, error) {
	d, err := c.call(ctx, MethodPut, appendWrite(appendString(appendString(nil, req.Key), req.Value), req.Write))
	if err != nil {
		return nil, err
	}
	return &kvraft.PutResponse{Header: d.header()}, d.err
}

func (c client) Append(ctx context.Context, req *kvraft.AppendRequest) (*kvraft.AppendResponse, error) {
	d, err := c.call(ctx, MethodAppend, appendWrite(appendString(appendString(nil, req.Key), req.Value), req.Write))
	if err != nil {
		return nil, err
	}
	return &kvraft.AppendResponse{Header: d.header()}, d.err
}

func (c client) Delete(ctx context.Context, req *kvraft.DeleteRequest) (*kvraft.DeleteResponse, error) {
	d, err := c.call(ctx, MethodDelete, appendWrite(appendString(nil, req.Key), req.Write))
	if err != nil {
		return nil, err
	}
	resp := &kvraft.DeleteResponse{Header: d.header(), Existed: d.byte() != 0}
	return resp, d.err
}

// serveKV answers one KV RPC with svc.
func serveKV(ctx context.Context, svc kvraft.Service, method string, b []byte) ([]byte, error) {
	d := decoder{b: b}
	ok := []byte{statusOK}
	var err error
	switch method {
	case MethodOpen:
		var resp *kvraft.OpenSessionResponse
		if resp, err = svc.OpenSession(ctx, &kvraft.OpenSessionRequest{}); err == nil {
			return binary.AppendUvarint(appendHeader(ok, resp.Header), resp.ClientID), nil
		}
	case MethodGet:
		req := &kvraft.GetRequest{Key: d.string(), Consistency: kvraft.Consistency(d.uvarint())}
		if d.err != nil {
			return nil, d.err
		}
		var resp *kvraft.GetResponse
		if resp, err = svc.Get(ctx, req); err == nil {
			return append(appendString(appendHeader(ok, resp.Header), resp.Value), boolByte(resp.Found)), nil
		}
	case MethodPut:
		req := &kvraft.PutRequest{Key: d.string(), Value: d.string(), Write: d.write()}
		if d.err != nil {
			return nil, d.err
		}
		var resp *kvraft.PutResponse
		if resp, err = svc.Put(ctx, req); err == nil {
			return appendHeader(ok, resp.Header), nil
		}
	case MethodAppend:
		req := &kvraft.AppendRequest{Key: d.string(), Value: d.string(), Write: d.write()}
		if d.err != nil {
			return nil, d.err
		}
		var resp *kvraft.AppendResponse
		if resp, err = svc.Append(ctx, req); err == nil {
			return appendHeader(ok, resp.Header), nil
		}
	case MethodDelete:
		req := &kvraft.DeleteRequest{Key: d.string(), Write: d.write()}
		if d.err != nil {
			return nil, d.err
		}
		var resp *kvraft.DeleteResponse
		if resp, err = svc.Delete(ctx, req); err == nil {
			return append(appendHeader(ok, resp.Header), boolByte(resp.Existed)), nil
		}
	default:
		return nil, fmt.Errorf("%w: %q", errUnknownMethod, method)
	}
	return encodeError(err), nil
}

func encodeError(err error) []byte {
	b, merr := proto.Marshal(kvwire.ResultToProto(kvraft.ResponseHeader{}, false, err))
	if merr != nil {
		panic(fmt.Sprintf("kvtest: marshal a WriteResult: %v", merr)) // cannot happen for a valid message
	}
	return append([]byte{statusError}, b...)
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendWrite(b []byte, w kvraft.WriteID) []byte {
	b = binary.AppendUvarint(b, w.ClientID)
	b = binary.AppendUvarint(b, w.Seq)
	return binary.AppendUvarint(b, w.Ack)
}

func appendHeader(b []byte, h kvraft.ResponseHeader) []byte {
	b = binary.AppendUvarint(b, uint64(h.ReplicaID))
	return binary.AppendUvarint(b, h.Term)
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

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
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

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
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

func (d *decoder) write() kvraft.WriteID {
	return kvraft.WriteID{ClientID: d.uvarint(), Seq: d.uvarint(), Ack: d.uvarint()}
}

func (d *decoder) header() kvraft.ResponseHeader {
	return kvraft.ResponseHeader{ReplicaID: int(d.uvarint()), Term: d.uvarint()}
}
