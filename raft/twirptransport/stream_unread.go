package twirptransport

import (
	"net"
	"syscall"
)

// unreadInSocket reports whether bytes wait in the receive queue of c's
// socket, not yet read by this process: whatever they are, the peer sent
// them. It unwraps a *tls.Conn and a rawconn wrapper (both offer NetConn)
// down to the socket. It reports false where it cannot tell (socketQueued
// has no way on this platform, c is not a socket, c is closed).
func unreadInSocket(c net.Conn) bool {
	for {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	if err := rc.Control(func(fd uintptr) { n = socketQueued(fd) }); err != nil {
		return false
	}
	return n > 0
}
