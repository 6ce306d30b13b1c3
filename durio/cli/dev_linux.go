package cli

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel kill a `durio dev` replica when durio dev
// itself dies, even by SIGKILL, so no replica outlives it.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
