package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twitchtv/twirp"

	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// listOnly answers MemberList with fixed members; the other methods are
// refused.
type listOnly struct {
	kvv1.MembershipService
	members []*kvv1.Member
}

func (l listOnly) MemberList(context.Context, *kvv1.MemberListRequest) (*kvv1.MemberListResponse, error) {
	return &kvv1.MemberListResponse{Members: l.members, ClusterId: "c"}, nil
}

func (l listOnly) MemberRemove(context.Context, *kvv1.MemberRemoveRequest) (*kvv1.MemberRemoveResponse, error) {
	return nil, twirp.NewError(twirp.NotFound, "no such member").WithMeta("reason", "unknown_member")
}

// A client given one URL finds the other members with Refresh, by id, and
// membership refusals reach the caller as the cluster's Twirp error.
func TestRefreshDiscoversMembers(t *testing.T) {
	other := httptest.NewServer(kvv1.NewMembershipServiceServer(listOnly{}))
	defer other.Close()
	first := httptest.NewServer(kvv1.NewMembershipServiceServer(&listOnly{members: []*kvv1.Member{
		{Id: 9, PeerUrl: "http://p9:7000", ClientUrl: other.URL},
		{Id: 4, PeerUrl: "http://p4:7000", ClientUrl: "http://127.0.0.1:1", Learner: true},
		{Id: 5, PeerUrl: "http://p5:7000"}, // no client URL: left out
	}}))
	defer first.Close()
	c, err := New([]string{first.URL}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ms, id, err := c.MemberList(ctx)
	if err != nil || id != "c" || len(ms) != 3 || !ms[1].Learner || ms[1].ID != 4 {
		t.Fatalf("MemberList: %+v %q %v", ms, id, err)
	}
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := c.Endpoints(); !slices.Equal(got, []string{"http://127.0.0.1:1", other.URL}) {
		t.Fatalf("endpoints after Refresh: %v", got)
	}
	if ids := c.set.IDs(); !slices.Equal(ids, []int{4, 9}) {
		t.Fatalf("ids after Refresh: %v", ids)
	}
	// Endpoint 4 refuses connections: the call moves on to 9, whose
	// refusal is the answer.
	_, err = c.MemberRemove(ctx, 3)
	var terr twirp.Error
	if !errors.As(err, &terr) || terr.Code() != twirp.NotFound || terr.Meta("reason") != "unknown_member" {
		t.Fatalf("MemberRemove: %v", err)
	}
}

// replica serves one key's value and a MemberList of whatever members
// holds, on both Twirp services.
type replica struct {
	kvv1.KVService
	kvv1.MembershipService
	value   string
	members func() []*kvv1.Member
}

func (r *replica) Get(_ context.Context, req *kvv1.GetRequest) (*kvv1.GetResponse, error) {
	return &kvv1.GetResponse{Key: req.Key, Value: r.value}, nil
}

func (r *replica) MemberList(context.Context, *kvv1.MemberListRequest) (*kvv1.MemberListResponse, error) {
	return &kvv1.MemberListResponse{Members: r.members(), ClusterId: "c"}, nil
}

func serveReplica(t *testing.T, r *replica) *httptest.Server {
	mux := http.NewServeMux()
	kv, ms := kvv1.NewKVServiceServer(r), kvv1.NewMembershipServiceServer(r)
	mux.Handle(kv.PathPrefix(), kv)
	mux.Handle(ms.PathPrefix(), ms)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// With FollowMembers the client follows the membership by itself: its
// first call learns the members (the endpoint it was given is no member
// any more), a leader it does not know makes it look again, and without
// FollowMembers it never looks.
func TestFollowMembers(t *testing.T) {
	var (
		mu      sync.Mutex
		members []*kvv1.Member
	)
	list := func() []*kvv1.Member {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(members)
	}
	old := serveReplica(t, &replica{value: "old", members: list})
	b := serveReplica(t, &replica{value: "b", members: list})
	c8 := serveReplica(t, &replica{value: "c", members: list})
	members = []*kvv1.Member{{Id: 7, ClientUrl: b.URL}}
	ctx := context.Background()

	fixed, err := New([]string{old.URL}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := fixed.Get(ctx, "k"); err != nil || v != "old" || !slices.Equal(fixed.Endpoints(), []string{old.URL}) {
		t.Fatalf("without FollowMembers: %q %v, endpoints %v", v, err, fixed.Endpoints())
	}

	cl, err := New([]string{old.URL}, Options{FollowMembers: true, FollowInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := cl.Get(ctx, "k"); err != nil || v != "b" || !slices.Equal(cl.Endpoints(), []string{b.URL}) {
		t.Fatalf("first call: %q %v, endpoints %v", v, err, cl.Endpoints())
	}
	// Replica 8 joins; a replica names it leader (what the clerk does with
	// a leader hint): the next calls look again, at most once a second.
	mu.Lock()
	members = append(members, &kvv1.Member{Id: 8, ClientUrl: c8.URL})
	mu.Unlock()
	if cl.set.Server(8) != nil {
		t.Fatal("setup: 8 known already")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(cl.Endpoints(), []string{b.URL, c8.URL}) {
		if time.Now().After(deadline) {
			t.Fatalf("endpoints %v: the unknown leader was never looked up", cl.Endpoints())
		}
		if _, err := cl.Get(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if cl.set.unknown.Load() {
		t.Fatal("unknown flag still set after the refresh")
	}
}
