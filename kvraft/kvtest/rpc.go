package kvtest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ruaft/ruaft/internal/simnet"
	"github.com/ruaft/ruaft/kvraft"
)

// Method names of the KV RPCs on the simulated network.
const (
	MethodGet    = "kv.Get"
	MethodPut    = "kv.Put"
	MethodAppend = "kv.Append"
	MethodDelete = "kv.Delete"
)

// errUnknownMethod answers a method that is not a KV RPC.
var errUnknownMethod = errors.New("kvtest: unknown method")

// errCorrupt is returned for bytes that do not decode.
var errCorrupt = errors.New("kvtest: corrupt message")

// Reply status bytes: the first byte of every reply carries the handler's
// error, so that kvraft's errors cross the network as values, not as Go
// pointers.
const (
	statusOK byte = iota
	statusWrongLeader
	statusTimeout
	statusKilled
	statusInvalid
	statusStale
	statusOther
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
	case statusWrongLeader:
		leader := int(d.varint())
		proposed := d.byte() != 0
		if d.err != nil {
			return d, d.err
		}
		return d, &kvraft.WrongLeaderError{Leader: leader, Proposed: proposed}
	case statusTimeout:
		return d, kvraft.ErrTimeout
	case statusKilled:
		return d, kvraft.ErrKilled
	case statusInvalid:
		return d, kvraft.ErrInvalid
	case statusStale:
		return d, kvraft.ErrStale
	default:
		return d, fmt.Errorf("kvtest: remote error: %s", d.string())
	}
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
	var wl *kvraft.WrongLeaderError
	switch {
	case errors.As(err, &wl):
		b := binary.AppendVarint([]byte{statusWrongLeader}, int64(wl.Leader))
		return append(b, boolByte(wl.Proposed))
	case errors.Is(err, kvraft.ErrWrongLeader):
		return append(binary.AppendVarint([]byte{statusWrongLeader}, -1), 0)
	case errors.Is(err, kvraft.ErrTimeout):
		return []byte{statusTimeout}
	case errors.Is(err, kvraft.ErrKilled):
		return []byte{statusKilled}
	case errors.Is(err, kvraft.ErrInvalid):
		return []byte{statusInvalid}
	case errors.Is(err, kvraft.ErrStale):
		return []byte{statusStale}
	default:
		return appendString([]byte{statusOther}, err.Error())
	}
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
