package client

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"testing"

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
