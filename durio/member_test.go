package durio

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/internal/freeport"
	"github.com/ruaft/ruaft/kvraft"
	"github.com/ruaft/ruaft/kvraft/kvwire"
	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/raft"
	"github.com/ruaft/ruaft/raft/twirptransport"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// fakeMembers is a memberNode that leads and applies changes at once,
// unless told to fail with err.
type fakeMembers struct {
	mu      sync.Mutex // guards members, err, calls
	members []raft.Member
	err     error // returned by the next change, if set
	calls   []string
}

func (f *fakeMembers) change(call string, apply func()) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	if f.err != nil {
		return f.err
	}
	apply()
	return nil
}

func (f *fakeMembers) AddLearner(_ context.Context, m raft.Member) error {
	return f.change("add", func() { f.members = append(f.members, m) })
}

func (f *fakeMembers) AddLearnerInTerm(_ context.Context, m raft.Member, term uint64) error {
	return f.change(fmt.Sprintf("add@%d", term), func() { f.members = append(f.members, m) })
}

// refusal is what raft answers a promote (or, promote false, a remove) of
// id with from the members, as Membership.apply does; nil if it would
// make the change. Called with f.mu held.
func (f *fakeMembers) refusal(id int, promote bool) error {
	i := slices.IndexFunc(f.members, func(m raft.Member) bool { return m.ID == id })
	switch {
	case i < 0:
		return fmt.Errorf("%w: %d", raft.ErrUnknownMember, id)
	case promote && !f.members[i].Learner:
		return fmt.Errorf("%w: %d is a voter already", raft.ErrAlreadyMember, id)
	}
	return nil
}

func (f *fakeMembers) Promote(_ context.Context, id int) error {
	var err error
	cerr := f.change("promote", func() {
		if err = f.refusal(id, true); err == nil {
			for i := range f.members {
				if f.members[i].ID == id {
					f.members[i].Learner = false
				}
			}
		}
	})
	return cmp.Or(cerr, err)
}

func (f *fakeMembers) RemoveMember(_ context.Context, id int) error {
	var err error
	cerr := f.change("remove", func() {
		if err = f.refusal(id, false); err == nil {
			f.members = slices.DeleteFunc(f.members, func(m raft.Member) bool { return m.ID == id })
		}
	})
	return cmp.Or(cerr, err)
}

func (f *fakeMembers) Membership() raft.Membership {
	f.mu.Lock()
	defer f.mu.Unlock()
	return raft.Membership{Members: slices.Clone(f.members)}
}

func (f *fakeMembers) Status() raft.Status {
	return raft.Status{ID: 0, Role: raft.Leader, Leader: 0, Term: 3, LastIndex: 40}
}

func (f *fakeMembers) changes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// newTestMembers serves a memberService over fake (replica 0, leading) on
// the client handler, with its browser and content-type rules.
func newTestMembers(t *testing.T, fake *fakeMembers) (*memberService, string) {
	t.Helper()
	dir := &directory{self: 0, selfAddr: memberAddr{Peer: "http://127.0.0.1:7000", Client: "http://127.0.0.1:8000"},
		fallback: func(int) memberAddr { return memberAddr{} }, transport: twirptransport.NewWithPeers(0, nil, twirptransport.Options{}),
		logger: discardLogger()}
	leader := newLeaderWatch()
	leader.set(0)
	s := &memberService{node: fake, dir: dir, leader: leader, self: 0, timeout: time.Second, clusterID: testClusterID, forward: true}
	srv := httptest.NewServer(clientHandler(&mapKV{m: map[string]string{}}, DefaultLimits(), func(mux *http.ServeMux) {
		ms := kvv1.NewMembershipServiceServer(s)
		mux.Handle("POST "+ms.PathPrefix(), ms)
	}))
	t.Cleanup(srv.Close)
	return s, srv.URL
}

func threeVoters() []raft.Member {
	return []raft.Member{
		{ID: 0, Addr: encodeAddr("http://127.0.0.1:7000", "http://127.0.0.1:8000")},
		{ID: 1, Addr: encodeAddr("http://127.0.0.1:7001", "http://127.0.0.1:8001")},
		{ID: 2, Addr: encodeAddr("http://127.0.0.1:7002", "")},
	}
}

