package rafttest

import (
	"testing"

	"github.com/ruaft/ruaft/persist/persisttest"
)

// TestStores runs the lab's crash-and-restart tests on real stores instead
// of the memory store: a crash closes the store (file-memfs also drops every
// unsynced write, as a power loss) and the restart reopens its folder;
// badger-plugin runs the store in a plugin subprocess. With -short only the
// file store runs.
func TestStores(t *testing.T) {
	t.Parallel() // long and mostly waiting; see the package doc
	kinds := []string{"file", "file-memfs", "badger-plugin"}
	if testing.Short() {
		kinds = kinds[:1]
	}
	for _, kind := range kinds {
		f, err := persisttest.ByName(kind)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(kind, func(t *testing.T) {
			opts := Options{Store: &f}
			t.Run("Persist1", func(t *testing.T) { persist1(t, opts) })
			t.Run("Persist3", func(t *testing.T) { persist3(t, opts) })
			t.Run("SnapshotAllCrash", func(t *testing.T) { snapshotAllCrash(t, opts) })
			t.Run("SnapshotInit", func(t *testing.T) { snapshotInit(t, opts) })
			// Leaders send snapshots read back from the store.
			t.Run("SnapshotInstallCrash", func(t *testing.T) { snapCommon(t, opts, false, true, true) })
		})
	}
}
