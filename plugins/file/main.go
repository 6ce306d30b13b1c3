// Command file is the persister plugin serving the built-in file store. A
// replica starts it through persist/plugin when its persister is this
// binary's path; it is not meant to be run by hand.
package main

import (
	"fmt"
	"os"

	"github.com/ruaft/ruaft/persist/plugin"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "file plugin:", err)
		os.Exit(1)
	}
}

func run() error { return plugin.ServeBuiltin("file") }
