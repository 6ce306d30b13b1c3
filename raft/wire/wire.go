// Package wire converts between raft's peer messages (package raft) and
// their protobuf forms in rpc/raft/v1. The entries, hard states and snapshot
// metadata inside them are converted and validated by persist/persistwire,
// which the persister protocol uses too: one conversion, one set of checks.
//
// Transports use it at the edge: the Twirp transport of durio, and the
// simulated network of the tests, which marshals every message so that byte
// counts are real and no buffer is shared between sender and receiver.
//
// Conversions do not copy byte slices: a converted message shares its Data
// buffers with its source. The ToProto functions cannot fail for a valid
// message; the FromProto functions return an error wrapping ErrInvalid for a
// message a correct peer never sends, and accept nil as the zero message.
package wire

import (
	"fmt"

	"github.com/ruaft/ruaft/persist/persistwire"
	"github.com/ruaft/ruaft/raft"
	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
)

// ErrInvalid is returned (wrapped) when a protobuf message cannot be
// converted: an unknown entry type, or a replica id out of range. It is
// persistwire.ErrInvalid, which the persister protocol returns too.
var ErrInvalid = persistwire.ErrInvalid

// AppendEntriesRequestToProto converts an AppendEntries request.
func AppendEntriesRequestToProto(r *raft.AppendEntriesRequest) *raftv1.AppendEntriesRequest {
	return &raftv1.AppendEntriesRequest{
		Term:         r.Term,
		LeaderId:     persistwire.IDToProto(r.LeaderID),
		PrevLogIndex: r.PrevLogIndex,
		PrevLogTerm:  r.PrevLogTerm,
		Entries:      persistwire.EntriesToProto(r.Entries),
		LeaderCommit: r.LeaderCommit,
	}
}

// AppendEntriesRequestFromProto converts an AppendEntries request.
func AppendEntriesRequestFromProto(p *raftv1.AppendEntriesRequest) (*raft.AppendEntriesRequest, error) {
	leader, err := persistwire.IDFromProto("leader_id", p.GetLeaderId())
	if err != nil {
		return nil, err
	}
	entries, err := persistwire.EntriesFromProto(p.GetEntries())
	if err != nil {
		return nil, err
	}
	return &raft.AppendEntriesRequest{
		Term:         p.GetTerm(),
		LeaderID:     leader,
		PrevLogIndex: p.GetPrevLogIndex(),
		PrevLogTerm:  p.GetPrevLogTerm(),
		Entries:      entries,
		LeaderCommit: p.GetLeaderCommit(),
	}, nil
}

// AppendEntriesResponseToProto converts an AppendEntries response.
func AppendEntriesResponseToProto(r *raft.AppendEntriesResponse) *raftv1.AppendEntriesResponse {
	return &raftv1.AppendEntriesResponse{
		Term:          r.Term,
		Success:       r.Success,
		MatchIndex:    r.MatchIndex,
		ConflictTerm:  r.ConflictTerm,
		ConflictIndex: r.ConflictIndex,
		LastLogIndex:  r.LastLogIndex,
		AppVersion:    r.AppVersion,
	}
}

// AppendEntriesResponseFromProto converts an AppendEntries response.
func AppendEntriesResponseFromProto(p *raftv1.AppendEntriesResponse) (*raft.AppendEntriesResponse, error) {
	return &raft.AppendEntriesResponse{
		Term:          p.GetTerm(),
		Success:       p.GetSuccess(),
		MatchIndex:    p.GetMatchIndex(),
		ConflictTerm:  p.GetConflictTerm(),
		ConflictIndex: p.GetConflictIndex(),
		LastLogIndex:  p.GetLastLogIndex(),
		AppVersion:    p.GetAppVersion(),
	}, nil
}

// RequestVoteRequestToProto converts a RequestVote request.
func RequestVoteRequestToProto(r *raft.RequestVoteRequest) *raftv1.RequestVoteRequest {
	return &raftv1.RequestVoteRequest{
		Term:               r.Term,
		CandidateId:        persistwire.IDToProto(r.CandidateID),
		LastLogIndex:       r.LastLogIndex,
		LastLogTerm:        r.LastLogTerm,
		PreVote:            r.PreVote,
		LeadershipTransfer: r.LeadershipTransfer,
	}
}

// RequestVoteRequestFromProto converts a RequestVote request.
func RequestVoteRequestFromProto(p *raftv1.RequestVoteRequest) (*raft.RequestVoteRequest, error) {
	cand, err := persistwire.IDFromProto("candidate_id", p.GetCandidateId())
	if err != nil {
		return nil, err
	}
	return &raft.RequestVoteRequest{
		Term:               p.GetTerm(),
		CandidateID:        cand,
		LastLogIndex:       p.GetLastLogIndex(),
		LastLogTerm:        p.GetLastLogTerm(),
		PreVote:            p.GetPreVote(),
		LeadershipTransfer: p.GetLeadershipTransfer(),
	}, nil
}

// RequestVoteResponseToProto converts a RequestVote response.
func RequestVoteResponseToProto(r *raft.RequestVoteResponse) *raftv1.RequestVoteResponse {
	return &raftv1.RequestVoteResponse{Term: r.Term, VoteGranted: r.VoteGranted, RemovedAt: r.RemovedAt}
}

// RequestVoteResponseFromProto converts a RequestVote response.
func RequestVoteResponseFromProto(p *raftv1.RequestVoteResponse) (*raft.RequestVoteResponse, error) {
	return &raft.RequestVoteResponse{Term: p.GetTerm(), VoteGranted: p.GetVoteGranted(), RemovedAt: p.GetRemovedAt()}, nil
}

