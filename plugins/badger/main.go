// Command badger is the persister plugin serving the built-in badger store. A
// replica starts it through persist/plugin when its persister is this
// binary's path; it is not meant to be run by hand.
package main

import (
	_ "github.com/ruaft/ruaft/persist/badgerstore" // registers "badger"
	"github.com/ruaft/ruaft/persist/plugin"
)

func main() { plugin.Main("badger") }
