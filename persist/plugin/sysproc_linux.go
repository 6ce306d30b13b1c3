package plugin

import (
	"os/exec"
	"syscall"
)

// parentDeathSignal: the kernel ends a plugin with its host (dieWithParent).
const parentDeathSignal = true

// dieWithParent makes the kernel SIGKILL the plugin when the host dies, so a
// host killed by a signal leaves no orphan (Linux). The signal is tied to
// the OS thread that started the process; the Go runtime keeps its threads
// alive unless a goroutine locked to one exits, which this package never
// does.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
