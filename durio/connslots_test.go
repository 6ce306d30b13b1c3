package durio

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/raft/twirptransport"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// pipeListener hands out the server ends of net.Pipe connections whose
// remote address it sets, one per dial.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn, 64), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}
func (l *pipeListener) Close() error   { close(l.closed); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// dial queues a connection from host and returns its client end.
func (l *pipeListener) dial(host string) net.Conn {
	server, client := net.Pipe()
	l.conns <- addrConn{Conn: server, remote: &net.TCPAddr{IP: net.ParseIP(host), Port: 40000}}
	return client
}

// closedByServer reports whether the server closed the connection whose
// client end is c (a read then fails at once).
func closedByServer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// At the cap, a new connection evicts the oldest pending connection of the
// host with the most pending ones; once every open connection is vouched
// for, new ones are refused; a closed one frees its slot.
func TestCapListenerEvictsPending(t *testing.T) {
	pl := newPipeListener()
	var refused, evicted atomic.Int64
	ln := newCapListener(pl, 4, func() { refused.Add(1) }, func() { evicted.Add(1) })
	defer ln.Close()
	accept := func(host string) (client net.Conn, server *cappedConn) {
		t.Helper()
		client = pl.dial(host)
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return client, c.(*cappedConn)
	}
	const hostA, hostB, hostC = "10.0.0.1", "10.0.0.2", "10.0.0.3"
	a1, _ := accept(hostA)
	a2, sa2 := accept(hostA)
	a3, _ := accept(hostA)
	b1, sb1 := accept(hostB)
	// Full: B's second connection evicts A's oldest, A having the most pending.
	b2, sb2 := accept(hostB)
	if !closedByServer(a1) || evicted.Load() != 1 {
		t.Fatalf("a1 closed %v, evictions %d; want a1 evicted", closedByServer(a1), evicted.Load())
	}
	for i, c := range []net.Conn{a2, a3, b1, b2} {
		if closedByServer(c) {
			t.Fatalf("connection %d closed; only a1 should be", i)
		}
	}
	// A and B now have one pending each... after these vouch, A's a3 is
	// the only pending one.
	sa2.vouch()
	sb1.vouch()
	sb2.vouch()
	c1, sc1 := accept(hostC)
	if !closedByServer(a3) || evicted.Load() != 2 {
		t.Fatalf("a3 closed %v, evictions %d; want a3 evicted", closedByServer(a3), evicted.Load())
	}
	// Every open connection vouched for: the next one is refused. The
	// listener's Accept goes on to the connection after it.
	sc1.vouch()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	d1 := pl.dial(hostC)
	waitUntil(t, "d1 is refused", func() bool { return refused.Load() == 1 })
	if !closedByServer(d1) {
		t.Fatal("d1, refused, is open")
	}
	sa2.Close() // frees a slot for d2
	d2 := pl.dial(hostC)
	c := <-accepted
	if c == nil {
		t.FailNow()
	}
	if closedByServer(d2) {
		t.Fatal("d2, accepted after a close freed a slot, is closed")
	}
	for i, c := range []net.Conn{b1, b2, c1} {
		if closedByServer(c) {
			t.Fatalf("vouched connection %d closed", i)
		}
	}
	// Closing twice frees one slot, not two.
	c.Close()
	c.Close()
	e1, _ := accept(hostA) // takes the freed slot
	e2, _ := accept(hostA) // the cap again: evicts e1, the only pending one
	if !closedByServer(e1) || closedByServer(e2) || evicted.Load() != 3 || refused.Load() != 1 {
		t.Fatalf("e1 closed %v, e2 closed %v, evictions %d, refusals %d; want e1 evicted", closedByServer(e1), closedByServer(e2), evicted.Load(), refused.Load())
	}
}

// On a tie of pending counts, the older connection is evicted.
func TestCapListenerEvictsOldestOnTie(t *testing.T) {
	pl := newPipeListener()
	ln := newCapListener(pl, 2, nil, nil)
	defer ln.Close()
	var clients []net.Conn
	for _, h := range []string{"10.0.0.2", "10.0.0.1", "10.0.0.3"} {
		clients = append(clients, pl.dial(h))
		if _, err := ln.Accept(); err != nil {
			t.Fatal(err)
		}
	}
	if !closedByServer(clients[0]) || closedByServer(clients[1]) || closedByServer(clients[2]) {
		t.Fatal("want only the oldest connection (10.0.0.2's) evicted")
	}
}

// flood keeps idle connections open to every address in addrs until ctx
// ends: idle of them send nothing, wrong send a request with a wrong peer
// token. Each dials again 200 ms after the server closes it (or refuses
// the dial), so at a connection cap it evicts others, and is evicted, all
// the time. It returns how many connections the servers closed.
func flood(ctx context.Context, addrs []string, idle, wrong int) (closed func() int64, wait func()) {
	var n atomic.Int64
	var wg sync.WaitGroup
	for _, addr := range addrs {
		for i := range idle + wrong {
			wg.Go(func() {
				var d net.Dialer
				for ctx.Err() == nil {
					if c, err := d.DialContext(ctx, "tcp", addr); err == nil {
						stop := context.AfterFunc(ctx, func() { c.Close() })
						if i >= idle {
							_, _ = io.WriteString(c, "POST "+twirptransport.PathPrefix+"AppendEntries HTTP/1.1\r\nHost: x\r\n"+
								"Authorization: Bearer wrong\r\nContent-Length: 0\r\n\r\n")
						}
						if _, err := io.Copy(io.Discard, c); err == nil && ctx.Err() == nil {
							n.Add(1)
						}
						stop()
						c.Close()
					}
					select {
					case <-ctx.Done():
					case <-time.After(200 * time.Millisecond):
					}
				}
			})
		}
	}
	return n.Load, wg.Wait
}

// A host that keeps more idle (or wrongly authenticated) connections open
// on the peer listeners than --max-peer-conns cannot lock the replicas out
// of each other: its connections are evicted for theirs. Fresh peer
// connections are served all through the flood, and writes through every
// replica (forwarded to the leader on new connections) commit.
func TestPeerPlaneUnderIdleFlood(t *testing.T) {
	const capConns = 32 // room for the replicas' own connections and a flood; a real cap (256) has more
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			var peerTLS *tls.Config
			dir := t.TempDir()
			if scheme == "https" {
				if _, err := WriteCerts(CertsOptions{Dir: dir, Hosts: []string{"127.0.0.1", "127.0.0.1", "127.0.0.1"}, Validity: time.Hour}); err != nil {
					t.Fatal(err)
				}
				cert, err := twirptransport.LoadKeyPair(filepath.Join(dir, "replica-0.crt"), filepath.Join(dir, "replica-0.key"))
				if err != nil {
					t.Fatal(err)
				}
				if _, peerTLS, err = twirptransport.MutualTLSWith(cert, filepath.Join(dir, "ca.crt")); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var closedConns func() int64
			waitFlood, stopFlood := func() {}, func() {}
			defer func() { cancel(); waitFlood() }()
			c := startTestCluster(t, 3, scheme, func(cfg *Config) {
				cfg.MaxPeerConns = capConns
				if scheme == "https" {
					n := strconv.Itoa(cfg.ID)
					cfg.PeerCA = filepath.Join(dir, "ca.crt")
					cfg.PeerCert, cfg.PeerKey = filepath.Join(dir, "replica-"+n+".crt"), filepath.Join(dir, "replica-"+n+".key")
				} else {
					cfg.PeerToken = "s3cret"
				}
				if cfg.ID == 0 {
					// The flood starts before any replica listens, so the
					// replicas connect to each other through it. A start
					// again on new ports (EADDRINUSE) first stops the
					// flood at the old ones.
					stopFlood()
					waitFlood()
					addrs := make([]string, len(cfg.Peers))
					for i, p := range cfg.Peers {
						addrs[i] = strings.TrimPrefix(p, scheme+"://")
					}
					var fctx context.Context
					fctx, stopFlood = context.WithCancel(ctx)
					closedConns, waitFlood = flood(fctx, addrs, capConns+4, 2)
				}
			})
			waitUntil(t, "the flood reaches the connection cap of every replica", func() bool {
				for _, r := range c.replicas {
					m := scrape(t, r)
					if metricValue(m, `durio_http_evicted_connections_total{listener="peer"}`)+
						metricValue(m, `durio_http_refused_connections_total{listener="peer"}`) == 0 {
						return false
					}
				}
				return true
			})
			c.waitLeader(t)
			// For two seconds at least: a write through each replica in
			// turn (a follower's forwarded to the leader), and a request on
			// a new peer connection to every replica (each evicts a flood
			// connection).
			hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: peerTLS}}
			end := time.Now().Add(2 * time.Second)
			for round := 0; round < 9 || time.Now().Before(end); round++ {
				i := round % len(c.replicas)
				wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := c.clients[i].Put(wctx, &kvv1.PutRequest{Key: fmt.Sprintf("k%d", round), Value: "v"})
				wcancel()
				if err != nil {
					t.Fatalf("round %d: put through replica %d during the flood: %v", round, i, err)
				}
				for i, r := range c.replicas {
					req, _ := http.NewRequestWithContext(ctx, "GET", scheme+"://"+r.PeerAddr()+historyPeerPath, nil)
					req.Header.Set("Authorization", "Bearer s3cret")
					resp, err := hc.Do(req)
					if err != nil {
						t.Fatalf("round %d: a new peer connection to replica %d: %v", round, i, err)
					}
					resp.Body.Close()
					if resp.StatusCode == http.StatusUnauthorized {
						t.Fatalf("round %d: a new peer connection to replica %d: 401", round, i)
					}
				}
				select { // pace the rounds
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
			}
			for i, r := range c.replicas {
				m := scrape(t, r)
				t.Logf("replica %d: %v peer connections evicted, %v refused", i,
					metricValue(m, `durio_http_evicted_connections_total{listener="peer"}`),
					metricValue(m, `durio_http_refused_connections_total{listener="peer"}`))
			}
			t.Logf("the servers closed %d flood connections", closedConns())
		})
	}
}

