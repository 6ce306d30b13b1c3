package durio

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	"github.com/ruaft/ruaft/kvraft/kvwire"
	"github.com/ruaft/ruaft/raft"
	"github.com/ruaft/ruaft/raft/twirptransport"
)

// frontend is the service behind the client listener. It hands every
// request to a kvclient.Clerk, the same leader-following engine the Go
// client uses, over this replica's kvraft server (in-process) and a
// kvwire.Forwarder per other replica (writes in batches over the peer
// listener). Writes go straight to the leader this replica knows of; an
// attempt there is abandoned as soon as that changes (leaderWatch), and
// retried at the new leader within the same request. Linearizable reads
// start here. Writes without a header get one from the frontend's own
// clerk, so its retries never apply a write twice. Requests run
// concurrently; nothing serialises them.
type frontend struct {
	self    int
	local   kvclient.Service
	clerk   *kvclient.Clerk
	timeout time.Duration
}

var _ kvclient.Service = (*frontend)(nil)

// OpenSession implements kvclient.Service: at the leader.
func (f *frontend) OpenSession(ctx context.Context, req *kvclient.OpenSessionRequest) (*kvclient.OpenSessionResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	var resp *kvclient.OpenSessionResponse
	err := f.clerk.Do(ctx, false, func(ctx context.Context, s kvclient.Service) error {
		var err error
		resp, err = s.OpenSession(ctx, req)
		return err
	})
	return resp, err
}

// Get implements kvclient.Service.
func (f *frontend) Get(ctx context.Context, req *kvclient.GetRequest) (*kvclient.GetResponse, error) {
	if req.Consistency == kvclient.Stale {
		ctx, cancel := context.WithTimeout(ctx, f.timeout)
		defer cancel()
		return f.local.Get(ctx, req)
	}
	var resp *kvclient.GetResponse
	// By: most gets are answered by the first attempt, here, under one
	// timer for both the attempt and the request.
	err := f.clerk.DoFromBy(ctx, time.Now().Add(f.timeout), f.self, false, func(ctx context.Context, s kvclient.Service) error {
		var err error
		resp, err = s.Get(ctx, req)
		return err
	})
	return resp, err
}

// Put implements kvclient.Service.
func (f *frontend) Put(ctx context.Context, req *kvclient.PutRequest) (*kvclient.PutResponse, error) {
	var resp *kvclient.PutResponse
	err := f.write(ctx, req.Write, func(ctx context.Context, s kvclient.Service, id kvclient.WriteID) error {
		var err error
		r := *req
		r.Write = id
		resp, err = s.Put(ctx, &r)
		return err
	})
	return resp, err
}

// Append implements kvclient.Service.
func (f *frontend) Append(ctx context.Context, req *kvclient.AppendRequest) (*kvclient.AppendResponse, error) {
	var resp *kvclient.AppendResponse
	err := f.write(ctx, req.Write, func(ctx context.Context, s kvclient.Service, id kvclient.WriteID) error {
		var err error
		resp, err = s.Append(ctx, &kvclient.AppendRequest{Key: req.Key, Value: req.Value, Write: id})
		return err
	})
	return resp, err
}

// Delete implements kvclient.Service.
func (f *frontend) Delete(ctx context.Context, req *kvclient.DeleteRequest) (*kvclient.DeleteResponse, error) {
	var resp *kvclient.DeleteResponse
	err := f.write(ctx, req.Write, func(ctx context.Context, s kvclient.Service, id kvclient.WriteID) error {
		var err error
		r := *req
		r.Write = id
		resp, err = s.Delete(ctx, &r)
		return err
	})
	return resp, err
}

// Txn implements kvclient.Service.
func (f *frontend) Txn(ctx context.Context, req *kvclient.TxnRequest) (*kvclient.TxnResponse, error) {
	var resp *kvclient.TxnResponse
	err := f.write(ctx, req.Write, func(ctx context.Context, s kvclient.Service, id kvclient.WriteID) error {
		var err error
		r := *req
		r.Write = id
		resp, err = s.Txn(ctx, &r)
		return err
	})
	return resp, err
}

