// Package persistwire converts the persist types that cross a process
// boundary — log entries, hard states and snapshot metadata — to and from
// their protobuf forms in rpc/raft/v1, and is the one place that says which
// of them are valid.
//
// Two boundaries use it: raft/wire, for the peer messages that carry entries
// and snapshots between replicas, and persist/plugin, for the persister
// protocol (rpc/persist/v1) and its direct Append channel. Whatever comes off
// either wire goes through CheckEntry and CheckHardState (the FromProto
// functions call them), so a replica and its persister refuse the same
// things.
//
// Conversions do not copy byte slices: a converted value shares its Data
// with its source. The ToProto functions cannot fail; the FromProto
// functions return an error wrapping ErrInvalid for a value a correct peer
// never sends, and accept nil as the zero message.
package persistwire

import (
	"errors"
	"fmt"
	"math"

	"github.com/ruaft/ruaft/persist"
	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
)

// ErrInvalid is returned (wrapped) for a value that cannot be converted: an
// unknown entry type, a replica id out of range, a snapshot whose data does
// not match its size. raft/wire returns the same sentinel.
var ErrInvalid = errors.New("wire: invalid message")

// CheckEntry reports whether e may be stored or applied: its type is one
// persist defines.
func CheckEntry(e persist.Entry) error {
	switch e.Type {
	case persist.EntryCommand, persist.EntryNoop, persist.EntryConfig:
		return nil
	default:
		return fmt.Errorf("%w: entry %d has type %v", ErrInvalid, e.Index, e.Type)
	}
}

// CheckHardState reports whether hs is valid: VotedFor is NoVote or a
// replica id (0 to MaxInt32).
func CheckHardState(hs persist.HardState) error {
	if hs.VotedFor != persist.NoVote && (hs.VotedFor < 0 || int64(hs.VotedFor) > math.MaxInt32) {
		return fmt.Errorf("%w: voted_for %d out of range", ErrInvalid, hs.VotedFor)
	}
	return nil
}

// EntryToProto converts a log entry.
func EntryToProto(e persist.Entry) *raftv1.Entry {
	return &raftv1.Entry{Index: e.Index, Term: e.Term, Type: raftv1.EntryType(e.Type), Data: e.Data}
}

// EntryFromProto converts a log entry; an unspecified or unknown type is
// invalid.
func EntryFromProto(p *raftv1.Entry) (persist.Entry, error) {
	t := p.GetType()
	if t < 0 || t > math.MaxUint8 {
		return persist.Entry{}, fmt.Errorf("%w: entry %d has type %v", ErrInvalid, p.GetIndex(), t)
	}
	e := persist.Entry{Index: p.GetIndex(), Term: p.GetTerm(), Type: persist.EntryType(t), Data: p.GetData()}
	if err := CheckEntry(e); err != nil {
		return persist.Entry{}, err
	}
	return e, nil
}

// EntriesToProto converts a slice of entries; nil stays nil.
func EntriesToProto(es []persist.Entry) []*raftv1.Entry {
	if len(es) == 0 {
		return nil
	}
	out := make([]*raftv1.Entry, len(es))
	// The messages of a slice are built and dropped together (one Append or
	// AppendEntries): one allocation for all of them rather than one each.
	msgs := make([]raftv1.Entry, len(es))
	for i, e := range es {
		m := &msgs[i]
		m.Index, m.Term, m.Type, m.Data = e.Index, e.Term, raftv1.EntryType(e.Type), e.Data
		out[i] = m
	}
	return out
}

// EntriesFromProto converts a slice of entries; empty becomes nil.
func EntriesFromProto(ps []*raftv1.Entry) ([]persist.Entry, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	out := make([]persist.Entry, len(ps))
	for i, p := range ps {
		e, err := EntryFromProto(p)
		if err != nil {
			return nil, err
		}
		out[i] = e
	}
	return out, nil
}

// HardStateToProto converts a hard state; persist.NoVote becomes an unset
// voted_for.
func HardStateToProto(hs persist.HardState) *raftv1.HardState {
	p := &raftv1.HardState{Term: hs.Term, Commit: hs.Commit}
	if hs.VotedFor != persist.NoVote {
		v := IDToProto(hs.VotedFor)
		p.VotedFor = &v
	}
	return p
}

// HardStateFromProto converts a hard state; an unset voted_for becomes
// persist.NoVote, one above MaxInt32 is invalid.
func HardStateFromProto(p *raftv1.HardState) (persist.HardState, error) {
	hs := persist.HardState{Term: p.GetTerm(), VotedFor: persist.NoVote, Commit: p.GetCommit()}
	if p != nil && p.VotedFor != nil {
		v, err := IDFromProto("voted_for", *p.VotedFor)
		if err != nil {
			return persist.HardState{}, err
		}
		hs.VotedFor = v
	}
	return hs, nil
}

// IDToProto converts a replica id. Ids are small non-negative numbers; a
// negative one (raft.NoLeader) is a caller bug that the receiver will see as
// an out-of-range id.
func IDToProto(id int) uint32 {
	if id < 0 || id > math.MaxInt32 {
		return math.MaxUint32
	}
	return uint32(id)
}

// IDFromProto converts the replica id in field, refusing what IDToProto
// produces for an out-of-range id.
func IDFromProto(field string, v uint32) (int, error) {
	if v > math.MaxInt32 {
		return 0, fmt.Errorf("%w: %s %d out of range", ErrInvalid, field, v)
	}
	return int(v), nil
}

// SnapshotMetadataToProto describes snap without its data (with its
// configuration).
func SnapshotMetadataToProto(snap persist.Snapshot) *raftv1.SnapshotMetadata {
	return &raftv1.SnapshotMetadata{
		LastIncludedIndex: snap.Index,
		LastIncludedTerm:  snap.Term,
		SizeBytes:         uint64(len(snap.Data)),
		Config:            snap.Config,
	}
}

// SnapshotFromProto rebuilds a snapshot from its metadata and data; the
// data's length must match the metadata's size.
func SnapshotFromProto(p *raftv1.SnapshotMetadata, data []byte) (persist.Snapshot, error) {
	if p.GetSizeBytes() != uint64(len(data)) {
		return persist.Snapshot{}, fmt.Errorf("%w: snapshot size %d, data %d bytes", ErrInvalid, p.GetSizeBytes(), len(data))
	}
	return persist.Snapshot{Index: p.GetLastIncludedIndex(), Term: p.GetLastIncludedTerm(), Data: data, Config: p.GetConfig()}, nil
}
