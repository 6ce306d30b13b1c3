package durio

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	"github.com/ruaft/ruaft/kvraft/kvwire"
	"github.com/ruaft/ruaft/raft/twirptransport"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// fakeForward answers a batch with one result per write, or refuses it as
// a replica that lost leadership to replica 2 does.
type fakeForward struct{ refuse bool }

func (f fakeForward) WriteBatch(_ context.Context, req *kvv1.WriteBatchRequest) (*kvv1.WriteBatchResponse, error) {
	if f.refuse {
		return nil, twirp.NewError(twirp.Unavailable, "not the leader").
			WithMeta(kvwire.MetaLeaderID, "2").WithMeta(kvwire.MetaProposed, "true")
	}
	resp := &kvv1.WriteBatchResponse{}
	for range req.GetOps() {
		resp.Results = append(resp.Results, &kvv1.WriteResult{Existed: true})
	}
	return resp, nil
}

// forwardPeer serves fake's ForwardService over Twirp, and over the stream
// when withStream, counting both.
func forwardPeer(t *testing.T, fake kvv1.ForwardService, withStream bool) (url string, twirps, upgrades *atomic.Int64) {
	t.Helper()
	twirps, upgrades = new(atomic.Int64), new(atomic.Int64)
	mux := http.NewServeMux()
	tw := kvv1.NewForwardServiceServer(fake)
	mux.Handle("POST "+tw.PathPrefix(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		twirps.Add(1)
		tw.ServeHTTP(w, r)
	}))
	if withStream {
		cfg := DefaultConfig()
		s := newPeerStreamServer(cfg, nil, fake, nil)
		t.Cleanup(s.Close)
		mux.Handle("GET "+twirptransport.StreamPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			upgrades.Add(1)
			s.ServeHTTP(w, r)
		}))
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL, twirps, upgrades
}

// Forwarded write batches ride the peer stream, and the leader's refusal
// reaches the forwarding replica as the same kvclient error as over Twirp;
// a peer without the stream gets them over Twirp.
func TestPeerForwardServiceOverStream(t *testing.T) {
	pool := twirptransport.NewStreamPool(twirptransport.StreamOptions{})
	defer pool.Close()
	req := &kvv1.WriteBatchRequest{Ops: []*kvv1.WriteOp{{}, {}, {}}}

	url, twirps, upgrades := forwardPeer(t, fakeForward{}, true)
	fwd := newPeerForwardService(url, http.DefaultClient, pool)
	for range 3 {
		resp, err := fwd.WriteBatch(context.Background(), req)
		if err != nil || len(resp.GetResults()) != 3 || !resp.GetResults()[0].GetExisted() {
			t.Fatalf("WriteBatch = %v, %v", resp, err)
		}
	}
	if twirps.Load() != 0 || upgrades.Load() != 1 {
		t.Fatalf("%d Twirp requests and %d upgrades, want 0 and 1", twirps.Load(), upgrades.Load())
	}

	for _, withStream := range []bool{true, false} {
		url, _, _ := forwardPeer(t, fakeForward{refuse: true}, withStream)
		_, err := newPeerForwardService(url, http.DefaultClient, pool).WriteBatch(context.Background(), req)
		var wl *kvclient.WrongLeaderError
		if !errors.As(kvwire.ErrorFromTwirp(err), &wl) || wl.Leader != 2 || !wl.Proposed {
			t.Fatalf("stream %v: refusal read as %v, want WrongLeaderError{Leader: 2, Proposed: true}", withStream, kvwire.ErrorFromTwirp(err))
		}
	}

	url, twirps, upgrades = forwardPeer(t, fakeForward{}, false)
	if _, err := newPeerForwardService(url, http.DefaultClient, pool).WriteBatch(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if twirps.Load() != 1 || upgrades.Load() != 0 {
		t.Fatalf("peer without the stream: %d Twirp requests and %d upgrades, want 1 and 0", twirps.Load(), upgrades.Load())
	}
	// No stream at all (no-peer-stream): Twirp only.
	url, twirps, _ = forwardPeer(t, fakeForward{}, true)
	if _, err := newPeerForwardService(url, http.DefaultClient, nil).WriteBatch(context.Background(), req); err != nil || twirps.Load() != 1 {
		t.Fatalf("no-peer-stream: %v, %d Twirp requests", err, twirps.Load())
	}
}

// A batch whose stream breaks has an unknown outcome, not a refusal: the
// writes are retried with their ids (kvwire.NoAnswer).
func TestPeerForwardServiceBrokenStreamIsNoAnswer(t *testing.T) {
	pool := twirptransport.NewStreamPool(twirptransport.StreamOptions{})
	url, _, _ := forwardPeer(t, fakeForward{}, true)
	fwd := newPeerForwardService(url, http.DefaultClient, pool)
	if _, err := fwd.WriteBatch(context.Background(), &kvv1.WriteBatchRequest{}); err != nil {
		t.Fatal(err)
	}
	pool.Close()
	_, err := fwd.WriteBatch(context.Background(), &kvv1.WriteBatchRequest{})
	if err == nil || !kvwire.NoAnswer(err) || !errors.Is(err, twirptransport.ErrStream) {
		t.Fatalf("batch on a closed stream: %v, want a no-answer stream error", err)
	}
}