func wantTwirp(t *testing.T, what string, err error, code twirp.ErrorCode, reason string) {
	t.Helper()
	var terr twirp.Error
	if !errors.As(err, &terr) || terr.Code() != code || terr.Meta(kvwire.MetaReason) != reason {
		t.Fatalf("%s: got %v, want %s with reason %q", what, err, code, reason)
	}
}

// Every refusal of the membership API reaches the client as the Twirp
// error (and so the HTTP status and CLI exit code) the contract names, and
// changes nothing.
func TestMembershipRefusals(t *testing.T) {
	fake := &fakeMembers{members: append(threeVoters(), raft.Member{ID: 5, Addr: encodeAddr("http://127.0.0.1:7005", ""), Learner: true})}
	_, url := newTestMembers(t, fake)
	ms := kvv1.NewMembershipServiceJSONClient(url, http.DefaultClient)
	ctx := context.Background()

	_, err := ms.MemberRemove(ctx, &kvv1.MemberRemoveRequest{Id: 9})
	wantTwirp(t, "remove unknown", err, twirp.NotFound, ReasonUnknownMember)
	_, err = ms.MemberPromote(ctx, &kvv1.MemberPromoteRequest{Id: 9})
	wantTwirp(t, "promote unknown", err, twirp.NotFound, ReasonUnknownMember)
	_, err = ms.MemberAdd(ctx, &kvv1.MemberAddRequest{Id: 1, PeerUrl: "http://127.0.0.1:7100"})
	wantTwirp(t, "add existing id", err, twirp.AlreadyExists, ReasonAlreadyMember)
	_, err = ms.MemberAdd(ctx, &kvv1.MemberAddRequest{Id: 7, PeerUrl: "http://127.0.0.1:7001"})
	wantTwirp(t, "add with a member's peer URL", err, twirp.AlreadyExists, ReasonPeerURLInUse)
	_, err = ms.MemberPromote(ctx, &kvv1.MemberPromoteRequest{Id: 1})
	wantTwirp(t, "promote a voter", err, twirp.FailedPrecondition, ReasonAlreadyVoter)
	for _, bad := range []*kvv1.MemberAddRequest{
		{Id: 7},
		{Id: MaxReplicaID + 1, PeerUrl: "http://127.0.0.1:7007"},
		{Id: 7, PeerUrl: "ftp://127.0.0.1:7007"},
		{Id: 7, PeerUrl: "http://127.0.0.1"},
		{Id: 7, PeerUrl: "https://127.0.0.1:7007"}, // this cluster's peers are http
		{Id: 7, PeerUrl: "http://127.0.0.1:7007/" + strings.Repeat("x", maxURLBytes)},
		{Id: 7, PeerUrl: "http://127.0.0.1:7007", ClientUrl: "javascript:alert(1)"},
	} {
		_, err := ms.MemberAdd(ctx, bad)
		wantTwirp(t, "add "+bad.String(), err, twirp.InvalidArgument, "")
	}
	// The adds refused above never reached raft; the promotes and the
	// remove did, and raft refused them (it confirms its leadership first:
	// TestMembershipRefusalFromDeposedLeader).
	if got := fake.changes(); !slices.Equal(got, []string{"remove", "promote", "promote"}) {
		t.Fatalf("calls that reached raft: %v, want a remove and two promotes", got)
	}
	if got := fake.Membership(); len(got.Members) != 4 || got.Voters()[2] != 2 || !got.Members[3].Learner {
		t.Fatalf("refused changes changed the members: %v", got)
	}

	// Refusals raft makes, mapped.
	for _, tc := range []struct {
		err    error
		code   twirp.ErrorCode
		reason string
	}{
		{raft.ErrLearnerBehind, twirp.FailedPrecondition, ReasonLearnerBehind},
		{raft.ErrChangeInProgress, twirp.Aborted, ReasonChangeInProgress},
		{fmt.Errorf("%w: compacted", raft.ErrOutcomeUnknown), twirp.Aborted, ReasonOutcomeUnknown},
		{raft.ErrRemoveLastVoter, twirp.FailedPrecondition, ReasonLastVoter},
		{raft.ErrUnknownMember, twirp.NotFound, ReasonUnknownMember},
	} {
		fake.mu.Lock()
		fake.err = tc.err
		fake.mu.Unlock()
		_, err := ms.MemberPromote(ctx, &kvv1.MemberPromoteRequest{Id: 5})
		wantTwirp(t, tc.err.Error(), err, tc.code, tc.reason)
	}
	fake.mu.Lock()
	fake.err = nil
	fake.mu.Unlock()
	resp, err := ms.MemberPromote(ctx, &kvv1.MemberPromoteRequest{Id: 5})
	if err != nil || len(resp.GetMembers()) != 4 || resp.GetMembers()[3].GetLearner() {
		t.Fatalf("promote: %v %v", resp, err)
	}
}

