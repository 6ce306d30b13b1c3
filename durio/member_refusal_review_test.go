package durio

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/raft"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// A leader cut off from the others, not yet aware that it was replaced,
// holds a configuration without learner 5, which its successor added. Raft
// no longer refuses a change from such a configuration without confirming
// its leadership first (Node.changeConf answers ErrNotLeader instead, see
// raft.confirmRefusal), but the membership service answers "no such
// member" from Node.Membership before it asks raft: the client is told,
// finally (NotFound is no retryable answer, and the joiner stops asking to
// be promoted on it), that 5 is not a member, and a remove of 5 is taken
// for done while 5 stays in the cluster. On the peer listener (a call
// another replica forwarded) it should answer as raft does: unavailable,
// not the leader.
func TestMembershipRefusalFromDeposedLeader(t *testing.T) {
	fake := &fakeMembers{members: threeVoters(), // the stale configuration: no learner 5
		err: fmt.Errorf("%w: leadership of term 3 not confirmed before refusing (%v)", raft.ErrNotLeader, raft.ErrUnknownMember)}
	s, url := newTestMembers(t, fake)
	s.forward = false // the peer listener: it answers for itself
	ms := kvv1.NewMembershipServiceJSONClient(url, http.DefaultClient)
	ctx := context.Background()

	_, err := ms.MemberPromote(ctx, &kvv1.MemberPromoteRequest{Id: 5})
	wantTwirp(t, "promote 5 at a deposed leader", err, twirp.Unavailable, "")
	_, err = ms.MemberRemove(ctx, &kvv1.MemberRemoveRequest{Id: 5})
	wantTwirp(t, "remove 5 at a deposed leader", err, twirp.Unavailable, "")
}
