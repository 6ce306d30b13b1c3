package durio

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ruaft/ruaft/internal/freeport"
	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/raft"
	"github.com/ruaft/ruaft/raft/twirptransport"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
)

// testCluster is n in-process replicas on loopback with noop stores.
type testCluster struct {
	replicas []*Replica
	clients  []kvv1.KVService // client-listener Twirp clients, by id
}

// startTestCluster starts n replicas; tweak adjusts each one's config.
func startTestCluster(t testing.TB, n int, scheme string, tweak func(cfg *Config)) *testCluster {
	t.Helper()
	return startLoggedTestCluster(t, n, scheme, tweak, func(int) *slog.Logger { return nil })
}

// startLoggedTestCluster is startTestCluster with replica i logging to
// logger(i). The peer ports are chosen free and bound only when each
// replica starts, so another process (a parallel test package) can take
// one in between; the cluster then starts again on new ports, at most
// three times.
func startLoggedTestCluster(t testing.TB, n int, scheme string, tweak func(cfg *Config), logger func(id int) *slog.Logger) *testCluster {
	t.Helper()
	for attempt := 1; ; attempt++ {
		c, err := tryStartTestCluster(t, n, scheme, tweak, logger)
		if err == nil {
			return c
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("attempt %d: %v; starting again on new ports", attempt, err)
	}
}

// tryStartTestCluster starts the replicas once; on an error it closes the
// ones it started and returns the error.
func tryStartTestCluster(t testing.TB, n int, scheme string, tweak func(cfg *Config), logger func(id int) *slog.Logger) (*testCluster, error) {
	t.Helper()
	ports := freeport.Ports(t, n)
	peers := make([]string, n)
	for i, p := range ports {
		peers[i] = scheme + "://127.0.0.1:" + strconv.Itoa(p)
	}
	c := &testCluster{}
	for i := range n {
		cfg := DefaultConfig()
		cfg.ID, cfg.Peers, cfg.ListenClient, cfg.DataDir = i, peers, "127.0.0.1:0", t.TempDir()
		cfg.RequestTimeout = 2 * time.Second
		if tweak != nil {
			tweak(&cfg)
		}
		r, err := StartReplica(cfg, persist.NewNoop(), logger(i))
		if err != nil {
			for _, started := range c.replicas {
				_ = started.Close(context.Background())
			}
			return nil, err
		}
		c.replicas = append(c.replicas, r)
		c.clients = append(c.clients, kvv1.NewKVServiceProtobufClient("http://"+r.ClientAddr(), http.DefaultClient))
	}
	for _, r := range c.replicas {
		t.Cleanup(func() {
			if err := r.Close(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	return c, nil
}

// waitLeader waits until every replica knows the same leader and returns
// its id and term.
func (c *testCluster) waitLeader(t testing.TB) (int, uint64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		st0 := c.replicas[0].kv.Status()
		same := st0.Leader != raft.NoLeader
		for _, r := range c.replicas[1:] {
			st := r.kv.Status()
			same = same && st.Leader == st0.Leader && st.Term == st0.Term
		}
		if same {
			return st0.Leader, st0.Term
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no agreed leader within 15s")
	return 0, 0
}

// putOp encodes a kvraft Put the way kvraft's log does (kvraft/codec.go):
// kind 1, client id, sequence, ack, then key and value with their lengths.
func putOp(key, value string) []byte {
	b := []byte{1, 0, 0, 0}
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	b = binary.AppendUvarint(b, uint64(len(value)))
	return append(b, value...)
}

// attack sends what an unauthenticated peer could: an AppendEntries at a
// higher term carrying a Put and committing it, and a TimeoutNow, to every
// replica's peer port. Every call must be refused.
func attack(t *testing.T, c *testCluster, client *http.Client, scheme string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i, r := range c.replicas {
		st := r.kv.Status()
		p := raftv1.NewRaftServiceProtobufClient(scheme+"://"+r.PeerAddr(), client)
		_, err := p.AppendEntries(ctx, &raftv1.AppendEntriesRequest{
			Term: st.Term + 1, LeaderId: uint32((i + 1) % len(c.replicas)), PrevLogIndex: st.LastIndex, PrevLogTerm: st.Term,
			Entries: []*raftv1.Entry{{Index: st.LastIndex + 1, Term: st.Term + 1, Type: raftv1.EntryType_ENTRY_TYPE_COMMAND,
				Data: putOp("k", "evil")}},
			LeaderCommit: st.LastIndex + 1,
		})
		if err == nil {
			t.Errorf("replica %d accepted an unauthenticated AppendEntries", i)
		}
		if _, err := p.TimeoutNow(ctx, &raftv1.TimeoutNowRequest{Term: st.Term, LeaderId: uint32((i + 1) % len(c.replicas))}); err == nil {
			t.Errorf("replica %d accepted an unauthenticated TimeoutNow", i)
		}
	}
}

// checkUntouched checks that the attack changed nothing: same leader and
// term everywhere, and k still reads "real" through every replica.
func (c *testCluster) checkUntouched(t *testing.T, leader int, term uint64) {
	t.Helper()
	// Give a successful attack time to show: an election or an apply.
	time.Sleep(500 * time.Millisecond)
	for i, r := range c.replicas {
		if st := r.kv.Status(); st.Term != term || st.Leader != leader {
			t.Errorf("replica %d: term %d leader %d after the attack, want term %d leader %d", i, st.Term, st.Leader, term, leader)
		}
		got, err := c.clients[i].Get(context.Background(), &kvv1.GetRequest{Key: "k"})
		if err != nil || got.GetValue() != "real" {
			t.Errorf("replica %d: get k = %q, %v; want real", i, got.GetValue(), err)
		}
	}
}

func TestPeerPlaneRefusesWithoutToken(t *testing.T) {
	c := startTestCluster(t, 3, "http", func(cfg *Config) { cfg.PeerToken = "s3cret" })
	leader, term := c.waitLeader(t)
	if _, err := c.clients[0].Put(context.Background(), &kvv1.PutRequest{Key: "k", Value: "real"}); err != nil {
		t.Fatal(err)
	}
	attack(t, c, http.DefaultClient, "http")
	attack(t, c, twirptransport.WithToken(&http.Client{}, "wrong"), "http")
	c.checkUntouched(t, leader, term)
}

// startMutualTLSCluster starts three replicas whose peer plane requires
// client certificates of one CA, waits for a leader and writes "k"; it
// returns the folder of certificates from another CA (valid for the same
// address) for the attacks.
func startMutualTLSCluster(t *testing.T) (c *testCluster, leader int, term uint64, otherDir string) {
	t.Helper()
	dir := t.TempDir()
	if _, err := WriteCerts(CertsOptions{Dir: dir, Hosts: []string{"127.0.0.1", "127.0.0.1", "127.0.0.1"}, Validity: time.Hour}); err != nil {
		t.Fatal(err)
	}
	otherDir = t.TempDir()
	if _, err := WriteCerts(CertsOptions{Dir: otherDir, Hosts: []string{"127.0.0.1"}, Validity: time.Hour}); err != nil {
		t.Fatal(err)
	}
	c = startTestCluster(t, 3, "https", func(cfg *Config) {
		n := strconv.Itoa(cfg.ID)
		cfg.PeerCA = filepath.Join(dir, "ca.crt")
		cfg.PeerCert, cfg.PeerKey = filepath.Join(dir, "replica-"+n+".crt"), filepath.Join(dir, "replica-"+n+".key")
	})
	leader, term = c.waitLeader(t)
	if _, err := c.clients[1].Put(context.Background(), &kvv1.PutRequest{Key: "k", Value: "real"}); err != nil {
		t.Fatal(err)
	}
	return c, leader, term, otherDir
}

func TestPeerPlaneRefusesWithoutClientCert(t *testing.T) {
	c, leader, term, otherDir := startMutualTLSCluster(t)
	// No client certificate (and not even checking the server's).
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	attack(t, c, noCert, "https")
	// A client certificate the cluster's CA did not sign.
	_, foreign, err := twirptransport.MutualTLS(filepath.Join(otherDir, "replica-0.crt"), filepath.Join(otherDir, "replica-0.key"), filepath.Join(otherDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	foreign.InsecureSkipVerify = true
	attack(t, c, &http.Client{Transport: &http.Transport{TLSClientConfig: foreign}}, "https")
	// Plain HTTP to the TLS port.
	attack(t, c, http.DefaultClient, "http")
	c.checkUntouched(t, leader, term)
}

func TestNonLoopbackPeerListenerNeedsAuth(t *testing.T) {
	base := []string{"--peers", "http://192.0.2.1:7000", "--listen-peer", "0.0.0.0:7000", "--listen-client", "127.0.0.1:0"}
	_, err := ParseServeFlags(base)
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "not authenticated") || !strings.Contains(err.Error(), "--insecure-peers") {
		t.Fatalf("non-loopback peer listener without auth: %v", err)
	}
	for _, extra := range [][]string{{"--insecure-peers"}, {"--peer-token", "x"}} {
		if _, err := ParseServeFlags(append(base, extra...)); err != nil {
			t.Errorf("with %v: %v", extra, err)
		}
	}
	for _, listen := range []string{"127.0.0.1:7000", "[::1]:7000", "localhost:7000"} {
		if _, err := ParseServeFlags([]string{"--peers", "http://127.0.0.1:7000", "--listen-peer", listen, "--listen-client", "127.0.0.1:0"}); err != nil {
			t.Errorf("loopback %s: %v", listen, err)
		}
	}
	for _, bad := range [][]string{
		{"--peers", "https://127.0.0.1:7000", "--listen-client", "127.0.0.1:0"},                       // https without certs
		{"--peers", "http://127.0.0.1:7000", "--listen-client", "127.0.0.1:0", "--peer-cert", "c"},    // half the files
		{"--peers", "http://127.0.0.1:7000", "--listen-client", "127.0.0.1:0", "--cors-origins", "x"}, // not an origin
		{"--peers", "http://127.0.0.1:7000", "--listen-client", "127.0.0.1:0", "--write-timeout", "1s"},
	} {
		if _, err := ParseServeFlags(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("%v: got %v, want a config error", bad, err)
		}
	}
}

// panickyStore panics in Append once armed: a stand-in for any bug that
// panics inside one of raft's daemon goroutines.
type panickyStore struct {
	persist.Store
	armed atomic.Bool
}

func (s *panickyStore) Append(ctx context.Context, hs persist.HardState, entries []persist.Entry) error {
	if s.armed.Load() {
		panic("index out of range in a buggy store")
	}
	return s.Store.Append(ctx, hs, entries)
}

// A replica whose raft node panicked reports the failure on /status and the
// Status RPC without the stack trace or source paths, which stay in the log.
func TestStatusAfterPanicHasNoStack(t *testing.T) {
	store := &panickyStore{Store: persist.NewNoop()}
	cfg := oneMemberConfig(t)
	cfg.RequestTimeout = time.Second
	r, err := StartReplica(cfg, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(context.Background()); err != nil && !errors.Is(err, raft.ErrPanic) {
			t.Error(err)
		}
	})
	url := "http://" + r.ClientAddr()
	client := kvv1.NewKVServiceProtobufClient(url, http.DefaultClient)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := client.Put(context.Background(), &kvv1.PutRequest{Key: "k", Value: "v"}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no successful put within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	store.armed.Store(true)
	_, _ = client.Put(context.Background(), &kvv1.PutRequest{Key: "k", Value: "boom"})
	for {
		code, _, body := request(t, "GET", url+"/status", "", nil)
		if code != 200 {
			t.Fatalf("/status: %d", code)
		}
		reps, _ := body["replicas"].([]any)
		self, _ := reps[0].(map[string]any)
		if msg, _ := self["error"].(string); msg != "" {
			for _, leak := range []string{"goroutine", ".go:", "\n", "runtime/"} {
				if strings.Contains(msg, leak) {
					t.Fatalf("/status error leaks %q: %q", leak, msg)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica never reported the panic: %v", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := r.kv.Status().Err; err == nil || !strings.Contains(err.Error(), ".go:") {
		t.Fatalf("the node's own error should carry the stack for the log: %v", err)
	}
	st, err := client.Status(context.Background(), &kvv1.StatusRequest{})
	if err != nil || st.GetError() == "" || strings.Contains(st.GetError(), ".go:") {
		t.Fatalf("Status RPC: %v %v", st, err)
	}
}
