package badgerstore

import "github.com/ruaft/ruaft/persist"

// Importing this package registers the badger store as "badger" (see
// persist.Register): options as in Options.Set, synchronous writes unless
// OpenParams.Sync is off.
func init() {
	persist.Register(persist.DriverFor("badger", func(p persist.OpenParams) Options {
		o := DefaultOptions()
		o.NoSync = !p.Sync
		o.Logger = p.Logger
		return o
	}, Open))
}
