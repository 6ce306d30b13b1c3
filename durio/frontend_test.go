package durio

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twitchtv/twirp"

	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// scriptedKV answers Put with a fixed error (nil = success) and records the
// write headers it saw.
type scriptedKV struct {
	mapKV
	putErr error
	mu     sync.Mutex // guards seen
	seen   []*kvv1.WriteHeader
}

func (s *scriptedKV) Put(ctx context.Context, req *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	s.mu.Lock()
	s.seen = append(s.seen, req.GetWrite())
	s.mu.Unlock()
	if s.putErr != nil {
		return nil, s.putErr
	}
	return &kvv1.PutResponse{}, nil
}

func newFrontend(replicas ...kvv1.KVService) *frontend {
	return &frontend{self: 0, replica: replicas, timeout: 300 * time.Millisecond, backoff: 10 * time.Millisecond, clientID: 42}
}

func code(err error) twirp.ErrorCode {
	var terr twirp.Error
	if errors.As(err, &terr) {
		return terr.Code()
	}
	return ""
}

func TestFrontendForwardsToLeader(t *testing.T) {
	self := &scriptedKV{putErr: twirp.NewError(twirp.Unavailable, "not the leader").WithMeta("leader_id", "1")}
	leader := &scriptedKV{}
	f := newFrontend(self, leader, &scriptedKV{putErr: errors.New("must not be called")})
	if _, err := f.Put(context.Background(), &kvv1.PutRequest{Key: "k", Value: "v"}); err != nil {
		t.Fatal(err)
	}
	if len(leader.seen) != 1 || leader.seen[0].GetClientId() != 42 || leader.seen[0].GetSequence() != 1 {
		t.Fatalf("the leader should get the write with the frontend's header, got %v", leader.seen)
	}
	// A client's own header is passed through untouched.
	h := &kvv1.WriteHeader{ClientId: 7, Sequence: 3, Ack: 2}
	if _, err := f.Put(context.Background(), &kvv1.PutRequest{Key: "k", Value: "v", Write: h}); err != nil {
		t.Fatal(err)
	}
	if got := leader.seen[1]; got.GetClientId() != 7 || got.GetSequence() != 3 || got.GetAck() != 2 {
		t.Fatalf("client header changed: %v", got)
	}
}

func TestFrontendNoLeaderIs503(t *testing.T) {
	down := &scriptedKV{putErr: twirp.NewError(twirp.Unavailable, "not the leader")}
	f := newFrontend(down, down)
	_, err := f.Put(context.Background(), &kvv1.PutRequest{Key: "k", Value: "v"})
	if code(err) != twirp.Unavailable {
		t.Fatalf("got %v, want unavailable", err)
	}
	if len(down.seen) < 2 {
		t.Fatalf("the frontend should retry until the timeout, tried %d times", len(down.seen))
	}
	// Every retry carries the same header, so at most one can apply.
	for _, h := range down.seen {
		if h.GetSequence() != down.seen[0].GetSequence() {
			t.Fatalf("retries changed the sequence: %v", down.seen)
		}
	}
}

func TestFrontendUnknownOutcomeIs504(t *testing.T) {
	proposed := &scriptedKV{putErr: twirp.NewError(twirp.Unavailable, "lost leadership").WithMeta("proposed", "true")}
	f := newFrontend(proposed)
	_, err := f.Put(context.Background(), &kvv1.PutRequest{Key: "k", Value: "v"})
	if code(err) != twirp.DeadlineExceeded {
		t.Fatalf("got %v, want deadline_exceeded", err)
	}
	// A read never reports an unknown outcome.
	_, err = f.Get(context.Background(), &kvv1.GetRequest{Key: "missing"})
	if code(err) != twirp.NotFound {
		t.Fatalf("get: got %v, want not_found", err)
	}
}
