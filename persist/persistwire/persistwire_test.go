package persistwire

import (
	"errors"
	"math"
	"reflect"
	"strconv"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ruaft/ruaft/persist"
	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
)

func TestHardStateRoundTrip(t *testing.T) {
	for _, hs := range []persist.HardState{
		persist.EmptyHardState,
		{Term: 3, VotedFor: 0, Commit: 10},
		{Term: 3, VotedFor: 4, Commit: 0},
		{Term: 9, VotedFor: persist.NoVote, Commit: 2},
		{Term: 1, VotedFor: math.MaxInt32},
	} {
		b, err := proto.Marshal(HardStateToProto(hs))
		if err != nil {
			t.Fatal(err)
		}
		var p raftv1.HardState
		if err := proto.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		if got, err := HardStateFromProto(&p); err != nil || got != hs {
			t.Errorf("round trip of %+v = %+v, %v", hs, got, err)
		}
	}
	// VotedFor 0 must not be confused with "no vote".
	if p := HardStateToProto(persist.HardState{Term: 1, VotedFor: 0}); p.VotedFor == nil {
		t.Fatal("a vote for replica 0 encoded as no vote")
	}
	if hs, err := HardStateFromProto(nil); err != nil || hs != persist.EmptyHardState {
		t.Errorf("nil HardState: %+v, %v", hs, err)
	}
}

func TestEntriesRoundTrip(t *testing.T) {
	es := []persist.Entry{
		{Index: 1, Term: 1, Type: persist.EntryNoop},
		{Index: 2, Term: 1, Type: persist.EntryCommand, Data: []byte("put x")},
		{Index: 3, Term: 2, Type: persist.EntryConfig, Data: []byte{0}},
	}
	got, err := EntriesFromProto(EntriesToProto(es))
	if err != nil || !reflect.DeepEqual(got, es) {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, es)
	}
	if EntriesToProto(nil) != nil {
		t.Error("no entries encode as a non-nil slice")
	}
	if got, err := EntriesFromProto([]*raftv1.Entry{}); got != nil || err != nil {
		t.Errorf("empty entries decode as %+v, %v; want nil", got, err)
	}
}

func TestSnapshotMetadata(t *testing.T) {
	snap := persist.Snapshot{Index: 12, Term: 3, Data: []byte("state"), Config: []byte("voters 1 2 3")}
	p := SnapshotMetadataToProto(snap)
	got, err := SnapshotFromProto(p, snap.Data)
	if err != nil || !reflect.DeepEqual(got, snap) {
		t.Fatalf("got %+v, %v; want %+v", got, err, snap)
	}
	if _, err := SnapshotFromProto(p, []byte("x")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("size mismatch: got %v, want ErrInvalid", err)
	}
}

// TestInvalid sends what a correct peer or persister never sends: each is
// refused with ErrInvalid.
func TestInvalid(t *testing.T) {
	for name, p := range map[string]*raftv1.Entry{
		"unspecified type":    {Index: 1, Term: 1},
		"unknown type":        {Index: 1, Term: 1, Type: 42},
		"type above a byte":   {Index: 1, Term: 1, Type: 256 + raftv1.EntryType(persist.EntryCommand)},
		"negative type":       {Index: 1, Term: 1, Type: -1},
		"type of a future v2": {Index: 1, Term: 1, Type: 4},
	} {
		if _, err := EntryFromProto(p); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
		if _, err := EntriesFromProto([]*raftv1.Entry{{Index: 1, Term: 1, Type: 1}, p}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s second in a batch: got %v, want ErrInvalid", name, err)
		}
	}
	if _, err := HardStateFromProto(&raftv1.HardState{VotedFor: proto.Uint32(math.MaxUint32)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("voted_for out of range: got %v", err)
	}
	bad := []persist.HardState{{VotedFor: -2}}
	if strconv.IntSize == 64 { // a vote past the wire's 32 bits needs a 64-bit int
		wide := int64(math.MaxInt32) + 1
		bad = append(bad, persist.HardState{VotedFor: int(wide)})
	}
	for _, hs := range bad {
		if err := CheckHardState(hs); !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckHardState(%+v) = %v, want ErrInvalid", hs, err)
		}
	}
	if err := CheckEntry(persist.Entry{Index: 1, Type: 0}); !errors.Is(err, ErrInvalid) {
		t.Errorf("CheckEntry of type 0 = %v, want ErrInvalid", err)
	}
	if _, err := IDFromProto("leader_id", IDToProto(-1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("a negative id survives the round trip: %v", err)
	}
}
