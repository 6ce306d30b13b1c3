//go:build !linux

package plugin

import "os/exec"

// dieWithParent does nothing outside Linux: there is no Pdeathsig, so mains
// must rely on Close and CleanupClients.
func dieWithParent(*exec.Cmd) {}
