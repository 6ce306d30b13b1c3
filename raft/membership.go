package raft

// Configurations: their encoding in log entries and snapshots, and the
// checks of a single-server change.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// MaxMemberID is the largest replica id a configuration accepts.
const MaxMemberID = 1<<31 - 1

// MaxMembers is the most members (voters and learners) a configuration holds.
const MaxMembers = 64

// MaxMemberAddrBytes is the longest Member.Addr accepted.
const MaxMemberAddrBytes = 1024

// ErrBadMembership is wrapped by the errors of an invalid configuration
// (bootstrap or encoded).
var ErrBadMembership = errors.New("raft: invalid membership")

// BootstrapMembers returns the configuration of n voters with ids 0..n-1 and
// no addresses (Config.Peers).
func BootstrapMembers(n int) []Member {
	out := make([]Member, n)
	for i := range out {
		out[i].ID = i
	}
	return out
}

// Get returns the member with id, if any.
func (m Membership) Get(id int) (Member, bool) {
	for _, x := range m.Members {
		if x.ID == id {
			return x, true
		}
	}
	return Member{}, false
}

// IsVoter reports whether id is a voting member.
func (m Membership) IsVoter(id int) bool {
	x, ok := m.Get(id)
	return ok && !x.Learner
}

// Clone returns a copy that shares nothing with m.
func (m Membership) Clone() Membership {
	return Membership{Members: slices.Clone(m.Members)}
}

// String describes the configuration for logs: ids, learners marked "L".
func (m Membership) String() string {
	s := "{"
	for i, x := range m.Members {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprint(x.ID)
		if x.Learner {
			s += "L"
		}
	}
	return s + "}"
}

// Validate checks ids (unique, in [0, MaxMemberID]), the number of members
// and the address lengths. An empty configuration is valid (a replica
// waiting to join).
func (m Membership) Validate() error {
	if len(m.Members) > MaxMembers {
		return fmt.Errorf("%w: %d members, at most %d", ErrBadMembership, len(m.Members), MaxMembers)
	}
	seen := make(map[int]bool, len(m.Members))
	for _, x := range m.Members {
		switch {
		case x.ID < 0 || x.ID > MaxMemberID:
			return fmt.Errorf("%w: id %d out of [0, %d]", ErrBadMembership, x.ID, MaxMemberID)
		case seen[x.ID]:
			return fmt.Errorf("%w: id %d twice", ErrBadMembership, x.ID)
		case len(x.Addr) > MaxMemberAddrBytes:
			return fmt.Errorf("%w: address of %d is %d bytes, at most %d", ErrBadMembership, x.ID, len(x.Addr), MaxMemberAddrBytes)
		}
		seen[x.ID] = true
	}
	return nil
}

// normalized returns a sorted copy of m.
func (m Membership) normalized() Membership {
	out := m.Clone()
	slices.SortFunc(out.Members, func(a, b Member) int { return a.ID - b.ID })
	return out
}

// membershipVersion is the first byte of an encoded configuration.
const membershipVersion = 1

// encodeMembership encodes m (sorted) for a log entry or a snapshot:
//
//	version byte (1) | count uvarint | per member: id uvarint | learner byte | addrLen uvarint | addr
func encodeMembership(m Membership) []byte {
	b := []byte{membershipVersion}
	b = binary.AppendUvarint(b, uint64(len(m.Members)))
	for _, x := range m.Members {
		b = binary.AppendUvarint(b, uint64(x.ID))
		l := byte(0)
		if x.Learner {
			l = 1
		}
		b = append(b, l)
		b = binary.AppendUvarint(b, uint64(len(x.Addr)))
		b = append(b, x.Addr...)
	}
	return b
}

// decodeMembership decodes what encodeMembership wrote; it refuses anything
// malformed or invalid (the bytes may come from a peer or a damaged disk).
func decodeMembership(b []byte) (Membership, error) {
	bad := func(what string) (Membership, error) {
		return Membership{}, fmt.Errorf("%w: encoding: %s", ErrBadMembership, what)
	}
	if len(b) == 0 || b[0] != membershipVersion {
		return bad("unknown version")
	}
	b = b[1:]
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	count, ok := uv()
	if !ok || count > MaxMembers {
		return bad("bad member count")
	}
	m := Membership{Members: make([]Member, 0, count)}
	for range count {
		id, ok := uv()
		if !ok || id > MaxMemberID || len(b) == 0 || b[0] > 1 {
			return bad("bad member")
		}
		learner := b[0] == 1
		b = b[1:]
		n, ok := uv()
		if !ok || n > MaxMemberAddrBytes || n > uint64(len(b)) {
			return bad("bad address")
		}
		m.Members = append(m.Members, Member{ID: int(id), Learner: learner, Addr: string(b[:n])})
		b = b[n:]
	}
	if len(b) != 0 {
		return bad("trailing bytes")
	}
	if !slices.IsSortedFunc(m.Members, func(a, b Member) int { return a.ID - b.ID }) {
		return bad("members not sorted")
	}
	if err := m.Validate(); err != nil {
		return Membership{}, err
	}
	return m, nil
}

// confChange is one single-server change.
type confChange struct {
	op     confOp
	member Member // op add: the learner; otherwise only ID counts
	// term, if not 0, is the only term in which the change may be
	// proposed: a leader of another term refuses it (AddLearnerInTerm).
	term uint64
}

type confOp int

const (
	opAddLearner confOp = iota
	opPromote
	opRemove
)

// apply returns the configuration after ch, or why ch is refused.
// maxLearnerLag and the learner's progress are checked by the caller.
func (m Membership) apply(ch confChange) (Membership, error) {
	id := ch.member.ID
	out := m.Clone()
	x, ok := m.Get(id)
	switch ch.op {
	case opAddLearner:
		if ok {
			return m, fmt.Errorf("%w: %d", ErrAlreadyMember, id)
		}
		if len(m.Members) >= MaxMembers {
			return m, fmt.Errorf("%w: already %d members", ErrBadMembership, len(m.Members))
		}
		nm := ch.member
		nm.Learner = true
		out.Members = append(out.Members, nm)
	case opPromote:
		if !ok {
			return m, fmt.Errorf("%w: %d", ErrUnknownMember, id)
		}
		if !x.Learner {
			return m, fmt.Errorf("%w: %d is a voter already", ErrAlreadyMember, id)
		}
		for i := range out.Members {
			if out.Members[i].ID == id {
				out.Members[i].Learner = false
			}
		}
	case opRemove:
		if !ok {
			return m, fmt.Errorf("%w: %d", ErrUnknownMember, id)
		}
		if !x.Learner && len(m.Voters()) == 1 {
			return m, fmt.Errorf("%w: %d", ErrRemoveLastVoter, id)
		}
		out.Members = slices.DeleteFunc(out.Members, func(y Member) bool { return y.ID == id })
	}
	out = out.normalized()
	if err := out.Validate(); err != nil {
		return m, err
	}
	return out, nil
}
