package persisttest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/badgerstore"
	"github.com/ruaft/ruaft/persist/filestore"
	"github.com/ruaft/ruaft/persist/plugin"
	"github.com/ruaft/ruaft/persist/plugin/plugintest"
)

// Memory is the Factory of persist.Memory stores. Reopening a folder yields a
// Clone of the store last opened there, so Memory behaves as a durable store
// (the MIT lab's persister).
func Memory() Factory {
	var mu sync.Mutex
	stores := map[string]*persist.Memory{}
	return Factory{
		Name:    "memory",
		Durable: true,
		Keeps:   true,
		Open: func(_ testing.TB, dir string) (persist.Store, error) {
			mu.Lock()
			defer mu.Unlock()
			m, ok := stores[dir]
			if ok {
				m = m.Clone()
			} else {
				m = persist.NewMemory()
			}
			stores[dir] = m
			return m, nil
		},
	}
}

// Noop is the Factory of persist.Noop stores.
func Noop() Factory {
	return Factory{
		Name: "noop",
		Open: func(testing.TB, string) (persist.Store, error) { return persist.NewNoop(), nil },
	}
}

// File is the Factory of file stores on the real file system with small
// segments (so tests rotate and compact) and fsync on.
func File() Factory {
	return Factory{
		Name:    "file",
		Durable: true,
		Keeps:   true,
		Open: func(_ testing.TB, dir string) (persist.Store, error) {
			o := filestore.DefaultOptions()
			o.SegmentBytes = 4 << 10
			return filestore.Open(dir, o)
		},
	}
}

// FileMemFS is the Factory of file stores on a filestore.MemFS per folder,
// with a PowerLoss that drops every unsynced write.
func FileMemFS() Factory {
	var mu sync.Mutex
	fss := map[string]*filestore.MemFS{}
	fsFor := func(dir string) *filestore.MemFS {
		mu.Lock()
		defer mu.Unlock()
		if fss[dir] == nil {
			fss[dir] = filestore.NewMemFS()
		}
		return fss[dir]
	}
	return Factory{
		Name:    "file-memfs",
		Durable: true,
		Keeps:   true,
		Open: func(_ testing.TB, dir string) (persist.Store, error) {
			o := filestore.DefaultOptions()
			o.SegmentBytes = 4 << 10
			o.FS = fsFor(dir)
			return filestore.Open(dir, o)
		},
		PowerLoss: func(_ testing.TB, dir string) {
			fs := fsFor(dir)
			mu.Lock()
			defer mu.Unlock()
			fss[dir] = fs.Crash(nil)
		},
	}
}

// Badger is the Factory of badger stores with the default (small-machine)
// options and synchronous writes.
func Badger() Factory {
	return Factory{
		Name:    "badger",
		Durable: true,
		Keeps:   true,
		Open: func(_ testing.TB, dir string) (persist.Store, error) {
			return badgerstore.Open(dir, badgerstore.DefaultOptions())
		},
	}
}

// Main is a TestMain for packages whose tests use the plugin factories
// (FilePlugin, BadgerPlugin, ...): a re-executed test binary serves the
// built-in store it is asked for instead of running the tests.
//
//	func TestMain(m *testing.M) { persisttest.Main(m) }
func Main(m *testing.M) {
	if served, err := plugin.ServeIfChild(); served {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// A race-enabled binary sleeps a second at exit (GORACE atexit_sleep_ms)
	// so late reports get out; plugin children inherit this and start and
	// stop many times, so skip the sleep there. Races are still reported.
	if !strings.Contains(os.Getenv("GORACE"), "atexit_sleep_ms") {
		_ = os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	}
	os.Exit(m.Run())
}

// Plugin is the Factory of built-in store kind (noop, memory, file, badger)
// served by a plugin subprocess: the test binary re-executed, so the
// package's TestMain must call Main. Each store gets its own process; its
// socket lives in a short temporary folder.
func Plugin(kind string) Factory {
	f := pluginTraits(kind)
	f.Name = kind + "-plugin"
	f.Large = kind == "file" || kind == "badger"
	f.Open = func(t testing.TB, dir string) (persist.Store, error) {
		sock, err := os.MkdirTemp("", "rp")
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { _ = os.RemoveAll(sock) })
		cfg := plugin.Config{Persister: kind, DataDir: dir, SocketDir: sock}
		if kind == "file" {
			cfg.Options = map[string]string{"segment_bytes": "4096"}
		}
		if kind == "noop" || kind == "memory" {
			cfg.DataDir = ""
		}
		return plugin.Open(context.Background(), cfg)
	}
	return f
}

// InProcessPlugin is the Factory of built-in store kind behind the plugin
// protocol over an in-process gRPC connection (no subprocess).
func InProcessPlugin(kind string) Factory {
	f := pluginTraits(kind)
	f.Name = kind + "-inprocess-plugin"
	f.Open = func(t testing.TB, dir string) (persist.Store, error) {
		p := plugin.Params{DataDir: dir, Sync: true}
		if kind == "file" {
			p.Options = map[string]string{"segment_bytes": "4096"}
		}
		return plugintest.OpenInProcess(t, func(p plugin.Params) (persist.Store, string, error) {
			st, err := plugin.OpenBuiltin(kind, p, nil)
			return st, kind, err
		}, p)
	}
	return f
}

// pluginTraits: through a plugin, memory is not durable (each process starts
// empty), and every store is a Proxy.
func pluginTraits(kind string) Factory {
	switch kind {
	case "noop":
		return Factory{Proxy: true}
	case "memory":
		return Factory{Keeps: true, Proxy: true}
	default:
		return Factory{Keeps: true, Durable: true, Proxy: true}
	}
}
