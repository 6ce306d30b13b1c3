package persisttest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/persisttest"
)

func TestMain(m *testing.M) { persisttest.Main(m) }

// TestSlot crashes and restarts a slot of every durable kind and checks that
// what was acknowledged survives and the crashed store refuses writes.
func TestSlot(t *testing.T) {
	for _, name := range persisttest.Kinds() {
		f, err := persisttest.ByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if !f.Durable {
			continue
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			slot := persisttest.NewSlot(t, f)
			st, err := slot.Open()
			if err != nil {
				t.Fatal(err)
			}
			hs := persist.HardState{Term: 2, VotedFor: 1, Commit: 3}
			if err := st.Append(ctx, hs, persisttest.Entries(1, 5, 2)); err != nil {
				t.Fatal(err)
			}
			slot.Crash()
			if err := st.Append(ctx, hs, persisttest.Entries(6, 6, 2)); !errors.Is(err, persist.ErrClosed) {
				t.Fatalf("Append to a crashed store: %v, want ErrClosed", err)
			}
			st2, err := slot.Open()
			if err != nil {
				t.Fatal(err)
			}
			got, err := st2.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got.HardState != hs || got.LastIndex() != 5 {
				t.Fatalf("after restart: %+v, last %d", got.HardState, got.LastIndex())
			}
		})
	}
	if _, err := persisttest.ByName("rocks"); err == nil {
		t.Fatal("ByName(rocks) succeeded")
	}
}
