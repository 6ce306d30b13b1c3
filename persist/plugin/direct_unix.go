//go:build unix

package plugin

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"

	"github.com/ruaft/ruaft/internal/rawconn"
)

// directPair makes the direct Append channel: a connected Unix socket pair,
// the host's end (a pollEnd) and the child's end as a file to pass in
// exec.Cmd.ExtraFiles (the plugin makes it a pollEnd, directFromEnv).
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
	host, err := newPollEnd(os.NewFile(uintptr(fds[0]), "persister-append"))
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
	return newPollEnd(os.NewFile(uintptr(fd), "persister-append"))
}

// newPollEnd makes f, a stream Unix socket, a pollEnd. f is closed either
// way: the pollEnd has a duplicate of its descriptor, registered with the
// netpoller (net.FileConn).
func newPollEnd(f *os.File) (endpoint, error) {
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("persist/plugin: direct channel: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		_ = c.Close()
		return nil, fmt.Errorf("persist/plugin: direct channel: a %T, not a Unix socket", c)
	}
	return pollEnd{Conn: rawconn.Wrap(uc), uc: uc}, nil
}

// pollEnd is an end of the direct channel (the host's and the plugin's): a
// non-blocking socket that package rawconn reads and writes with raw system
// calls (on Linux; elsewhere with ordinary ones), waiting in the netpoller.
//
// Why (perf and syscall counts of a plugin under paced Appends,
// docs/benchmarks.md, "The badger plugin's CPU"): every system call made
// through package syscall tells the Go runtime it entered one, and that
// wakes the sysmon thread if it was asleep; sysmon then polls every 20 µs
// until the process is idle again, and with GOMAXPROCS=1 it takes the
// processor from a thread blocked in a syscall (no other is idle), which
// costs a hand-off and wake-ups of other threads. A plugin between Appends
// is idle, so each Append woke it: ~6 nanosleeps and ~6 futex calls per
// Append, a quarter of the plugin's CPU. Waiting in the netpoller leaves the
// processor idle, so sysmon sleeps; raw reads and writes of a non-blocking
// socket never block and do not wake it. The store's fdatasync is raw too
// (badgerstore).
type pollEnd struct {
	net.Conn               // rawconn.Wrap(uc)
	uc       *net.UnixConn // for interrupt
}

func (p pollEnd) interrupt() {
	rc, err := p.uc.SyscallConn()
	if err != nil {
		return
	}
	// Control holds a reference on the descriptor: it cannot have been
	// closed and reused for something else meanwhile.
	_ = rc.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_RDWR) })
}

func sockType(fd int) (int, error) {
	return syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TYPE)
}