// write runs a write with the client's id, or with one from the frontend's
// clerk when the client sent none. By: as for gets, most writes are settled
// by their first attempt, under one timer for the attempt and the request.
func (f *frontend) write(ctx context.Context, id kvclient.WriteID, call func(context.Context, kvclient.Service, kvclient.WriteID) error) error {
	by := time.Now().Add(f.timeout)
	if id.ClientID == 0 {
		return f.clerk.WriteBy(ctx, by, call)
	}
	return f.clerk.DoFromBy(ctx, by, -1, true, func(ctx context.Context, s kvclient.Service) error { return call(ctx, s, id) })
}

// leaderWatch is the kvclient.LeaderWatch of the frontend: the leader this
// replica's raft node knows of, with a channel closed at each change.
type leaderWatch struct {
	mu      sync.Mutex    // guards leader and changed
	leader  int           // raft.NoLeader if none
	changed chan struct{} // closed and replaced when leader changes
	// attempts are the clerk's attempts at other replicas, abandoned when
	// the leader moves away from theirs (no goroutine per attempt).
	attempts kvclient.Attempts
}

var _ kvclient.LeaderSubscriber = (*leaderWatch)(nil)

// AbandonOnMove implements kvclient.LeaderSubscriber.
func (w *leaderWatch) AbandonOnMove(target int, abandon func()) (stop func()) {
	return w.attempts.Add(target, abandon)
}

func newLeaderWatch() *leaderWatch {
	return &leaderWatch{leader: raft.NoLeader, changed: make(chan struct{})}
}

// Leader implements kvclient.LeaderWatch.
func (w *leaderWatch) Leader() (int, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.leader, w.changed
}

// set records the known leader, waking attempts if it changed.
func (w *leaderWatch) set(leader int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if leader == w.leader {
		return
	}
	w.leader = leader
	close(w.changed)
	w.changed = make(chan struct{})
	// Under mu, so that two changes abandon in their order.
	w.attempts.Moved(leader)
}

// observe feeds w one of the raft node's events (see followEvents). The
// node publishes a change before any other call can observe it, so an
// attempt at the old leader is abandoned as soon as this replica hears of
// the new one.
func (w *leaderWatch) observe(ev raft.Event) { w.set(ev.Leader) }

// forwardBatchOps is the most writes one forwarded batch carries.
const forwardBatchOps = 256

// newFrontend builds the frontend over this replica's kvraft server and a
// Forwarder to each other member's peer listener (the directory, which
// follows membership changes).
func (r *Replica) newFrontend() (*frontend, error) {
	ccfg := kvclient.DefaultClerkConfig()
	ccfg.AttemptTimeout = forwardAttempt(r.cfg)
	ccfg.MinBackoff, ccfg.MaxBackoff = 5*time.Millisecond, 50*time.Millisecond
	ccfg.Leader = r.leader
	ccfg.Self = r.cfg.ID
	clerk, err := kvclient.NewClerkOf(r.dir, ccfg)
	if err != nil {
		return nil, err
	}
	return &frontend{self: r.cfg.ID, local: r.kv, clerk: clerk, timeout: r.cfg.RequestTimeout}, nil
}

// forwardAttempt bounds an attempt at another replica on the scale of the
// election timeout: a leader that stopped answering is replaced within
// about one election, and a retry with the same write id is harmless.
// Three of raft's longest election waits (0.9 s by default).
func forwardAttempt(cfg Config) time.Duration {
	_, hi := electionTimeouts(cfg)
	return 3 * hi
}

