package badgerstore

import "github.com/ruaft/ruaft/persist"

// Importing this package registers the badger store as "badger" (see
// persist.Register): options as in Options.Set.
func init() { persist.Register(persist.DriverFor("badger", DefaultOptions, Open)) }

// SetParams sets what a store opened by name takes from p: NoSync (off
// unless p.Sync is) and Logger.
func (o *Options) SetParams(p persist.OpenParams) {
	o.NoSync = !p.Sync
	o.Logger = p.Logger
}
