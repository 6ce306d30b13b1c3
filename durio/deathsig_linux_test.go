package durio_test

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes a child process die with the test binary.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
