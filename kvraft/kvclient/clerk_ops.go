package kvclient

import (
	"context"
	"time"
)

// GetKV reads key with its metadata; a missing key is Found false (not an
// error).
func (c *Clerk) GetKV(ctx context.Context, key string, cons Consistency) (*GetResponse, error) {
	var resp *GetResponse
	err := c.Do(ctx, false, func(ctx context.Context, srv Service) error {
		var err error
		resp, err = srv.Get(ctx, &GetRequest{Key: key, Consistency: cons})
		return err
	})
	return resp, err
}

// PutWith applies req exactly once (the clerk sets req.Write). A failed
// condition is a *ConditionFailedError, returned at once and never retried.
func (c *Clerk) PutWith(ctx context.Context, req PutRequest) (*PutResponse, error) {
	var resp *PutResponse
	err := c.Write(ctx, func(ctx context.Context, srv Service, id WriteID) error {
		r := req
		r.Write = id
		var err error
		resp, err = srv.Put(ctx, &r)
		return err
	})
	return resp, err
}

// DeleteWith applies req exactly once (the clerk sets req.Write), as PutWith.
func (c *Clerk) DeleteWith(ctx context.Context, req DeleteRequest) (*DeleteResponse, error) {
	var resp *DeleteResponse
	err := c.Write(ctx, func(ctx context.Context, srv Service, id WriteID) error {
		r := req
		r.Write = id
		var err error
		resp, err = srv.Delete(ctx, &r)
		return err
	})
	return resp, err
}

// Txn applies req exactly once (the clerk sets req.Write): every write if
// every condition holds (resp.Succeeded), else none. A Txn whose
// conditions failed was not applied; it is answered, not retried.
func (c *Clerk) Txn(ctx context.Context, req TxnRequest) (*TxnResponse, error) {
	var resp *TxnResponse
	err := c.Write(ctx, func(ctx context.Context, srv Service, id WriteID) error {
		r := req
		r.Write = id
		var err error
		resp, err = srv.Txn(ctx, &r)
		return err
	})
	return resp, err
}

// List reads one page of keys. For the next page, ask again with After set
// to the last key and Revision to resp.Revision.
func (c *Clerk) List(ctx context.Context, req ListRequest) (*ListResponse, error) {
	var resp *ListResponse
	err := c.Do(ctx, false, func(ctx context.Context, srv Service) error {
		var err error
		resp, err = srv.List(ctx, &req)
		return err
	})
	return resp, err
}

// Watch makes one long poll (see WatchRequest). Any replica can answer, so
// an attempt that fails (a replica that died or was cut off) is retried at
// another with the same AfterRevision: the events returned are every
// matching change after it, none lost and none twice, whichever replica
// answers. Attempts are bounded by req.Wait plus AttemptTimeout. A caller
// follows a key with a loop: act on resp.Events, then ask again with
// AfterRevision = resp.NextAfterRevision; on resp.Compacted, read the
// current state and watch from its revision.
func (c *Clerk) Watch(ctx context.Context, req WatchRequest) (*WatchResponse, error) {
	var resp *WatchResponse
	_, err := c.doWithin(ctx, false, -1, req.Wait+c.cfg.AttemptTimeout, func(ctx context.Context, srv Service) error {
		var err error
		resp, err = srv.Watch(ctx, &req)
		return err
	})
	return resp, err
}

// LeaseGrant creates a lease with the given TTL, exactly once.
func (c *Clerk) LeaseGrant(ctx context.Context, ttl time.Duration) (*LeaseGrantResponse, error) {
	var resp *LeaseGrantResponse
	err := c.Write(ctx, func(ctx context.Context, srv Service, id WriteID) error {
		var err error
		resp, err = srv.LeaseGrant(ctx, &LeaseGrantRequest{TTL: ttl, Write: id})
		return err
	})
	return resp, err
}

// LeaseKeepAlive restarts the lease's TTL at the leader; ErrLeaseNotFound
// if it has ended.
func (c *Clerk) LeaseKeepAlive(ctx context.Context, id uint64) (*LeaseKeepAliveResponse, error) {
	var resp *LeaseKeepAliveResponse
	err := c.Do(ctx, false, func(ctx context.Context, srv Service) error {
		var err error
		resp, err = srv.LeaseKeepAlive(ctx, &LeaseKeepAliveRequest{ID: id})
		return err
	})
	return resp, err
}

// LeaseRevoke ends the lease and deletes its keys, exactly once; existed
// says whether the lease was there.
func (c *Clerk) LeaseRevoke(ctx context.Context, id uint64) (existed bool, err error) {
	err = c.Write(ctx, func(ctx context.Context, srv Service, wid WriteID) error {
		r, err := srv.LeaseRevoke(ctx, &LeaseRevokeRequest{ID: id, Write: wid})
		if err == nil {
			existed = r.Existed
		}
		return err
	})
	return existed, err
}

// LeaseTimeToLive describes the lease as the leader sees it.
func (c *Clerk) LeaseTimeToLive(ctx context.Context, id uint64, keys bool) (*LeaseTimeToLiveResponse, error) {
	var resp *LeaseTimeToLiveResponse
	err := c.Do(ctx, false, func(ctx context.Context, srv Service) error {
		var err error
		resp, err = srv.LeaseTimeToLive(ctx, &LeaseTimeToLiveRequest{ID: id, Keys: keys})
		return err
	})
	return resp, err
}
