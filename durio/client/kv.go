package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ruaft/ruaft/kvraft/kvclient"
)

// The revisioned API: metadata, compare-and-swap, listing, watching and
// leases. Every call follows the leader and fails over like Get and Put.

// KeyValue is a key with its value and metadata (revisions, version, lease).
type KeyValue = kvclient.KeyValue

// Condition is what must hold for a conditional Put or Delete to apply;
// build one with IfAbsent, IfModRevision, IfVersion or IfValue. The zero
// Condition always holds.
type Condition = kvclient.Condition

// Event is one change of one key seen by Watch or Follow.
type Event = kvclient.Event

// EventType says what an Event did: EventPut or EventDelete.
type EventType = kvclient.EventType

// Event types.
const (
	EventPut    = kvclient.EventPut
	EventDelete = kvclient.EventDelete
)

// ListRequest, ListResponse, WatchRequest, WatchResponse and
// LeaseTimeToLiveResponse are the requests and answers of List, Watch and
// LeaseTimeToLive.
type (
	ListRequest             = kvclient.ListRequest
	ListResponse            = kvclient.ListResponse
	WatchRequest            = kvclient.WatchRequest
	WatchResponse           = kvclient.WatchResponse
	LeaseTimeToLiveResponse = kvclient.LeaseTimeToLiveResponse
)

// ConditionFailedError is the error of a conditional write whose condition
// did not hold: the write was not applied. It carries the key's current
// state (nil if absent) and the store revision; errors.Is(err,
// ErrConditionFailed) holds.
type ConditionFailedError = kvclient.ConditionFailedError

// Errors of the revisioned API, matched with errors.Is. All are definite:
// nothing was applied, and retrying the same call gets the same answer.
var (
	// ErrConditionFailed: a conditional Put or Delete found its condition
	// false (see ConditionFailedError).
	ErrConditionFailed = kvclient.ErrConditionFailed
	// ErrLeaseNotFound: the lease expired, was revoked, or never existed.
	ErrLeaseNotFound = kvclient.ErrLeaseNotFound
	// ErrCompacted: the revision asked for is older than the history the
	// cluster keeps; read the current state and start again from it.
	ErrCompacted = kvclient.ErrCompacted
	// ErrNoSpace: the write would grow the cluster's keys and values past
	// its quota (--quota-bytes); deletes, and writes that do not grow
	// them, still apply.
	ErrNoSpace = kvclient.ErrNoSpace
)

// IfAbsent is the condition that the key does not exist (create only).
func IfAbsent() Condition { return kvclient.IfAbsent() }

// IfModRevision is the condition that the key exists and was last changed
// at revision rev (KeyValue.ModRevision): the usual compare-and-swap of a
// read-modify-write.
func IfModRevision(rev uint64) Condition { return kvclient.IfModRevision(rev) }

// IfVersion is the condition that the key's version is v; 0 means absent.
func IfVersion(v uint64) Condition { return kvclient.IfVersion(v) }

// IfValue is the condition that the key exists with value v.
func IfValue(v string) Condition { return kvclient.IfValue(v) }

// GetKV returns a key with its metadata, read linearizably, and the store
// revision the read reflects (pass it to Follow to see every later change),
// or ErrNotFound.
func (c *Client) GetKV(ctx context.Context, key string) (KeyValue, uint64, error) {
	resp, err := c.kv(ctx).GetKV(ctx, key, kvclient.Linearizable)
	switch {
	case err != nil:
		return KeyValue{}, 0, err
	case !resp.Found:
		return KeyValue{}, resp.Header.Revision, ErrNotFound
	}
	return KeyValue{Key: key, Value: resp.Value, CreateRevision: resp.CreateRevision, ModRevision: resp.ModRevision,
		Version: resp.Version, Lease: resp.Lease}, resp.Header.Revision, nil
}

// WriteOptions qualify a PutWith or DeleteWith.
type WriteOptions struct {
	// Condition must hold for the write to apply; a failed one is a
	// *ConditionFailedError. Zero: always applies.
	Condition Condition
	// Lease attaches the key to a lease (Put only); 0 attaches none and
	// detaches the key from the lease it had.
	Lease uint64
}

