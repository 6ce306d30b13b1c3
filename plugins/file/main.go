// Command file is the persister plugin serving the built-in file store. A
// replica starts it through persist/plugin when its persister is this
// binary's path; it is not meant to be run by hand.
package main

import (
	_ "github.com/ruaft/ruaft/persist/filestore" // registers "file"
	"github.com/ruaft/ruaft/persist/plugin"
)

func main() { plugin.Main("file") }
