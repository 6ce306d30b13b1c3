package rawconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair returns a wrapped client end and the plain server end of a loopback
// connection of the given network ("tcp" or "unix").
func pair(t *testing.T, network string) (net.Conn, net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	w := Wrap(c)
	t.Cleanup(func() { w.Close(); s.Close() })
	return w, s
}

func wantRaw(t *testing.T, c net.Conn) {
	t.Helper()
	// Not c.(*conn): conn is Linux's, and go vet for darwin type-checks
	// this file too.
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
		if runtime.GOOS == "linux" {
			t.Fatalf("Wrap returned %T, want the raw conn on Linux", c)
		}
	}
}

func TestReadWriteBothWays(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			c, s := pair(t, network)
			wantRaw(t, c)
			// Larger than any socket buffer: Write must wait for room and
			// finish it, while the other end drains it.
			big := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB
			got := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(io.LimitReader(s, int64(len(big))))
				got <- b
			}()
			if n, err := c.Write(big); err != nil || n != len(big) {
				t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(big))
			}
			if b := <-got; !bytes.Equal(b, big) {
				t.Fatalf("the other end read %d bytes, not what was written", len(b))
			}
			if _, err := s.Write([]byte("pong")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 16)
			n, err := io.ReadAtLeast(c, buf, 4)
			if err != nil || string(buf[:n]) != "pong" {
				t.Fatalf("Read = %q, %v", buf[:n], err)
			}
			if n, err := c.Read(nil); n != 0 || err != nil {
				t.Fatalf("Read(nil) = %d, %v", n, err)
			}
			if n, err := c.Write(nil); n != 0 || err != nil {
				t.Fatalf("Write(nil) = %d, %v", n, err)
			}
		})
	}
}

func TestEOFWhenThePeerCloses(t *testing.T) {
	c, s := pair(t, "tcp")
	if _, err := s.Write([]byte("last")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "last" {
		t.Fatalf("ReadAll = %q, %v; want \"last\", nil (io.EOF ends it)", b, err)
	}
	if n, err := c.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Fatalf("Read after EOF = %d, %v; want 0, io.EOF", n, err)
	}
}

func TestReadDeadline(t *testing.T) {
	c, _ := pair(t, "tcp")
	if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(make([]byte, 4))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past its deadline: %v; want a timeout (os.ErrDeadlineExceeded)", err)
	}
	// A deadline already past fails at once.
	if err := c.SetReadDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 4)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read with a past deadline: %v", err)
	}
}

func TestWriteDeadlineWhenNobodyReads(t *testing.T) {
	c, _ := pair(t, "tcp")
	big := make([]byte, 64<<20) // more than both socket buffers hold
	if err := c.SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := c.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write = %d, %v; want a timeout", n, err)
	}
	if n <= 0 || n >= len(big) {
		t.Fatalf("Write reported %d bytes written; want the part that fit", n)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	c, _ := pair(t, "tcp")
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 4))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the Read wait in the netpoller (either order is correct)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed conn: %v; want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read still blocked 10 s after Close")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write on a closed conn: %v; want net.ErrClosed", err)
	}
}

func TestResetIsAnOpError(t *testing.T) {
	c, s := pair(t, "tcp")
	// Linger 0: Close sends a reset instead of a FIN.
	if err := s.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for err == nil && time.Now().Before(deadline) {
		_, err = c.Read(make([]byte, 4))
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Read after a reset: %v; want a read *net.OpError with ECONNRESET", err)
	}
	if oe.Addr == nil || oe.Source == nil {
		t.Errorf("OpError without addresses: %+v", oe)
	}
}

// TestConcurrentReadersAndWriters runs several readers and writers on one
// conn at once, as net.Conn allows (run with -race): every byte arrives
// once, each Write's bytes together.
func TestConcurrentReadersAndWriters(t *testing.T) {
	c, s := pair(t, "tcp")
	const writers, frames, size = 4, 200, 1000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			frame := bytes.Repeat([]byte{byte('a' + w)}, size)
			for range frames {
				if _, err := c.Write(frame); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	counts := make(map[byte]int)
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, size)
		for range writers * frames {
			if _, err := io.ReadFull(s, buf); err != nil {
				got <- err
				return
			}
			if !bytes.Equal(buf, bytes.Repeat(buf[:1], size)) {
				got <- errors.New("the bytes of two Writes interleaved")
				return
			}
			counts[buf[0]]++
		}
		got <- nil
	}()
	// Concurrent Reads on the wrapped end, fed by the other end.
	var rg sync.WaitGroup
	var mu sync.Mutex
	read := 0
	for range 3 {
		rg.Go(func() {
			buf := make([]byte, 100)
			for {
				n, err := c.Read(buf)
				mu.Lock()
				read += n
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	for w := range writers {
		if counts[byte('a'+w)] != frames {
			t.Errorf("writer %d: %d frames arrived, want %d", w, counts[byte('a'+w)], frames)
		}
	}
	payload := bytes.Repeat([]byte("z"), 100000)
	if _, err := s.Write(payload); err != nil {
		t.Fatal(err)
	}
	s.Close()
	rg.Wait()
	if read != len(payload) {
		t.Fatalf("readers got %d bytes, want %d", read, len(payload))
	}
}

func TestWrapLeavesOtherConnsAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("Wrap changed a net.Pipe conn")
	}
}

// TestNetConnUnwraps: the wrapper hands out the connection it wraps, so that
// a caller can reach the socket itself (its SyscallConn).
func TestNetConnUnwraps(t *testing.T) {
	c, _ := pair(t, "tcp")
	u, ok := c.(interface{ NetConn() net.Conn })
	if !ok {
		if runtime.GOOS == "linux" {
			t.Fatalf("Wrap returned %T, without NetConn", c)
		}
		return // not wrapped: c is the *net.TCPConn
	}
	if _, ok := u.NetConn().(*net.TCPConn); !ok {
		t.Fatalf("NetConn returned %T, want the wrapped *net.TCPConn", u.NetConn())
	}
}