// PutWith sets key to value, exactly once, if opts.Condition holds, and
// returns the write's revision (the key's new ModRevision).
func (c *Client) PutWith(ctx context.Context, key, value string, opts WriteOptions) (uint64, error) {
	resp, err := c.kv(ctx).PutWith(ctx, kvclient.PutRequest{Key: key, Value: value, Lease: opts.Lease, Condition: opts.Condition})
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// DeleteWith removes key, exactly once, if opts.Condition holds; it reports
// whether the key existed and the store revision after the delete.
func (c *Client) DeleteWith(ctx context.Context, key string, opts WriteOptions) (existed bool, revision uint64, err error) {
	if opts.Lease != 0 {
		return false, 0, fmt.Errorf("%w: a delete takes no lease", kvclient.ErrInvalid)
	}
	resp, err := c.kv(ctx).DeleteWith(ctx, kvclient.DeleteRequest{Key: key, Condition: opts.Condition})
	if err != nil {
		return false, 0, err
	}
	return resp.Existed, resp.Header.Revision, nil
}

// Compare, TxnWrite and TxnResponse are a Txn's conditions, writes and
// answer; build writes with TxnPut and TxnDelete.
type (
	Compare     = kvclient.Compare
	TxnWrite    = kvclient.TxnWrite
	TxnResponse = kvclient.TxnResponse
)

// TxnPut is a Txn's write setting key to value (set Lease on the result
// to attach it to a lease).
func TxnPut(key, value string) TxnWrite { return kvclient.TxnPut(key, value) }

// TxnDelete is a Txn's write removing key.
func TxnDelete(key string) TxnWrite { return kvclient.TxnDelete(key) }

// MaxTxnOps is the most conditions, and the most writes, of one Txn.
const MaxTxnOps = kvclient.MaxTxnOps

// Txn writes several keys atomically, exactly once: if every condition
// holds, every write is applied (resp.Succeeded), each at its own,
// consecutive revision, and resp.Header.Revision is the last; if not,
// none is, and resp.Failed and resp.Current say which conditions failed
// and how the compared keys were. A failed Txn is an answer, not an error.
// A key may be written at most once per Txn; a put naming a lease that
// does not exist fails it with ErrLeaseNotFound.
//
//	resp, err := c.Txn(ctx, []client.Compare{{Key: "from", Condition: client.IfModRevision(rev)}},
//		client.TxnPut("from", "90"), client.TxnPut("to", "110"))
func (c *Client) Txn(ctx context.Context, conditions []Compare, writes ...TxnWrite) (*TxnResponse, error) {
	return c.kv(ctx).Txn(ctx, kvclient.TxnRequest{Conditions: conditions, Writes: writes})
}

// List returns one page of the keys under req.Prefix (see ListRequest).
// For the next page, ask again with After set to the last key and Revision
// to the page's Revision.
func (c *Client) List(ctx context.Context, req ListRequest) (*ListResponse, error) {
	return c.kv(ctx).List(ctx, req)
}

// ListAll calls fn for every key under prefix, in increasing order, page
// after page at one revision, which it returns. It stops at fn's first
// error and returns it. keysOnly leaves the values out.
func (c *Client) ListAll(ctx context.Context, prefix string, keysOnly bool, fn func(KeyValue) error) (uint64, error) {
	req := ListRequest{Prefix: prefix, KeysOnly: keysOnly}
	for {
		page, err := c.kv(ctx).List(ctx, req)
		if err != nil {
			return req.Revision, err
		}
		for _, kv := range page.KVs {
			if err := fn(kv); err != nil {
				return page.Revision, err
			}
		}
		if !page.More || len(page.KVs) == 0 {
			return page.Revision, nil
		}
		req.After, req.Revision = page.KVs[len(page.KVs)-1].Key, page.Revision
	}
}

// Watch makes one long poll: it answers as soon as a matching change after
// req.AfterRevision exists (all of them, up to req.Limit), or empty after
// req.Wait, or Compacted. Any replica answers; a failed attempt is retried
// at another with the same AfterRevision, so no event is lost or repeated.
func (c *Client) Watch(ctx context.Context, req WatchRequest) (*WatchResponse, error) {
	return c.kv(ctx).Watch(ctx, req)
}

// Revision returns the store revision as a linearizable read sees it: the
// point from which Follow sees every later change.
func (c *Client) Revision(ctx context.Context) (uint64, error) {
	page, err := c.kv(ctx).List(ctx, ListRequest{Limit: 1, KeysOnly: true})
	if err != nil {
		return 0, err
	}
	return max(page.Revision, page.Header.Revision), nil
}

// FollowWait is the wait of each long poll of Follow.
const FollowWait = 30 * time.Second

// Follow calls fn with every change of key (or of every key under it, if
// prefix) after revision after, in revision order, until ctx ends (then it
// returns ctx's error) or fn fails (then fn's error). Replicas may fail and
// leaders change underneath: Follow asks another replica from the last
// revision it delivered, so fn sees each change exactly once. If the
// cluster no longer keeps the history after that revision, Follow returns
// an error wrapping ErrCompacted.
func (c *Client) Follow(ctx context.Context, key string, prefix bool, after uint64, fn func(Event) error) error {
	req := WatchRequest{Key: key, Prefix: prefix, AfterRevision: after, Wait: FollowWait}
	for {
		resp, err := c.kv(ctx).Watch(ctx, req)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && kvclient.Definitive(err):
			return err
		case err != nil:
			// No replica answered in time (all down, or partitioned from
			// us): keep trying until ctx ends; the revision is kept.
			if perr := pause(ctx, time.Second); perr != nil {
				return perr
			}
			continue
		case resp.Compacted:
			return fmt.Errorf("%w: events after revision %d are gone (the oldest kept is %d)", ErrCompacted,
				req.AfterRevision, resp.CompactRevision)
		}
		for _, ev := range resp.Events {
			if err := fn(ev); err != nil {
				return err
			}
		}
		req.AfterRevision = max(req.AfterRevision, resp.NextAfterRevision)
	}
}

