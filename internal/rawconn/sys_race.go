//go:build linux && race

package rawconn

import "syscall"

// With the race detector, reads and writes go through package syscall,
// which tells the detector that a write to a socket happens before the
// read that receives it; raw calls would not, and goroutines that
// synchronize through a connection (a test's client and server) would be
// reported as racing. The sockets are still non-blocking and waited for in
// the netpoller, so the rest of this package runs as without the detector.
func sysRead(fd uintptr, b []byte) (int, syscall.Errno) {
	return errno(syscall.Read(int(fd), b))
}

func sysWrite(fd uintptr, b []byte) (int, syscall.Errno) {
	return errno(syscall.Write(int(fd), b))
}

func errno(n int, err error) (int, syscall.Errno) {
	if err != nil {
		return 0, err.(syscall.Errno)
	}
	return n, 0
}
