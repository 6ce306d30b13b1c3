package client

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	"github.com/ruaft/ruaft/kvraft/kvwire"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// endpoint is one replica the client talks to.
type endpoint struct {
	id      int
	url     string
	kv      kvv1.KVService
	svc     kvclient.Service
	members kvv1.MembershipService
}

// endpointSet is the client's replicas by id: the clerk's kvclient.Servers.
type endpointSet struct {
	mu   sync.Mutex // guards eps
	eps  []endpoint // sorted by id
	next int        // position to start membership calls at
	// unknown is set when the clerk asked for a replica id the set lacks
	// (a leader named by a replica: a member added since the last
	// refresh); Client.kv refreshes then, with Options.FollowMembers.
	unknown atomic.Bool
}

var _ kvclient.Servers = (*endpointSet)(nil)

func (s *endpointSet) replace(eps []endpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.eps = eps
	s.next = 0
}

func (s *endpointSet) list() []endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.eps
}

// Server implements kvclient.Servers.
func (s *endpointSet) Server(id int) kvclient.Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := slices.BinarySearchFunc(s.eps, id, func(e endpoint, id int) int { return e.id - id }); ok {
		return s.eps[i].svc
	}
	if id >= 0 {
		s.unknown.Store(true)
	}
	return nil
}

// IDs implements kvclient.Servers.
func (s *endpointSet) IDs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]int, len(s.eps))
	for i, e := range s.eps {
		ids[i] = e.id
	}
	return ids
}

// newEndpoints makes the clients for replicas at the given URLs, by id.
func (c *Client) newEndpoints(byID map[int]string) []endpoint {
	eps := make([]endpoint, 0, len(byID))
	for id, u := range byID {
		e := endpoint{id: id, url: u}
		if c.json {
			e.kv, e.members = kvv1.NewKVServiceJSONClient(u, c.hc), kvv1.NewMembershipServiceJSONClient(u, c.hc)
		} else {
			e.kv, e.members = kvv1.NewKVServiceProtobufClient(u, c.hc), kvv1.NewMembershipServiceProtobufClient(u, c.hc)
		}
		e.svc = kvwire.NewClient(e.kv)
		eps = append(eps, e)
	}
	slices.SortFunc(eps, func(a, b endpoint) int { return a.id - b.id })
	return eps
}

// Member is one replica of the cluster's configuration.
type Member struct {
	// ID is the replica's stable id.
	ID int
	// PeerURL and ClientURL are where replicas and clients reach it.
	PeerURL, ClientURL string
	// Learner is true for a replica that receives the log but does not vote.
	Learner bool
	// ProgressKnown is true when the leader tracks the member's progress;
	// then Match is the highest log index known to be on it, Lag how many
	// entries it is behind the leader, and RecentActive whether it answered
	// the leader recently.
	ProgressKnown bool
	Match, Lag    uint64
	RecentActive  bool
	// ApplyLevel is the highest apply level the member reported to the
	// leader (valid with ProgressKnown; 0 also from versions that report
	// none): during a rolling upgrade, the members below the others are
	// the ones left to upgrade.
	ApplyLevel uint32
}

func membersFromProto(ms []*kvv1.Member) []Member {
	out := make([]Member, len(ms))
	for i, m := range ms {
		out[i] = Member{ID: int(m.GetId()), PeerURL: m.GetPeerUrl(), ClientURL: m.GetClientUrl(), Learner: m.GetLearner(),
			ProgressKnown: m.GetProgressKnown(), Match: m.GetMatchIndex(), Lag: m.GetLagEntries(), RecentActive: m.GetRecentActive(),
			ApplyLevel: m.GetApplyLevel()}
	}
	return out
}

