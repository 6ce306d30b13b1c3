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
	st, err := decodeSnapshot(data, stateLimits{historyEvents: math.MaxInt, historyBytes: math.MaxInt})
	if err != nil {
		return 0, err
	}
	return len(st.data), nil
}
