package filestore

import "github.com/ruaft/ruaft/persist"

// Importing this package registers the file store as "file" (see
// persist.Register): options as in Options.Set, fsync unless
// OpenParams.Sync is off.
func init() {
	persist.Register(persist.DriverFor("file", func(p persist.OpenParams) Options {
		o := DefaultOptions()
		o.NoSync = !p.Sync
		o.Logger = p.Logger
		return o
	}, Open))
}
