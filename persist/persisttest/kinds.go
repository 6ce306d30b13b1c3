package persisttest

import (
	"sync"
	"testing"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/badgerstore"
	"github.com/ruaft/ruaft/persist/filestore"
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
