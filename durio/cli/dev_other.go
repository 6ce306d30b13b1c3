//go:build !linux

package cli

import "os/exec"

// setDeathSignal does nothing where there is no parent-death signal (macOS,
// the BSDs): durio dev stops its replicas on Ctrl-C and SIGTERM, but if it is
// killed with SIGKILL they keep running until stopped by hand.
func setDeathSignal(*exec.Cmd) {}
