package durio

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/kvraft"
	"github.com/ruaft/ruaft/kvraft/kvwire"
	"github.com/ruaft/ruaft/raft"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// Reasons (Twirp meta "reason") of the membership refusals; see
// rpc/kv/v1/membership.proto.
const (
	ReasonUnknownMember    = "unknown_member"
	ReasonAlreadyMember    = "already_member"
	ReasonPeerURLInUse     = "peer_url_in_use"
	ReasonLearnerBehind    = "learner_behind"
	ReasonAlreadyVoter     = "already_voter"
	ReasonLastVoter        = "last_voter"
	ReasonChangeInProgress = "change_in_progress"
	ReasonOutcomeUnknown   = "outcome_unknown"
	// ReasonApplyLevel refuses a MemberAdd for a replica whose version does
	// not support the apply level the cluster is at.
	ReasonApplyLevel = "apply_level"
)

// memberNode is what the membership service needs of the raft node.
type memberNode interface {
	AddLearner(ctx context.Context, m raft.Member) error
	AddLearnerInTerm(ctx context.Context, m raft.Member, term uint64) error
	Promote(ctx context.Context, id int) error
	RemoveMember(ctx context.Context, id int) error
	Membership() raft.Membership
	Status() raft.Status
	// Progress is, on the leader, each member's replication; nil elsewhere.
	Progress() map[int]raft.MemberProgress
}

// memberService serves kv.v1.MembershipService. On the client listener
// (forward set) a replica that does not lead hands each call to the
// leader's peer listener, following leader changes until the request
// timeout; on the peer listener it answers for itself only, so a call is
// forwarded at most once.
type memberService struct {
	node      memberNode
	dir       *directory
	leader    *leaderWatch
	self      int
	timeout   time.Duration
	clusterID string
	peerTLS   bool // peer URLs must be https
	forward   bool
	// admit checks that a replica supporting an apply level may join and
	// adds it with add, as one step against raising the cluster's level
	// (kvraft.Server.AdmitMember); nil in tests that do not need it.
	admit func(ctx context.Context, level uint32, add func(term uint64) error) error
	// whoIs asks the replica listening at a peer URL for its id (ok false
	// when nothing answers: a replica not started yet); nil in tests that
	// do not need it.
	whoIs func(ctx context.Context, peerURL string) (id int, ok bool)
}

// whoIsTimeout bounds MemberAdd's question to the new member's peer URL.
const whoIsTimeout = 2 * time.Second

var _ kvv1.MembershipService = (*memberService)(nil)

// MemberList implements kvv1.MembershipService: at the leader, with each
// member's replication progress.
func (s *memberService) MemberList(ctx context.Context, req *kvv1.MemberListRequest) (*kvv1.MemberListResponse, error) {
	var resp *kvv1.MemberListResponse
	err := s.run(ctx, func(context.Context) error {
		if st := s.node.Status(); st.Role != raft.Leader {
			return raft.ErrNotLeader
		}
		resp = &kvv1.MemberListResponse{Header: s.header(), Members: s.members(), ClusterId: s.clusterID}
		return nil
	}, func(ctx context.Context, ms kvv1.MembershipService) (err error) {
		resp, err = ms.MemberList(ctx, req)
		return err
	})
	return resp, err
}

