package durio

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	"github.com/ruaft/ruaft/kvraft/kvwire"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// scriptedKV answers Put with a fixed error (nil = success) and records the
// write ids it saw; hang makes Put wait for its context instead.
type scriptedKV struct {
	// Service (nil) stands in for the methods this fake does not serve.
	kvclient.Service
	putErr error
	hang   bool
	mu     sync.Mutex // guards seen
	seen   []kvclient.WriteID
}

var _ kvclient.Service = (*scriptedKV)(nil)

func (s *scriptedKV) OpenSession(context.Context, *kvclient.OpenSessionRequest) (*kvclient.OpenSessionResponse, error) {
	return &kvclient.OpenSessionResponse{ClientID: 42}, nil
}

func (s *scriptedKV) Get(context.Context, *kvclient.GetRequest) (*kvclient.GetResponse, error) {
	return &kvclient.GetResponse{}, nil
}

func (s *scriptedKV) Put(ctx context.Context, req *kvclient.PutRequest) (*kvclient.PutResponse, error) {
	s.mu.Lock()
	s.seen = append(s.seen, req.Write)
	s.mu.Unlock()
	if s.hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if s.putErr != nil {
		return nil, s.putErr
	}
	return &kvclient.PutResponse{}, nil
}

func (s *scriptedKV) Append(context.Context, *kvclient.AppendRequest) (*kvclient.AppendResponse, error) {
	return nil, errors.New("not scripted")
}

func (s *scriptedKV) Delete(context.Context, *kvclient.DeleteRequest) (*kvclient.DeleteResponse, error) {
	return nil, errors.New("not scripted")
}

func (s *scriptedKV) writes() []kvclient.WriteID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]kvclient.WriteID(nil), s.seen...)
}

// newTestFrontend is a frontend for replica 0 over replicas, served as the
// client listener's KVService; watch may be nil.
func newTestFrontend(t *testing.T, watch kvclient.LeaderWatch, timeout time.Duration, replicas ...kvclient.Service) kvv1.KVService {
	t.Helper()
	cfg := kvclient.DefaultClerkConfig()
	cfg.ClientID, cfg.Leader = 42, watch
	cfg.AttemptTimeout = time.Minute
	clerk, err := kvclient.NewClerk(replicas, cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &frontend{self: 0, local: replicas[0], clerk: clerk, timeout: timeout}
	return kvwire.NewServer(f, kvwire.ServerOptions{})
}

func code(err error) twirp.ErrorCode {
	var terr twirp.Error
	if errors.As(err, &terr) {
		return terr.Code()
	}
	return ""
}

func TestFrontendForwardsToLeader(t *testing.T) {
	self := &scriptedKV{putErr: &kvclient.WrongLeaderError{Leader: 1}}
	leader := &scriptedKV{}
	f := newTestFrontend(t, nil, 5*time.Second, self, leader, &scriptedKV{putErr: errors.New("must not be called")})
	if _, err := f.Put(context.Background(), &kvv1.PutRequest{Key: "k", Value: "v"}); err != nil {
		t.Fatal(err)
	}
	if w := leader.writes(); len(w) != 1 || w[0].ClientID != 42 || w[0].Seq != 1 {
		t.Fatalf("the leader should get the write with the frontend's header, got %v", w)
	}
	// A client's own header is passed through untouched.
	h := &kvv1.WriteHeader{ClientId: 7, Sequence: 3, Ack: 2}
	if _, err := f.Put(context.Background(), &kvv1.PutRequest{Key: "k", Value: "v", Write: h}); err != nil {
		t.Fatal(err)
	}
	if got := leader.writes()[1]; got != (kvclient.WriteID{ClientID: 7, Seq: 3, Ack: 2}) {
		t.Fatalf("client header changed: %v", got)
	}
}

func TestFrontendNoLeaderIs503(t *testing.T) {
	down := &scriptedKV{putErr: &kvclient.WrongLeaderError{Leader: kvclient.NoLeader}}
	f := newTestFrontend(t, nil, 300*time.Millisecond, down, down)
	_, err := f.Put(context.Background(), &kvv1.PutRequest{Key: "k", Value: "v"})
	if code(err) != twirp.Unavailable {
		t.Fatalf("got %v, want unavailable", err)
	}
	w := down.writes()
	if len(w) < 2 {
		t.Fatalf("the frontend should retry until the timeout, tried %d times", len(w))
	}
	// Every retry carries the same header, so at most one can apply.
	for _, id := range w {
		if id.Seq != w[0].Seq {
			t.Fatalf("retries changed the sequence: %v", w)
		}
	}
}

func TestFrontendUnknownOutcomeIs504(t *testing.T) {
	proposed := &scriptedKV{putErr: &kvclient.WrongLeaderError{Leader: kvclient.NoLeader, Proposed: true}}
	f := newTestFrontend(t, nil, 300*time.Millisecond, proposed)
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

// A forwarded write stuck at a leader that stopped answering is abandoned
// as soon as this replica learns of a new leader, and retried there with
// the same write id within the same request; the attempt timeout (a
// minute here) never comes into play.
func TestFrontendFollowsLeaderChange(t *testing.T) {
	watch := newLeaderWatch()
	watch.set(1)
	self := &scriptedKV{putErr: &kvclient.WrongLeaderError{Leader: 1}}
	stuck := &scriptedKV{hang: true}
	next := &scriptedKV{}
	f := newTestFrontend(t, watch, time.Minute, self, stuck, next)
	done := make(chan error, 1)
	go func() {
		_, err := f.Put(context.Background(), &kvv1.PutRequest{Key: "k", Value: "v"})
		done <- err
	}()
	waitUntil(t, "the write reaches the stuck leader", func() bool { return len(stuck.writes()) == 1 })
	watch.set(2)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the write did not move to the new leader")
	}
	if a, b := stuck.writes(), next.writes(); len(b) != 1 || a[0] != b[0] {
		t.Fatalf("the retry must carry the same id: %v then %v", a, b)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