// The membership methods follow the client listener's rules for writes: a
// form post (what a hostile page can send without a preflight) gets 415, a
// foreign origin 403, and neither reaches raft.
func TestMembershipIsProtectedAsAWrite(t *testing.T) {
	fake := &fakeMembers{members: threeVoters()}
	_, url := newTestMembers(t, fake)
	body := `{"id":2}`
	for _, tc := range []struct {
		name, contentType, origin string
		status                    int
	}{
		{"form", "text/plain", "", http.StatusUnsupportedMediaType},
		{"urlencoded", "application/x-www-form-urlencoded", "", http.StatusUnsupportedMediaType},
		{"foreign origin", "application/json", "https://evil.example", http.StatusForbidden},
	} {
		req, _ := http.NewRequest("POST", url+"/twirp/kv.v1.MembershipService/MemberRemove", strings.NewReader(body))
		req.Header.Set("Content-Type", tc.contentType)
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Fatalf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
	}
	if got := fake.changes(); len(got) != 0 {
		t.Fatalf("refused requests reached raft: %v", got)
	}
	if n := len(fake.Membership().Members); n != 3 {
		t.Fatalf("%d members left, want 3", n)
	}
}

// A replica asked to join a cluster refuses a data folder that holds
// another cluster's state, and an id a member has at another address.
func TestJoinRefusesForeignDataDir(t *testing.T) {
	fake := &fakeMembers{members: threeVoters()}
	_, url := newTestMembers(t, fake) // cluster id testClusterID
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.ID, cfg.Join, cfg.PeerURL, cfg.ListenClient = 4, []string{url}, "http://127.0.0.1:7004", "127.0.0.1:0"
	hc := http.DefaultClient

	withState := func(t *testing.T) persist.Store {
		m := persist.NewMemory()
		if err := m.Append(ctx, persist.HardState{Term: 2, VotedFor: persist.NoVote}, []persist.Entry{{Index: 1, Term: 2}}); err != nil {
			t.Fatal(err)
		}
		return m
	}
	t.Run("other cluster id", func(t *testing.T) {
		cfg := cfg
		cfg.DataDir = t.TempDir()
		if err := writeClusterID(cfg.DataDir, "c2"); err != nil {
			t.Fatal(err)
		}
		_, err := prepareJoin(ctx, cfg, withState(t), hc, discardLogger())
		if !errors.Is(err, ErrForeignDataDir) || !strings.Contains(err.Error(), "cluster id c2") || !strings.Contains(err.Error(), "empty --data-dir") {
			t.Fatalf("got %v, want ErrForeignDataDir naming both clusters", err)
		}
	})
	t.Run("state without cluster id", func(t *testing.T) {
		cfg := cfg
		cfg.DataDir = t.TempDir()
		if _, err := prepareJoin(ctx, cfg, withState(t), hc, discardLogger()); !errors.Is(err, ErrForeignDataDir) {
			t.Fatalf("got %v, want ErrForeignDataDir", err)
		}
	})
	t.Run("empty store", func(t *testing.T) {
		cfg := cfg
		cfg.DataDir = t.TempDir()
		if err := writeClusterID(cfg.DataDir, "stale"); err != nil {
			t.Fatal(err)
		}
		plan, err := prepareJoin(ctx, cfg, persist.NewMemory(), hc, discardLogger())
		if err != nil || plan.clusterID != testClusterID || plan.member {
			t.Fatalf("got %+v, %v", plan, err)
		}
		if id, checked, _ := readClusterID(cfg.DataDir); id != testClusterID || !checked {
			t.Fatalf("recorded cluster id %q (enforced %v), want %s enforced", id, checked, testClusterID)
		}
	})
	t.Run("restart of a replica that joined", func(t *testing.T) {
		cfg := cfg
		cfg.DataDir = t.TempDir()
		cfg.ID, cfg.PeerURL = 2, "http://127.0.0.1:7002"
		if err := writeClusterID(cfg.DataDir, testClusterID); err != nil {
			t.Fatal(err)
		}
		plan, err := prepareJoin(ctx, cfg, withState(t), hc, discardLogger())
		if err != nil || !plan.member {
			t.Fatalf("got %+v, %v", plan, err)
		}
	})
	t.Run("id taken at another address", func(t *testing.T) {
		cfg := cfg
		cfg.DataDir = t.TempDir()
		cfg.ID = 1
		_, err := prepareJoin(ctx, cfg, persist.NewMemory(), hc, discardLogger())
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "already a member") {
			t.Fatalf("got %v, want a configuration error", err)
		}
		if _, err := os.Stat(filepath.Join(cfg.DataDir, clusterIDFile)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a refused join recorded a cluster id: %v", err)
		}
	})
}

