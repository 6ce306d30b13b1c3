//go:build unix

package plugin

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// sockEnd is an endpoint on a blocking Unix socket.
type sockEnd struct{ *os.File }

func (s sockEnd) interrupt() {
	rc, err := s.SyscallConn()
	if err != nil {
		return
	}
	// Control holds a reference on the descriptor: it cannot have been
	// closed and reused for something else meanwhile.
	_ = rc.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_RDWR) })
}

// directPair makes the direct Append channel: a connected Unix socket pair
// in blocking mode, the host's end and the child's end as a file to pass in
// exec.Cmd.ExtraFiles.
func directPair() (endpoint, *os.File, error) {
	// ForkLock: no other goroutine may fork between creating the sockets
	// and marking them close-on-exec, or a sibling child would inherit them.
	// ExtraFiles clears the flag on the child's copy only.
	syscall.ForkLock.RLock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, fmt.Errorf("persist/plugin: direct channel: socketpair: %w", err)
	}
	return sockEnd{os.NewFile(uintptr(fds[0]), "persister-append")}, os.NewFile(uintptr(fds[1]), "persister-append-child"), nil
}

// directFromEnv returns the plugin's end of the direct channel if the host
// passed one, or nil.
func directFromEnv() (endpoint, error) {
	v := os.Getenv(EnvAppendFD)
	if v == "" {
		return nil, nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("persist/plugin: %s=%q is not an inherited descriptor", EnvAppendFD, v)
	}
	st, err := sockType(fd)
	if err != nil || st != syscall.SOCK_STREAM {
		return nil, fmt.Errorf("persist/plugin: %s=%d is not a stream socket (%v)", EnvAppendFD, fd, err)
	}
	syscall.CloseOnExec(fd) // not for the store's own children
	if err := syscall.SetNonblock(fd, false); err != nil {
		return nil, fmt.Errorf("persist/plugin: direct channel: %w", err)
	}
	return sockEnd{os.NewFile(uintptr(fd), "persister-append")}, nil
}

func sockType(fd int) (int, error) {
	return syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TYPE)
}
