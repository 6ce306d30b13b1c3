package raft

import "slices"

// quorum returns the size of a majority of n voters: more than half, so two
// majorities always intersect, for even n as for odd.
func quorum(n int) int { return n/2 + 1 }

// quorumMin returns the largest value v such that a majority of vals are at
// least v: the index a majority has matched, or the round a majority has
// acknowledged.
func quorumMin(vals []uint64) uint64 {
	// Sorted in a copy on the stack (for clusters of up to 16): the leader
	// calls this on every acknowledgement.
	var buf [16]uint64
	s := append(buf[:0], vals...)
	slices.Sort(s)
	// Ascending: the majority's smallest value sits at len-quorum.
	return s[len(s)-quorum(len(s))]
}

// voteResult is the outcome of an election so far.
type voteResult int

const (
	votePending voteResult = iota
	voteWon
	voteLost
)

// tally counts granted and rejected votes among voters (votes[id] is +1
// granted, -1 rejected; a vote of a non-voter does not count).
func tally(voters []int, votes map[int]int8) voteResult {
	var yes, no int
	for _, id := range voters {
		switch v := votes[id]; {
		case v > 0:
			yes++
		case v < 0:
			no++
		}
	}
	q := quorum(len(voters))
	switch {
	case len(voters) == 0:
		return voteLost
	case yes >= q:
		return voteWon
	case no > len(voters)-q:
		return voteLost
	}
	return votePending
}
