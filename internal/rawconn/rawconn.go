// Package rawconn reads and writes TCP and Unix sockets with raw system
// calls, so that a busy Go process does not keep its sysmon thread awake.
//
// Why: every system call made through package syscall (which net uses)
// tells the Go runtime that the thread may block. The runtime's sysmon
// thread then watches it, polling every 20 µs while any processor is
// busy, and takes the processor away from a thread whose call spans two of
// those polls (a loopback write that delivers to the reader inside the
// call often does, on a virtual machine always), handing it to another
// thread. Perf profiles of durio replicas under load put 9-12% of each
// replica's CPU in sysmon and 3-5% more in parking and waking the threads
// it hands processors to (docs/benchmarks.md, "Raw socket I/O"). A read or
// write of a non-blocking socket never blocks, so it can be raw: the
// runtime does not see it and the processor stays with the goroutine.
// Waiting for readiness still happens in the netpoller, with deadlines, as
// for any net.Conn.
package rawconn

import "net"

// Wrap returns c with raw Read and Write where the platform and c allow
// (Linux; a *net.TCPConn or a stream *net.UnixConn), else c itself. Every
// other method, deadlines included, is c's; the wrapper's NetConn method
// returns c.
func Wrap(c net.Conn) net.Conn { return wrap(c) }
