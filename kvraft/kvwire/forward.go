package kvwire

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// ForwarderConfig tunes a Forwarder.
type ForwarderConfig struct {
	// MaxBatchOps is the most writes in one call.
	MaxBatchOps int
	// MaxBatchBytes bounds the keys and values of one call, in bytes (a
	// single larger write still goes, alone). Keep it under the peer
	// listener's body limit.
	MaxBatchBytes int
	// MaxInFlight is the most calls in flight at once; writes that arrive
	// meanwhile wait and go together in the next call.
	MaxInFlight int
	// CallTimeout bounds one call. A call whose writes have all been
	// abandoned by their callers is cancelled sooner.
	CallTimeout time.Duration
	// RequestID, if not nil, returns the id of the client request a call
	// serves, "" if none (see ValidRequestID): the Forwarder sends it on
	// with the call, so that the remote replica logs the call under it.
	RequestID func(context.Context) string
}

// DefaultForwarderConfig returns the configuration durio uses.
func DefaultForwarderConfig() ForwarderConfig {
	return ForwarderConfig{MaxBatchOps: 256, MaxBatchBytes: 512 << 10, MaxInFlight: 2, CallTimeout: 5 * time.Second}
}

// Validate reports the first field that is out of range.
func (c ForwarderConfig) Validate() error {
	switch {
	case c.MaxBatchOps < 1:
		return fmt.Errorf("kvwire: ForwarderConfig.MaxBatchOps must be at least 1, got %d", c.MaxBatchOps)
	case c.MaxBatchBytes < 1:
		return fmt.Errorf("kvwire: ForwarderConfig.MaxBatchBytes must be at least 1, got %d", c.MaxBatchBytes)
	case c.MaxInFlight < 1:
		return fmt.Errorf("kvwire: ForwarderConfig.MaxInFlight must be at least 1, got %d", c.MaxInFlight)
	case c.CallTimeout <= 0:
		return fmt.Errorf("kvwire: ForwarderConfig.CallTimeout must be positive, got %v", c.CallTimeout)
	}
	return nil
}

// ErrClosed is returned by a Forwarder after Close.
var ErrClosed = errors.New("kvwire: forwarder closed")

// Forwarder is a kvclient.Service for one remote replica that sends writes
// in batches over its ForwardService (many writes per call) and reads over
// its KVService. Each write keeps its own WriteID, so a batch whose outcome
// is unknown is simply retried write by write, by the Clerk, with the same
// ids. There is no background goroutine when idle: a write that finds no
// call in flight is sent by its caller (sendOwn); one that has to queue
// starts, if a call is free, a sender goroutine that keeps sending batches
// until the queue is empty. Close waits for every sender.
type Forwarder struct {
	kv  Client
	fwd kvv1.ForwardService
	cfg ForwarderConfig

	mu sync.Mutex // guards queue, senders, closed
	// queue holds writes not yet sent, oldest first.
	queue []*pendingWrite
	// senders is the number of calls in flight or about to be (<=
	// MaxInFlight): sender goroutines, and callers sending their own write.
	senders int
	closed  bool
	wg      sync.WaitGroup // the senders
}

var _ kvclient.Service = (*Forwarder)(nil)

// pendingWrite is one write waiting for its batch's answer.
type pendingWrite struct {
	op   *kvv1.WriteOp
	size int
	// abandoned is set when the caller stopped waiting; a queued write
	// that is abandoned is not sent.
	abandoned atomic.Bool
	// batch is the call it went out in, once sent (guarded by Forwarder.mu).
	batch *sentBatch
	done  chan struct{} // closed when res/err are set
	res   *kvv1.WriteResult
	err   error
}

// sentBatch is one call in flight.
type sentBatch struct {
	ctx    context.Context
	cancel context.CancelFunc
	// waiting counts its writes whose callers still wait; the call is
	// cancelled when it reaches zero.
	waiting atomic.Int64
}

// NewForwarder returns a Forwarder to the replica behind kv and fwd.
func NewForwarder(kv kvv1.KVService, fwd kvv1.ForwardService, cfg ForwarderConfig) (*Forwarder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Forwarder{kv: NewClient(kv), fwd: fwd, cfg: cfg}, nil
}

// Close stops accepting writes and waits for the calls in flight. Writes
// still queued fail with ErrClosed (not sent). It is idempotent.
func (f *Forwarder) Close() {
	f.mu.Lock()
	f.closed = true
	queued := f.queue
	f.queue = nil
	f.mu.Unlock()
	for _, p := range queued {
		p.err = ErrClosed
		close(p.done)
	}
	f.wg.Wait()
}

// OpenSession implements kvclient.Service with one call.
func (f *Forwarder) OpenSession(ctx context.Context, req *kvclient.OpenSessionRequest) (*kvclient.OpenSessionResponse, error) {
	return f.kv.OpenSession(f.tagged(ctx), req)
}

// Get implements kvclient.Service with one call.
func (f *Forwarder) Get(ctx context.Context, req *kvclient.GetRequest) (*kvclient.GetResponse, error) {
	return f.kv.Get(f.tagged(ctx), req)
}

