// Command noop is the persister plugin serving the built-in noop store. A
// replica starts it through persist/plugin when its persister is this
// binary's path; it is not meant to be run by hand.
package main

import (
	"github.com/ruaft/ruaft/persist/plugin"
)

func main() { plugin.Main("noop") }