// MemberAdd implements kvv1.MembershipService.
func (s *memberService) MemberAdd(ctx context.Context, req *kvv1.MemberAddRequest) (*kvv1.MemberAddResponse, error) {
	if err := s.checkAdd(req); err != nil {
		return nil, err
	}
	var resp *kvv1.MemberAddResponse
	err := s.run(ctx, func(ctx context.Context) error {
		if s.whoIs != nil {
			// Another member under another spelling of its address
			// (localhost for 127.0.0.1, a host name for its IP) would
			// answer, and vote, for the new id as well as its own.
			if id, ok := s.whoIs(ctx, req.GetPeerUrl()); ok && id != int(req.GetId()) {
				return twirp.NewErrorf(twirp.AlreadyExists, "peer URL %s is replica %d's (it answers as replica %d), not replica %d's",
					req.GetPeerUrl(), id, id, req.GetId()).WithMeta(kvwire.MetaReason, ReasonPeerURLInUse)
			}
		}
		// add adds the learner; with term (not 0), only as the leader
		// of that term, the one admit checked the replica's level in.
		add := func(term uint64) error {
			for _, m := range s.node.Membership().Members {
				if m.ID == int(req.GetId()) {
					return twirp.NewErrorf(twirp.AlreadyExists, "replica %d is already a member", m.ID).
						WithMeta(kvwire.MetaReason, ReasonAlreadyMember).WithMeta("peer_url", s.addrOf(m).Peer)
				}
				if a := s.addrOf(m); a.Peer == req.GetPeerUrl() {
					return twirp.NewErrorf(twirp.AlreadyExists, "peer URL %s belongs to member %d", a.Peer, m.ID).
						WithMeta(kvwire.MetaReason, ReasonPeerURLInUse)
				}
			}
			m := raft.Member{ID: int(req.GetId()), Addr: encodeAddr(req.GetPeerUrl(), req.GetClientUrl()), Learner: true}
			if term == 0 {
				return s.node.AddLearner(ctx, m)
			}
			return s.node.AddLearnerInTerm(ctx, m, term)
		}
		var err error
		if s.admit == nil {
			err = add(0)
		} else {
			err = s.admit(ctx, req.GetApplyLevel(), add)
		}
		if le := (*kvraft.ApplyLevelError)(nil); errors.As(err, &le) {
			return twirp.NewErrorf(twirp.FailedPrecondition,
				"replica %d supports apply level %d, and the cluster is at level %d: it could not apply the log; "+
					"start it from the version the other members run (or a newer one)", req.GetId(), le.Supported, le.Required).
				WithMeta(kvwire.MetaReason, ReasonApplyLevel)
		}
		if err != nil {
			return err
		}
		resp = &kvv1.MemberAddResponse{Header: s.header(), Members: s.members(), ClusterId: s.clusterID}
		return nil
	}, func(ctx context.Context, ms kvv1.MembershipService) (err error) {
		resp, err = ms.MemberAdd(ctx, req)
		return err
	})
	return resp, err
}

// MemberPromote implements kvv1.MembershipService.
func (s *memberService) MemberPromote(ctx context.Context, req *kvv1.MemberPromoteRequest) (*kvv1.MemberPromoteResponse, error) {
	var resp *kvv1.MemberPromoteResponse
	id := int(req.GetId())
	err := s.run(ctx, func(ctx context.Context) error {
		// Raft refuses from its configuration only once it has confirmed
		// that it leads; this replica's own copy (node.Membership) may be
		// a deposed leader's that lacks a learner its successor added.
		switch err := s.node.Promote(ctx, id); {
		case errors.Is(err, raft.ErrUnknownMember):
			return errUnknownMember(id)
		case errors.Is(err, raft.ErrAlreadyMember):
			return twirp.NewErrorf(twirp.FailedPrecondition, "replica %d is a voter already", id).
				WithMeta(kvwire.MetaReason, ReasonAlreadyVoter)
		case err != nil:
			return err
		}
		resp = &kvv1.MemberPromoteResponse{Header: s.header(), Members: s.members()}
		return nil
	}, func(ctx context.Context, ms kvv1.MembershipService) (err error) {
		resp, err = ms.MemberPromote(ctx, req)
		return err
	})
	return resp, err
}