// newDirectory returns the replica's address book, empty until update.
func (r *Replica) newDirectory(transport *twirptransport.Transport, peerHTTP *http.Client) *directory {
	fcfg := kvwire.DefaultForwarderConfig()
	fcfg.MaxBatchOps = forwardBatchOps
	fcfg.CallTimeout = forwardAttempt(r.cfg)
	fcfg.RequestID = requestID
	cfg := r.cfg
	return &directory{
		self: cfg.ID, selfAddr: memberAddr{Peer: cfg.PeerURL, Client: cfg.ClientURL}, local: r.kv,
		fallback: func(id int) memberAddr {
			var a memberAddr
			if id >= 0 && id < len(cfg.Peers) {
				a.Peer = cfg.Peers[id]
			}
			if id >= 0 && id < len(cfg.ClientURLs) {
				a.Client = cfg.ClientURLs[id]
			}
			if a.Peer == "" && r.join != nil {
				a = r.join.addrs[id]
			}
			return a
		},
		transport: transport, peerHTTP: peerHTTP, fcfg: fcfg, logger: r.logger.With("layer", "membership"),
	}
}

// The methods of issue 16, passed through the clerk. (kvedge refines them.)

// List implements kvclient.Service: linearizable lists start here, like Get.
func (f *frontend) List(ctx context.Context, req *kvclient.ListRequest) (*kvclient.ListResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	if req.Consistency == kvclient.Stale {
		return f.local.List(ctx, req)
	}
	var resp *kvclient.ListResponse
	err := f.clerk.DoFrom(ctx, f.self, false, func(ctx context.Context, s kvclient.Service) error {
		var err error
		resp, err = s.List(ctx, req)
		return err
	})
	return resp, err
}

// Watch implements kvclient.Service: any replica answers a watch from its
// own applied state, so this one does.
func (f *frontend) Watch(ctx context.Context, req *kvclient.WatchRequest) (*kvclient.WatchResponse, error) {
	return f.local.Watch(ctx, req)
}

// LeaseGrant implements kvclient.Service: at the leader, exactly once.
func (f *frontend) LeaseGrant(ctx context.Context, req *kvclient.LeaseGrantRequest) (*kvclient.LeaseGrantResponse, error) {
	var resp *kvclient.LeaseGrantResponse
	err := f.write(ctx, req.Write, func(ctx context.Context, s kvclient.Service, id kvclient.WriteID) error {
		var err error
		resp, err = s.LeaseGrant(ctx, &kvclient.LeaseGrantRequest{TTL: req.TTL, Write: id})
		return err
	})
	return resp, err
}

// LeaseRevoke implements kvclient.Service: at the leader, exactly once.
func (f *frontend) LeaseRevoke(ctx context.Context, req *kvclient.LeaseRevokeRequest) (*kvclient.LeaseRevokeResponse, error) {
	var resp *kvclient.LeaseRevokeResponse
	err := f.write(ctx, req.Write, func(ctx context.Context, s kvclient.Service, id kvclient.WriteID) error {
		var err error
		resp, err = s.LeaseRevoke(ctx, &kvclient.LeaseRevokeRequest{ID: req.ID, Write: id})
		return err
	})
	return resp, err
}

// LeaseKeepAlive implements kvclient.Service: at the leader.
func (f *frontend) LeaseKeepAlive(ctx context.Context, req *kvclient.LeaseKeepAliveRequest) (*kvclient.LeaseKeepAliveResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	var resp *kvclient.LeaseKeepAliveResponse
	err := f.clerk.Do(ctx, false, func(ctx context.Context, s kvclient.Service) error {
		var err error
		resp, err = s.LeaseKeepAlive(ctx, req)
		return err
	})
	return resp, err
}

// LeaseTimeToLive implements kvclient.Service: at the leader.
func (f *frontend) LeaseTimeToLive(ctx context.Context, req *kvclient.LeaseTimeToLiveRequest) (*kvclient.LeaseTimeToLiveResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	var resp *kvclient.LeaseTimeToLiveResponse
	err := f.clerk.Do(ctx, false, func(ctx context.Context, s kvclient.Service) error {
		var err error
		resp, err = s.LeaseTimeToLive(ctx, req)
		return err
	})
	return resp, err
}
