package wire

import (
	"errors"
	"math"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/raft"
	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
)

// roundTrip converts v to protobuf, marshals, unmarshals into a fresh
// message and converts back, failing the test if the result differs.
func roundTrip[G any, P proto.Message](t *testing.T, v G, to func(G) P, from func(P) (G, error), fresh func() P) {
	t.Helper()
	b, err := proto.Marshal(to(v))
	if err != nil {
		t.Fatalf("marshal %+v: %v", v, err)
	}
	p := fresh()
	if err := proto.Unmarshal(b, p); err != nil {
		t.Fatalf("unmarshal %+v: %v", v, err)
	}
	got, err := from(p)
	if err != nil {
		t.Fatalf("from proto %+v: %v", v, err)
	}
	if !reflect.DeepEqual(got, v) {
		t.Fatalf("round trip changed the message:\n got %+v\nwant %+v", got, v)
	}
}

func TestAppendEntriesRoundTrip(t *testing.T) {
	for _, req := range []*raft.AppendEntriesRequest{
		{},
		{Term: 7, LeaderID: 2, PrevLogIndex: 10, PrevLogTerm: 6, LeaderCommit: 9},
		{Term: math.MaxUint64, LeaderID: 0, PrevLogIndex: 1, PrevLogTerm: 1, Entries: []persist.Entry{
			{Index: 2, Term: 7, Type: persist.EntryNoop},
			{Index: 3, Term: 7, Type: persist.EntryCommand, Data: []byte("x")},
			{Index: 4, Term: 7, Type: persist.EntryConfig, Data: make([]byte, 1000)},
		}, LeaderCommit: 3},
	} {
		roundTrip(t, req, AppendEntriesRequestToProto, AppendEntriesRequestFromProto, func() *raftv1.AppendEntriesRequest { return new(raftv1.AppendEntriesRequest) })
	}
	for _, resp := range []*raft.AppendEntriesResponse{
		{},
		{Term: 3, Success: true, MatchIndex: 12, LastLogIndex: 12, AppVersion: 1},
		{Term: 3, ConflictTerm: 2, ConflictIndex: 5, LastLogIndex: 9},
	} {
		roundTrip(t, resp, AppendEntriesResponseToProto, AppendEntriesResponseFromProto, func() *raftv1.AppendEntriesResponse { return new(raftv1.AppendEntriesResponse) })
	}
}

func TestRequestVoteRoundTrip(t *testing.T) {
	for _, req := range []*raft.RequestVoteRequest{
		{},
		{Term: 4, CandidateID: 6, LastLogIndex: 100, LastLogTerm: 3},
		{Term: 4, CandidateID: 1, PreVote: true},
		{Term: 9, CandidateID: 1, LeadershipTransfer: true},
	} {
		roundTrip(t, req, RequestVoteRequestToProto, RequestVoteRequestFromProto, func() *raftv1.RequestVoteRequest { return new(raftv1.RequestVoteRequest) })
	}
	for _, resp := range []*raft.RequestVoteResponse{{}, {Term: 5, VoteGranted: true}, {Term: 7, RemovedAt: 42}} {
		roundTrip(t, resp, RequestVoteResponseToProto, RequestVoteResponseFromProto, func() *raftv1.RequestVoteResponse { return new(raftv1.RequestVoteResponse) })
	}
}

func TestInstallSnapshotRoundTrip(t *testing.T) {
	for _, req := range []*raft.InstallSnapshotRequest{
		{},
		{Term: 2, LeaderID: 1, LastIncludedIndex: 50, LastIncludedTerm: 2, Offset: 0, Data: []byte("abc"), TotalSize: 3, Done: true, Checksum: 0x364b3fb7},
		{Term: 2, LeaderID: 4, LastIncludedIndex: 50, LastIncludedTerm: 2, Offset: 1 << 20, Data: make([]byte, 1<<20), TotalSize: 3 << 20},
	} {
		roundTrip(t, req, InstallSnapshotRequestToProto, InstallSnapshotRequestFromProto, func() *raftv1.InstallSnapshotRequest { return new(raftv1.InstallSnapshotRequest) })
	}
	for _, resp := range []*raft.InstallSnapshotResponse{{}, {Term: 2, NextOffset: 1 << 20}, {Term: 2, NextOffset: 3, Installed: true}} {
		roundTrip(t, resp, InstallSnapshotResponseToProto, InstallSnapshotResponseFromProto, func() *raftv1.InstallSnapshotResponse { return new(raftv1.InstallSnapshotResponse) })
	}
}