// MemberRemove implements kvv1.MembershipService.
func (s *memberService) MemberRemove(ctx context.Context, req *kvv1.MemberRemoveRequest) (*kvv1.MemberRemoveResponse, error) {
	var resp *kvv1.MemberRemoveResponse
	id := int(req.GetId())
	err := s.run(ctx, func(ctx context.Context) error {
		switch err := s.node.RemoveMember(ctx, id); { // raft confirms a refusal, as for promote
		case errors.Is(err, raft.ErrUnknownMember):
			return errUnknownMember(id)
		case err != nil:
			return err
		}
		resp = &kvv1.MemberRemoveResponse{Header: s.header(), Members: s.members()}
		return nil
	}, func(ctx context.Context, ms kvv1.MembershipService) (err error) {
		resp, err = ms.MemberRemove(ctx, req)
		return err
	})
	return resp, err
}

func errUnknownMember(id int) twirp.Error {
	return twirp.NewErrorf(twirp.NotFound, "replica %d is not a member", id).WithMeta(kvwire.MetaReason, ReasonUnknownMember)
}

// maxURLBytes bounds each URL a member may be given, so that both, encoded
// in raft.Member.Addr, stay within raft's limit on an address (1 KiB).
const maxURLBytes = 480

// checkAdd validates a MemberAdd before it goes anywhere.
func (s *memberService) checkAdd(req *kvv1.MemberAddRequest) error {
	if req.GetId() > MaxReplicaID {
		return twirp.InvalidArgumentError("id", "must be from 0 to "+strconv.Itoa(MaxReplicaID))
	}
	for _, f := range []struct {
		name, url string
		required  bool
	}{{"peer_url", req.GetPeerUrl(), true}, {"client_url", req.GetClientUrl(), false}} {
		switch {
		case f.url == "" && !f.required:
			continue
		case f.url == "":
			return twirp.RequiredArgumentError(f.name)
		case !utf8.ValidString(f.url):
			return twirp.InvalidArgumentError(f.name, "must be valid UTF-8")
		}
		if err := checkMemberURL(f.url); err != nil {
			return twirp.InvalidArgumentError(f.name, "must be an http(s) URL with a port, of at most "+strconv.Itoa(maxURLBytes)+" bytes: "+err.Error())
		}
	}
	if https := strings.HasPrefix(req.GetPeerUrl(), "https://"); https != s.peerTLS {
		want := "http://"
		if s.peerTLS {
			want = "https://"
		}
		return twirp.InvalidArgumentError("peer_url", "must be "+want+" like this cluster's peers")
	}
	return nil
}

