package plugin_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/persisttest"
	"github.com/ruaft/ruaft/persist/plugin"
)

// TestPluginBinaryByPath builds plugins/file and plugins/badger and runs the
// conformance suite with Config.Persister set to the binary's path, the way
// a third-party plugin is loaded.
func TestPluginBinaryByPath(t *testing.T) {
	if testing.Short() {
		t.Skip("builds plugin binaries")
	}
	bin := t.TempDir()
	for _, kind := range []string{"file", "badger"} {
		out := filepath.Join(bin, kind)
		cmd := exec.Command("go", "build", "-o", out, "github.com/ruaft/ruaft/plugins/"+kind)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build plugins/%s: %v\n%s", kind, err, b)
		}
		t.Run(kind, func(t *testing.T) {
			f := persisttest.Plugin(kind)
			f.Name = kind + "-binary"
			f.Large = false
			f.Open = func(t testing.TB, dir string) (persist.Store, error) {
				sock, err := os.MkdirTemp("", "rp")
				if err != nil {
					return nil, err
				}
				t.Cleanup(func() { os.RemoveAll(sock) })
				return plugin.Open(ctx, plugin.Config{Persister: out, DataDir: dir, SocketDir: sock})
			}
			persisttest.Run(t, f)
		})
	}
}
