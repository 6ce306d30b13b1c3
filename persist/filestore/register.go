package filestore

import "github.com/ruaft/ruaft/persist"

// Importing this package registers the file store as "file" (see
// persist.Register): options as in Options.Set.
func init() { persist.Register(persist.DriverFor("file", DefaultOptions, Open)) }

// SetParams sets what a store opened by name takes from p: NoSync (off
// unless p.Sync is) and Logger.
func (o *Options) SetParams(p persist.OpenParams) {
	o.NoSync = !p.Sync
	o.Logger = p.Logger
}