// InstallSnapshotRequestToProto converts one InstallSnapshot chunk.
func InstallSnapshotRequestToProto(r *raft.InstallSnapshotRequest) *raftv1.InstallSnapshotRequest {
	return &raftv1.InstallSnapshotRequest{
		Term:              r.Term,
		LeaderId:          persistwire.IDToProto(r.LeaderID),
		LastIncludedIndex: r.LastIncludedIndex,
		LastIncludedTerm:  r.LastIncludedTerm,
		Offset:            r.Offset,
		Data:              r.Data,
		Done:              r.Done,
		TotalSizeBytes:    r.TotalSize,
		Crc32C:            r.Checksum,
		Config:            r.Config,
	}
}

// InstallSnapshotRequestFromProto converts one InstallSnapshot chunk; a
// chunk that extends past the total size is invalid.
func InstallSnapshotRequestFromProto(p *raftv1.InstallSnapshotRequest) (*raft.InstallSnapshotRequest, error) {
	leader, err := persistwire.IDFromProto("leader_id", p.GetLeaderId())
	if err != nil {
		return nil, err
	}
	end := p.GetOffset() + uint64(len(p.GetData()))
	if end < p.GetOffset() || end > p.GetTotalSizeBytes() {
		return nil, fmt.Errorf("%w: chunk [%d, %d) past total size %d", ErrInvalid, p.GetOffset(), end, p.GetTotalSizeBytes())
	}
	return &raft.InstallSnapshotRequest{
		Term:              p.GetTerm(),
		LeaderID:          leader,
		LastIncludedIndex: p.GetLastIncludedIndex(),
		LastIncludedTerm:  p.GetLastIncludedTerm(),
		Offset:            p.GetOffset(),
		Data:              p.GetData(),
		Done:              p.GetDone(),
		TotalSize:         p.GetTotalSizeBytes(),
		Checksum:          p.GetCrc32C(),
		Config:            p.GetConfig(),
	}, nil
}

// InstallSnapshotResponseToProto converts an InstallSnapshot response.
func InstallSnapshotResponseToProto(r *raft.InstallSnapshotResponse) *raftv1.InstallSnapshotResponse {
	return &raftv1.InstallSnapshotResponse{Term: r.Term, NextOffset: r.NextOffset, Installed: r.Installed}
}

// InstallSnapshotResponseFromProto converts an InstallSnapshot response.
func InstallSnapshotResponseFromProto(p *raftv1.InstallSnapshotResponse) (*raft.InstallSnapshotResponse, error) {
	return &raft.InstallSnapshotResponse{Term: p.GetTerm(), NextOffset: p.GetNextOffset(), Installed: p.GetInstalled()}, nil
}

// TimeoutNowRequestToProto converts a TimeoutNow request.
func TimeoutNowRequestToProto(r *raft.TimeoutNowRequest) *raftv1.TimeoutNowRequest {
	return &raftv1.TimeoutNowRequest{Term: r.Term, LeaderId: persistwire.IDToProto(r.LeaderID), LastLogIndex: r.LastLogIndex}
}

// TimeoutNowRequestFromProto converts a TimeoutNow request.
func TimeoutNowRequestFromProto(p *raftv1.TimeoutNowRequest) (*raft.TimeoutNowRequest, error) {
	leader, err := persistwire.IDFromProto("leader_id", p.GetLeaderId())
	if err != nil {
		return nil, err
	}
	return &raft.TimeoutNowRequest{Term: p.GetTerm(), LeaderID: leader, LastLogIndex: p.GetLastLogIndex()}, nil
}

// TimeoutNowResponseToProto converts a TimeoutNow response.
func TimeoutNowResponseToProto(r *raft.TimeoutNowResponse) *raftv1.TimeoutNowResponse {
	return &raftv1.TimeoutNowResponse{Term: r.Term, Accepted: r.Accepted}
}

// TimeoutNowResponseFromProto converts a TimeoutNow response.
func TimeoutNowResponseFromProto(p *raftv1.TimeoutNowResponse) (*raft.TimeoutNowResponse, error) {
	return &raft.TimeoutNowResponse{Term: p.GetTerm(), Accepted: p.GetAccepted()}, nil
}

// ReadIndexRequestToProto converts a ReadIndex request.
func ReadIndexRequestToProto(r *raft.ReadIndexRequest) *raftv1.ReadIndexRequest {
	return &raftv1.ReadIndexRequest{Term: r.Term, FollowerId: persistwire.IDToProto(r.FollowerID)}
}

// ReadIndexRequestFromProto converts a ReadIndex request.
func ReadIndexRequestFromProto(p *raftv1.ReadIndexRequest) (*raft.ReadIndexRequest, error) {
	follower, err := persistwire.IDFromProto("follower_id", p.GetFollowerId())
	if err != nil {
		return nil, err
	}
	return &raft.ReadIndexRequest{Term: p.GetTerm(), FollowerID: follower}, nil
}

// ReadIndexResponseToProto converts a ReadIndex response.
func ReadIndexResponseToProto(r *raft.ReadIndexResponse) *raftv1.ReadIndexResponse {
	return &raftv1.ReadIndexResponse{Term: r.Term, Ok: r.OK, ReadIndex: r.ReadIndex}
}

// ReadIndexResponseFromProto converts a ReadIndex response. A read index
// without ok is dropped: only a confirmed index may be used.
func ReadIndexResponseFromProto(p *raftv1.ReadIndexResponse) (*raft.ReadIndexResponse, error) {
	r := &raft.ReadIndexResponse{Term: p.GetTerm(), OK: p.GetOk()}
	if r.OK {
		r.ReadIndex = p.GetReadIndex()
	}
	return r, nil
}
