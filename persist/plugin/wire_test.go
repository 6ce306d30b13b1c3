package plugin_test

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/persisttest"
	"github.com/ruaft/ruaft/persist/plugin"
	"github.com/ruaft/ruaft/persist/plugin/plugintest"
)

// lyingStore is a store whose Load hands out an entry of an unknown type and
// that records whether an Append reached it.
type lyingStore struct {
	persist.Noop
	appended bool
}

func (s *lyingStore) Load(context.Context) (persist.State, error) {
	return persist.State{HardState: persist.EmptyHardState,
		Entries: []persist.Entry{{Index: 1, Term: 1, Type: 77, Data: []byte("x")}}}, nil
}

func (s *lyingStore) Append(ctx context.Context, hs persist.HardState, es []persist.Entry) error {
	s.appended = true
	return s.Noop.Append(ctx, hs, es)
}

// TestInvalidValuesAcrossThePlugin sends values persistwire refuses both
// ways over the gRPC protocol: the host refuses what the plugin's store
// loads (ErrCorrupt), and the plugin refuses an Append with an unknown entry
// type or vote before its store sees it.
func TestInvalidValuesAcrossThePlugin(t *testing.T) {
	store := &lyingStore{}
	st, err := plugintest.OpenInProcess(t, func(plugin.Params) (persist.Store, string, error) {
		return store, "lying", nil
	}, plugin.Params{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Load(ctx); !errors.Is(err, persist.ErrCorrupt) {
		t.Fatalf("Load of an entry with type 77 = %v, want ErrCorrupt", err)
	}
	type hostile struct {
		hs persist.HardState
		es []persist.Entry
	}
	cases := map[string]hostile{
		"entry type 0": {persist.EmptyHardState, []persist.Entry{{Index: 1, Term: 1}}},
		"entry type 9": {persist.EmptyHardState, []persist.Entry{{Index: 1, Term: 1, Type: 9}}},
	}
	if strconv.IntSize == 64 { // a vote wider than the wire's 32 bits needs a 64-bit int
		wide := int64(1) << 40
		cases["vote above int"] = hostile{persist.HardState{Term: 1, VotedFor: int(wide)}, nil}
	}
	for name, c := range cases {
		if err := st.Append(ctx, c.hs, c.es); err == nil {
			t.Errorf("%s: Append accepted", name)
		}
		if store.appended {
			t.Fatalf("%s: the plugin's store saw the Append", name)
		}
	}
	if err := st.Append(ctx, persist.HardState{Term: 1, VotedFor: 2}, persisttest.Entries(1, 1, 1)); err != nil || !store.appended {
		t.Fatalf("a valid Append: %v (reached the store: %v)", err, store.appended)
	}
}

// TestLoadSnapshotStoreCannot: a store that cannot read its snapshot back
// (a third-party store without persist.SnapshotLoader), served through the
// plugin protocol, makes the host's store say so.
func TestLoadSnapshotStoreCannot(t *testing.T) {
	st, err := plugintest.OpenInProcess(t, func(plugin.Params) (persist.Store, string, error) {
		return struct{ persist.Store }{persist.NewMemory()}, "plain", nil
	}, plugin.Params{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l := st.(persist.SnapshotLoader)
	if l.CanLoadSnapshot() {
		t.Fatal("CanLoadSnapshot = true for a store without LoadSnapshot")
	}
	if _, err := l.LoadSnapshot(ctx); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("LoadSnapshot = %v, want errors.ErrUnsupported", err)
	}
}