func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// LeaseGrant creates a lease that lives ttl (at least a second) unless kept
// alive, and returns its id and TTL. Keys put with the lease are deleted
// when it ends.
func (c *Client) LeaseGrant(ctx context.Context, ttl time.Duration) (uint64, time.Duration, error) {
	resp, err := c.kv(ctx).LeaseGrant(ctx, ttl)
	if err != nil {
		return 0, 0, err
	}
	return resp.ID, resp.TTL, nil
}

// LeaseKeepAlive restarts the lease's TTL and returns it; ErrLeaseNotFound
// if the lease has ended.
func (c *Client) LeaseKeepAlive(ctx context.Context, id uint64) (time.Duration, error) {
	resp, err := c.kv(ctx).LeaseKeepAlive(ctx, id)
	if err != nil {
		return 0, err
	}
	return resp.TTL, nil
}

// LeaseRevoke ends the lease now and deletes its keys; existed reports
// whether it was there.
func (c *Client) LeaseRevoke(ctx context.Context, id uint64) (bool, error) {
	return c.kv(ctx).LeaseRevoke(ctx, id)
}

// LeaseTimeToLive describes the lease (and lists its keys if keys is set);
// ErrLeaseNotFound if it has ended.
func (c *Client) LeaseTimeToLive(ctx context.Context, id uint64, keys bool) (*LeaseTimeToLiveResponse, error) {
	return c.kv(ctx).LeaseTimeToLive(ctx, id, keys)
}

// KeepAlive keeps the lease alive until ctx ends (then it returns nil) or
// the lease is lost (then an error wrapping ErrLeaseNotFound, or the last
// error once a whole TTL passed without a successful refresh). It refreshes
// every third of the TTL, so a refresh may fail twice before the lease is in
// danger. The TTL is counted on this process's monotonic clock, time it was
// stopped included: the lease may have ended meanwhile (only the cluster
// knows), so after such a stall the first refresh must succeed. That errs on
// the side of a lock's safety, as etcd's client does.
func (c *Client) KeepAlive(ctx context.Context, id uint64, ttl time.Duration) error {
	every := max(ttl/3, 100*time.Millisecond)
	lastOK := time.Now()
	for {
		if err := pause(ctx, every); err != nil {
			return nil
		}
		attempt, cancel := context.WithTimeout(ctx, every)
		got, err := c.LeaseKeepAlive(attempt, id)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			lastOK = time.Now()
			if got > 0 {
				every = max(got/3, 100*time.Millisecond)
			}
		case errors.Is(err, ErrLeaseNotFound):
			return fmt.Errorf("lease %d: %w", id, err)
		case time.Since(lastOK) >= ttl:
			return fmt.Errorf("lease %d not refreshed for %v (it may have expired): %w", id, ttl, err)
		}
	}
}
