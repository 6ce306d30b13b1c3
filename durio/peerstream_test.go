package durio

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/ruaft/ruaft/raft/twirptransport"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
)

// upgradeRequest is the peer stream's upgrade request with an optional
// Authorization header.
func upgradeRequest(auth string) string {
	req := "GET " + twirptransport.StreamPath + " HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: " + twirptransport.StreamProtocol + "\r\n"
	if auth != "" {
		req += "Authorization: " + auth + "\r\n"
	}
	return req + "\r\n"
}

// tryUpgrade asks for the stream on conn and returns the answer's status,
// or an error if the connection failed first (a TLS handshake refused).
func tryUpgrade(conn net.Conn, auth string) (*bufio.Reader, int, error) {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, upgradeRequest(auth)); err != nil {
		return nil, 0, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, 0, err
	}
	return br, resp.StatusCode, nil
}

// streamAttack asks every replica's peer port for the stream over
// connections from dial with Authorization auth, and sends an evil
// AppendEntries through a stream client with token: neither may get a
// stream or an answer.
func streamAttack(t *testing.T, c *testCluster, scheme string, dial func(addr string) (net.Conn, error), auth string, client twirptransport.StreamOptions) {
	t.Helper()
	for i, r := range c.replicas {
		conn, err := dial(r.PeerAddr())
		if err == nil {
			var status int
			_, status, err = tryUpgrade(conn, auth)
			conn.Close()
			if err == nil && status == http.StatusSwitchingProtocols {
				t.Errorf("replica %d upgraded an unauthenticated connection (auth %q)", i, auth)
			}
		}
		st := r.kv.Status()
		sc := twirptransport.NewStreamClient(scheme+"://"+r.PeerAddr(), client)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = sc.Call(ctx, twirptransport.MethodAppendEntries, &raftv1.AppendEntriesRequest{
			Term: st.Term + 1, LeaderId: uint32((i + 1) % len(c.replicas)), PrevLogIndex: st.LastIndex, PrevLogTerm: st.Term,
			Entries:      []*raftv1.Entry{{Index: st.LastIndex + 1, Term: st.Term + 1, Type: raftv1.EntryType_ENTRY_TYPE_COMMAND, Data: putOp("k", "evil")}},
			LeaderCommit: st.LastIndex + 1,
		}, &raftv1.AppendEntriesResponse{})
		cancel()
		sc.Close()
		if err == nil {
			t.Errorf("replica %d answered an unauthenticated stream call", i)
		}
	}
}

func tcpDial(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }

