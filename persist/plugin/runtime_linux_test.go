package plugin_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/persisttest"
	"github.com/ruaft/ruaft/persist/plugin"
)

// openNoop starts a noop plugin (this test binary re-executed) and returns
// its pid.
func openNoop(t *testing.T) *plugin.Store {
	t.Helper()
	st, err := plugin.Open(ctx, plugin.Config{Persister: "noop", SocketDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// procEnviron returns the environment a process was started with.
func procEnviron(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// TestPluginRuntimeSettings checks which Go runtime settings a built-in
// plugin starts with: the defaults (GOMAXPROCS=1, GOMEMLIMIT=40MiB, GOGC=25), unless the host's environment
// sets the variable (which the plugin inherits) or its RUAFT_PLUGIN_ form
// (which wins, and unsets it when empty).
func TestPluginRuntimeSettings(t *testing.T) {
	for _, k := range []string{"GOMAXPROCS", "GOMEMLIMIT", "GOGC"} {
		if _, ok := os.LookupEnv(k); ok {
			t.Skipf("%s is set in the test's environment", k)
		}
	}
	cases := []struct {
		name string
		env  map[string]string
		want []string // in the plugin's environment
		not  []string // variables that must not be there
	}{
		{"defaults", nil, []string{"GOMAXPROCS=1", "GOMEMLIMIT=40MiB", "GOGC=25"}, nil},
		{"inherited from the host", map[string]string{"GOMEMLIMIT": "100MiB", "GOGC": "50"},
			[]string{"GOMAXPROCS=1", "GOMEMLIMIT=100MiB", "GOGC=50"}, nil},
		{"plugin-only settings win", map[string]string{"GOMAXPROCS": "4", "RUAFT_PLUGIN_GOMAXPROCS": "2", "RUAFT_PLUGIN_GOGC": "off"},
			[]string{"GOMAXPROCS=2", "GOMEMLIMIT=40MiB", "GOGC=off"}, nil},
		{"empty plugin-only setting unsets", map[string]string{"GOMEMLIMIT": "100MiB", "RUAFT_PLUGIN_GOMEMLIMIT": "", "RUAFT_PLUGIN_GOGC": ""},
			[]string{"GOMAXPROCS=1"}, []string{"GOMEMLIMIT", "GOGC"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			env := procEnviron(t, openNoop(t).PID())
			for _, kv := range c.want {
				if !slices.Contains(env, kv) {
					t.Errorf("plugin environment lacks %s: %q", kv, env)
				}
			}
			for _, k := range c.not {
				for _, kv := range env {
					if strings.HasPrefix(kv, k+"=") {
						t.Errorf("plugin environment has %s, want it unset", kv)
					}
				}
			}
			for _, kv := range env {
				if strings.HasPrefix(kv, plugin.EnvPluginPrefix) {
					t.Errorf("plugin environment has the host-side %s", kv)
				}
			}
		})
	}
}

// TestPluginRuntimeSettingsOtherBinary: a plugin given by path gets the
// host's environment, with the RUAFT_PLUGIN_ forms applied over it, and no
// defaults. The plugin is this test binary again, told by the inherited
// EnvBuiltin which store to serve.
func TestPluginRuntimeSettingsOtherBinary(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		t.Skip("GOMEMLIMIT is set in the test's environment")
	}
	t.Setenv(plugin.EnvBuiltin, "noop")
	t.Setenv("GOGC", "50")
	t.Setenv("GOMAXPROCS", "4")
	t.Setenv("RUAFT_PLUGIN_GOMAXPROCS", "2")
	t.Setenv("RUAFT_TEST_MARK", "kept")
	st, err := plugin.Open(ctx, plugin.Config{Persister: exe, SocketDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	env := procEnviron(t, st.PID())
	for _, kv := range []string{"GOGC=50", "GOMAXPROCS=2", "RUAFT_TEST_MARK=kept"} {
		if !slices.Contains(env, kv) {
			t.Errorf("plugin environment lacks %s: %q", kv, env)
		}
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "GOMEMLIMIT=") || kv == "GOMAXPROCS=4" {
			t.Errorf("plugin environment has %s", kv)
		}
	}
}

// imageKiB is the resident size, in KiB, of a process's read-only private
// mappings of its executable (code, read-only data, symbol tables).
func imageKiB(t *testing.T, pid int) int64 {
	t.Helper()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	var kib int64
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 6 && !strings.HasSuffix(f[0], ":"):
			in = strings.Join(f[5:], " ") == exe && !strings.Contains(f[1], "w")
		case in && len(f) >= 2 && f[0] == "Rss:":
			n, _ := strconv.ParseInt(f[1], 10, 64)
			kib += n
		}
	}
	return kib
}

// TestBuiltinPluginReleasesImage: a built-in plugin is this test binary
// re-executed, and all its package inits ran in it as in the host; once its
// store is open it keeps only the pages of the binary it uses, so its
// resident share of the binary is well below the host's.
func TestBuiltinPluginReleasesImage(t *testing.T) {
	st := openNoop(t)
	host, child := imageKiB(t, os.Getpid()), imageKiB(t, st.PID())
	t.Logf("resident pages of the binary: host %d KiB, plugin %d KiB", host, child)
	if child <= 0 || child >= host*3/4 {
		t.Fatalf("plugin holds %d KiB of the binary, host %d KiB: want under 3/4 of the host's", child, host)
	}
}

// storeMappedKiB is the resident size, in KiB, of process pid's shared
// mappings of files under dir (a store's memory-mapped files).
func storeMappedKiB(t *testing.T, pid int, dir string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	var kib int64
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && !strings.HasSuffix(f[0], ":"): // a mapping's header; an anonymous one has no path
			in = len(f) >= 6 && strings.HasPrefix(f[5], dir) && strings.HasSuffix(f[1], "s")
		case in && len(f) >= 2 && f[0] == "Rss:":
			n, _ := strconv.ParseInt(f[1], 10, 64)
			kib += n
		}
	}
	return kib
}

// TestBuiltinPluginReleasesStorePages: a badger plugin writes its tables
// and logs through shared mappings; once a second in which it was written
// (and for some seconds after, while badger flushes and compacts) it gives
// their pages back, and that loses nothing: the plugin, stopped
// and started again, loads every entry.
func TestBuiltinPluginReleasesStorePages(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := plugin.Config{Persister: "badger", DataDir: dir, SocketDir: t.TempDir()}
	st, err := plugin.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hs := persist.HardState{Term: 1, Commit: 1}
	var want []persist.Entry
	// ~6 MiB of entries: memtable flushes write tables through mmap too.
	for first := uint64(1); first < 24_000; first += 64 {
		es := make([]persist.Entry, 64)
		for i := range es {
			es[i] = persist.Entry{Index: first + uint64(i), Term: 1, Type: persist.EntryCommand, Data: bytes.Repeat([]byte{byte(first + uint64(i))}, 256)}
		}
		if err := st.Append(ctx, hs, es); err != nil {
			t.Fatal(err)
		}
		want = append(want, es...)
	}
	written := storeMappedKiB(t, st.PID(), dir)
	var after int64
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if after = storeMappedKiB(t, st.PID(), dir); after < 256 {
			break
		}
	}
	t.Logf("store's mapped files resident in the plugin: %d KiB after writing, %d KiB later", written, after)
	if after >= 256 {
		t.Fatalf("plugin still holds %d KiB of the store's mapped files, want under 256 KiB", after)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = plugin.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := persisttest.DiffState(got, persist.State{HardState: hs, Entries: want}); diff != "" {
		t.Fatal(diff)
	}
}