// The client listener too: connections that never send a whole request
// make room for one that does.
func TestClientListenerUnderIdleFlood(t *testing.T) {
	const capConns = 8
	r := startOne(t, func(cfg *Config) { cfg.MaxClientConns = capConns })
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range 2 * capConns {
		c, err := net.Dial("tcp", r.ClientAddr())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\n") // headers never end
		idle = append(idle, c)
	}
	for j := range 2 * capConns {
		c, err := net.Dial("tcp", r.ClientAddr())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("request %d on a fresh connection: %v", j, err)
		}
		resp.Body.Close()
		c.Close()
	}
	// The idle ones over the cap, and at least one for the first request.
	if v := metricValue(scrape(t, r), `durio_http_evicted_connections_total{listener="client"}`); v < capConns+1 {
		t.Errorf("%v client connections evicted, want at least %d", v, capConns+1)
	}
}

// metricValue is the value of one series (name and labels, as printed) on
// a /metrics page, 0 if absent.
func metricValue(page, series string) float64 {
	for line := range strings.Lines(page) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// An IPv6 /64 counts as one host: a machine holds a whole /64, so its
// connections from many addresses are evicted as one host's.
func TestCapListenerIPv6Network(t *testing.T) {
	key := func(ip string) string {
		return remoteHost(addrConn{remote: &net.TCPAddr{IP: net.ParseIP(ip), Port: 1}})
	}
	if key("2001:db8:1:2::1") != key("2001:db8:1:2:ffff:ffff:ffff:ffff") {
		t.Error("two addresses of one /64 are different hosts")
	}
	if key("2001:db8:1:2::1") == key("2001:db8:1:3::1") {
		t.Error("addresses of two /64 networks are one host")
	}
	if key("10.0.0.1") == key("10.0.0.2") || key("10.0.0.1") != key("::ffff:10.0.0.1") {
		t.Error("IPv4 hosts are not told apart by their whole address")
	}

	pl := newPipeListener()
	ln := newCapListener(pl, 4, nil, nil)
	defer ln.Close()
	var clients []net.Conn
	for _, ip := range []string{"2001:db8::1", "2001:db8:0:1::7", "2001:db8::2", "2001:db8::3", "2001:db8:0:1::8"} {
		clients = append(clients, pl.dial(ip))
		if _, err := ln.Accept(); err != nil {
			t.Fatal(err)
		}
	}
	// The fifth connection evicts the oldest of 2001:db8::/64, which holds
	// three pending connections from three addresses, not the other /64's.
	if !closedByServer(clients[0]) {
		t.Fatal("the oldest connection of the /64 with the most pending is open")
	}
	for i, c := range clients[1:] {
		if closedByServer(c) {
			t.Fatalf("connection %d closed; only the first should be", i+1)
		}
	}
}
