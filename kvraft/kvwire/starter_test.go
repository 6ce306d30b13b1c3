package kvwire

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// starterKV is a WriteStarter that logs when each write starts and is
// waited for, and answers after block is closed (nil: at once).
type starterKV struct {
	fixedKV
	mu    sync.Mutex
	log   []string
	block chan struct{}
}

func (s *starterKV) note(format string, args ...any) {
	s.mu.Lock()
	s.log = append(s.log, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

func (s *starterKV) wait(ctx context.Context, id kvclient.WriteID) error {
	s.note("wait %d", id.Seq)
	if s.block != nil {
		select {
		case <-s.block:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", kvclient.ErrTimeout, ctx.Err())
		}
	}
	return s.err
}

func (s *starterKV) StartPut(ctx context.Context, req *kvclient.PutRequest) func() (*kvclient.PutResponse, error) {
	s.note("start %d", req.Write.Seq)
	return func() (*kvclient.PutResponse, error) {
		if err := s.wait(ctx, req.Write); err != nil {
			return nil, err
		}
		return &kvclient.PutResponse{Header: kvclient.ResponseHeader{Revision: req.Write.Seq}}, nil
	}
}

func (s *starterKV) StartAppend(ctx context.Context, req *kvclient.AppendRequest) func() (*kvclient.AppendResponse, error) {
	s.note("start %d", req.Write.Seq)
	return func() (*kvclient.AppendResponse, error) {
		if err := s.wait(ctx, req.Write); err != nil {
			return nil, err
		}
		return &kvclient.AppendResponse{Header: kvclient.ResponseHeader{Revision: req.Write.Seq}}, nil
	}
}

func (s *starterKV) StartDelete(ctx context.Context, req *kvclient.DeleteRequest) func() (*kvclient.DeleteResponse, error) {
	s.note("start %d", req.Write.Seq)
	return func() (*kvclient.DeleteResponse, error) {
		if err := s.wait(ctx, req.Write); err != nil {
			return nil, err
		}
		return &kvclient.DeleteResponse{Header: kvclient.ResponseHeader{Revision: req.Write.Seq}, Existed: true}, nil
	}
}

func (s *starterKV) StartTxn(ctx context.Context, req *kvclient.TxnRequest) func() (*kvclient.TxnResponse, error) {
	s.note("start %d", req.Write.Seq)
	return func() (*kvclient.TxnResponse, error) {
		if err := s.wait(ctx, req.Write); err != nil {
			return nil, err
		}
		return &kvclient.TxnResponse{Header: kvclient.ResponseHeader{Revision: req.Write.Seq}, Succeeded: len(req.Conditions) == 0,
			Failed: []int{len(req.Writes)}}, nil
	}
}

func batchOf() *kvv1.WriteBatchRequest {
	w := func(seq uint64) *kvv1.WriteHeader { return &kvv1.WriteHeader{ClientId: 1, Sequence: seq} }
	return &kvv1.WriteBatchRequest{Ops: []*kvv1.WriteOp{
		{Op: &kvv1.WriteOp_Put{Put: &kvv1.PutRequest{Key: "a", Value: "1", Write: w(1)}}},
		{Op: &kvv1.WriteOp_Append{Append: &kvv1.AppendRequest{Key: "a", Value: "2", Write: w(2)}}},
		{Op: &kvv1.WriteOp_Delete{Delete: &kvv1.DeleteRequest{Key: "b", Write: w(3)}}},
		{}, // empty: refused without reaching the service
	}}
}

// A service that can start writes gets a batch's writes started in order,
// all before any is waited for, and each result in its place.
func TestBatchServerStartsEveryWriteBeforeWaiting(t *testing.T) {
	kv := &starterKV{}
	resp, err := NewBatchServer(kv, 8).WriteBatch(context.Background(), batchOf())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"start 1", "start 2", "start 3", "wait 1", "wait 2", "wait 3"}
	if fmt.Sprint(kv.log) != fmt.Sprint(want) {
		t.Fatalf("calls %v, want %v", kv.log, want)
	}
	res := resp.GetResults()
	if len(res) != 4 {
		t.Fatalf("%d results, want 4", len(res))
	}
	for i, r := range res[:3] {
		if err := ResultError(r); err != nil || r.GetHeader().GetRevision() != uint64(i+1) {
			t.Errorf("result %d: %v (%v), want revision %d", i, r, err, i+1)
		}
	}
	if !res[2].GetExisted() {
		t.Error("delete result lost Existed")
	}
	if !errors.Is(ResultError(res[3]), kvclient.ErrInvalid) {
		t.Errorf("empty op: %v, want ErrInvalid", ResultError(res[3]))
	}

	// A service error lands in every result.
	kv = &starterKV{fixedKV: fixedKV{err: kvclient.ErrTooLarge}}
	resp, err = NewBatchServer(kv, 8).WriteBatch(context.Background(), batchOf())
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.GetResults()[:3] {
		if !errors.Is(ResultError(r), kvclient.ErrTooLarge) {
			t.Errorf("result %d: %v, want ErrTooLarge", i, ResultError(r))
		}
	}
}

// The batch's one deadline (WithTimeout) ends every wait: each write still
// waiting comes back as a timeout whose outcome is unknown.
func TestBatchServerStarterTimeout(t *testing.T) {
	kv := &starterKV{block: make(chan struct{})}
	start := time.Now()
	resp, err := NewBatchServer(kv, 8).WithTimeout(50*time.Millisecond).WriteBatch(context.Background(), batchOf())
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.GetResults()[:3] {
		if r.GetCode() != kvv1.ResultCode_RESULT_CODE_TIMEOUT || !kvclient.MaybeApplied(ResultError(r)) {
			t.Errorf("result %d: %v, want a timeout whose outcome is unknown", i, r)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the batch took %v with a 50ms deadline", d)
	}
}
