//go:build unix

package plugin

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// sockEnd is a Unix socket endpoint; pollEnd reads and writes it.
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

// directPair makes the direct Append channel: a connected Unix socket pair,
// the host's end (a pollEnd) and the child's end as a file to pass in
// exec.Cmd.ExtraFiles (the plugin makes it non-blocking, directFromEnv).
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
	child := os.NewFile(uintptr(fds[1]), "persister-append-child")
	host, err := newPollEnd(fds[0])
	if err != nil {
		_ = child.Close()
		return nil, nil, err
	}
	return host, child, nil
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
	return newPollEnd(fd)
}

// newPollEnd makes socket fd a pollEnd, which then owns it; on an error fd
// is closed.
func newPollEnd(fd int) (endpoint, error) {
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("persist/plugin: direct channel: %w", err)
	}
	f := os.NewFile(uintptr(fd), "persister-append")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("persist/plugin: direct channel: %w", err)
	}
	return pollEnd{sockEnd{f}, rc}, nil
}

// pollEnd is an end of the direct channel (the host's and the plugin's): a
// non-blocking socket read and written with raw system calls, waiting in the
// netpoller.
//
// Why (perf and syscall counts of a plugin under paced Appends, README
// "Persister plugins"): every system call made through package syscall
// tells the Go runtime it entered one, and that wakes the sysmon thread if
// it was asleep; sysmon then polls every 20 µs until the process is idle
// again, and with GOMAXPROCS=1 it takes the processor from a thread blocked
// in a syscall (no other is idle), which costs a hand-off and wake-ups of
// other threads. A plugin between Appends is idle, so each Append woke it:
// ~6 nanosleeps and ~6 futex calls per Append, a quarter of the plugin's
// CPU. Waiting in the netpoller leaves the processor idle, so sysmon
// sleeps; raw reads and writes of a non-blocking socket never block and
// do not wake it. The store's fdatasync is raw too (badgerstore).
type pollEnd struct {
	sockEnd
	rc syscall.RawConn
}

func (p pollEnd) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n uintptr
	var errno syscall.Errno
	err := p.rc.Read(func(fd uintptr) bool {
		for {
			n, _, errno = syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
			if errno != syscall.EINTR {
				return errno != syscall.EAGAIN
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, &os.PathError{Op: "read", Path: p.Name(), Err: errno}
	case n == 0:
		return 0, io.EOF
	}
	return int(n), nil
}

func (p pollEnd) Write(b []byte) (int, error) {
	written := 0
	var errno syscall.Errno
	err := p.rc.Write(func(fd uintptr) bool {
		for written < len(b) {
			n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[written])), uintptr(len(b)-written))
			switch e {
			case 0:
				written += int(n)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false
			default:
				errno = e
				return true
			}
		}
		return true
	})
	if err == nil && errno != 0 {
		err = &os.PathError{Op: "write", Path: p.Name(), Err: errno}
	}
	return written, err
}

func sockType(fd int) (int, error) {
	return syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TYPE)
}