func TestMemberAddrRoundTrip(t *testing.T) {
	a := memberAddr{Peer: "https://10.0.0.5:7000", Client: "https://10.0.0.5:8080"}
	if got := decodeAddr(encodeAddr(a.Peer, a.Client)); got != a {
		t.Fatalf("round trip: %+v", got)
	}
	for _, bad := range []string{"", "http://10.0.0.5:7000", "{", `{"peer":1}`} {
		if got := decodeAddr(bad); got != (memberAddr{}) {
			t.Fatalf("decodeAddr(%q) = %+v, want the zero value", bad, got)
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// The directory follows configuration changes: the transport's address
// book, a forwarder per other member (kept while its peer URL stays), the
// clerk's ids, client URLs for leader hints; members stored without
// addresses fall back to --peers.
func TestDirectoryFollowsMembership(t *testing.T) {
	tr := twirptransport.NewWithPeers(1, nil, twirptransport.Options{})
	self := &mapKV{m: map[string]string{}}
	d := &directory{self: 1, selfAddr: memberAddr{Peer: "http://127.0.0.1:7001", Client: "http://127.0.0.1:8001"},
		local: kvwire.NewClient(self), localKV: self, fallback: func(id int) memberAddr {
			return memberAddr{Peer: "http://fallback:" + strconv.Itoa(7000+id)}
		}, transport: tr, peerHTTP: http.DefaultClient, fcfg: kvwire.DefaultForwarderConfig(), logger: discardLogger()}
	defer d.close()
	d.update(raft.Membership{Members: []raft.Member{
		{ID: 0}, // bootstrapped without addresses
		{ID: 1, Addr: encodeAddr("http://127.0.0.1:7001", "")},
		{ID: 2, Addr: encodeAddr("http://127.0.0.1:7002", "http://127.0.0.1:8002")},
	}})
	if got := tr.Peers(); len(got) != 2 || got[0] != "http://fallback:7000" || got[2] != "http://127.0.0.1:7002" {
		t.Fatalf("address book %v", got)
	}
	if ids := d.IDs(); !slices.Equal(ids, []int{0, 1, 2}) {
		t.Fatalf("ids %v", ids)
	}
	if d.clientURL(2) != "http://127.0.0.1:8002" || d.clientURL(1) != "http://127.0.0.1:8001" || d.clientURL(5) != "" {
		t.Fatalf("client URLs: %q %q %q", d.clientURL(2), d.clientURL(1), d.clientURL(5))
	}
	kept := d.Server(2)
	if d.Server(1) == nil || kept == nil || d.Server(5) != nil {
		t.Fatal("servers")
	}
	// 0 leaves, 2 stays, 7 joins as a learner; then 1 (this replica) is
	// removed: it still serves itself.
	d.update(raft.Membership{Members: []raft.Member{
		{ID: 2, Addr: encodeAddr("http://127.0.0.1:7002", "http://127.0.0.1:8002")},
		{ID: 7, Addr: encodeAddr("http://127.0.0.1:7007", "http://127.0.0.1:8007"), Learner: true},
	}})
	if got := tr.Peers(); len(got) != 2 || got[7] != "http://127.0.0.1:7007" {
		t.Fatalf("address book %v", got)
	}
	if ids := d.IDs(); !slices.Equal(ids, []int{1, 2, 7}) {
		t.Fatalf("ids %v", ids)
	}
	if d.Server(2) != kept {
		t.Fatal("the forwarder of a member whose address did not change was replaced")
	}
	if d.Server(0) != nil || d.Server(1) == nil {
		t.Fatal("a departed member is still served, or this replica is not")
	}
	if ms := d.Members(); len(ms) != 2 || !ms[1].Learner || ms[1].Client != "http://127.0.0.1:8007" {
		t.Fatalf("members %+v", ms)
	}
	if targets := d.statusTargets(); len(targets) != 3 || targets[1] != self {
		t.Fatalf("status targets %v", targets)
	}
	// 2 moves to a new address: a new forwarder.
	d.update(raft.Membership{Members: []raft.Member{{ID: 2, Addr: encodeAddr("http://127.0.0.1:7102", "")}}})
	if d.Server(2) == kept || tr.Peers()[2] != "http://127.0.0.1:7102" {
		t.Fatal("a member that moved kept its old forwarder or address")
	}
}

func (f *fakeMembers) Progress() map[int]raft.MemberProgress {
	return map[int]raft.MemberProgress{1: {Match: 30, RecentActive: true, AppVersion: 1}}
}

// A MemberAdd for a replica whose version supports less than the cluster's
// apply level is refused (failed_precondition, reason apply_level) before
// it reaches raft, whatever the client sent (an old client sends none);
// one at or above it is added, bound to the term the level was checked in.
// The member list shows each member's level.
func TestMembershipRefusesReplicaBelowApplyLevel(t *testing.T) {
	fake := &fakeMembers{members: threeVoters()}
	s, url := newTestMembers(t, fake)
	var level atomic.Uint32
	const checkedTerm = 7
	s.admit = func(_ context.Context, supported uint32, add func(uint64) error) error {
		if need := level.Load(); supported < need {
			return &kvraft.ApplyLevelError{Supported: supported, Required: need}
		}
		return add(checkedTerm)
	}
	ms := kvv1.NewMembershipServiceJSONClient(url, http.DefaultClient)
	ctx := context.Background()

	// At level 0 any replica may join, one that reports no level too.
	if _, err := ms.MemberAdd(ctx, &kvv1.MemberAddRequest{Id: 7, PeerUrl: "http://127.0.0.1:7007"}); err != nil {
		t.Fatalf("add at level 0: %v", err)
	}
	level.Store(1)
	for _, req := range []*kvv1.MemberAddRequest{
		{Id: 8, PeerUrl: "http://127.0.0.1:7008"},
		{Id: 8, PeerUrl: "http://127.0.0.1:7008", ApplyLevel: 0},
	} {
		_, err := ms.MemberAdd(ctx, req)
		wantTwirp(t, "add below the level", err, twirp.FailedPrecondition, ReasonApplyLevel)
		if !strings.Contains(err.Error(), "level 1") {
			t.Fatalf("the refusal does not name the cluster's level: %v", err)
		}
	}
	if got := fake.changes(); !slices.Equal(got, []string{"add@7"}) {
		t.Fatalf("changes %v, want one add in the term checked: a refused add reached raft, or an add was not bound to the term", got)
	}
	if _, err := ms.MemberAdd(ctx, &kvv1.MemberAddRequest{Id: 8, PeerUrl: "http://127.0.0.1:7008", ApplyLevel: 1}); err != nil {
		t.Fatalf("add at the cluster's level: %v", err)
	}
	if _, err := ms.MemberAdd(ctx, &kvv1.MemberAddRequest{Id: 9, PeerUrl: "http://127.0.0.1:7009", ApplyLevel: 5}); err != nil {
		t.Fatalf("add of a newer replica: %v", err)
	}

	list, err := ms.MemberList(ctx, &kvv1.MemberListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint32]uint32{}
	for _, m := range list.GetMembers() {
		if m.GetProgressKnown() {
			got[m.GetId()] = m.GetApplyLevel()
		}
	}
	if want := map[uint32]uint32{0: kvraft.ApplyLevel, 1: 1}; !maps.Equal(got, want) {
		t.Fatalf("member levels %v, want %v", got, want)
	}
}

// termMembers is fakeMembers leading term: an addition bound to another
// term is refused as raft refuses it (ErrNotLeader, wrapped).
type termMembers struct {
	*fakeMembers
	term atomic.Uint64
}

func (f *termMembers) AddLearnerInTerm(ctx context.Context, m raft.Member, term uint64) error {
	if now := f.term.Load(); term != now {
		f.mu.Lock()
		f.calls = append(f.calls, fmt.Sprintf("refused@%d", term))
		f.mu.Unlock()
		return fmt.Errorf("%w: the change is for term %d, and this node leads term %d", raft.ErrNotLeader, term, now)
	}
	return f.fakeMembers.AddLearnerInTerm(ctx, m, term)
}

// A MemberAdd whose addition the leader refuses because it lost and won
// back leadership after admit checked the replica's level (the term does
// not match) is not a failure the caller sees: on the client listener the
// service checks again in the new term and adds the replica; on the peer
// listener (a call another replica forwarded) it answers unavailable with
// the leader's id, which the forwarding replica and --join retry.
func TestMembershipRetriesAdditionRefusedForTerm(t *testing.T) {
	fake := &termMembers{fakeMembers: &fakeMembers{members: threeVoters()}}
	fake.term.Store(7)
	s, url := newTestMembers(t, fake.fakeMembers)
	s.node = fake
	var checks atomic.Int32
	var lose atomic.Bool // the next check is followed by a lost and won back leadership
	s.admit = func(_ context.Context, _ uint32, add func(uint64) error) error {
		checks.Add(1)
		term := fake.term.Load()
		if lose.CompareAndSwap(true, false) {
			fake.term.Add(1)
		}
		return add(term)
	}
	lose.Store(true)
	ms := kvv1.NewMembershipServiceJSONClient(url, http.DefaultClient)
	ctx := context.Background()

	resp, err := ms.MemberAdd(ctx, &kvv1.MemberAddRequest{Id: 7, PeerUrl: "http://127.0.0.1:7007"})
	if err != nil {
		t.Fatalf("add refused once for its term: %v, want it checked again and made", err)
	}
	if n := len(resp.GetMembers()); n != 4 {
		t.Fatalf("%d members after the add, want 4", n)
	}
	if got := fake.changes(); !slices.Equal(got, []string{"refused@7", "add@8"}) || checks.Load() != 2 {
		t.Fatalf("changes %v after %d checks, want refused@7 then add@8 after a second check", got, checks.Load())
	}

	s.forward = false // the peer listener
	lose.Store(true)
	_, err = ms.MemberAdd(ctx, &kvv1.MemberAddRequest{Id: 8, PeerUrl: "http://127.0.0.1:7008"})
	wantTwirp(t, "peer listener, refused for its term", err, twirp.Unavailable, "")
	var terr twirp.Error
	if errors.As(err, &terr) && terr.Meta(kvwire.MetaLeaderID) != "0" {
		t.Fatalf("unavailable without the leader's id: %v", err)
	}
	if fake.Membership().Contains(8) {
		t.Fatal("a refused addition was made")
	}
}

// The membership metrics: voters and learners everywhere, each other
// member's lag and activity on the leader.
func TestMembersMetrics(t *testing.T) {
	fake := &fakeMembers{members: []raft.Member{threeVoters()[0], {ID: 1, Addr: encodeAddr("http://127.0.0.1:7001", ""), Learner: true}}}
	d := &directory{self: 0, fallback: func(int) memberAddr { return memberAddr{} },
		transport: twirptransport.NewWithPeers(0, nil, twirptransport.Options{}), peerHTTP: http.DefaultClient,
		fcfg: kvwire.DefaultForwarderConfig(), logger: discardLogger()}
	defer d.close()
	d.update(fake.Membership())
	reg := prometheus.NewRegistry()
	reg.MustRegister(membersCollector{dir: d, node: fake})
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name += "," + l.GetName() + "=" + l.GetValue()
			}
			got[name] = m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{
		"durio_cluster_voters": 1, "durio_cluster_learners": 1,
		// The fake leads at last index 40; member 1 has 30.
		"durio_member_lag_entries,member=1,role=learner": 10, "durio_member_recent_active,member=1,role=learner": 1,
		"durio_member_apply_level,member=1,role=learner": 1,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Fatalf("%s = %v (present %v), want %v; all: %v", k, g, ok, v, got)
		}
	}
}

// testClusterID is the cluster id newTestMembers' service answers.
const testClusterID = "00000000000000c1"

// A replica asked to join refuses a cluster id that is not what
// bootstrapClusterID gives (a hostile or damaged answer), before it writes
// it into its data folder or sends it in a header.
func TestJoinRefusesMalformedClusterID(t *testing.T) {
	for _, bad := range []string{"", "c1", "0123456789ABCDEF", "0123\r\nX-Evil: 1abc", strings.Repeat("a", 4096)} {
		s, url := newTestMembers(t, &fakeMembers{members: threeVoters()})
		s.clusterID = bad
		cfg := DefaultConfig()
		cfg.ID, cfg.Join, cfg.PeerURL, cfg.ListenClient = 4, []string{url}, "http://127.0.0.1:7004", "127.0.0.1:0"
		cfg.DataDir = t.TempDir()
		_, err := prepareJoin(context.Background(), cfg, persist.NewMemory(), http.DefaultClient, discardLogger())
		if err == nil || !strings.Contains(err.Error(), "not 16 hexadecimal digits") {
			t.Fatalf("cluster id %q: got %v, want a refusal", bad[:min(len(bad), 20)], err)
		}
		if _, err := os.Stat(filepath.Join(cfg.DataDir, clusterIDFile)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("cluster id %q: the data folder has a %s after the refusal (%v)", bad[:min(len(bad), 20)], clusterIDFile, err)
		}
	}
}

// A joining replica trusts, besides the system's roots, the peer CA it was
// given (--peer-ca): a cluster whose client URLs serve certificates from
// its own CA (durio certs) can be joined over https. Without --peer-ca
// such a certificate is refused, and a --peer-ca file that holds no
// certificate is a configuration error.
func TestJoinTrustsThePeerCA(t *testing.T) {
	dir := t.TempDir()
	if _, err := WriteCerts(CertsOptions{Dir: dir, Hosts: []string{"127.0.0.1"}, Validity: time.Hour}); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "replica-0.crt"), filepath.Join(dir, "replica-0.key"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()

	get := func(cfg Config) error {
		hc, err := joinHTTPClient(cfg)
		if err != nil {
			return err
		}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get(srv.URL)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	cfg := DefaultConfig()
	var unknown x509.UnknownAuthorityError
	if err := get(cfg); !errors.As(err, &unknown) {
		t.Fatalf("without --peer-ca: %v, want the cluster's CA unknown", err)
	}
	cfg.PeerCA = filepath.Join(dir, "ca.crt")
	if err := get(cfg); err != nil {
		t.Fatalf("with --peer-ca: %v", err)
	}
	cfg.PeerCA = filepath.Join(dir, "replica-0.key")
	if err := get(cfg); !errors.Is(err, ErrConfig) {
		t.Fatalf("--peer-ca of a key: %v, want ErrConfig", err)
	}
}

// A replica added by its join whose --peer-url the others cannot reach
// waits for the leader forever; it says so at warn level (and again every
// joinSilentWarn) instead of only at debug.
func TestJoinWarnsWhenNoLeaderReachesIt(t *testing.T) {
	old := joinSilentWarn
	joinSilentWarn = 200 * time.Millisecond
	t.Cleanup(func() { joinSilentWarn = old })

	cfg := oneMemberConfig(t)
	leader, err := StartReplica(cfg, persist.NewNoop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = leader.Close(context.Background()) })

	unreachable := "http://127.0.0.1:" + strconv.Itoa(freeport.Ports(t, 1)[0]) // nothing listens there
	joiner := DefaultConfig()
	joiner.ID, joiner.Join, joiner.PeerURL = 5, []string{"http://" + leader.ClientAddr()}, unreachable
	joiner.ListenPeer, joiner.ListenClient = "127.0.0.1:0", "127.0.0.1:0"
	joiner.DataDir = t.TempDir()
	var buf bytes.Buffer
	out := &syncWriterBuf{b: &buf}
	logger := slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r, err := StartReplica(joiner, persist.NewMemory(), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })

	logged := func() string {
		out.mu.Lock()
		defer out.mu.Unlock()
		return buf.String()
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logged(), "no leader has reached this replica yet") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning that the leader cannot reach %s:\n%s", unreachable, logged())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logged(), `"level":"WARN"`) || !strings.Contains(logged(), unreachable) {
		t.Fatalf("the warning does not name the peer URL at warn level:\n%s", logged())
	}
}