func TestTimeoutNowRoundTrip(t *testing.T) {
	for _, req := range []*raft.TimeoutNowRequest{{}, {Term: 8, LeaderID: 3}, {Term: 8, LeaderID: 3, LastLogIndex: 1 << 40}} {
		roundTrip(t, req, TimeoutNowRequestToProto, TimeoutNowRequestFromProto, func() *raftv1.TimeoutNowRequest { return new(raftv1.TimeoutNowRequest) })
	}
	for _, resp := range []*raft.TimeoutNowResponse{{}, {Term: 8, Accepted: true}} {
		roundTrip(t, resp, TimeoutNowResponseToProto, TimeoutNowResponseFromProto, func() *raftv1.TimeoutNowResponse { return new(raftv1.TimeoutNowResponse) })
	}
}

func TestReadIndexRoundTrip(t *testing.T) {
	for _, req := range []*raft.ReadIndexRequest{{}, {Term: 8, FollowerID: 2}} {
		roundTrip(t, req, ReadIndexRequestToProto, ReadIndexRequestFromProto, func() *raftv1.ReadIndexRequest { return new(raftv1.ReadIndexRequest) })
	}
	for _, resp := range []*raft.ReadIndexResponse{{}, {Term: 8}, {Term: 8, OK: true, ReadIndex: 77}} {
		roundTrip(t, resp, ReadIndexResponseToProto, ReadIndexResponseFromProto, func() *raftv1.ReadIndexResponse { return new(raftv1.ReadIndexResponse) })
	}
	// An index without ok is never used.
	if r, _ := ReadIndexResponseFromProto(&raftv1.ReadIndexResponse{Term: 3, ReadIndex: 9}); r.OK || r.ReadIndex != 0 {
		t.Fatalf("unconfirmed index kept: %+v", r)
	}
	if _, err := ReadIndexRequestFromProto(&raftv1.ReadIndexRequest{FollowerId: 1 << 31}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("out-of-range follower id: %v", err)
	}
}

func TestInvalid(t *testing.T) {
	if _, err := AppendEntriesRequestFromProto(&raftv1.AppendEntriesRequest{Entries: []*raftv1.Entry{{Index: 1}}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad entry inside AppendEntries: got %v", err)
	}
	if _, err := AppendEntriesRequestFromProto(&raftv1.AppendEntriesRequest{LeaderId: math.MaxUint32}); !errors.Is(err, ErrInvalid) {
		t.Errorf("leader id out of range: got %v", err)
	}
	if _, err := RequestVoteRequestFromProto(&raftv1.RequestVoteRequest{CandidateId: math.MaxUint32}); !errors.Is(err, ErrInvalid) {
		t.Errorf("candidate id out of range: got %v", err)
	}
	// NoLeader (-1) does not wrap around to a valid id.
	if _, err := TimeoutNowRequestFromProto(TimeoutNowRequestToProto(&raft.TimeoutNowRequest{LeaderID: raft.NoLeader})); !errors.Is(err, ErrInvalid) {
		t.Errorf("NoLeader leader id: got %v", err)
	}
	if _, err := InstallSnapshotRequestFromProto(&raftv1.InstallSnapshotRequest{Offset: 5, Data: []byte("abc"), TotalSizeBytes: 7}); !errors.Is(err, ErrInvalid) {
		t.Errorf("chunk past total size: got %v", err)
	}
}

func TestNilIsZero(t *testing.T) {
	if r, err := AppendEntriesRequestFromProto(nil); err != nil || !reflect.DeepEqual(r, &raft.AppendEntriesRequest{}) {
		t.Errorf("nil AppendEntries: %+v, %v", r, err)
	}
}