// List implements kvclient.Service with one call.
func (f *Forwarder) List(ctx context.Context, req *kvclient.ListRequest) (*kvclient.ListResponse, error) {
	return f.kv.List(f.tagged(ctx), req)
}

// Watch implements kvclient.Service with one call.
func (f *Forwarder) Watch(ctx context.Context, req *kvclient.WatchRequest) (*kvclient.WatchResponse, error) {
	return f.kv.Watch(f.tagged(ctx), req)
}

// LeaseGrant implements kvclient.Service with one call.
func (f *Forwarder) LeaseGrant(ctx context.Context, req *kvclient.LeaseGrantRequest) (*kvclient.LeaseGrantResponse, error) {
	return f.kv.LeaseGrant(f.tagged(ctx), req)
}

// LeaseKeepAlive implements kvclient.Service with one call.
func (f *Forwarder) LeaseKeepAlive(ctx context.Context, req *kvclient.LeaseKeepAliveRequest) (*kvclient.LeaseKeepAliveResponse, error) {
	return f.kv.LeaseKeepAlive(f.tagged(ctx), req)
}

// LeaseRevoke implements kvclient.Service with one call.
func (f *Forwarder) LeaseRevoke(ctx context.Context, req *kvclient.LeaseRevokeRequest) (*kvclient.LeaseRevokeResponse, error) {
	return f.kv.LeaseRevoke(f.tagged(ctx), req)
}

// LeaseTimeToLive implements kvclient.Service with one call.
func (f *Forwarder) LeaseTimeToLive(ctx context.Context, req *kvclient.LeaseTimeToLiveRequest) (*kvclient.LeaseTimeToLiveResponse, error) {
	return f.kv.LeaseTimeToLive(f.tagged(ctx), req)
}

// requestID is the id of the client request ctx belongs to, "" if none.
func (f *Forwarder) requestID(ctx context.Context) string {
	if f.cfg.RequestID == nil {
		return ""
	}
	return f.cfg.RequestID(ctx)
}

// tagged returns ctx carrying the id of its client request, if any, for a
// call over KVService.
func (f *Forwarder) tagged(ctx context.Context) context.Context {
	return withRequestID(ctx, f.requestID(ctx))
}

// Put implements kvclient.Service through a batch.
func (f *Forwarder) Put(ctx context.Context, req *kvclient.PutRequest) (*kvclient.PutResponse, error) {
	// The op and its oneof wrapper in one allocation.
	m := new(struct {
		op  kvv1.WriteOp
		put kvv1.WriteOp_Put
	})
	m.put.Put = PutRequestToProto(req)
	m.op.Op = &m.put
	res, err := f.write(ctx, &m.op, len(req.Key)+len(req.Value))
	if err != nil {
		return nil, err
	}
	return &kvclient.PutResponse{Header: HeaderFromProto(res.GetHeader())}, nil
}

// Append implements kvclient.Service through a batch.
func (f *Forwarder) Append(ctx context.Context, req *kvclient.AppendRequest) (*kvclient.AppendResponse, error) {
	res, err := f.write(ctx, &kvv1.WriteOp{Op: &kvv1.WriteOp_Append{Append: AppendRequestToProto(req)}}, len(req.Key)+len(req.Value))
	if err != nil {
		return nil, err
	}
	return &kvclient.AppendResponse{Header: HeaderFromProto(res.GetHeader())}, nil
}

// Delete implements kvclient.Service through a batch.
func (f *Forwarder) Delete(ctx context.Context, req *kvclient.DeleteRequest) (*kvclient.DeleteResponse, error) {
	res, err := f.write(ctx, &kvv1.WriteOp{Op: &kvv1.WriteOp_Delete{Delete: DeleteRequestToProto(req)}}, len(req.Key))
	if err != nil {
		return nil, err
	}
	return &kvclient.DeleteResponse{Header: HeaderFromProto(res.GetHeader()), Existed: res.GetExisted()}, nil
}

// Txn implements kvclient.Service through a batch. (A leader from before
// Txn sees an empty op and refuses it as invalid; an OK result without
// the Txn's outcome is taken as an unknown outcome.)
func (f *Forwarder) Txn(ctx context.Context, req *kvclient.TxnRequest) (*kvclient.TxnResponse, error) {
	res, err := f.write(ctx, &kvv1.WriteOp{Op: &kvv1.WriteOp_Txn{Txn: TxnRequestToProto(req)}}, req.Bytes())
	if err != nil {
		return nil, err
	}
	if res.GetTxn() == nil {
		return nil, errors.New("kvwire: a txn answered without its outcome (outcome unknown)")
	}
	return TxnResponseFromProto(res.GetTxn(), res.GetHeader()), nil
}

