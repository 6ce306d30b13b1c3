//go:build !linux

package plugin

import "os/exec"

// parentDeathSignal: no Pdeathsig; a plugin watches its parent instead
// (leaveStopToHost).
const parentDeathSignal = false

// dieWithParent does nothing outside Linux: there is no Pdeathsig, so mains
// must rely on Close and CleanupClients.
func dieWithParent(*exec.Cmd) {}
