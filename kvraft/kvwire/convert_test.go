package kvwire

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// The conversions that build a message and its parts in one allocation
// give the same messages as building each part on its own, and round-trip.
func TestConversionsShareAllocations(t *testing.T) {
	for _, r := range []kvclient.PutRequest{
		{},
		{Key: "k", Value: "v"},
		{Key: "k", Value: "v", Write: kvclient.WriteID{ClientID: 1, Seq: 2, Ack: 1}, Lease: 9,
			Condition: kvclient.Condition{Kind: kvclient.CondModRevision, ModRevision: 4}},
		{Write: kvclient.WriteID{Seq: 1}},
	} {
		got := PutRequestToProto(&r)
		want := &kvv1.PutRequest{Key: r.Key, Value: r.Value, Write: WriteIDToProto(r.Write), Lease: r.Lease,
			Condition: ConditionToProto(r.Condition)}
		if !proto.Equal(got, want) || (got.Write == nil) != (r.Write == kvclient.WriteID{}) {
			t.Errorf("PutRequestToProto(%+v) = %v, want %v", r, got, want)
		}
		if back := PutRequestFromProto(got); *back != r {
			t.Errorf("PutRequestFromProto(PutRequestToProto(%+v)) = %+v", r, *back)
		}
	}

	h := kvclient.ResponseHeader{ReplicaID: 2, Term: 7, Revision: 40}
	wantH := &kvv1.ResponseHeader{ReplicaId: 2, LeaderId: 2, Term: 7, Revision: 40}
	if got := HeaderToProto(h); !proto.Equal(got, wantH) {
		t.Errorf("HeaderToProto = %v, want %v", got, wantH)
	}
	for _, existed := range []bool{false, true} {
		want := &kvv1.WriteResult{Code: kvv1.ResultCode_RESULT_CODE_OK, Header: wantH, Existed: existed}
		if got := ResultToProto(h, existed, nil); !proto.Equal(got, want) {
			t.Errorf("ResultToProto(ok, existed %v) = %v, want %v", existed, got, want)
		}
	}

	s := NewServer(answerKV{header: h}, ServerOptions{})
	get, err := s.Get(context.Background(), &kvv1.GetRequest{Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	wantGet := &kvv1.GetResponse{Header: wantH, Key: "k", Value: "v", CreateRevision: 3, ModRevision: 40, Version: 2, Lease: 5}
	if !proto.Equal(get, wantGet) {
		t.Errorf("Get = %v, want %v", get, wantGet)
	}
	put, err := s.Put(context.Background(), &kvv1.PutRequest{Key: "k", Value: "v"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (&kvv1.PutResponse{Header: wantH}); !proto.Equal(put, want) {
		t.Errorf("Put = %v, want %v", put, want)
	}
}

// answerKV answers Get and Put with fixed values under header.
type answerKV struct {
	kvclient.Service // the other methods are not called
	header           kvclient.ResponseHeader
}

func (a answerKV) Get(context.Context, *kvclient.GetRequest) (*kvclient.GetResponse, error) {
	return &kvclient.GetResponse{Header: a.header, Found: true, Value: "v", CreateRevision: 3, ModRevision: 40,
		Version: 2, Lease: 5}, nil
}

func (a answerKV) Put(context.Context, *kvclient.PutRequest) (*kvclient.PutResponse, error) {
	return &kvclient.PutResponse{Header: a.header}, nil
}

// Delete fails for the key "bad".
func (a answerKV) Delete(_ context.Context, req *kvclient.DeleteRequest) (*kvclient.DeleteResponse, error) {
	if req.Key == "bad" {
		return nil, kvclient.ErrNoSession
	}
	return &kvclient.DeleteResponse{Header: a.header, Existed: true}, nil
}

// A batch's answer, which for a batch of one shares an allocation with its
// result slot, carries the result ResultToProto gives each write.
func TestBatchResults(t *testing.T) {
	h := kvclient.ResponseHeader{ReplicaID: 1, Term: 3, Revision: 12}
	s := NewBatchServer(answerKV{header: h}, 8)
	put := &kvv1.WriteOp{Op: &kvv1.WriteOp_Put{Put: &kvv1.PutRequest{Key: "k", Value: "v"}}}
	del := func(key string) *kvv1.WriteOp {
		return &kvv1.WriteOp{Op: &kvv1.WriteOp_Delete{Delete: &kvv1.DeleteRequest{Key: key}}}
	}
	okPut, okDel := ResultToProto(h, false, nil), ResultToProto(h, true, nil)
	failed := ResultToProto(kvclient.ResponseHeader{}, false, kvclient.ErrNoSession)
	empty := ResultToProto(kvclient.ResponseHeader{}, false, fmt.Errorf("%w: empty write op", kvclient.ErrInvalid))
	for _, tc := range []struct {
		name string
		ops  []*kvv1.WriteOp
		want []*kvv1.WriteResult
	}{
		{"none", nil, nil},
		{"one put", []*kvv1.WriteOp{put}, []*kvv1.WriteResult{okPut}},
		{"one failure", []*kvv1.WriteOp{del("bad")}, []*kvv1.WriteResult{failed}},
		{"mixed", []*kvv1.WriteOp{put, del("bad"), del("k"), {}, put},
			[]*kvv1.WriteResult{okPut, failed, okDel, empty, okPut}},
	} {
		resp, err := s.WriteBatch(context.Background(), &kvv1.WriteBatchRequest{Ops: tc.ops})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if want := (&kvv1.WriteBatchResponse{Results: tc.want}); !proto.Equal(resp, want) || len(resp.Results) != len(tc.ops) {
			t.Errorf("%s: %v, want %v", tc.name, resp, want)
		}
	}
}

// A refusal that comes back in a batch result reads as the replica that
// made it worded it, once: a too-large Append forwarded by a follower used
// to answer "kvraft: value too large (remote: kvraft: value too large (key
// "big"))". A message that does not say what its code does keeps both.
func TestBatchResultWordedOnce(t *testing.T) {
	refused := fmt.Errorf("%w (key %q)", kvclient.ErrTooLarge, "big")
	err := ResultError(ResultToProto(kvclient.ResponseHeader{}, false, refused))
	if !errors.Is(err, kvclient.ErrTooLarge) || err.Error() != refused.Error() {
		t.Errorf("too large through a batch result: %q (ErrTooLarge: %v), want %q", err, errors.Is(err, kvclient.ErrTooLarge), refused)
	}
	other := ResultError(&kvv1.WriteResult{Code: kvv1.ResultCode_RESULT_CODE_STALE, Message: "old term"})
	if !errors.Is(other, kvclient.ErrStale) || !strings.Contains(other.Error(), kvclient.ErrStale.Error()) ||
		!strings.Contains(other.Error(), "old term") {
		t.Errorf("a message that does not name its code: %q", other)
	}
}
