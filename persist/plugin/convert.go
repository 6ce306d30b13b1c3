package plugin

import (
	"github.com/ruaft/ruaft/persist"
	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
)

func hardStateToProto(hs persist.HardState) *raftv1.HardState {
	p := &raftv1.HardState{Term: hs.Term, Commit: hs.Commit}
	if hs.VotedFor != persist.NoVote {
		v := uint32(hs.VotedFor)
		p.VotedFor = &v
	}
	return p
}

func hardStateFromProto(p *raftv1.HardState) persist.HardState {
	hs := persist.HardState{Term: p.GetTerm(), Commit: p.GetCommit(), VotedFor: persist.NoVote}
	if p.VotedFor != nil {
		hs.VotedFor = int(*p.VotedFor)
	}
	return hs
}

func entriesToProto(es []persist.Entry) []*raftv1.Entry {
	out := make([]*raftv1.Entry, len(es))
	for i, e := range es {
		out[i] = &raftv1.Entry{Index: e.Index, Term: e.Term, Type: raftv1.EntryType(e.Type), Data: e.Data}
	}
	return out
}

func entriesFromProto(ps []*raftv1.Entry) []persist.Entry {
	out := make([]persist.Entry, len(ps))
	for i, p := range ps {
		out[i] = persist.Entry{Index: p.GetIndex(), Term: p.GetTerm(), Type: persist.EntryType(p.GetType()), Data: p.GetData()}
	}
	return out
}