// The stream is behind the peer token: no token or a wrong one gets 401
// and no stream. Authenticated but hostile frames (oversized, garbage)
// close the connection, and a slowloris upgrade is cut by the header
// timeout. None of it changes the cluster.
func TestPeerStreamAttacks(t *testing.T) {
	c := startTestCluster(t, 3, "http", func(cfg *Config) {
		cfg.PeerToken = "s3cret"
		cfg.ReadTimeout = time.Second // ReadHeaderTimeout: min(5s, ReadTimeout)
	})
	leader, term := c.waitLeader(t)
	if _, err := c.clients[0].Put(context.Background(), &kvv1.PutRequest{Key: "k", Value: "real"}); err != nil {
		t.Fatal(err)
	}
	streamAttack(t, c, "http", tcpDial, "", twirptransport.StreamOptions{})
	streamAttack(t, c, "http", tcpDial, "Bearer wrong", twirptransport.StreamOptions{Token: "wrong"})

	max := DefaultConfig().MaxPeerBodyBytes
	frames := map[string][]byte{
		"oversized": binary.BigEndian.AppendUint32(nil, uint32(max)+1024),
		"garbage":   append(binary.BigEndian.AppendUint32(nil, 12), "not a frame!"...),
	}
	for name, frame := range frames {
		for i, r := range c.replicas {
			conn, err := tcpDial(r.PeerAddr())
			if err != nil {
				t.Fatal(err)
			}
			br, status, err := tryUpgrade(conn, "Bearer s3cret")
			if err != nil || status != http.StatusSwitchingProtocols {
				t.Fatalf("replica %d: authenticated upgrade: %d %v", i, status, err)
			}
			_, _ = conn.Write(frame)
			if _, err := br.ReadByte(); err == nil || isTimeout(err) {
				t.Errorf("replica %d: connection still open after a %s frame (%v)", i, name, err)
			}
			conn.Close()
		}
	}
	// Slowloris: half an upgrade request, then nothing.
	conn, err := tcpDial(c.replicas[leader].PeerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := upgradeRequest("Bearer s3cret")
	_, _ = io.WriteString(conn, req[:30])
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(conn); isTimeout(err) {
		t.Errorf("slowloris upgrade still open after 10s")
	} else if len(b) > 0 && string(b[:12]) == "HTTP/1.1 101" {
		t.Errorf("slowloris upgrade answered 101")
	}
	c.checkUntouched(t, leader, term)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Over mutual TLS, a connection without a client certificate or with one
// from another CA gets no stream.
func TestPeerStreamRefusesWithoutClientCert(t *testing.T) {
	c, leader, term, otherDir := startMutualTLSCluster(t)
	noCert := &tls.Config{InsecureSkipVerify: true}
	tlsDial := func(cfg *tls.Config) func(string) (net.Conn, error) {
		return func(addr string) (net.Conn, error) {
			return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		}
	}
	streamAttack(t, c, "https", tlsDial(noCert), "", twirptransport.StreamOptions{TLS: noCert})
	_, foreign, err := twirptransport.MutualTLS(filepath.Join(otherDir, "replica-0.crt"), filepath.Join(otherDir, "replica-0.key"), filepath.Join(otherDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	foreign.InsecureSkipVerify = true
	streamAttack(t, c, "https", tlsDial(foreign), "", twirptransport.StreamOptions{TLS: foreign})
	streamAttack(t, c, "http", tcpDial, "", twirptransport.StreamOptions{}) // plain HTTP to the TLS port
	c.checkUntouched(t, leader, term)
	// The replicas themselves talk over the stream.
	if n := c.replicas[(leader+1)%3].streamSrv.Connections(); n < 1 {
		t.Fatalf("follower has %d stream connections, want the leader's", n)
	}
}

// A cluster talks over the stream: the leader's AppendEntries and a
// follower's forwarded writes each ride one connection per peer.
func TestPeerStreamCarriesPeerTraffic(t *testing.T) {
	c := startTestCluster(t, 3, "http", nil)
	leader, _ := c.waitLeader(t)
	follower := (leader + 1) % 3
	for i := range 20 {
		if _, err := c.clients[follower].Put(context.Background(), &kvv1.PutRequest{Key: "k" + strconv.Itoa(i), Value: "v"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.replicas[follower].streamSrv.Connections(); n < 1 {
		t.Errorf("follower serves %d stream connections, want the leader's", n)
	}
	if n := c.replicas[leader].streamSrv.Connections(); n < 1 {
		t.Errorf("leader serves %d stream connections, want the forwarding follower's", n)
	}
	// The metrics see the stream, and raft's RPC metrics still count the
	// RPCs it carries.
	if m := scrape(t, c.replicas[follower]); !regexp.MustCompile(`(?m)^durio_peer_stream_connections [1-9]`).MatchString(m) {
		t.Errorf("follower's metrics lack durio_peer_stream_connections >= 1")
	}
	m := scrape(t, c.replicas[leader])
	for _, re := range []string{`(?m)^durio_raft_rpcs_sent_total\{result="ok",rpc="AppendEntries"\} [1-9]`,
		`(?m)^durio_raft_rpc_duration_seconds_count\{rpc="AppendEntries"\} [1-9]`} {
		if !regexp.MustCompile(re).MatchString(m) {
			t.Errorf("leader's metrics do not match %s", re)
		}
	}
	got, err := c.clients[leader].Get(context.Background(), &kvv1.GetRequest{Key: "k19"})
	if err != nil || got.GetValue() != "v" {
		t.Fatalf("get k19 = %v, %v", got, err)
	}
}

// A rolling upgrade: a replica without the stream (no-peer-stream stands in
// for an older version) and two with it form a cluster; writes through
// every replica succeed, over Twirp to and from the old one.
func TestPeerStreamMixedVersions(t *testing.T) {
	c := startTestCluster(t, 3, "http", func(cfg *Config) { cfg.NoPeerStream = cfg.ID == 2 })
	c.waitLeader(t)
	for round := range 3 {
		for i := range c.replicas {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := c.clients[i].Put(ctx, &kvv1.PutRequest{Key: "k", Value: strconv.Itoa(round*10 + i)})
			cancel()
			if err != nil {
				t.Fatalf("put through replica %d: %v", i, err)
			}
		}
	}
	if c.replicas[2].streamSrv != nil {
		t.Fatal("no-peer-stream replica serves the stream")
	}
	for i := range c.replicas {
		got, err := c.clients[i].Get(context.Background(), &kvv1.GetRequest{Key: "k"})
		if err != nil || got.GetValue() != "22" {
			t.Fatalf("replica %d: get k = %v, %v; want 22", i, got, err)
		}
	}
}

// scrape returns r's /metrics page.
func scrape(t *testing.T, r *Replica) string {
	t.Helper()
	resp, err := http.Get("http://" + r.ClientAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// --no-peer-stream (and the YAML key) turn the stream off; it is on by
// default.
func TestNoPeerStreamFlag(t *testing.T) {
	base := []string{"--peers", "http://127.0.0.1:7000", "--listen-client", "127.0.0.1:0"}
	cfg, err := ParseServeFlags(base)
	if err != nil || cfg.NoPeerStream {
		t.Fatalf("default: NoPeerStream %v, %v", cfg.NoPeerStream, err)
	}
	cfg, err = ParseServeFlags(append(base, "--no-peer-stream"))
	if err != nil || !cfg.NoPeerStream {
		t.Fatalf("--no-peer-stream: NoPeerStream %v, %v", cfg.NoPeerStream, err)
	}
	file := filepath.Join(t.TempDir(), "durio.yaml")
	if err := os.WriteFile(file, []byte("no-peer-stream: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = ParseServeFlags(append(base, "--config", file))
	if err != nil || !cfg.NoPeerStream {
		t.Fatalf("no-peer-stream: true in YAML: NoPeerStream %v, %v", cfg.NoPeerStream, err)
	}
}