// MemberList returns the cluster's members as the leader knows them, and
// the cluster's id.
func (c *Client) MemberList(ctx context.Context) ([]Member, string, error) {
	var resp *kvv1.MemberListResponse
	err := c.members(ctx, func(ctx context.Context, ms kvv1.MembershipService) (err error) {
		resp, err = ms.MemberList(ctx, &kvv1.MemberListRequest{})
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return membersFromProto(resp.GetMembers()), resp.GetClusterId(), nil
}

// MemberAdd adds replica id, reachable by the others at peerURL (and by
// clients at clientURL, optional), as a learner; it returns the members
// after the change.
func (c *Client) MemberAdd(ctx context.Context, id int, peerURL, clientURL string) ([]Member, error) {
	return c.MemberAddLevel(ctx, id, peerURL, clientURL, kvclient.ApplyLevel)
}

// MemberAddLevel is MemberAdd for a replica whose version supports apply
// level applyLevel at most (MemberAdd assumes this module's,
// kvclient.ApplyLevel). The cluster refuses (Twirp failed_precondition,
// reason apply_level) a replica that supports less than the level it is
// at.
func (c *Client) MemberAddLevel(ctx context.Context, id int, peerURL, clientURL string, applyLevel uint32) ([]Member, error) {
	var resp *kvv1.MemberAddResponse
	err := c.members(ctx, func(ctx context.Context, ms kvv1.MembershipService) (err error) {
		resp, err = ms.MemberAdd(ctx, &kvv1.MemberAddRequest{Id: uint32(id), PeerUrl: peerURL, ClientUrl: clientURL,
			ApplyLevel: applyLevel})
		return err
	})
	return membersFromProto(resp.GetMembers()), err
}

// MemberPromote makes learner id a voter; the cluster refuses (Twirp
// failed_precondition, reason learner_behind) until it has caught up.
func (c *Client) MemberPromote(ctx context.Context, id int) ([]Member, error) {
	var resp *kvv1.MemberPromoteResponse
	err := c.members(ctx, func(ctx context.Context, ms kvv1.MembershipService) (err error) {
		resp, err = ms.MemberPromote(ctx, &kvv1.MemberPromoteRequest{Id: uint32(id)})
		return err
	})
	return membersFromProto(resp.GetMembers()), err
}

// MemberRemove removes member id (voter or learner).
func (c *Client) MemberRemove(ctx context.Context, id int) ([]Member, error) {
	var resp *kvv1.MemberRemoveResponse
	err := c.members(ctx, func(ctx context.Context, ms kvv1.MembershipService) (err error) {
		resp, err = ms.MemberRemove(ctx, &kvv1.MemberRemoveRequest{Id: uint32(id)})
		return err
	})
	return membersFromProto(resp.GetMembers()), err
}

// Refresh asks the cluster for its members and from then on talks to their
// client URLs, by replica id: a client made with one URL finds the others,
// and one made before replicas were added, removed or moved follows them.
// Members without a client URL are left out; if none has one, nothing
// changes.
func (c *Client) Refresh(ctx context.Context) error {
	members, _, err := c.MemberList(ctx)
	if err != nil {
		return err
	}
	byID := make(map[int]string, len(members))
	for _, m := range members {
		if m.ClientURL != "" {
			byID[m.ID] = m.ClientURL
		}
	}
	if len(byID) > 0 {
		c.set.replace(c.newEndpoints(byID))
	}
	return nil
}

// refreshTimeout bounds an automatic refresh, which runs before a call in
// the caller's goroutine; minRefreshGap spaces the refreshes an unknown
// leader asks for (one that names a member without a client URL would
// otherwise cost a MemberList per call).
const (
	refreshTimeout = time.Second
	minRefreshGap  = time.Second
)

// kv returns the clerk for a call, after refreshing the endpoints first if
// Options.FollowMembers asks for it and they are due (a leader the client
// does not know was named, or they are older than the interval). At most
// one call refreshes at a time; a failed refresh leaves the endpoints as
// they were and is tried again at the next interval.
func (c *Client) kv(ctx context.Context) *kvclient.Clerk {
	if c.follow == 0 || !c.refreshMu.TryLock() {
		return c.clerk
	}
	defer c.refreshMu.Unlock()
	since := time.Since(c.lastRefresh)
	if since >= c.follow || c.set.unknown.Load() && since >= min(minRefreshGap, c.follow) {
		c.set.unknown.Store(false)
		c.lastRefresh = time.Now()
		rctx, cancel := context.WithTimeout(ctx, refreshTimeout)
		_ = c.Refresh(rctx) // best effort: the call goes on with what there is
		cancel()
	}
	return c.clerk
}

// members makes a membership call at the endpoints in turn, starting at the
// one that answered last, until one answers (the replica that answers
// forwards the call to the leader itself) or ctx ends.
func (c *Client) members(ctx context.Context, call func(context.Context, kvv1.MembershipService) error) error {
	c.set.mu.Lock()
	eps, start := c.set.eps, c.set.next
	c.set.mu.Unlock()
	last := errors.New("durio client: no endpoints")
	for i := range eps {
		pos := (start + i) % len(eps)
		err := call(ctx, eps[pos].members)
		var terr twirp.Error
		if err == nil || errors.As(err, &terr) && !kvwire.NoAnswer(err) && terr.Code() != twirp.Unavailable {
			c.set.mu.Lock()
			c.set.next = pos
			c.set.mu.Unlock()
			return err
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return last
}
