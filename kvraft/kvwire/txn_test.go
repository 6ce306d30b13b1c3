package kvwire

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// txnKV answers every Txn with answer (or err) and keeps the request.
type txnKV struct {
	kvclient.Service
	answer kvclient.TxnResponse
	err    error
	got    chan kvclient.TxnRequest
}

func (k *txnKV) Txn(_ context.Context, req *kvclient.TxnRequest) (*kvclient.TxnResponse, error) {
	k.got <- *req
	if k.err != nil {
		return nil, k.err
	}
	a := k.answer
	return &a, nil
}

// A Txn crosses Twirp and a forwarded batch with every field intact, both
// ways, and so do its errors.
func TestTxnRoundTrip(t *testing.T) {
	req := kvclient.TxnRequest{
		Conditions: []kvclient.Compare{{Key: "a", Condition: kvclient.IfModRevision(7)}, {Key: "b", Condition: kvclient.IfAbsent()},
			{Key: "c", Condition: kvclient.IfValue("")}, {Key: "d", Condition: kvclient.IfVersion(0)}},
		Writes: []kvclient.TxnWrite{{Key: "a", Value: "1", Lease: 9}, kvclient.TxnDelete("b"), kvclient.TxnPut("e", "")},
		Write:  kvclient.WriteID{ClientID: 4, Seq: 5, Ack: 3},
	}
	for _, answer := range []kvclient.TxnResponse{
		{Header: kvclient.ResponseHeader{ReplicaID: 2, Term: 3, Revision: 40}, Succeeded: true},
		{Header: kvclient.ResponseHeader{ReplicaID: 2, Term: 3, Revision: 38}, Failed: []int{0, 3},
			Current: []kvclient.KeyValue{{Key: "a", Value: "x", CreateRevision: 1, ModRevision: 8, Version: 2, Lease: 9}}},
	} {
		kv := &txnKV{answer: answer, got: make(chan kvclient.TxnRequest, 1)}
		client, fwd, calls := serve(t, kv, DefaultForwarderConfig())
		for name, svc := range map[string]kvclient.Service{"twirp": client, "batch": fwd} {
			resp, err := svc.Txn(context.Background(), &req)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if got := <-kv.got; !reflect.DeepEqual(got, req) {
				t.Errorf("%s: the server got %+v, want %+v", name, got, req)
			}
			if !reflect.DeepEqual(*resp, answer) {
				t.Errorf("%s: answer %+v, want %+v", name, *resp, answer)
			}
		}
		if calls.Load() == 0 {
			t.Error("the forwarder did not use the batch service")
		}
	}
	for _, e := range []error{kvclient.ErrLeaseNotFound, kvclient.ErrInvalid, kvclient.ErrTimeout, &kvclient.WrongLeaderError{Leader: 1}} {
		kv := &txnKV{err: e, got: make(chan kvclient.TxnRequest, 1)}
		client, fwd, _ := serve(t, kv, DefaultForwarderConfig())
		for name, svc := range map[string]kvclient.Service{"twirp": client, "batch": fwd} {
			_, err := svc.Txn(context.Background(), &req)
			<-kv.got
			if kvclient.MaybeApplied(err) != kvclient.MaybeApplied(e) || errors.Is(e, kvclient.ErrLeaseNotFound) != errors.Is(err, kvclient.ErrLeaseNotFound) {
				t.Errorf("%s: %v came back as %v", name, e, err)
			}
		}
	}
}

// A batch runs a Txn through StartTxn like the other writes, and its
// outcome rides in the result.
func TestBatchServerStartsTxn(t *testing.T) {
	kv := &starterKV{}
	w := &kvv1.WriteHeader{ClientId: 1, Sequence: 6}
	put := &kvv1.TxnWrite{Op: &kvv1.TxnWrite_Put{Put: &kvv1.TxnPut{Key: "a"}}}
	resp, err := NewBatchServer(kv, 8).WriteBatch(context.Background(), &kvv1.WriteBatchRequest{Ops: []*kvv1.WriteOp{
		{Op: &kvv1.WriteOp_Txn{Txn: &kvv1.TxnRequest{Writes: []*kvv1.TxnWrite{put}, Write: w}}},
		{Op: &kvv1.WriteOp_Txn{Txn: &kvv1.TxnRequest{Writes: []*kvv1.TxnWrite{put, put},
			Conditions: []*kvv1.Compare{{Key: "a", Condition: &kvv1.Condition{Kind: kvv1.ConditionKind_CONDITION_KIND_ABSENT}}}, Write: w}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"start 6", "start 6", "wait 6", "wait 6"}; !reflect.DeepEqual(kv.log, want) {
		t.Fatalf("calls %v, want %v", kv.log, want)
	}
	r := resp.GetResults()
	if r[0].GetCode() != kvv1.ResultCode_RESULT_CODE_OK || !r[0].GetTxn().GetSucceeded() || r[0].GetHeader().GetRevision() != 6 {
		t.Errorf("result 0: %v", r[0])
	}
	if r[1].GetCode() != kvv1.ResultCode_RESULT_CODE_OK || r[1].GetTxn().GetSucceeded() || !reflect.DeepEqual(r[1].GetTxn().GetFailed(), []uint32{2}) {
		t.Errorf("result 1: %v", r[1])
	}
}
