package twirptransport

import "syscall"

// socketQueued returns how many bytes wait in the receive queue of socket
// fd (SO_NREAD), 0 on error.
func socketQueued(fd uintptr) int {
	n, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_NREAD)
	if err != nil {
		return 0
	}
	return n
}
