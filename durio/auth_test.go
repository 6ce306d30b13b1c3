package durio

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/raft"
	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
)

func TestPeerToken(t *testing.T) {
	srv := httptest.NewServer(requireToken("s3cret", raftv1.NewRaftServiceServer(peerServer{node: echoNode{}})))
	defer srv.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		token string
		ok    bool
	}{{"s3cret", true}, {"wrong", false}, {"", false}} {
		tr := newPeerTransport(0, []string{"", srv.URL}, withToken(newPeerHTTPClient(), tc.token))
		_, err := tr.RequestVote(ctx, 1, &raft.RequestVoteRequest{Term: 1})
		var terr twirp.Error
		switch {
		case tc.ok && err != nil:
			t.Errorf("token %q: %v", tc.token, err)
		case !tc.ok && (!errors.As(err, &terr) || terr.Code() != twirp.Unauthenticated):
			t.Errorf("token %q: got %v, want unauthenticated (401)", tc.token, err)
		}
	}
}
