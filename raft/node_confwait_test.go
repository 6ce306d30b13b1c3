package raft

import (
	"context"
	"errors"
	"hash/crc32"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
)

// What waitConfChange answers when the node that proposed a change lost
// leadership before it committed (issue 15): the new leader overwrote the
// entry (the change was not made: ErrNotLeader), committed it (nil), or
// this node installed the new leader's snapshot past it before it could
// look (it cannot tell: ErrOutcomeUnknown). The node is follower 1 of
// three holding leader 0's uncommitted change at index 2 of term 5; leader
// 2 of term 6 then acts.
func TestNodeConfChangeOutcomes(t *testing.T) {
	withLearner := encodeMembership(Membership{Members: append(BootstrapMembers(3), Member{ID: 3, Learner: true})})
	snapData := []byte("state at 10")
	for _, tc := range []struct {
		name      string
		newLeader func(t *testing.T, n *Node)
		want      error // nil: success
	}{
		{"overwritten", func(t *testing.T, n *Node) {
			req := &AppendEntriesRequest{Term: 6, LeaderID: 2, PrevLogIndex: 1, PrevLogTerm: 5,
				Entries: []Entry{{Index: 2, Term: 6, Type: persist.EntryNoop}}}
			if r, err := n.HandleAppendEntries(t.Context(), req); err != nil || !r.Success {
				t.Fatalf("new leader's append: %+v, %v", r, err)
			}
		}, ErrNotLeader},
		{"committed by the new leader", func(t *testing.T, n *Node) {
			req := &AppendEntriesRequest{Term: 6, LeaderID: 2, PrevLogIndex: 2, PrevLogTerm: 5, LeaderCommit: 3,
				Entries: []Entry{{Index: 3, Term: 6, Type: persist.EntryNoop}}}
			if r, err := n.HandleAppendEntries(t.Context(), req); err != nil || !r.Success {
				t.Fatalf("new leader's append: %+v, %v", r, err)
			}
		}, nil},
		{"compacted past it", func(t *testing.T, n *Node) {
			req := &InstallSnapshotRequest{Term: 6, LeaderID: 2, LastIncludedIndex: 10, LastIncludedTerm: 6,
				Data: snapData, Done: true, TotalSize: uint64(len(snapData)),
				Checksum: crc32.Checksum(snapData, castagnoli), Config: withLearner}
			if r, err := n.HandleInstallSnapshot(t.Context(), req); err != nil || !r.Installed {
				t.Fatalf("new leader's snapshot: %+v, %v", r, err)
			}
		}, ErrOutcomeUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(1, 3)
			cfg.ElectionTimeoutMin, cfg.ElectionTimeoutMax = 20*time.Second, 40*time.Second // stays a follower
			n, err := New(cfg, &inprocTransport{net: newInprocNet(3), from: 1}, persist.NewMemory(), newTestApp())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := n.Kill(); err != nil {
					t.Error(err)
				}
			})
			req := &AppendEntriesRequest{Term: 5, LeaderID: 0, Entries: []Entry{
				{Index: 1, Term: 5, Type: persist.EntryNoop},
				{Index: 2, Term: 5, Type: persist.EntryConfig, Data: withLearner},
			}}
			if r, err := n.HandleAppendEntries(t.Context(), req); err != nil || !r.Success {
				t.Fatalf("leader 0's append: %+v, %v", r, err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- n.waitConfChange(ctx, 2, 5) }()
			// A heartbeat of leader 0 that changes nothing: the waiter
			// still waits.
			if r, err := n.HandleAppendEntries(t.Context(), &AppendEntriesRequest{Term: 5, LeaderID: 0, PrevLogIndex: 2, PrevLogTerm: 5}); err != nil || !r.Success {
				t.Fatalf("heartbeat: %+v, %v", r, err)
			}
			select {
			case err := <-done:
				t.Fatalf("waiter returned %v before the entry's fate was known", err)
			default:
			}
			tc.newLeader(t, n)
			select {
			case err := <-done:
				switch {
				case tc.want == nil && err != nil, tc.want != nil && !errors.Is(err, tc.want):
					t.Fatalf("waitConfChange: %v, want %v", err, tc.want)
				case errors.Is(tc.want, ErrNotLeader) && errors.Is(err, ErrOutcomeUnknown),
					errors.Is(tc.want, ErrOutcomeUnknown) && errors.Is(err, ErrNotLeader):
					t.Fatalf("waitConfChange: %v mixes 'not made' and 'unknown'", err)
				}
			case <-ctx.Done():
				t.Fatal("waiter never returned")
			}
		})
	}
}
