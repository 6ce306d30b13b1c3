package durio

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/raft/twirptransport"
)

// capState reads a capListener's open count and the number of its pending
// connections.
func capState(l *capListener) (open, pending int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, q := range l.pending {
		pending += q.Len()
	}
	return l.open, pending
}

// capOf finds the capListener under a replica's listener (a tls listener
// wraps it on an mTLS peer listener).
func capOf(t *testing.T, ln net.Listener) *capListener {
	t.Helper()
	for range 3 {
		if cl, ok := ln.(*capListener); ok {
			return cl
		}
		v := reflect.ValueOf(ln)
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		f := v.FieldByName("Listener")
		if !f.IsValid() {
			break
		}
		ln = f.Interface().(net.Listener)
	}
	t.Fatalf("no capListener under %T", ln)
	return nil
}

// The accounting holds under a churn of accepts, evictions, vouches and
// (double) closes from many goroutines: never more open than the cap, the
// pending set only within the open ones, and everything back to zero once
// every connection is closed.
func TestReviewCapListenerChurnInvariants(t *testing.T) {
	pl := newPipeListener()
	const max = 6
	ln := newCapListener(pl, max, nil, nil).(*capListener)
	hosts := []string{"10.0.0.1", "10.0.0.2", "::ffff:10.0.0.2", "fd00::1", "10.0.0.3"}

	var (
		mu      sync.Mutex
		servers []*cappedConn
		clients []net.Conn
		wg      sync.WaitGroup
	)
	check := func() {
		open, pending := capState(ln)
		if open < 0 || open > max || pending > open {
			t.Errorf("open %d, pending %d (cap %d)", open, pending, max)
		}
	}
	work := make(chan *cappedConn, 64)
	for range 4 {
		wg.Go(func() {
			for c := range work {
				switch rand.IntN(5) {
				case 0:
					c.vouch()
				case 1:
					c.Close()
				case 2:
					go c.Close()
					c.vouch()
				case 3:
					c.vouch()
					go c.vouch()
					c.Close()
					c.Close()
				case 4: // left pending
				}
				check()
			}
		})
	}
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cc := c.(*cappedConn)
			mu.Lock()
			servers = append(servers, cc)
			mu.Unlock()
			check()
			work <- cc
		}
	}()
	end := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(end) {
		c := pl.dial(hosts[rand.IntN(len(hosts))])
		mu.Lock()
		clients = append(clients, c)
		mu.Unlock()
	}
	ln.Close()
	<-acceptDone
	close(work)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, c := range servers {
		c.Close()
	}
	for _, c := range clients {
		c.Close()
	}
	// Connections dialed but not accepted when the listener closed are in
	// pl.conns, never admitted.
	open, pending := capState(ln)
	if open != 0 || pending != 0 || len(ln.pending) != 0 {
		t.Fatalf("after closing everything: open %d, pending %d, %d host lists; want 0", open, pending, len(ln.pending))
	}
	t.Logf("%d connections accepted", len(servers))
}

// IPv4 and IPv4-mapped IPv6 addresses of one host count as one host; a
// connection without a remote address (or a Unix socket) does not panic.
func TestReviewRemoteHostKeys(t *testing.T) {
	v4 := addrConn{remote: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1).To4(), Port: 1}}
	mapped := addrConn{remote: &net.TCPAddr{IP: net.ParseIP("::ffff:10.0.0.1"), Port: 2}}
	if remoteHost(v4) != remoteHost(mapped) {
		t.Errorf("10.0.0.1 and ::ffff:10.0.0.1 are different hosts")
	}
	other := addrConn{remote: &net.TCPAddr{IP: net.ParseIP("10.0.0.2"), Port: 1}}
	if remoteHost(v4) == remoteHost(other) {
		t.Errorf("10.0.0.1 and 10.0.0.2 are one host")
	}
	if got := remoteHost(addrConn{}); got != "" {
		t.Errorf("nil remote address: %q", got)
	}

	// A Unix listener: accepts, caps and evicts without a port.
	dir, err := os.MkdirTemp("", "cap")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	uln, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	ln := newCapListener(uln, 1, nil, nil)
	defer ln.Close()
	var cs []net.Conn
	for range 3 {
		c, err := net.Dial("unix", uln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
	}
	for _, c := range cs {
		c.Close()
	}
	if open, pending := capState(ln.(*capListener)); open != 1 || pending != 1 {
		t.Fatalf("unix: open %d, pending %d; want 1, 1", open, pending)
	}
}

