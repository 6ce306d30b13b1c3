package kvwire

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// ResultToProto converts the outcome of one write (err, and resp when err
// is nil) to a batch result.
func ResultToProto(h kvclient.ResponseHeader, existed bool, err error) *kvv1.WriteResult {
	if err == nil {
		// The result and its header in one allocation.
		m := new(struct {
			r kvv1.WriteResult
			h kvv1.ResponseHeader
		})
		m.r.Code, m.r.Header, m.r.Existed = kvv1.ResultCode_RESULT_CODE_OK, headerInto(&m.h, h), existed
		return &m.r
	}
	r := &kvv1.WriteResult{Message: err.Error()}
	var wl *kvclient.WrongLeaderError
	var cf *kvclient.ConditionFailedError
	switch {
	case errors.As(err, &cf):
		r.Code, r.Revision, r.Current = kvv1.ResultCode_RESULT_CODE_CONDITION_FAILED, cf.Revision, KeyValueToProto(cf.Current)
	case errors.Is(err, kvclient.ErrLeaseNotFound):
		r.Code = kvv1.ResultCode_RESULT_CODE_LEASE_NOT_FOUND
	case errors.Is(err, kvclient.ErrNoSpace):
		r.Code = kvv1.ResultCode_RESULT_CODE_NO_SPACE
	case errors.As(err, &wl):
		r.Code, r.Proposed = kvv1.ResultCode_RESULT_CODE_NOT_LEADER, wl.Proposed
		if wl.Leader >= 0 {
			r.LeaderKnown, r.LeaderId = true, uint32(wl.Leader)
		}
	case errors.Is(err, kvclient.ErrTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		r.Code = kvv1.ResultCode_RESULT_CODE_TIMEOUT
	case errors.Is(err, kvclient.ErrKilled):
		r.Code = kvv1.ResultCode_RESULT_CODE_KILLED
	case errors.Is(err, kvclient.ErrTooLarge):
		r.Code = kvv1.ResultCode_RESULT_CODE_TOO_LARGE
	case errors.Is(err, kvclient.ErrInvalid):
		r.Code = kvv1.ResultCode_RESULT_CODE_INVALID
	case errors.Is(err, kvclient.ErrStale):
		r.Code = kvv1.ResultCode_RESULT_CODE_STALE
	case errors.Is(err, kvclient.ErrNoSession):
		r.Code = kvv1.ResultCode_RESULT_CODE_NO_SESSION
	case errors.Is(err, kvclient.ErrTooManyPending):
		r.Code = kvv1.ResultCode_RESULT_CODE_TOO_MANY_PENDING
	default:
		r.Code = kvv1.ResultCode_RESULT_CODE_OTHER
	}
	return r
}

// ResultError is the kvclient error a batch result stands for; nil for OK.
// An unknown or unspecified code is an unknown outcome.
func ResultError(r *kvv1.WriteResult) error {
	msg := r.GetMessage()
	switch r.GetCode() {
	case kvv1.ResultCode_RESULT_CODE_OK:
		return nil
	case kvv1.ResultCode_RESULT_CODE_NOT_LEADER:
		wl := &kvclient.WrongLeaderError{Leader: kvclient.NoLeader, Proposed: r.GetProposed()}
		if r.GetLeaderKnown() {
			wl.Leader = int(r.GetLeaderId())
		}
		return wl
	case kvv1.ResultCode_RESULT_CODE_TIMEOUT:
		return remoteResult(kvclient.ErrTimeout, msg)
	case kvv1.ResultCode_RESULT_CODE_KILLED:
		return remoteResult(kvclient.ErrKilled, msg)
	case kvv1.ResultCode_RESULT_CODE_TOO_LARGE:
		return remoteResult(kvclient.ErrTooLarge, msg)
	case kvv1.ResultCode_RESULT_CODE_INVALID:
		return remoteResult(kvclient.ErrInvalid, msg)
	case kvv1.ResultCode_RESULT_CODE_STALE:
		return remoteResult(kvclient.ErrStale, msg)
	case kvv1.ResultCode_RESULT_CODE_NO_SESSION:
		return remoteResult(kvclient.ErrNoSession, msg)
	case kvv1.ResultCode_RESULT_CODE_TOO_MANY_PENDING:
		return remoteResult(kvclient.ErrTooManyPending, msg)
	case kvv1.ResultCode_RESULT_CODE_CONDITION_FAILED:
		return &kvclient.ConditionFailedError{Revision: r.GetRevision(), Current: KeyValueFromProto(r.GetCurrent())}
	case kvv1.ResultCode_RESULT_CODE_LEASE_NOT_FOUND:
		return remoteResult(kvclient.ErrLeaseNotFound, msg)
	case kvv1.ResultCode_RESULT_CODE_NO_SPACE:
		return remoteResult(kvclient.ErrNoSpace, msg)
	default:
		return fmt.Errorf("kvwire: remote error (outcome unknown): %s", msg)
	}
}

// remoteResult is the error of a batch result with code sentinel and the
// remote replica's message: the message alone when it already says what
// the sentinel says (the remote's error wraps it), so that the answer does
// not say it twice ("value too large (remote: value too large (key k))").
func remoteResult(sentinel error, msg string) error {
	if msg != "" && strings.Contains(msg, sentinel.Error()) {
		return &remoteError{msg: msg, sentinel: sentinel}
	}
	return fmt.Errorf("%w (remote: %s)", sentinel, msg)
}

// remoteError is a refusal in the words of the replica that made it,
// matching the kvclient sentinel it stands for and, if it came as one,
// the error that carried it (a Twirp error: ErrorFromTwirp's refusedAs).
type remoteError struct {
	msg              string
	sentinel, remote error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() []error {
	if e.remote == nil {
		return []error{e.sentinel}
	}
	return []error{e.sentinel, e.remote}
}

// BatchServer serves ForwardService with a kvclient.Service: the writes of
// a batch run concurrently, each with its own WriteID, and each gets its own
// result. It is what the leader runs for forwarded writes.
type BatchServer struct {
	svc     kvclient.Service
	maxOps  int
	timeout time.Duration
	logger  *slog.Logger // nil: no log
}

var _ kvv1.ForwardService = BatchServer{}

// NewBatchServer returns a ForwardService over svc that refuses batches of
// more than maxOps writes.
func NewBatchServer(svc kvclient.Service, maxOps int) BatchServer {
	return BatchServer{svc: svc, maxOps: maxOps}
}

// WithTimeout returns s bounding each batch by d (0: only by the caller's
// context). One deadline for the whole batch spares each write its own
// timer: a service that bounds a request itself (kvraft.Server, by its
// RequestTimeout) adds none when the batch's deadline comes first.
func (s BatchServer) WithTimeout(d time.Duration) BatchServer {
	s.timeout = d
	return s
}

// WithLogger returns s logging each write under its request id (see
// WriteOp.request_id; a fresh one if it has none usable): failures the
// sender cannot act on (timed out, killed, overloaded, other) at info, the
// rest at debug, as durio logs the requests it receives.
func (s BatchServer) WithLogger(logger *slog.Logger) BatchServer {
	s.logger = logger
	return s
}

// WriteBatch implements kvv1.ForwardService.
func (s BatchServer) WriteBatch(ctx context.Context, req *kvv1.WriteBatchRequest) (*kvv1.WriteBatchResponse, error) {
	ops := req.GetOps()
	if len(ops) > s.maxOps {
		return nil, twirp.InvalidArgumentError("ops", fmt.Sprintf("more than %d writes in one batch", s.maxOps))
	}
	// A forwarded batch carries its sender's deadline, normally the
	// earlier one: then no timer of its own.
	if dl, ok := ctx.Deadline(); s.timeout > 0 && (!ok || time.Until(dl) > s.timeout) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
	out := newBatchResponse(len(ops))
	if len(ops) == 0 {
		return out, nil
	}
	var began time.Time
	if s.logger != nil {
		began = time.Now()
	}
	if st, ok := s.svc.(WriteStarter); ok {
		// Every write is proposed before any is waited for: no goroutine
		// per write, and the writes of one batch usually commit in one
		// raft round, so this goroutine wakes once, not once per write.
		waits := make([]func() *kvv1.WriteResult, len(ops))
		for i, op := range ops {
			waits[i] = start(ctx, st, op)
		}
		for i, wait := range waits {
			out.Results[i] = wait()
			s.log(ctx, ops[i], out.Results[i], began)
		}
		return out, nil
	}
	// The last write runs on this goroutine: a batch of one, the usual at
	// a light load, costs no goroutine and no hand-off to wake this one.
	var wg sync.WaitGroup
	last := len(ops) - 1
	for i, op := range ops[:last] {
		wg.Go(func() {
			out.Results[i] = s.apply(ctx, op)
			s.log(ctx, op, out.Results[i], began)
		})
	}
	out.Results[last] = s.apply(ctx, ops[last])
	s.log(ctx, ops[last], out.Results[last], began)
	wg.Wait()
	return out, nil
}

// log logs one write of a batch that began at began (see WithLogger).
func (s BatchServer) log(ctx context.Context, op *kvv1.WriteOp, res *kvv1.WriteResult, began time.Time) {
	if s.logger == nil {
		return
	}
	level := slog.LevelDebug
	switch res.GetCode() {
	case kvv1.ResultCode_RESULT_CODE_TIMEOUT, kvv1.ResultCode_RESULT_CODE_KILLED, kvv1.ResultCode_RESULT_CODE_TOO_MANY_PENDING,
		kvv1.ResultCode_RESULT_CODE_OTHER:
		level = slog.LevelInfo
	}
	if !s.logger.Enabled(ctx, level) {
		return
	}
	id := op.GetRequestId()
	if !ValidRequestID(id) {
		id = NewRequestID()
	}
	var kind string
	switch op.GetOp().(type) {
	case *kvv1.WriteOp_Put:
		kind = "put"
	case *kvv1.WriteOp_Append:
		kind = "append"
	case *kvv1.WriteOp_Delete:
		kind = "delete"
	case *kvv1.WriteOp_Txn:
		kind = "txn"
	}
	attrs := []slog.Attr{slog.String("request_id", id), slog.String("op", kind), slog.String("result", res.GetCode().String()),
		slog.Duration("took", time.Since(began))}
	if msg := res.GetMessage(); msg != "" {
		attrs = append(attrs, slog.String("err", msg))
	}
	s.logger.LogAttrs(ctx, level, "forwarded write", attrs...)
}

// newBatchResponse returns the answer to a batch of n writes with its
// result slots: for a batch of one (a follower's lone write, sent inline,
// the usual at a light load) in one allocation.
func newBatchResponse(n int) *kvv1.WriteBatchResponse {
	if n == 1 {
		m := new(struct {
			resp kvv1.WriteBatchResponse
			slot [1]*kvv1.WriteResult
		})
		m.resp.Results = m.slot[:]
		return &m.resp
	}
	return &kvv1.WriteBatchResponse{Results: make([]*kvv1.WriteResult, n)}
}

// WriteStarter is a Service that can propose a write without waiting for
// its answer (kvraft.Server): see its StartPut. BatchServer uses it when
// its Service offers it.
type WriteStarter interface {
	StartPut(context.Context, *kvclient.PutRequest) func() (*kvclient.PutResponse, error)
	StartAppend(context.Context, *kvclient.AppendRequest) func() (*kvclient.AppendResponse, error)
	StartDelete(context.Context, *kvclient.DeleteRequest) func() (*kvclient.DeleteResponse, error)
	StartTxn(context.Context, *kvclient.TxnRequest) func() (*kvclient.TxnResponse, error)
}

// start begins op on st and returns the function that waits for its
// result, as apply returns it.
func start(ctx context.Context, st WriteStarter, op *kvv1.WriteOp) func() *kvv1.WriteResult {
	switch o := op.GetOp().(type) {
	case *kvv1.WriteOp_Put:
		wait := st.StartPut(ctx, PutRequestFromProto(o.Put))
		return func() *kvv1.WriteResult {
			resp, err := wait()
			if err != nil {
				return ResultToProto(kvclient.ResponseHeader{}, false, err)
			}
			return ResultToProto(resp.Header, false, nil)
		}
	case *kvv1.WriteOp_Append:
		wait := st.StartAppend(ctx, AppendRequestFromProto(o.Append))
		return func() *kvv1.WriteResult {
			resp, err := wait()
			if err != nil {
				return ResultToProto(kvclient.ResponseHeader{}, false, err)
			}
			return ResultToProto(resp.Header, false, nil)
		}
	case *kvv1.WriteOp_Delete:
		wait := st.StartDelete(ctx, DeleteRequestFromProto(o.Delete))
		return func() *kvv1.WriteResult {
			resp, err := wait()
			if err != nil {
				return ResultToProto(kvclient.ResponseHeader{}, false, err)
			}
			return ResultToProto(resp.Header, resp.Existed, nil)
		}
	case *kvv1.WriteOp_Txn:
		wait := st.StartTxn(ctx, TxnRequestFromProto(o.Txn))
		return func() *kvv1.WriteResult { return txnResult(wait()) }
	default:
		res := ResultToProto(kvclient.ResponseHeader{}, false, fmt.Errorf("%w: empty write op", kvclient.ErrInvalid))
		return func() *kvv1.WriteResult { return res }
	}
}

func (s BatchServer) apply(ctx context.Context, op *kvv1.WriteOp) *kvv1.WriteResult {
	switch o := op.GetOp().(type) {
	case *kvv1.WriteOp_Put:
		resp, err := s.svc.Put(ctx, PutRequestFromProto(o.Put))
		if err != nil {
			return ResultToProto(kvclient.ResponseHeader{}, false, err)
		}
		return ResultToProto(resp.Header, false, nil)
	case *kvv1.WriteOp_Append:
		resp, err := s.svc.Append(ctx, AppendRequestFromProto(o.Append))
		if err != nil {
			return ResultToProto(kvclient.ResponseHeader{}, false, err)
		}
		return ResultToProto(resp.Header, false, nil)
	case *kvv1.WriteOp_Delete:
		resp, err := s.svc.Delete(ctx, DeleteRequestFromProto(o.Delete))
		if err != nil {
			return ResultToProto(kvclient.ResponseHeader{}, false, err)
		}
		return ResultToProto(resp.Header, resp.Existed, nil)
	case *kvv1.WriteOp_Txn:
		return txnResult(s.svc.Txn(ctx, TxnRequestFromProto(o.Txn)))
	default:
		return ResultToProto(kvclient.ResponseHeader{}, false, fmt.Errorf("%w: empty write op", kvclient.ErrInvalid))
	}
}

// txnResult is the batch result of a Txn: OK with its outcome in txn
// (succeeded or not), or the error's code.
func txnResult(resp *kvclient.TxnResponse, err error) *kvv1.WriteResult {
	r := ResultToProto(kvclient.ResponseHeader{}, false, err)
	if err == nil {
		r.Header = HeaderToProto(resp.Header)
		r.Txn = &kvv1.TxnResponse{}
		txnOutcomeInto(r.Txn, resp)
	}
	return r
}
