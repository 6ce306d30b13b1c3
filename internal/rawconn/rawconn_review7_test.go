package rawconn

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReview7ZeroLengthLikeNet checks that a zero-length Read or Write
// answers as the wrapped *net.TCPConn does: an error on a closed conn, and
// a timeout for a Write past its deadline (net checks both before looking
// at the length), not a silent 0, nil.
func TestReview7ZeroLengthLikeNet(t *testing.T) {
	c, _ := pair(t, "tcp")
	wantRaw(t, c)
	if err := c.SetWriteDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Write(nil); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Write(nil) past the write deadline = %d, %v; want 0, a timeout", n, err)
	}
	c.Close()
	if n, err := c.Read(nil); n != 0 || !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read(nil) on a closed conn = %d, %v; want 0, net.ErrClosed", n, err)
	}
	if n, err := c.Write(nil); n != 0 || !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write(nil) on a closed conn = %d, %v; want 0, net.ErrClosed", n, err)
	}
}

// TestReview7EmptyDatagramIsNotEOF wraps a unixgram *net.UnixConn (Wrap
// takes any *net.UnixConn): an empty datagram reads as 0, nil, as with
// net, not as io.EOF, which would end a reader's loop with data still to
// come.
func TestReview7EmptyDatagramIsNotEOF(t *testing.T) {
	la := &net.UnixAddr{Name: filepath.Join(t.TempDir(), "g"), Net: "unixgram"}
	srv, err := net.ListenUnixgram("unixgram", la)
	if err != nil {
		t.Fatal(err)
	}
	w := Wrap(srv)
	defer w.Close()
	cl, err := net.DialUnix("unixgram", nil, la)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, d := range []string{"", "x"} {
		if _, err := cl.Write([]byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	_ = w.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 8)
	if n, err := w.Read(b); n != 0 || err != nil {
		t.Fatalf("Read of an empty datagram = %d, %v; want 0, nil", n, err)
	}
	if n, err := w.Read(b); n != 1 || err != nil || b[0] != 'x' {
		t.Fatalf("Read of the next datagram = %q, %v; want \"x\", nil", b[:n], err)
	}
}

// rawListener hands out wrapped connections, as durio's capListener does.
type rawListener struct{ net.Listener }

func (l rawListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}

// serveRaw serves h over wrapped connections on loopback.
func serveRaw(t *testing.T, h http.Handler, tweak func(*http.Server)) (string, *http.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	if tweak != nil {
		tweak(srv)
	}
	go srv.Serve(rawListener{ln})
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), srv
}

// TestReview7HTTPKeepAliveAndPipelining sends requests with large bodies
// over one keep-alive connection, then three pipelined in one write: net/http
// reads ahead (its background read) and every answer comes back in order.
func TestReview7HTTPKeepAliveAndPipelining(t *testing.T) {
	addr, _ := serveRaw(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		fmt.Fprintf(w, "%s %d", r.URL.Path, len(b))
	}), nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	body := bytes.Repeat([]byte("b"), 3<<20)
	for i := range 3 {
		fmt.Fprintf(c, "POST /big%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", i, len(body))
		if _, err := c.Write(body); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		if want := fmt.Sprintf("/big%d %d", i, len(body)); string(got) != want {
			t.Fatalf("answer %q, want %q", got, want)
		}
	}
	var pipelined strings.Builder
	for i := range 3 {
		fmt.Fprintf(&pipelined, "GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	if _, err := io.WriteString(c, pipelined.String()); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		if want := fmt.Sprintf("/p%d 0", i); string(got) != want {
			t.Fatalf("pipelined answer %q, want %q", got, want)
		}
	}
}

// TestReview7HijackAfterBackgroundRead hijacks a connection while net/http
// waits in its background read (a GET has no body, so it reads ahead as the
// handler starts): Hijack stops that read with a past read deadline, which
// must come back as a timeout, or the request's context is cancelled as if
// the client had gone. A byte the client sent early must reach the hijacker.
func TestReview7HijackAfterBackgroundRead(t *testing.T) {
	result := make(chan string, 1)
	addr, _ := serveRaw(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond) // the background read is waiting (or has the early byte)
		c, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			result <- err.Error()
			return
		}
		defer c.Close()
		if err := r.Context().Err(); err != nil {
			result <- "context after hijack: " + err.Error()
			return
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
		b := make([]byte, 2)
		if _, err := io.ReadFull(brw, b); err != nil {
			result <- "read after hijack: " + err.Error()
			return
		}
		result <- string(b)
		c.Write(b)
	}), nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\nA")
	time.Sleep(200 * time.Millisecond)
	io.WriteString(c, "B")
	if got := <-result; got != "AB" {
		t.Fatalf("hijacker: %s; want AB", got)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade answer: %v, %v", resp, err)
	}
	b := make([]byte, 2)
	if _, err := io.ReadFull(br, b); err != nil || string(b) != "AB" {
		t.Fatalf("echo after the upgrade: %q, %v", b, err)
	}
}