// run runs a call at the leader: here (local) if this replica leads, else
// (on the client listener) at the leader's peer listener (remote),
// following leader changes until the request timeout. Errors come back as
// Twirp errors.
func (s *memberService) run(ctx context.Context, local func(context.Context) error,
	remote func(context.Context, kvv1.MembershipService) error,
) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var last error
	for {
		leader, changed := s.leader.Leader()
		switch {
		case leader == s.self || !s.forward:
			err := local(ctx)
			if err == nil || !errors.Is(err, raft.ErrNotLeader) || !s.forward {
				return s.twirpErr(err)
			}
			last = err
		case leader != raft.NoLeader:
			if ms := s.dir.membershipOf(leader); ms != nil {
				err := remote(ctx, ms)
				var terr twirp.Error
				if err == nil || errors.As(err, &terr) && terr.Code() != twirp.Unavailable && !kvwire.NoAnswer(err) {
					return err
				}
				last = err
			}
		}
		// No leader known, or it could not serve: wait for a change (or a
		// moment: the change may already have happened) and try again.
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			if last != nil && !kvwire.NoAnswer(last) && !errors.Is(last, raft.ErrNotLeader) {
				return s.twirpErr(last)
			}
			return twirp.NewError(twirp.Unavailable, "no leader reachable in time; nothing was changed")
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// twirpErr maps a raft membership error to the Twirp error clients see.
func (s *memberService) twirpErr(err error) error {
	var terr twirp.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &terr):
		return terr
	case errors.Is(err, raft.ErrNotLeader):
		t := twirp.NewError(twirp.Unavailable, "not the leader")
		if l, _ := s.leader.Leader(); l != raft.NoLeader {
			t = t.WithMeta(kvwire.MetaLeaderID, strconv.Itoa(l))
		}
		return t
	case errors.Is(err, raft.ErrChangeInProgress):
		return twirp.NewError(twirp.Aborted, "another membership change is in progress; retry once it is committed").
			WithMeta(kvwire.MetaReason, ReasonChangeInProgress)
	case errors.Is(err, raft.ErrOutcomeUnknown):
		// Aborted, as a change in progress: the caller retries (the CLI
		// exits 7), after reading the membership, not blindly.
		return twirp.NewError(twirp.Aborted, "leadership changed while the change was being committed; it may or may not have been made: check with member list before retrying").
			WithMeta(kvwire.MetaReason, ReasonOutcomeUnknown)
	case errors.Is(err, raft.ErrLearnerBehind):
		return twirp.NewError(twirp.FailedPrecondition, "the learner has not caught up with the leader's log yet; retry later").
			WithMeta(kvwire.MetaReason, ReasonLearnerBehind)
	case errors.Is(err, raft.ErrUnknownMember):
		return twirp.NewError(twirp.NotFound, "no such member").WithMeta(kvwire.MetaReason, ReasonUnknownMember)
	case errors.Is(err, raft.ErrAlreadyMember):
		return twirp.NewError(twirp.AlreadyExists, "already a member").WithMeta(kvwire.MetaReason, ReasonAlreadyMember)
	case errors.Is(err, raft.ErrRemoveLastVoter):
		return twirp.NewError(twirp.FailedPrecondition, "cannot remove the last voter").WithMeta(kvwire.MetaReason, ReasonLastVoter)
	case errors.Is(err, raft.ErrBadMembership):
		return twirp.NewError(twirp.InvalidArgument, err.Error())
	case errors.Is(err, raft.ErrKilled), errors.Is(err, raft.ErrStoreFailed):
		return twirp.NewError(twirp.Unavailable, "replica shutting down")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return twirp.NewError(twirp.DeadlineExceeded, "timed out; the change may or may not have been made: check with member list")
	default:
		return twirp.InternalErrorWith(fmt.Errorf("membership change: %w", err))
	}
}

func (s *memberService) header() *kvv1.ResponseHeader {
	st := s.node.Status()
	return &kvv1.ResponseHeader{ReplicaId: uint32(s.self), LeaderId: uint32(max(st.Leader, 0)), Term: st.Term}
}

// addrOf decodes m's addresses, falling back like the directory does.
func (s *memberService) addrOf(m raft.Member) memberAddr {
	if a := decodeAddr(m.Addr); a.Peer != "" {
		return a
	}
	return s.dir.fallback(m.ID)
}

// members is the configuration with each member's progress as this
// replica (the leader) tracks it.
func (s *memberService) members() []*kvv1.Member {
	st := s.node.Status()
	progress := s.node.Progress()
	ms := s.node.Membership().Members
	out := make([]*kvv1.Member, 0, len(ms))
	for _, m := range ms {
		a := s.addrOf(m)
		pm := &kvv1.Member{Id: uint32(m.ID), PeerUrl: a.Peer, ClientUrl: a.Client, Learner: m.Learner}
		if m.ID == s.self {
			if pm.ClientUrl == "" {
				pm.ClientUrl = s.dir.selfAddr.Client
			}
			pm.ProgressKnown, pm.MatchIndex, pm.RecentActive = true, st.LastIndex, true
			pm.ApplyLevel = kvraft.ApplyLevel
		} else if p, ok := progress[m.ID]; ok {
			pm.ProgressKnown, pm.MatchIndex, pm.RecentActive = true, p.Match, p.RecentActive
			pm.ApplyLevel = p.AppVersion
			pm.LagEntries = st.LastIndex - min(p.Match, st.LastIndex)
		}
		out = append(out, pm)
	}
	return out
}
