package twirptransport

import (
	"syscall"
	"unsafe"
)

// socketQueued returns how many bytes wait in the receive queue of socket
// fd (ioctl SIOCINQ, spelled TIOCINQ in package syscall), 0 on error.
func socketQueued(fd uintptr) int {
	var n int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n))); e != 0 {
		return 0
	}
	return int(n)
}
