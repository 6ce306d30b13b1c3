package rawconn

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

func wrap(c net.Conn) net.Conn {
	var sc syscall.Conn
	switch c := c.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil || !isStream(c, rc) {
		return c
	}
	r := &conn{Conn: c, rc: rc}
	r.read.fn = r.readOnce
	r.write.fn = r.writeSome
	return r
}

// isStream reports whether c is a stream socket. Only there does a read of
// nothing mean EOF; a datagram socket can receive an empty datagram.
func isStream(c net.Conn, rc syscall.RawConn) bool {
	if _, ok := c.(*net.TCPConn); ok {
		return true
	}
	typ := -1
	_ = rc.Control(func(fd uintptr) { typ, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TYPE) })
	return typ == syscall.SOCK_STREAM
}

// conn is a socket read and written with raw system calls. A net.Conn may
// be read and written by several goroutines at once: each direction's
// state (the buffer, progress and error of the call under way) is guarded
// by its own mutex, so that the callbacks handed to the RawConn are built
// once, not per call.
type conn struct {
	net.Conn
	rc    syscall.RawConn
	read  direction
	write direction
}

type direction struct {
	mu    sync.Mutex
	fn    func(fd uintptr) bool
	buf   []byte
	n     int
	errno syscall.Errno
}

// readOnce reads once into read.buf; it reports false to wait for data.
func (c *conn) readOnce(fd uintptr) bool {
	d := &c.read
	for {
		n, e := sysRead(fd, d.buf)
		switch e {
		case 0:
			d.n = n
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			d.errno = e
			return true
		}
	}
}

// writeSome writes what is left of write.buf; it reports false to wait
// for room.
func (c *conn) writeSome(fd uintptr) bool {
	d := &c.write
	for d.n < len(d.buf) {
		n, e := sysWrite(fd, d.buf[d.n:])
		switch e {
		case 0:
			d.n += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			d.errno = e
			return true
		}
	}
	return true
}

// run makes one Read or Write of b (d is c.read or c.write): the RawConn
// calls d.fn until it is done, waiting in the netpoller between calls.
func (c *conn) run(d *direction, b []byte) (int, syscall.Errno, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.buf, d.n, d.errno = b, 0, 0
	var err error
	if d == &c.write {
		err = c.rc.Write(d.fn)
	} else {
		err = c.rc.Read(d.fn)
	}
	n, errno := d.n, d.errno
	d.buf = nil
	return n, errno, err
}

func (c *conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		// net answers a closed conn or a past deadline before the length.
		return c.Conn.Read(b)
	}
	n, errno, err := c.run(&c.read, b)
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *conn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return c.Conn.Write(b) // as in Read
	}
	n, errno, err := c.run(&c.write, b)
	if err == nil && errno != 0 {
		err = os.NewSyscallError("write", errno)
	}
	if err != nil {
		return n, c.opError("write", err)
	}
	return n, nil
}

// NetConn returns the wrapped connection, as tls.Conn's NetConn does: a
// caller that asks the socket itself (its SyscallConn, to count the bytes
// waiting in its receive queue) unwraps both the same way.
func (c *conn) NetConn() net.Conn { return c.Conn }

// opError describes a failed call as package net does, with the inner
// error of a RawConn's own *net.OpError (a closed connection, a deadline),
// so that errors.Is(err, net.ErrClosed) and os.ErrDeadlineExceeded, and
// net.Error's Timeout, answer as they do for the wrapped connection.
func (c *conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
