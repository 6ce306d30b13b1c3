package durio

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ruaft/ruaft/raft"
)

func TestParseServeFlags(t *testing.T) {
	cfg, err := ParseServeFlags([]string{
		"--id", "1",
		"--peers", "http://127.0.0.1:7001, http://127.0.0.1:7002,http://127.0.0.1:7003",
		"--listen-client", "127.0.0.1:8002",
		"--data-dir", "d1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ID != 1 || len(cfg.Peers) != 3 || cfg.ListenPeer != "127.0.0.1:7002" {
		t.Fatalf("unexpected config %+v", cfg)
	}
	if cfg.Persister != "badger" || cfg.MaxBodyBytes != 1<<20 || cfg.RequestTimeout != 5*time.Second ||
		cfg.SnapshotBytes != DefaultSnapshotBytes || cfg.HistoryEvents != DefaultHistoryEvents || cfg.HistoryBytes != DefaultHistoryBytes ||
		cfg.MemoryLimit != DefaultMemoryLimit || cfg.QuotaBytes != DefaultQuotaBytes {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	cfg, err = ParseServeFlags([]string{"--peers", "http://127.0.0.1:7001", "--listen-client", "127.0.0.1:8001",
		"--history-events", "0", "--history-bytes", "65536", "--memory-limit", "33554432", "--quota-bytes", "0"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HistoryEvents != 0 || cfg.HistoryBytes != 65536 || cfg.MemoryLimit != 32<<20 || cfg.QuotaBytes != 0 {
		t.Fatalf("flags not applied: history events %d bytes %d, memory limit %d", cfg.HistoryEvents, cfg.HistoryBytes, cfg.MemoryLimit)
	}
}

// --election-timeout, --heartbeat-interval and --read-batch-window reach raft (the election wait
// is random between the value and twice it), the peer RPC timeout follows
// the longest wait, and so does the bound on an attempt forwarded to the
// leader; the defaults are raft's own.
func TestElectionTimeoutFlags(t *testing.T) {
	base := []string{"--peers", "http://127.0.0.1:7001", "--listen-client", "127.0.0.1:8001"}
	cfg, err := ParseServeFlags(base)
	if err != nil {
		t.Fatal(err)
	}
	d, rc := raft.DefaultConfig(), raftConfig(cfg, slog.New(slog.DiscardHandler))
	if rc.ElectionTimeoutMin != d.ElectionTimeoutMin || rc.ElectionTimeoutMax != d.ElectionTimeoutMax ||
		rc.HeartbeatInterval != d.HeartbeatInterval || rc.RPCTimeout != d.RPCTimeout || rc.ReadBatchWindow != d.ReadBatchWindow {
		t.Fatalf("defaults: election %v-%v, heartbeat %v, rpc %v; want raft's", rc.ElectionTimeoutMin, rc.ElectionTimeoutMax, rc.HeartbeatInterval, rc.RPCTimeout)
	}
	if got := forwardAttempt(cfg); got != 900*time.Millisecond {
		t.Fatalf("default forwarded attempt bound %v, want 900ms", got)
	}
	cfg, err = ParseServeFlags(append(base, "--election-timeout", "1s", "--heartbeat-interval", "100ms", "--read-batch-window", "0s"))
	if err != nil {
		t.Fatal(err)
	}
	rc = raftConfig(cfg, slog.New(slog.DiscardHandler))
	if rc.ElectionTimeoutMin != time.Second || rc.ElectionTimeoutMax != 2*time.Second || rc.HeartbeatInterval != 100*time.Millisecond ||
		rc.RPCTimeout != 2*time.Second || rc.ReadBatchWindow != 0 {
		t.Fatalf("election %v-%v, heartbeat %v, rpc %v, read batch window %v; want 1s-2s, 100ms, 2s, 0",
			rc.ElectionTimeoutMin, rc.ElectionTimeoutMax, rc.HeartbeatInterval, rc.RPCTimeout, rc.ReadBatchWindow)
	}
	if err := rc.Validate(); err != nil {
		t.Fatalf("raft refuses the configuration: %v", err)
	}
	if got := forwardAttempt(cfg); got != 6*time.Second {
		t.Fatalf("forwarded attempt bound %v, want 6s (three longest election waits)", got)
	}
}

func TestConfigFileAndFlagOverride(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "durio.yaml")
	yaml := `id: 2
peers: [http://10.0.0.1:7000, http://10.0.0.2:7000, http://10.0.0.3:7000]
listen-peer: 0.0.0.0:7000
listen-client: 0.0.0.0:8080
data-dir: /var/lib/durio
persister: file
request-timeout: 3s
peer-token: s3cret
snapshot-bytes: 1048576
memory-limit: 50331648
quota-bytes: 1048576
persister-options:
  sync: "true"
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseServeFlags([]string{"--config", file, "--persister", "badger"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ID != 2 || cfg.ListenPeer != "0.0.0.0:7000" || cfg.DataDir != "/var/lib/durio" {
		t.Fatalf("file not applied: %+v", cfg)
	}
	if cfg.Persister != "badger" {
		t.Fatalf("flag did not override the file: persister=%q", cfg.Persister)
	}
	if cfg.RequestTimeout != 3*time.Second || cfg.PersisterOptions["sync"] != "true" || cfg.SnapshotBytes != 1<<20 ||
		cfg.MemoryLimit != 48<<20 || cfg.QuotaBytes != 1<<20 {
		t.Fatalf("file values lost: %+v", cfg)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	peers := "http://127.0.0.1:7001,http://127.0.0.1:7002,http://127.0.0.1:7003"
	cases := []struct {
		args  []string
		field string
	}{
		{[]string{"--listen-client", "127.0.0.1:8001"}, "peers"},
		{[]string{"--peers", peers, "--id", "3", "--listen-client", "127.0.0.1:8001"}, "id"},
		{[]string{"--peers", "ftp://x:1", "--listen-client", "127.0.0.1:8001"}, "peers"},
		{[]string{"--peers", "http://127.0.0.1", "--listen-client", "127.0.0.1:8001"}, "peers"},
		{[]string{"--peers", peers}, "listen-client"},
		{[]string{"--peers", peers, "--join", "http://127.0.0.1:8001", "--listen-client", "127.0.0.1:8009"}, "join"},
		{[]string{"--join", "http://127.0.0.1:8001", "--id", "5", "--listen-client", "127.0.0.1:8009"}, "peer-url"},
		{[]string{"--join", "127.0.0.1:8001", "--id", "5", "--peer-url", "http://127.0.0.1:7009", "--listen-client", "127.0.0.1:8009"}, "join"},
		{[]string{"--join", "http://127.0.0.1:8001", "--id", "5", "--peer-url", "http://127.0.0.1", "--listen-client", "127.0.0.1:8009"}, "peer-url"},
		{[]string{"--join", "http://127.0.0.1:8001", "--id", "-1", "--peer-url", "http://127.0.0.1:7009", "--listen-client", "127.0.0.1:8009"}, "id"},
		{[]string{"--join", "http://127.0.0.1:8001", "--id", "1048576", "--peer-url", "http://127.0.0.1:7009", "--listen-client", "127.0.0.1:8009"}, "id"},
		{[]string{"--peers", peers, "--id", "1", "--peer-url", "http://127.0.0.1:7009", "--listen-client", "127.0.0.1:8009"}, "peer-url"},
		{[]string{"--join", "http://127.0.0.1:8001", "--id", "5", "--peer-url", "http://127.0.0.1:7009", "--client-url", "nope", "--listen-client", "127.0.0.1:8009"}, "client-url"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:7001"}, "listen-client"},
		{[]string{"--peers", peers, "--listen-client", "x", "--data-dir", "d"}, "listen-client"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--max-body-bytes", "-1"}, "max-body-bytes"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--log-level", "loud"}, "log-level"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--snapshot-bytes", "-1"}, "snapshot-bytes"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--snapshot-bytes", "8MiB"}, "snapshot-bytes"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--client-urls", "http://a:1"}, "client-urls"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--history-events", "-1"}, "history-events"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--history-bytes", "-1"}, "history-bytes"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--quota-bytes", "-1"}, "quota-bytes"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--history-bytes", "2147483648"}, "history-bytes"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--memory-limit", "-1"}, "memory-limit"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--max-watch-wait", "500us"}, "max-watch-wait"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--election-timeout", "100ms"}, "election-timeout"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--election-timeout", "1m"}, "election-timeout"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--election-timeout", "-1s"}, "election-timeout"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--heartbeat-interval", "5ms"}, "heartbeat-interval"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--heartbeat-interval", "55ms"}, "heartbeat-interval"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--heartbeat-interval", "0s"}, "heartbeat-interval"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--read-batch-window", "-1ms"}, "read-batch-window"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--read-batch-window", "50ms"}, "read-batch-window"},
		{[]string{"--bogus"}, "bogus"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--tls-cert", "c.pem"}, "tls-cert"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--peer-token-file", "/nonexistent/token"}, "peer-token-file"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--peer-token", "a", "--peer-token-file", "f"}, "peer-token-file"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--cluster-token", "two words"}, "cluster-token"},
		{[]string{"--peers", peers, "--listen-client", "127.0.0.1:8001", "--cluster-token", strings.Repeat("x", 257)}, "cluster-token"},
		{[]string{"--join", "http://127.0.0.1:8001", "--id", "5", "--peer-url", "http://127.0.0.1:7009", "--listen-client", "127.0.0.1:8009",
			"--cluster-token", "prod"}, "cluster-token"},
	}
	for _, c := range cases {
		_, err := ParseServeFlags(c.args)
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%v: got %v, want ErrConfig", c.args, err)
			continue
		}
		if !strings.Contains(err.Error(), c.field) {
			t.Errorf("%v: error %q does not name %q", c.args, err, c.field)
		}
	}
}

func TestConfigFileUnknownKey(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(file, []byte("peerz: [http://127.0.0.1:1]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ParseServeFlags([]string{"--config", file})
	if err == nil || !strings.Contains(err.Error(), "peerz") {
		t.Fatalf("want an error naming peerz, got %v", err)
	}
}

func TestPeerTokenFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("  s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseServeFlags([]string{"--peers", "http://127.0.0.1:7001", "--listen-client", "127.0.0.1:8001", "--peer-token-file", file})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PeerToken != "s3cret" {
		t.Fatalf("token %q", cfg.PeerToken)
	}
}

// The shipped example configuration is valid and secure: mutual TLS on, and
// without its peer-* lines it would not start.
func TestDeployConfigIsSecure(t *testing.T) {
	cfg, err := ParseServeFlags([]string{"--config", "../deploy/durio.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.PeerTLS() || cfg.InsecurePeers {
		t.Fatalf("deploy/durio.yaml: peer TLS %v, insecure-peers %v", cfg.PeerTLS(), cfg.InsecurePeers)
	}
	data, err := os.ReadFile("../deploy/durio.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "peer-") {
			kept = append(kept, strings.ReplaceAll(line, "https://", "http://"))
		}
	}
	file := filepath.Join(t.TempDir(), "durio.yaml")
	if err := os.WriteFile(file, []byte(strings.Join(kept, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseServeFlags([]string{"--config", file}); !errors.Is(err, ErrConfig) {
		t.Fatalf("without peer authentication: %v, want a config error", err)
	}
}

func TestParseServeFlagsJoin(t *testing.T) {
	cfg, err := ParseServeFlags([]string{
		"--id", "17",
		"--join", "http://127.0.0.1:8001,http://127.0.0.1:8002",
		"--peer-url", "http://127.0.0.1:7017",
		"--listen-client", "127.0.0.1:8017",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ID != 17 || len(cfg.Join) != 2 || len(cfg.Peers) != 0 || cfg.ListenPeer != "127.0.0.1:7017" ||
		cfg.ClientURL != "http://127.0.0.1:8017" {
		t.Fatalf("unexpected config %+v", cfg)
	}
	// A bootstrap replica's own URLs come from its entries in the lists.
	cfg, err = ParseServeFlags([]string{"--id", "1", "--peers", "http://127.0.0.1:7001,http://127.0.0.1:7002",
		"--client-urls", "http://h1:8001,http://h2:8002", "--listen-client", "0.0.0.0:8002"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PeerURL != "http://127.0.0.1:7002" || cfg.ClientURL != "http://h2:8002" {
		t.Fatalf("own URLs: peer %q client %q", cfg.PeerURL, cfg.ClientURL)
	}
}
