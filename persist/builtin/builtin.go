// Package builtin links every built-in store into the binary that imports
// it, for its side effect: persist registers "noop" and "memory",
// persist/filestore "file", persist/badgerstore "badger". A replica that
// opens its persister by name (persist/plugin, durio) imports it; a
// persister plugin binary imports only its own store instead (plugins/file
// links no badger).
package builtin

import (
	_ "github.com/ruaft/ruaft/persist/badgerstore" // "badger"
	_ "github.com/ruaft/ruaft/persist/filestore"   // "file"
)
