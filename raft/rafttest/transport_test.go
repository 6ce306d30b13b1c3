package rafttest

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/ruaft/ruaft/internal/simnet"
	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/raft"
)

// fakeHandlers records the requests it gets and answers with fixed
// responses.
type fakeHandlers struct {
	ae *raft.AppendEntriesRequest
	rv *raft.RequestVoteRequest
	is *raft.InstallSnapshotRequest
	tn *raft.TimeoutNowRequest
	ri *raft.ReadIndexRequest
}

func (f *fakeHandlers) HandleAppendEntries(_ context.Context, r *raft.AppendEntriesRequest) (*raft.AppendEntriesResponse, error) {
	f.ae = r
	return &raft.AppendEntriesResponse{Term: r.Term, Success: true, MatchIndex: r.PrevLogIndex + uint64(len(r.Entries)), LastLogIndex: 9}, nil
}

func (f *fakeHandlers) HandleRequestVote(_ context.Context, r *raft.RequestVoteRequest) (*raft.RequestVoteResponse, error) {
	f.rv = r
	return &raft.RequestVoteResponse{Term: r.Term, VoteGranted: true}, nil
}

func (f *fakeHandlers) HandleInstallSnapshot(_ context.Context, r *raft.InstallSnapshotRequest) (*raft.InstallSnapshotResponse, error) {
	f.is = r
	return &raft.InstallSnapshotResponse{Term: r.Term, NextOffset: r.Offset + uint64(len(r.Data))}, nil
}

func (f *fakeHandlers) HandleTimeoutNow(context.Context, *raft.TimeoutNowRequest) (*raft.TimeoutNowResponse, error) {
	return nil, raft.ErrKilled
}

func (f *fakeHandlers) HandleReadIndex(_ context.Context, r *raft.ReadIndexRequest) (*raft.ReadIndexResponse, error) {
	f.ri = r
	return &raft.ReadIndexResponse{Term: r.Term, OK: true, ReadIndex: 41}, nil
}

func TestTransportRoundTrip(t *testing.T) {
	net := simnet.New(1)
	defer net.Cleanup()
	f := &fakeHandlers{}
	net.AddServer("1", Handler(f))
	e := net.MakeEnd("0->1")
	net.Connect("0->1", "1")
	net.Enable("0->1", true)
	tr := NewTransport([]*simnet.End{nil, e})
	ctx := context.Background()

	ae := &raft.AppendEntriesRequest{Term: 3, LeaderID: 0, PrevLogIndex: 4, PrevLogTerm: 2, LeaderCommit: 4,
		Entries: []persist.Entry{{Index: 5, Term: 3, Type: persist.EntryCommand, Data: []byte("x")}}}
	resp, err := tr.AppendEntries(ctx, 1, ae)
	if err != nil || !resp.Success || resp.MatchIndex != 5 || resp.LastLogIndex != 9 {
		t.Fatalf("AppendEntries: %+v, %v", resp, err)
	}
	if !reflect.DeepEqual(f.ae, ae) {
		t.Fatalf("server got %+v, want %+v", f.ae, ae)
	}

	rv := &raft.RequestVoteRequest{Term: 4, CandidateID: 0, LastLogIndex: 5, LastLogTerm: 3, PreVote: true}
	if r, err := tr.RequestVote(ctx, 1, rv); err != nil || !r.VoteGranted || !reflect.DeepEqual(f.rv, rv) {
		t.Fatalf("RequestVote: %+v, %v; server got %+v", r, err, f.rv)
	}

	is := &raft.InstallSnapshotRequest{Term: 4, LastIncludedIndex: 9, LastIncludedTerm: 3, Offset: 2, Data: []byte("abc"), TotalSize: 10}
	if r, err := tr.InstallSnapshot(ctx, 1, is); err != nil || r.NextOffset != 5 || !reflect.DeepEqual(f.is, is) {
		t.Fatalf("InstallSnapshot: %+v, %v; server got %+v", r, err, f.is)
	}

	ri := &raft.ReadIndexRequest{Term: 4, FollowerID: 0}
	if r, err := tr.ReadIndex(ctx, 1, ri); err != nil || !r.OK || r.ReadIndex != 41 || r.Term != 4 || !reflect.DeepEqual(f.ri, ri) {
		t.Fatalf("ReadIndex: %+v, %v; server got %+v", r, err, f.ri)
	}

	// A handler error is no response.
	if _, err := tr.TimeoutNow(ctx, 1, &raft.TimeoutNowRequest{Term: 4}); !errors.Is(err, simnet.ErrHandler) {
		t.Fatalf("TimeoutNow: %v", err)
	}
	// No endpoint for oneself or an unknown peer.
	if _, err := tr.RequestVote(ctx, 0, rv); err == nil {
		t.Fatal("call to self succeeded")
	}
	if _, err := tr.RequestVote(ctx, 7, rv); err == nil {
		t.Fatal("call to unknown peer succeeded")
	}
	// Other methods are refused, so services can be chained.
	if _, err := e.Call(ctx, "kv.Get", nil); !errors.Is(err, ErrUnknownMethod) {
		t.Fatalf("unknown method: %v", err)
	}
	// Bytes are counted for real.
	if tot := net.Total(); tot.Calls != 6 || tot.Bytes == 0 {
		t.Fatalf("counters %+v", tot)
	}
}