// write queues op and waits for its result or for ctx. A caller that stops
// waiting gets ctx's error: if the write was already sent its outcome is
// unknown (MaybeApplied), which the Clerk resolves by retrying the same
// WriteID.
func (f *Forwarder) write(ctx context.Context, op *kvv1.WriteOp, size int) (*kvv1.WriteResult, error) {
	// The batch's call runs under a context of its own: the id travels
	// with the op.
	op.RequestId = f.requestID(ctx)
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, ErrClosed
	}
	if f.senders == 0 {
		f.senders++
		f.wg.Add(1)
		f.mu.Unlock()
		return f.sendOwn(ctx, op)
	}
	p := &pendingWrite{op: op, size: size, done: make(chan struct{})}
	f.queue = append(f.queue, p)
	if f.senders < f.cfg.MaxInFlight {
		f.senders++
		f.wg.Go(f.send)
	}
	f.mu.Unlock()
	select {
	case <-p.done:
		if p.err != nil {
			return nil, p.err
		}
		return p.res, ResultError(p.res)
	case <-ctx.Done():
		p.abandoned.Store(true)
		f.mu.Lock()
		b := p.batch
		f.mu.Unlock()
		if b == nil {
			// Still queued: the sender will skip it, so it was never sent.
			return nil, fmt.Errorf("%w: %w", kvclient.ErrUnreachable, ctx.Err())
		}
		if b.waiting.Add(-1) == 0 {
			b.cancel()
		}
		return nil, ctx.Err()
	}
}

// sendOwn sends op alone, from the caller's goroutine, which holds a
// sender's place: with no call in flight (so nothing queued) there is
// nobody to batch with, and a sender goroutine would cost a start and a
// hand-off to wake the caller with the answer. Writes queued meanwhile go
// to a sender goroutine that takes the place over. (With a call in flight,
// writes queue and go together, as batching needs under load.)
func (f *Forwarder) sendOwn(ctx context.Context, op *kvv1.WriteOp) (*kvv1.WriteResult, error) {
	defer func() {
		f.mu.Lock()
		if len(f.queue) > 0 {
			f.wg.Go(f.send)
		} else {
			f.senders--
		}
		f.mu.Unlock()
		f.wg.Done()
	}()
	// The caller's deadline travels with the call; a later one is cut to
	// CallTimeout.
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > f.cfg.CallTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.cfg.CallTimeout)
		defer cancel()
	}
	// The request and its one op's slot in one allocation.
	m := new(struct {
		req kvv1.WriteBatchRequest
		ops [1]*kvv1.WriteOp
	})
	m.ops[0] = op
	m.req.Ops = m.ops[:]
	resp, err := f.fwd.WriteBatch(ctx, &m.req)
	if err == nil && len(resp.GetResults()) != 1 {
		err = fmt.Errorf("kvwire: batch of 1 write got %d results", len(resp.GetResults()))
	}
	switch {
	case err != nil && ctx.Err() != nil:
		// As a caller that stops waiting for a batch it is in: the write
		// was sent, its outcome is unknown.
		return nil, ctx.Err()
	case err != nil:
		return nil, ErrorFromTwirp(err)
	}
	res := resp.GetResults()[0]
	return res, ResultError(res)
}

// send sends batches from the queue until it is empty.
func (f *Forwarder) send() {
	for {
		f.mu.Lock()
		batch, sb := f.takeLocked()
		if batch == nil {
			f.senders--
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		f.call(batch, sb)
	}
}

// takeLocked removes the next batch from the queue, skipping abandoned
// writes, and marks its writes sent.
func (f *Forwarder) takeLocked() ([]*pendingWrite, *sentBatch) {
	var batch []*pendingWrite
	bytes, i := 0, 0
	for ; i < len(f.queue) && len(batch) < f.cfg.MaxBatchOps; i++ {
		p := f.queue[i]
		if p.abandoned.Load() {
			continue
		}
		if len(batch) > 0 && bytes+p.size > f.cfg.MaxBatchBytes {
			break
		}
		batch = append(batch, p)
		bytes += p.size
	}
	f.queue = f.queue[i:]
	if len(f.queue) == 0 {
		f.queue = nil // let the backing array go
	}
	if len(batch) == 0 {
		return nil, nil
	}
	sb := &sentBatch{}
	sb.ctx, sb.cancel = context.WithTimeout(context.Background(), f.cfg.CallTimeout)
	sb.waiting.Store(int64(len(batch)))
	for _, p := range batch {
		p.batch = sb
	}
	return batch, sb
}

// call sends one batch and hands each write its result.
func (f *Forwarder) call(batch []*pendingWrite, sb *sentBatch) {
	defer sb.cancel()
	req := &kvv1.WriteBatchRequest{Ops: make([]*kvv1.WriteOp, len(batch))}
	for i, p := range batch {
		req.Ops[i] = p.op
	}
	resp, err := f.fwd.WriteBatch(sb.ctx, req)
	if err == nil && len(resp.GetResults()) != len(batch) {
		err = fmt.Errorf("kvwire: batch of %d writes got %d results", len(batch), len(resp.GetResults()))
	}
	if err != nil {
		err = ErrorFromTwirp(err)
	}
	for i, p := range batch {
		if err != nil {
			p.err = err
		} else {
			p.res = resp.GetResults()[i]
		}
		close(p.done)
	}
}