// capExchange sends req on a new connection to addr and reads one
// response (nil if the server answered nothing). It reports whether the
// server closed the connection after it.
func capExchange(t *testing.T, dial func() (net.Conn, error), req string) (status int, closed bool, c net.Conn) {
	t.Helper()
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return 0, true, c
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err == nil {
		status = resp.StatusCode
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err = br.ReadByte()
	ne, ok := err.(net.Error)
	closed = !(ok && ne.Timeout())
	_ = c.SetDeadline(time.Time{})
	return status, closed, c
}

// unauthenticatedPeerRequests are requests without the peer token, one for
// each way into the peer listener.
func unauthenticatedPeerRequests() map[string]string {
	h := "Host: x\r\n"
	return map[string]string{
		"twirp no token":        "POST " + twirptransport.PathPrefix + "AppendEntries HTTP/1.1\r\n" + h + "Content-Type: application/protobuf\r\nContent-Length: 3\r\n\r\nabc",
		"twirp wrong token":     "POST " + twirptransport.PathPrefix + "AppendEntries HTTP/1.1\r\n" + h + "Authorization: Bearer wrong\r\nContent-Length: 0\r\n\r\n",
		"token lower case":      "GET " + historyPeerPath + " HTTP/1.1\r\n" + h + "Authorization: bearer s3cret\r\n\r\n",
		"token second header":   "GET " + historyPeerPath + " HTTP/1.1\r\n" + h + "Authorization: Bearer wrong\r\nAuthorization: Bearer s3cret\r\n\r\n",
		"stream upgrade":        "GET " + twirptransport.StreamPath + " HTTP/1.1\r\n" + h + "Connection: Upgrade\r\nUpgrade: " + twirptransport.StreamProtocol + "\r\n\r\n",
		"pprof":                 "GET /debug/pprof/ HTTP/1.1\r\n" + h + "\r\n",
		"no route":              "GET /nope HTTP/1.1\r\n" + h + "\r\n",
		"history":               "GET " + historyPeerPath + " HTTP/1.1\r\n" + h + "\r\n",
		"kv forward":            "POST /twirp/kv.v1.KVService/Put HTTP/1.1\r\n" + h + "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
		"cluster mismatch":      "GET " + historyPeerPath + " HTTP/1.1\r\n" + h + clusterHeader + ": other\r\n\r\n",
		"huge body":             "POST " + twirptransport.PathPrefix + "AppendEntries HTTP/1.1\r\n" + h + "Content-Length: 999999999\r\n\r\n",
		"expect continue":       "POST " + twirptransport.PathPrefix + "AppendEntries HTTP/1.1\r\n" + h + "Expect: 100-continue\r\nContent-Length: 10\r\n\r\n",
		"http/1.0 keep-alive":   "GET " + historyPeerPath + " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"options star":          "OPTIONS * HTTP/1.1\r\n" + h + "\r\n",
		"h2 preface":            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"h2c upgrade":           "GET " + historyPeerPath + " HTTP/1.1\r\n" + h + "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
		"chunked token trailer": "POST " + twirptransport.PathPrefix + "AppendEntries HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nTrailer: Authorization\r\n\r\n0\r\nAuthorization: Bearer s3cret\r\n\r\n",
		"bad request line":      "GARBAGE\r\n\r\n",
		"nothing":               "",
	}
}

// No request without the peer token vouches for its connection, whatever
// its route or shape; the listener can still evict every such connection
// that stays open. A request with the token does vouch.
func TestReviewPeerUnauthenticatedNeverVouched(t *testing.T) {
	r := startOne(t, func(cfg *Config) {
		cfg.MaxPeerConns = 64
		cfg.Pprof = true
	})
	cl := capOf(t, r.peerLn)
	dial := func() (net.Conn, error) { return net.Dial("tcp", r.PeerAddr()) }
	var keep []net.Conn
	defer func() {
		for _, c := range keep {
			c.Close()
		}
	}()
	for name, req := range unauthenticatedPeerRequests() {
		status, closed, c := capExchange(t, dial, req)
		keep = append(keep, c)
		open, pending := capState(cl)
		t.Logf("%-22s status %d closed %v (open %d pending %d)", name, status, closed, open, pending)
		if open != pending {
			t.Errorf("%s: %d open peer connections, %d pending: a request without the token vouched for its connection", name, open, pending)
		}
		// OPTIONS * is answered by net/http itself (200, no handler).
		if name != "options star" && (status == http.StatusOK || status == http.StatusSwitchingProtocols) {
			t.Errorf("%s: served with status %d without the token", name, status)
		}
	}
	// The control: the token vouches.
	_, closed, c := capExchange(t, dial, "GET "+historyPeerPath+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n\r\n")
	keep = append(keep, c)
	if open, pending := capState(cl); closed || open != pending+1 {
		t.Errorf("with the token: closed %v, open %d, pending %d; want one vouched connection", closed, open, pending)
	}
}

// mTLS without a peer token: a connection that fails the handshake, sends
// no certificate, or never finishes the handshake is never vouched for; one
// with a peer certificate is, once a request comes. The peer listener does
// not speak HTTP/2 (RequireToken's Connection: close works on HTTP/1 only).
func TestReviewPeerMTLSVouching(t *testing.T) {
	dir := t.TempDir()
	if _, err := WriteCerts(CertsOptions{Dir: dir, Hosts: []string{"127.0.0.1", "127.0.0.1"}, Validity: time.Hour}); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if _, err := WriteCerts(CertsOptions{Dir: other, Hosts: []string{"127.0.0.1"}, Validity: time.Hour}); err != nil {
		t.Fatal(err)
	}
	r := startOne(t, func(cfg *Config) {
		cfg.PeerToken = ""
		cfg.Peers = []string{"https://127.0.0.1:0"}
		cfg.PeerCA = filepath.Join(dir, "ca.crt")
		cfg.PeerCert, cfg.PeerKey = filepath.Join(dir, "replica-0.crt"), filepath.Join(dir, "replica-0.key")
		cfg.MaxPeerConns = 64
		cfg.Pprof = true
	})
	cl := capOf(t, r.peerLn)
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	peerCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "replica-1.crt"), filepath.Join(dir, "replica-1.key"))
	if err != nil {
		t.Fatal(err)
	}
	strangerCert, err := tls.LoadX509KeyPair(filepath.Join(other, "replica-0.crt"), filepath.Join(other, "replica-0.key"))
	if err != nil {
		t.Fatal(err)
	}
	tlsDial := func(certs []tls.Certificate) func() (net.Conn, error) {
		return func() (net.Conn, error) {
			d := &net.Dialer{Timeout: 5 * time.Second}
			return tls.DialWithDialer(d, "tcp", r.PeerAddr(), &tls.Config{RootCAs: roots, Certificates: certs, ServerName: "127.0.0.1",
				NextProtos: []string{"h2", "http/1.1"}})
		}
	}
	var keep []net.Conn
	defer func() {
		for _, c := range keep {
			c.Close()
		}
	}()
	req := "GET " + historyPeerPath + " HTTP/1.1\r\nHost: x\r\n\r\n"
	for name, dial := range map[string]func() (net.Conn, error){
		"no certificate":     tlsDial(nil),
		"another CA's cert":  tlsDial([]tls.Certificate{strangerCert}),
		"plain HTTP":         func() (net.Conn, error) { return net.Dial("tcp", r.PeerAddr()) },
		"half a ClientHello": func() (net.Conn, error) { return net.Dial("tcp", r.PeerAddr()) },
	} {
		var status int
		var closed bool
		var c net.Conn
		if name == "half a ClientHello" {
			c, _ = dial()
			_, _ = c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01})
		} else {
			status, closed, c = capExchange(t, dial, req)
		}
		keep = append(keep, c)
		open, pending := capState(cl)
		t.Logf("%-18s status %d closed %v (open %d pending %d)", name, status, closed, open, pending)
		if open != pending {
			t.Errorf("%s: %d open, %d pending: an unverified connection was vouched for", name, open, pending)
		}
	}
	c, err := tlsDial([]tls.Certificate{peerCert})()
	if err != nil {
		t.Fatal(err)
	}
	keep = append(keep, c)
	if p := c.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
		t.Errorf("the peer listener negotiated %q", p)
	}
	open0, pending0 := capState(cl)
	if open0 != pending0 {
		t.Fatalf("a peer's connection before any request: open %d, pending %d", open0, pending0)
	}
	_, _ = io.WriteString(c, req)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if open, pending := capState(cl); open != pending+1 {
		t.Errorf("after a peer's request: open %d, pending %d; want it vouched for", open, pending)
	}
}