// TestReview7WriteTimeoutWithAClientThatNeverReads: a handler writing more
// than the socket buffers hold to a client that does not read gets an error
// once the server's write timeout passes, instead of blocking for ever.
func TestReview7WriteTimeoutWithAClientThatNeverReads(t *testing.T) {
	done := make(chan error, 1)
	addr, _ := serveRaw(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 1<<20)
		for range 256 {
			if _, err := w.Write(chunk); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}), func(s *http.Server) { s.WriteTimeout = 300 * time.Millisecond })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("handler's write: %v; want a timeout", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("handler still writing 20 s after a 300 ms write timeout")
	}
}

// TestReview7ShutdownClosesIdleConns: Shutdown closes a keep-alive
// connection waiting in the netpoller for its next request and returns.
func TestReview7ShutdownClosesIdleConns(t *testing.T) {
	addr, srv := serveRaw(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	if _, err := http.ReadResponse(br, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection after Shutdown: %v; want EOF", err)
	}
}

// TestReview7TLSBothEnds runs TLS over wrapped conns on both sides, as the
// peer listener and the peer stream's dialer do: data both ways, and
// close_notify read as io.EOF by each side.
func TestReview7TLSBothEnds(t *testing.T) {
	cert, pool := selfSigned(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tln := tls.NewListener(rawListener{ln}, &tls.Config{Certificates: []tls.Certificate{cert}})
	srvErr := make(chan error, 1)
	go func() {
		c, err := tln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c) // until the client's close_notify
		if err == nil && len(b) != 1<<20 {
			err = fmt.Errorf("server read %d bytes", len(b))
		}
		srvErr <- err
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(Wrap(raw), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := tc.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := <-srvErr; err != nil {
		t.Fatalf("server: %v", err)
	}
	_ = tc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := tc.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client read after the server's close: %v; want io.EOF", err)
	}
	tc.Close()
}

// selfSigned makes a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestReview7PeerResetsMidWrite: a Write waiting for room fails once the
// peer resets the connection, with what it wrote and a write *net.OpError
// carrying the reset (ECONNRESET or EPIPE, as the kernel reports it).
func TestReview7PeerResetsMidWrite(t *testing.T) {
	c, s := pair(t, "tcp")
	wantRaw(t, c)
	done := make(chan error, 1)
	var n int
	go func() {
		var err error
		n, err = c.Write(make([]byte, 64<<20))
		done <- err
	}()
	// Once a byte arrived the Write has started; the buffers then fill.
	if _, err := io.ReadFull(s, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	_ = s.(*net.TCPConn).SetLinger(0)
	s.Close()
	select {
	case err := <-done:
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "write" || !(errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
			t.Fatalf("Write when the peer resets: %d, %v; want a write *net.OpError with ECONNRESET or EPIPE", n, err)
		}
		if n <= 0 || n >= 64<<20 {
			t.Fatalf("Write reported %d bytes; want the part that went out", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Write still waiting 10 s after the peer reset")
	}
}

// TestReview7CloseUnblocksWrite: Close ends a Write waiting for room with
// net.ErrClosed.
func TestReview7CloseUnblocksWrite(t *testing.T) {
	c, _ := pair(t, "tcp")
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, 64<<20))
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Write on a conn closed under it: %v; want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Write still waiting 10 s after Close")
	}
}

// TestReview7TLSHandshakeTimeout: a client that connects to a TLS server
// over wrapped conns and never says hello is dropped once the server's
// header timeout passes (net/http bounds the handshake by it).
func TestReview7TLSHandshakeTimeout(t *testing.T) {
	cert, _ := selfSigned(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: 300 * time.Millisecond,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.ServeTLS(rawListener{ln}, "", "")
	defer srv.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("silent TLS client: %v; want the server to close (EOF) within 10 s", err)
	}
}
