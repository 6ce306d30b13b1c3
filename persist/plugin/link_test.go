package plugin_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestPluginBinariesLinkOnlyTheirStore checks, with go list -deps, that each
// built-in plugin binary under plugins/ links its own store and no other:
// the stores register themselves, so persist/plugin links none of them.
func TestPluginBinariesLinkOnlyTheirStore(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	const mod = "github.com/ruaft/ruaft/"
	stores := map[string][]string{ // a store's packages, by its name
		"file":   {mod + "persist/filestore"},
		"badger": {mod + "persist/badgerstore", "github.com/dgraph-io/badger/v4"},
	}
	for _, plugin := range []string{"noop", "memory", "file", "badger"} {
		out, err := exec.Command(goTool, "list", "-deps", mod+"plugins/"+plugin).Output()
		if err != nil {
			t.Fatalf("go list -deps plugins/%s: %v", plugin, err)
		}
		deps := strings.Fields(string(out))
		if !slices.Contains(deps, mod+"persist/plugin") {
			t.Fatalf("plugins/%s does not link persist/plugin; go list printed %d packages", plugin, len(deps))
		}
		for store, pkgs := range stores {
			for _, pkg := range pkgs {
				if linked := slices.Contains(deps, pkg); linked != (store == plugin) {
					t.Errorf("plugins/%s links %s: %v, want %v", plugin, pkg, linked, store == plugin)
				}
			}
		}
	}
	// The library itself links no store: a host picks them (persist/builtin).
	out, err := exec.Command(goTool, "list", "-deps", mod+"persist/plugin").Output()
	if err != nil {
		t.Fatalf("go list -deps persist/plugin: %v", err)
	}
	for _, pkg := range []string{mod + "persist/filestore", mod + "persist/badgerstore"} {
		if slices.Contains(strings.Fields(string(out)), pkg) {
			t.Errorf("persist/plugin links %s", pkg)
		}
	}
}
