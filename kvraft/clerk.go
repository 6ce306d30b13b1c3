package kvraft

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// ClerkConfig tunes a Clerk.
type ClerkConfig struct {
	// ClientID identifies the clerk's writes; 0 picks a random one. Two
	// clerks must never share an id.
	ClientID uint64
	// AttemptTimeout bounds one attempt at one replica; the clerk then tries
	// another.
	AttemptTimeout time.Duration
	// MinBackoff and MaxBackoff bound the pause after a full round of failed
	// attempts; it doubles each round, with jitter.
	MinBackoff, MaxBackoff time.Duration
}

// DefaultClerkConfig returns the configuration used when none is given.
func DefaultClerkConfig() ClerkConfig {
	return ClerkConfig{AttemptTimeout: time.Second, MinBackoff: 5 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
}

// Validate reports the first field that is out of range.
func (c ClerkConfig) Validate() error {
	switch {
	case c.AttemptTimeout <= 0:
		return fmt.Errorf("kvraft: ClerkConfig.AttemptTimeout must be positive, got %v", c.AttemptTimeout)
	case c.MinBackoff <= 0:
		return fmt.Errorf("kvraft: ClerkConfig.MinBackoff must be positive, got %v", c.MinBackoff)
	case c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("kvraft: ClerkConfig.MaxBackoff (%v) must be at least MinBackoff (%v)", c.MaxBackoff, c.MinBackoff)
	}
	return nil
}

// Clerk is the client library: it finds the leader, retries with backoff,
// and numbers its writes so that each is applied exactly once.
//
// A Clerk is safe for concurrent use, and concurrent calls are not
// serialised: each write takes its own sequence number and they proceed in
// parallel. The clerk tracks which of its writes are still in flight and
// sends, with every write, the lowest such sequence number as WriteID.Ack,
// so the servers keep results only for writes that may still be retried
// (see WriteID).
type Clerk struct {
	servers []Service
	cfg     ClerkConfig
	id      uint64

	leader atomic.Int64 // index into servers of the last replica that answered

	mu sync.Mutex // guards nextSeq, inflight, ack
	// nextSeq is the sequence number of the next write.
	nextSeq uint64
	// inflight holds the sequence numbers of writes not yet finished.
	inflight map[uint64]struct{}
	// ack is the lowest unfinished sequence number (nextSeq if none).
	ack uint64
}

// NewClerk returns a clerk that talks to servers; the index of a server in
// the slice must be its replica id, so that leader hints can be followed.
func NewClerk(servers []Service, cfg ClerkConfig) (*Clerk, error) {
	if len(servers) == 0 {
		return nil, fmt.Errorf("kvraft: NewClerk needs at least one server")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	id := cfg.ClientID
	for id == 0 {
		id = rand.Uint64() >> 1
	}
	c := &Clerk{
		servers:  servers,
		cfg:      cfg,
		id:       id,
		nextSeq:  1,
		ack:      1,
		inflight: make(map[uint64]struct{}),
	}
	c.leader.Store(int64(rand.IntN(len(servers))))
	return c, nil
}

// ClientID returns the id the clerk's writes carry.
func (c *Clerk) ClientID() uint64 { return c.id }

// Get returns the value of key, read linearizably; ErrNoKey if it is
// missing.
func (c *Clerk) Get(ctx context.Context, key string) (string, error) {
	return c.get(ctx, key, Linearizable)
}

// GetStale returns the value of key as some replica has it, possibly stale.
func (c *Clerk) GetStale(ctx context.Context, key string) (string, error) {
	return c.get(ctx, key, Stale)
}

func (c *Clerk) get(ctx context.Context, key string, cons Consistency) (string, error) {
	var resp *GetResponse
	err := c.do(ctx, false, func(ctx context.Context, srv Service) error {
		r, err := srv.Get(ctx, &GetRequest{Key: key, Consistency: cons})
		resp = r
		return err
	})
	if err != nil {
		return "", err
	}
	if !resp.Found {
		return "", ErrNoKey
	}
	return resp.Value, nil
}

// Put sets key to value.
func (c *Clerk) Put(ctx context.Context, key, value string) error {
	return c.write(ctx, func(ctx context.Context, srv Service, id WriteID) error {
		_, err := srv.Put(ctx, &PutRequest{Key: key, Value: value, Write: id})
		return err
	})
}

// Append appends value to key's value.
func (c *Clerk) Append(ctx context.Context, key, value string) error {
	return c.write(ctx, func(ctx context.Context, srv Service, id WriteID) error {
		_, err := srv.Append(ctx, &AppendRequest{Key: key, Value: value, Write: id})
		return err
	})
}

// Delete removes key and reports whether it existed.
func (c *Clerk) Delete(ctx context.Context, key string) (existed bool, err error) {
	err = c.write(ctx, func(ctx context.Context, srv Service, id WriteID) error {
		r, err := srv.Delete(ctx, &DeleteRequest{Key: key, Write: id})
		if err == nil {
			existed = r.Existed
		}
		return err
	})
	return existed, err
}

// write runs one identified write until it succeeds or ctx ends.
func (c *Clerk) write(ctx context.Context, call func(context.Context, Service, WriteID) error) error {
	c.mu.Lock()
	seq := c.nextSeq
	c.nextSeq++
	c.inflight[seq] = struct{}{}
	c.mu.Unlock()
	defer c.finish(seq)
	return c.do(ctx, true, func(ctx context.Context, srv Service) error {
		// Ack is read per attempt: it only grows, and a higher one lets the
		// servers forget sooner.
		c.mu.Lock()
		id := WriteID{ClientID: c.id, Seq: seq, Ack: c.ack}
		c.mu.Unlock()
		return call(ctx, srv, id)
	})
}

// finish marks seq finished and advances ack past finished writes.
func (c *Clerk) finish(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inflight, seq)
	for c.ack < c.nextSeq {
		if _, ok := c.inflight[c.ack]; ok {
			break
		}
		c.ack++
	}
}

// do calls attempt against replicas until one succeeds, a definitive error
// comes back, or ctx ends. It follows leader hints, moves to the next
// replica after a failure, and backs off after each full round.
func (c *Clerk) do(ctx context.Context, isWrite bool, attempt func(context.Context, Service) error) error {
	n := len(c.servers)
	target := int(c.leader.Load())
	backoff := c.cfg.MinBackoff
	maybeApplied := false // some attempt may have reached the log
	var lastErr error
	for tries := 1; ; tries++ {
		actx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
		err := attempt(actx, c.servers[target])
		cancel()
		switch {
		case err == nil, errors.Is(err, ErrInvalid), errors.Is(err, ErrStale):
			if err == nil {
				c.leader.Store(int64(target))
			}
			return err
		}
		lastErr = err
		next := (target + 1) % n
		var wl *WrongLeaderError
		if errors.As(err, &wl) {
			maybeApplied = maybeApplied || wl.Proposed
			if wl.Leader >= 0 && wl.Leader < n && wl.Leader != target {
				next = wl.Leader
			}
		} else {
			// A timeout, a lost message or a stopped server: the write may
			// have been applied.
			maybeApplied = true
		}
		target = next
		if ctx.Err() != nil {
			break
		}
		if tries%n == 0 {
			// Full jitter in [backoff/2, backoff).
			d := backoff/2 + rand.N(backoff/2+1)
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			backoff = min(2*backoff, c.cfg.MaxBackoff)
			if ctx.Err() != nil {
				break
			}
		}
	}
	if isWrite && maybeApplied {
		return fmt.Errorf("%w: %w (last error: %v)", ErrTimeout, ctx.Err(), lastErr)
	}
	// A read, or a write that no replica accepted: nothing happened.
	return fmt.Errorf("%w: %w (last error: %v)", ErrNoLeader, ctx.Err(), lastErr)
}
