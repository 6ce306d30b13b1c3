package persist

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
)

// The registry of stores that can be opened by name.
//
// A store package registers a Driver from an init function, as database/sql
// drivers do, so a binary can open (or serve as a persister plugin) exactly
// the stores it imports: plugins/file links the file store and not badger.
// Noop ("noop") and Memory ("memory") are registered by this package; the
// durable stores by persist/filestore ("file") and persist/badgerstore
// ("badger"); persist/builtin imports all of them.

// OpenParams are what a store is opened with by name.
type OpenParams struct {
	// DataDir is the folder the store keeps its data in.
	DataDir string
	// Sync makes every write durable before it returns. Off is for tests
	// and benchmarks only.
	Sync bool
	// Options are store-specific settings by name, each a decimal or a
	// word, as a store's Options.Set takes them.
	Options map[string]string
	// Logger receives the store's notices; nil discards them.
	Logger *slog.Logger
}

// Driver opens one kind of store by name.
type Driver struct {
	// Name is what a configuration calls the store ("file").
	Name string
	// NeedsDataDir says that OpenParams.DataDir must be set.
	NeedsDataDir bool
	// Check validates Sync and Options without touching the disk, so a
	// bad setting fails at startup with its name, before a plugin starts.
	Check func(OpenParams) error
	// Open opens the store.
	Open func(OpenParams) (Store, error)
}

// ErrInvalidParams is returned (wrapped) by a Driver for an unknown or bad
// option; the message names it.
var ErrInvalidParams = errors.New("persist: invalid store parameters")

var (
	registryMu sync.Mutex // guards registry
	registry   = map[string]Driver{}
)

// Register makes d available by d.Name. It panics if the name is taken or d
// lacks a function: both are programming errors found at startup.
func Register(d Driver) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if d.Name == "" || d.Check == nil || d.Open == nil {
		panic(fmt.Sprintf("persist: Register(%q): a Driver needs a name, Check and Open", d.Name))
	}
	if _, dup := registry[d.Name]; dup {
		panic(fmt.Sprintf("persist: Register(%q): registered twice", d.Name))
	}
	registry[d.Name] = d
}

// LookupDriver returns the Driver registered as name.
func LookupDriver(name string) (Driver, bool) {
	registryMu.Lock()
	defer registryMu.Unlock()
	d, ok := registry[name]
	return d, ok
}

// Drivers returns the registered names, sorted.
func Drivers() []string {
	registryMu.Lock()
	defer registryMu.Unlock()
	return slices.Sorted(maps.Keys(registry))
}

// StoreOptions is what a store's Options type offers for DriverFor:
// SetParams takes Sync and Logger from OpenParams, Set one option by name
// from its text (as in OpenParams.Options), Validate checks the result.
type StoreOptions[O any] interface {
	*O
	SetParams(OpenParams)
	Set(name, value string) error
	Validate() error
}

// DriverFor is the Driver of a durable store whose options parse with
// StoreOptions: defaults gives the options before OpenParams apply, and
// open opens the store in a folder. Errors name the option:
// "Options[segment_bytes]: ...".
func DriverFor[O any, P StoreOptions[O], S Store](name string, defaults func() O,
	open func(dir string, o O) (S, error)) Driver {
	parse := func(p OpenParams) (O, error) {
		o := defaults()
		P(&o).SetParams(p)
		for _, k := range slices.Sorted(maps.Keys(p.Options)) {
			if err := P(&o).Set(k, p.Options[k]); err != nil {
				return o, fmt.Errorf("%w: Options[%s]: %w", ErrInvalidParams, k, err)
			}
		}
		if err := P(&o).Validate(); err != nil {
			return o, fmt.Errorf("%w: Options: %w", ErrInvalidParams, err)
		}
		return o, nil
	}
	return Driver{
		Name:         name,
		NeedsDataDir: true,
		Check: func(p OpenParams) error {
			_, err := parse(p)
			return err
		},
		Open: func(p OpenParams) (Store, error) {
			o, err := parse(p)
			if err != nil {
				return nil, err
			}
			s, err := open(p.DataDir, o)
			if err != nil {
				return nil, err // not a nil S in a non-nil Store
			}
			return s, nil
		},
	}
}

// noOptions is the Check of a store that takes no options.
func noOptions(name string) func(OpenParams) error {
	return func(p OpenParams) error {
		for _, k := range slices.Sorted(maps.Keys(p.Options)) {
			return fmt.Errorf("%w: Options[%s]: the %s store takes no options", ErrInvalidParams, k, name)
		}
		return nil
	}
}

// inMemoryDriver is the Driver of a store that takes no options and no
// folder.
func inMemoryDriver(name string, open func() Store) Driver {
	check := noOptions(name)
	return Driver{Name: name, Check: check, Open: func(p OpenParams) (Store, error) {
		if err := check(p); err != nil {
			return nil, err
		}
		return open(), nil
	}}
}

func init() {
	Register(inMemoryDriver("noop", func() Store { return NewNoop() }))
	Register(inMemoryDriver("memory", func() Store { return NewMemory() }))
}
