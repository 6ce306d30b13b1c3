package kvclient

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// watchReplica answers Watch with err, or with events after the asked
// revision, recording each request's AfterRevision and its deadline.
type watchReplica struct {
	Service
	err error
	mu  sync.Mutex // guards afters, budgets
	// afters records each request's AfterRevision; budgets how long each
	// attempt had.
	afters  []uint64
	budgets []time.Duration
}

func (w *watchReplica) Watch(ctx context.Context, req *WatchRequest) (*WatchResponse, error) {
	w.mu.Lock()
	w.afters = append(w.afters, req.AfterRevision)
	if d, ok := ctx.Deadline(); ok {
		w.budgets = append(w.budgets, time.Until(d))
	}
	w.mu.Unlock()
	if w.err != nil {
		return nil, w.err
	}
	return &WatchResponse{Events: []Event{{Type: EventPut, KV: KeyValue{Key: req.Key, ModRevision: req.AfterRevision + 1}}},
		NextAfterRevision: req.AfterRevision + 1}, nil
}

// A Watch that fails at one replica is asked again at another with the
// same revision, and each attempt may last the wait plus AttemptTimeout.
func TestClerkWatchRetriesElsewhere(t *testing.T) {
	down := &watchReplica{err: ErrUnreachable}
	up := &watchReplica{}
	cfg := DefaultClerkConfig()
	cfg.AttemptTimeout = 100 * time.Millisecond
	ck, err := NewClerk([]Service{down, up}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ck.leader.Store(0)
	resp, err := ck.Watch(context.Background(), WatchRequest{Key: "k", AfterRevision: 41, Wait: 5 * time.Second})
	if err != nil || len(resp.Events) != 1 || resp.NextAfterRevision != 42 {
		t.Fatalf("watch: %+v, %v", resp, err)
	}
	if len(down.afters) != 1 || len(up.afters) != 1 || down.afters[0] != 41 || up.afters[0] != 41 {
		t.Fatalf("asked %v then %v, want 41 at each", down.afters, up.afters)
	}
	if up.budgets[0] < 4*time.Second {
		t.Fatalf("an attempt had %v, want about the wait plus AttemptTimeout", up.budgets[0])
	}
}

// Definitive answers are returned at once, never retried: a failed
// condition keeps the key's state, a compacted revision its floor.
func TestDefinitiveRevisionErrors(t *testing.T) {
	for _, err := range []error{&ConditionFailedError{Revision: 3}, &CompactedError{CompactRevision: 9},
		ErrLeaseNotFound, ErrTooManyLeases, ErrFutureRevision, ErrNoSpace} {
		if !Definitive(err) || MaybeApplied(err) {
			t.Fatalf("%v: definitive %v, maybe applied %v", err, Definitive(err), MaybeApplied(err))
		}
	}
	var cf *ConditionFailedError
	if err := error(&ConditionFailedError{Revision: 3}); !errors.Is(err, ErrConditionFailed) || !errors.As(err, &cf) {
		t.Fatal("ConditionFailedError is not ErrConditionFailed")
	}
	if Definitive(ErrTooManyWatchers) {
		t.Fatal("too many watchers should be retried elsewhere")
	}
}