// The client listener over TLS speaks HTTP/2: a request on an HTTP/2
// connection vouches for it as one over HTTP/1.1 does.
func TestReviewClientHTTP2Vouches(t *testing.T) {
	dir := t.TempDir()
	if _, err := WriteCerts(CertsOptions{Dir: dir, Hosts: []string{"127.0.0.1"}, Validity: time.Hour}); err != nil {
		t.Fatal(err)
	}
	r := startOne(t, func(cfg *Config) {
		cfg.TLSCert, cfg.TLSKey = filepath.Join(dir, "replica-0.crt"), filepath.Join(dir, "replica-0.key")
		cfg.MaxClientConns = 8
	})
	cl := capOf(t, r.clientLn)
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := hc.Get("https://" + r.ClientAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Skipf("the client listener answered over %s", resp.Proto)
	}
	if open, pending := capState(cl); open != 1 || pending != 0 {
		t.Fatalf("after an HTTP/2 request: open %d, pending %d; want one vouched connection", open, pending)
	}
}

// Over real TLS connections served by an http.Server (as the replicas
// serve theirs): idle dials, half handshakes, plain requests, hijacked
// connections and abrupt closes, all at once above the cap. The listener
// never holds more than the cap, and once every client is gone and the
// server closed, its count is back to zero: no slot leaks.
func TestReviewCapListenerHTTPAccounting(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const max = 8
	var evicted, refused atomic.Int64
	cl := newCapListener(raw, max, func() { refused.Add(1) }, func() { evicted.Add(1) }).(*capListener)
	ln := tls.NewListener(cl, &tls.Config{Certificates: []tls.Certificate{cert}})
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
		_ = brw.Flush()
		go func() { // held until the client goes
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}()
	})
	srv := &http.Server{Handler: vouchConn(mux), ConnContext: withCappedConn, ReadHeaderTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0)}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	addr := raw.Addr().String()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var over sync.Once
	wg.Go(func() { // the cap holds all along
		for ctx.Err() == nil {
			if open, pending := capState(cl); open > max || pending > open || open < 0 {
				over.Do(func() { t.Errorf("open %d, pending %d, cap %d", open, pending, max) })
			}
			time.Sleep(time.Millisecond)
		}
	})
	tcfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	for w := range 12 {
		wg.Go(func() {
			var d net.Dialer
			for i := 0; ctx.Err() == nil; i++ {
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					continue
				}
				stop := context.AfterFunc(ctx, func() { c.Close() })
				_ = c.SetDeadline(time.Now().Add(time.Second))
				switch (w + i) % 5 {
				case 0: // idle
					_, _ = c.Read(make([]byte, 1))
				case 1: // half a handshake
					_, _ = c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01})
					_, _ = c.Read(make([]byte, 1))
				case 2, 3: // a request, kept alive a while, or dropped at once
					tc := tls.Client(c, tcfg)
					if _, err := io.WriteString(tc, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"); err == nil && (w+i)%5 == 2 {
						if resp, err := http.ReadResponse(bufio.NewReader(tc), nil); err == nil {
							resp.Body.Close()
							time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
						}
					}
				case 4: // hijacked, then dropped
					tc := tls.Client(c, tcfg)
					if _, err := io.WriteString(tc, "GET /hijack HTTP/1.1\r\nHost: x\r\n\r\n"); err == nil {
						if resp, err := http.ReadResponse(bufio.NewReader(tc), nil); err == nil {
							resp.Body.Close()
							time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
						}
					}
				}
				stop()
				c.Close()
			}
		})
	}
	wg.Wait()
	_ = srv.Close()
	<-served
	waitUntil(t, "every slot is free", func() bool {
		open, pending := capState(cl)
		return open == 0 && pending == 0
	})
	if evicted.Load() == 0 {
		t.Error("no connection was evicted: the test did not reach the cap")
	}
	t.Logf("%d evicted, %d refused", evicted.Load(), refused.Load())
}

// The client listener vouches for a connection once a request's line and
// header have arrived: its body may still be on its way (the guard.go and
// README wording said "a whole request").
func TestReviewClientVouchesOnRequestHeader(t *testing.T) {
	r := startOne(t, func(cfg *Config) { cfg.MaxClientConns = 8 })
	cl := capOf(t, r.clientLn)
	c, err := net.Dial("tcp", r.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "POST /twirp/kv.v1.KVService/Put HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the connection is vouched for", func() bool {
		open, pending := capState(cl)
		return open == 1 && pending == 0
	})
}
