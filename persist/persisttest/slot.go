package persisttest

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

// Kinds lists the names ByName knows: the in-process stores, then the
// built-ins through a plugin subprocess (these need Main as TestMain) and
// through an in-process plugin connection.
func Kinds() []string {
	return []string{
		"memory", "noop", "file", "file-memfs", "badger",
		"memory-plugin", "noop-plugin", "file-plugin", "badger-plugin",
		"memory-inprocess-plugin", "noop-inprocess-plugin", "file-inprocess-plugin", "badger-inprocess-plugin",
	}
}

// ByName returns the Factory for one of Kinds.
func ByName(name string) (Factory, error) {
	switch name {
	case "memory":
		return Memory(), nil
	case "noop":
		return Noop(), nil
	case "file":
		return File(), nil
	case "file-memfs":
		return FileMemFS(), nil
	case "badger":
		return Badger(), nil
	}
	if kind, ok := strings.CutSuffix(name, "-inprocess-plugin"); ok && slices.Contains([]string{"memory", "noop", "file", "badger"}, kind) {
		return InProcessPlugin(kind), nil
	}
	if kind, ok := strings.CutSuffix(name, "-plugin"); ok && slices.Contains([]string{"memory", "noop", "file", "badger"}, kind) {
		return Plugin(kind), nil
	}
	return Factory{}, fmt.Errorf("persisttest: unknown store kind %q (want one of %s)", name, strings.Join(Kinds(), ", "))
}

// Slot keeps one replica's store across simulated crashes, as the lab's
// persister does: Open gives a store on the slot's folder; Crash closes it,
// and the next Open reopens the same folder, so the restarted replica sees
// exactly what the store made durable and the crashed replica can no longer
// write to it (its calls fail with persist.ErrClosed). With a Factory that
// has PowerLoss (file-memfs), Crash also drops every unsynced write.
//
// Kill the replica before Crash: a store is not safe for concurrent use by
// two replicas. Safe for use by several goroutines.
type Slot struct {
	t   testing.TB
	f   Factory
	dir string

	mu  sync.Mutex    // guards cur
	cur persist.Store // the open store, or nil
}

// NewSlot returns a slot with a fresh folder under t.TempDir. The current
// store is closed when the test ends.
func NewSlot(t testing.TB, f Factory) *Slot {
	s := &Slot{t: t, f: f, dir: t.TempDir()}
	t.Cleanup(func() { s.Crash() })
	return s
}

// Factory is the factory the slot opens stores with.
func (s *Slot) Factory() Factory { return s.f }

// Dir is the slot's folder.
func (s *Slot) Dir() string { return s.dir }

// Open opens the store on the slot's folder, closing the previous one first
// (a crash) if it is still open.
func (s *Slot) Open() (persist.Store, error) {
	s.Crash()
	st, err := s.f.Open(s.t, s.dir)
	if err != nil {
		return nil, fmt.Errorf("persisttest: open %s store: %w", s.f.Name, err)
	}
	s.mu.Lock()
	s.cur = st
	s.mu.Unlock()
	return st, nil
}

// Crash closes the current store, if any, as a crash would leave it (with
// PowerLoss: unsynced writes dropped). Durable state stays for the next
// Open; a store kind that is not durable (noop, memory through a plugin)
// comes back empty.
func (s *Slot) Crash() {
	s.mu.Lock()
	st := s.cur
	s.cur = nil
	s.mu.Unlock()
	if st == nil {
		return
	}
	_ = st.Close()
	if s.f.PowerLoss != nil {
		s.f.PowerLoss(s.t, s.dir)
	}
}
