package kvraft

import (
	"context"
	"errors"
	"math"
)

// Backup returns a snapshot of the key-value state that includes every write
// acknowledged before the call (it confirms a read point with the leader
// first, so it fails with the leader's errors on a replica that cannot), and
// the index and term of the last log entry it covers. The data is what
// Restore and CheckSnapshot read.
func (s *Server) Backup(ctx context.Context) (index, term uint64, data []byte, err error) {
	if _, err := s.rsm.ReadIndex(ctx); err != nil {
		return 0, 0, nil, err
	}
	index, term, data = s.rsm.Snapshot()
	if index == 0 {
		return 0, 0, nil, errors.New("kvraft: nothing applied yet")
	}
	return index, term, data, nil
}

// CheckSnapshot decodes a snapshot made by Backup (or by raft's own
// snapshots) and returns how many keys it holds, or why it is unreadable.
func CheckSnapshot(data []byte) (keys int, err error) {
	info, err := InspectSnapshot(data)
	return info.Keys, err
}

// SnapshotInfo describes the state a snapshot holds.
type SnapshotInfo struct {
	// Keys is the number of keys, Revision the store revision.
	Keys     int
	Revision uint64
	// ApplyLevel is the apply level the state is at: a replica restored
	// from it must support at least that (see ApplyLevel).
	ApplyLevel uint32
}

// InspectSnapshot decodes a snapshot as CheckSnapshot does and describes
// its state.
func InspectSnapshot(data []byte) (SnapshotInfo, error) {
	st, err := decodeSnapshot(data, stateLimits{historyEvents: math.MaxInt, historyBytes: math.MaxInt})
	if err != nil {
		return SnapshotInfo{}, err
	}
	return SnapshotInfo{Keys: len(st.data), Revision: st.rev, ApplyLevel: st.level.Load()}, nil
}
