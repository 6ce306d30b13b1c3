package durio

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ruaft/ruaft/kvraft"
	"github.com/ruaft/ruaft/raft"
)

// Config is one replica's configuration. Every field can be set by a flag of
// the same name (`--listen-peer`) or by the same key in a YAML file given with
// --config; flags override the file.
type Config struct {
	// ID is this replica's stable id, from 0 to MaxReplicaID. A replica of
	// a new cluster (Peers) is its position in Peers; a replica that joins
	// (Join) takes any id no member has.
	ID int `yaml:"id"`
	// Peers bootstraps a new cluster: the peer-listener URLs of its first
	// replicas, in id order (http://host:port). Once the cluster exists its
	// membership lives in the replicated Raft configuration, which wins over
	// Peers (a disagreement is logged). Give Peers or Join, not both.
	Peers []string `yaml:"peers"`
	// ClientURLs are the client-listener URLs of the replicas in Peers, in
	// id order. Optional; they become the members' client URLs, which
	// clients use to find the leader and the other replicas.
	ClientURLs []string `yaml:"client-urls"`
	// Join names client URLs of replicas of an existing cluster: a replica
	// started with an empty DataDir asks the cluster to add it as a learner
	// (with PeerURL), catches up, and asks to be promoted to voter once it
	// has. A replica that already joined (its DataDir holds the cluster's
	// state) just restarts.
	Join []string `yaml:"join"`
	// PeerURL is the URL the other replicas reach this replica's peer
	// listener at; defaults to Peers[ID]. Required with Join.
	PeerURL string `yaml:"peer-url"`
	// ClientURL is the URL clients reach this replica's client listener at;
	// defaults to ClientURLs[ID], else to ListenClient when it names a host.
	ClientURL string `yaml:"client-url"`
	// ListenPeer is the address the peer listener binds; defaults to the
	// host:port of PeerURL.
	ListenPeer string `yaml:"listen-peer"`
	// ListenClient is the address the client listener binds.
	ListenClient string `yaml:"listen-client"`
	// DataDir is the folder this replica keeps its state in.
	DataDir string `yaml:"data-dir"`
	// Persister is the store: noop, file or badger (loaded as a plugin
	// subprocess of this binary), or the path to a third-party plugin binary.
	Persister string `yaml:"persister"`
	// PersisterOptions are passed to the persister as they are.
	PersisterOptions map[string]string `yaml:"persister-options"`
	// MaxBodyBytes is the largest request body the client listener accepts.
	MaxBodyBytes int64 `yaml:"max-body-bytes"`
	// SnapshotBytes is the size of the stored raft log, in bytes, above
	// which the replica snapshots its key-value state and drops the log it
	// covers, once the log is also larger than the last snapshot; 0 never
	// snapshots. Smaller values bound the disk the log takes (an SD card)
	// at the cost of writing the whole state more often.
	SnapshotBytes int64 `yaml:"snapshot-bytes"`
	// RequestTimeout bounds how long a client request may wait for the
	// cluster before it fails with 503 (no leader) or 504 (outcome unknown).
	RequestTimeout time.Duration `yaml:"request-timeout"`
	// ElectionTimeout is the least time a follower waits without word from
	// a leader before it campaigns (each wait is random, up to twice it);
	// a leader that hears from no majority for twice it steps down, and a
	// request forwarded to a leader is abandoned after three times its
	// longest wait. Raise it where one write of the raft log can take
	// longer (an SD card, a disk shared with other work) or the network is
	// slow: a leader's stalled write then costs no election, but a dead
	// leader is replaced that much later. Use the same value on every
	// replica.
	ElectionTimeout time.Duration `yaml:"election-timeout"`
	// HeartbeatInterval is how often a leader with nothing to send tells
	// its followers it lives; at most a third of ElectionTimeout.
	HeartbeatInterval time.Duration `yaml:"heartbeat-interval"`
	// ReadBatchWindow spaces the leadership confirmations of linearizable
	// reads while reads arrive faster than one completes (raft's
	// Config.ReadBatchWindow): more reads share each, for a little latency
	// under load. A read that finds none in flight is not held. 0 turns it
	// off; below HeartbeatInterval.
	ReadBatchWindow time.Duration `yaml:"read-batch-window"`
	// StoreStallTimeout fails the replica (fail-stop, as a failed store
	// does) when one write of its raft log has not returned after this
	// long: a disk or persister plugin that hangs would otherwise leave it
	// up but unable to apply or serve reads. 0: never.
	StoreStallTimeout time.Duration `yaml:"store-stall-timeout"`
	// MaxValueBytes caps a stored value, including what Appends grow it to
	// (400 with reason too_large above it).
	MaxValueBytes int `yaml:"max-value-bytes"`
	// QuotaBytes is the quota on the size of the keys and values (plus 64
	// bytes per key) the cluster holds: a put, append or txn that would
	// grow them past it is refused (507, reason no_space) and not applied;
	// deletes and writes that do not grow them still apply. 0: no quota.
	// Every replica holds the whole state in memory, and more while it
	// snapshots. The leader's quota is the one in force.
	QuotaBytes int64 `yaml:"quota-bytes"`
	// SessionIdleTimeout is how long an exactly-once session lives without
	// a write (by the leader's clock, recorded in the log).
	SessionIdleTimeout time.Duration `yaml:"session-idle-timeout"`
	// MaxSessions bounds the exactly-once table; opening one more evicts
	// the least recently used session.
	MaxSessions int `yaml:"max-sessions"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log-level"`
	// PeerToken is a shared secret every peer RPC must carry (as a bearer
	// token); peers without it get 401. Empty: peer RPCs are not
	// authenticated, so keep the peer listener on a private network.
	PeerToken string `yaml:"peer-token"`
	// PeerTokenFile names a file holding PeerToken (surrounding whitespace
	// ignored); an alternative that keeps the secret out of process lists.
	PeerTokenFile string `yaml:"peer-token-file"`
	// ClientAuthFile names a file of client tokens, one "ROLE TOKEN" per
	// line (ROLE read, write or admin): with it every client request but
	// health, readiness, metrics and the status page's HTML must carry one
	// as "Authorization: Bearer TOKEN" whose role allows it. Empty: the
	// client listener answers anyone who reaches it. Re-read on SIGHUP.
	ClientAuthFile string `yaml:"client-auth-file"`
	// clientTokens is ClientAuthFile parsed by Validate.
	clientTokens *clientTokens
	// ClusterToken, given when a cluster is bootstrapped with Peers, goes
	// into the cluster id with the peer URLs (as etcd's
	// --initial-cluster-token), so that two clusters bootstrapped with the
	// same peer URLs have different ids and refuse each other's peer RPCs.
	// Every bootstrap replica must be given the same one; it is read only
	// on the first start (the id is recorded in the data folder).
	ClusterToken string `yaml:"cluster-token"`
	// TLSCert and TLSKey are PEM files; when set, the client listener serves
	// HTTPS.
	TLSCert string `yaml:"tls-cert"`
	TLSKey  string `yaml:"tls-key"`
	// PeerCert and PeerKey are this replica's PEM certificate and key for
	// mutual TLS on the peer plane, and PeerCA the PEM certificate of the CA
	// that signed every replica's (see `durio certs`). Set all three or none;
	// with them every peer URL must be https, the peer listener serves TLS
	// 1.3 and accepts only clients with a certificate from PeerCA.
	PeerCert string `yaml:"peer-cert"`
	PeerKey  string `yaml:"peer-key"`
	PeerCA   string `yaml:"peer-ca"`
	// InsecurePeers allows a peer listener on a non-loopback address with
	// neither mutual TLS nor a peer token. Anyone who can reach it can then
	// write any key or stop the cluster.
	InsecurePeers bool `yaml:"insecure-peers"`
	// ReadTimeout bounds reading one request, headers and body, on both
	// listeners; a client that sends slower is disconnected.
	ReadTimeout time.Duration `yaml:"read-timeout"`
	// WriteTimeout bounds the time from the end of a request's headers to
	// the end of its response on both listeners; it must exceed
	// RequestTimeout.
	WriteTimeout time.Duration `yaml:"write-timeout"`
	// IdleTimeout closes a keep-alive connection idle this long.
	IdleTimeout time.Duration `yaml:"idle-timeout"`
	// MaxHeaderBytes is the largest request header block, in bytes.
	MaxHeaderBytes int `yaml:"max-header-bytes"`
	// MaxPeerBodyBytes is the largest request body the peer listener
	// accepts: the largest AppendEntries (up to 1 MiB of entries plus one
	// entry of up to a client body) or InstallSnapshot chunk (1 MiB), or a
	// forwarded client request, with room to spare.
	MaxPeerBodyBytes int64 `yaml:"max-peer-body-bytes"`
	// MaxClientConns and MaxPeerConns cap the open connections of each
	// listener. At the cap a new connection evicts one the server has not
	// vouched for yet (see capListener); only when every open connection is
	// vouched for is the new one closed as soon as accepted.
	MaxClientConns int `yaml:"max-client-conns"`
	MaxPeerConns   int `yaml:"max-peer-conns"`
	// MaxInflight caps the client requests being served at once; more get
	// 503 with Retry-After.
	MaxInflight int `yaml:"max-inflight"`
	// MaxWatchers caps the long polls (watches and blocking queries) waiting
	// at once on this replica; more get 429 with Retry-After. They do not
	// count against MaxInflight.
	MaxWatchers int `yaml:"max-watchers"`
	// MaxWatchWait caps how long one watch or blocking query waits; a
	// longer wait is lowered to it.
	MaxWatchWait time.Duration `yaml:"max-watch-wait"`
	// HistoryEvents and HistoryBytes bound the KV event history each replica
	// keeps in memory (and in every snapshot) to answer watches and listings
	// at older revisions; a watcher further behind gets "compacted" (410) and
	// lists again. 0 keeps no history. Use the same values on every replica.
	HistoryEvents int   `yaml:"history-events"`
	HistoryBytes  int64 `yaml:"history-bytes"`
	// CORSOrigins are the web origins (scheme://host[:port]) allowed to call
	// the client API from a browser; other cross-origin requests are
	// refused. "*" allows every origin (not recommended).
	CORSOrigins []string `yaml:"cors-origins"`
	// ClientHosts are more host names (without port) the client listener
	// answers under, besides IP addresses, localhost and the members'
	// client-URL hosts: a load balancer's or a DNS alias's. A request under
	// any other name that carries no Origin is refused, as a DNS-rebinding
	// page's would be; "*" accepts every name (turns that check off).
	ClientHosts []string `yaml:"client-hosts"`
	// Pprof serves Go's profiler at /debug/pprof/ on the peer listener (off by
	// default; profiles reveal internals, so only on a trusted network). It
	// also turns on the mutex and block profiles' sampling.
	Pprof bool `yaml:"pprof"`
	// NoPeerStream turns the peer stream off: every raft RPC and forwarded
	// write batch is then its own HTTP/1.1 request, as before the stream
	// existed, and the peer listener does not offer the stream. With the
	// stream on (the default), a peer that does not offer it is still
	// reached over per-request Twirp (a rolling upgrade).
	NoPeerStream bool `yaml:"no-peer-stream"`
	// NoLeanHTTP serves the plain-HTTP client listener with net/http alone.
	// By default a lean HTTP/1.1 loop serves the key-value routes that answer
	// at once (8-13 µs less CPU per request) and hands every other
	// request, and anything unusual, to net/http (see leanServer). With
	// --tls-cert the client listener always uses net/http alone.
	NoLeanHTTP bool `yaml:"no-lean-http"`
	// MemoryLimit is the replica process's soft memory limit in bytes, for
	// the Go runtime's own memory (heap, goroutine stacks, its metadata; not
	// the mapped binary): near it the collector runs more often, trading
	// CPU for memory (runtime/debug.SetMemoryLimit). 0 sets none. Unlike
	// GOMEMLIMIT in the environment, which wins over it, it does not reach
	// the persister plugin, which keeps its own limit.
	MemoryLimit int64 `yaml:"memory-limit"`
	// MaxProcs is how many cores the replica's Go code may use at once
	// (runtime.GOMAXPROCS; the persister plugin keeps its own). 0 chooses:
	// the machine's cores shared among the replicas of Peers that run on
	// this replica's host (coLocatedReplicas), at least one each. GOMAXPROCS
	// in the environment wins over both.
	MaxProcs int `yaml:"max-procs"`
}

// DefaultConfig returns the defaults; a replica still needs Peers and
// ListenClient.
func DefaultConfig() Config {
	return Config{
		Persister:          "badger",
		DataDir:            "durio-data",
		MaxBodyBytes:       1 << 20,
		SnapshotBytes:      DefaultSnapshotBytes,
		RequestTimeout:     DefaultRequestTimeout,
		ElectionTimeout:    raft.DefaultConfig().ElectionTimeoutMin,
		HeartbeatInterval:  raft.DefaultConfig().HeartbeatInterval,
		ReadBatchWindow:    raft.DefaultConfig().ReadBatchWindow,
		StoreStallTimeout:  DefaultStoreStallTimeout,
		MaxValueBytes:      DefaultLimits().MaxValueBytes,
		QuotaBytes:         DefaultQuotaBytes,
		SessionIdleTimeout: kvraft.DefaultSessionIdleTimeout,
		MaxSessions:        kvraft.DefaultMaxSessions,
		LogLevel:           "info",
		ReadTimeout:        10 * time.Second,
		WriteTimeout:       15 * time.Second,
		IdleTimeout:        60 * time.Second,
		MaxHeaderBytes:     16 << 10,
		// See MaxPeerBodyBytes: ~3 MiB is the largest legitimate message
		// today; batched forwarding may carry more.
		MaxPeerBodyBytes: 16 << 20,
		MaxClientConns:   1024,
		MaxPeerConns:     256,
		MaxInflight:      512,
		MaxWatchers:      DefaultMaxWatchers,
		MaxWatchWait:     DefaultMaxWatchWait,
		HistoryEvents:    DefaultHistoryEvents,
		HistoryBytes:     DefaultHistoryBytes,
		MemoryLimit:      DefaultMemoryLimit,
	}
}

// DefaultHistoryEvents and DefaultHistoryBytes are Config.HistoryEvents' and
// Config.HistoryBytes' defaults, chosen for a small machine: the history
// costs several times its accounted bytes in memory (a compare.sh put run
// measured ~16 MiB more replica footprint at 10,000 events / 4 MiB), and it
// travels in every snapshot.
const (
	DefaultHistoryEvents = 5000
	DefaultHistoryBytes  = 1 << 20
	// maxKVHistoryBytes bounds --history-bytes: 1 GiB, which also fits a
	// 32-bit int (kvraft.Config.HistoryMaxBytes).
	maxKVHistoryBytes = 1 << 30
)

// DefaultQuotaBytes is Config.QuotaBytes' default, chosen for a small
// machine: a replica holds the whole state in memory, and a copy of it
// while it snapshots or sends a snapshot.
const DefaultQuotaBytes = 256 << 20

// DefaultMaxWatchers and DefaultMaxWatchWait are Config.MaxWatchers' and
// Config.MaxWatchWait's defaults.
const (
	DefaultMaxWatchers = 10000
	// DefaultRequestTimeout is Config.RequestTimeout's default.
	DefaultRequestTimeout = 5 * time.Second
	DefaultMaxWatchWait   = 60 * time.Second
)

const (
	// DefaultStoreStallTimeout is Config.StoreStallTimeout's default. One
	// Append carries at most raft's replication window (16 MiB, a learner
	// catching up with large values), which a slow SD card writes in a few
	// seconds.
	DefaultStoreStallTimeout = 30 * time.Second
	// maxElectionTimeout bounds ElectionTimeout (etcd's bound too): a
	// cluster that waits longer for a dead leader is down, not patient.
	maxElectionTimeout = 50 * time.Second
	// minStoreStallTimeout is the least StoreStallTimeout above 0: a disk's
	// slow sync, or one full window on a slow card, must not stop a
	// replica (which would catch up, and stop again).
	minStoreStallTimeout = 5 * time.Second
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("durio: invalid configuration")

// ErrUsage is wrapped by errors that come from a bad command line or
// environment variable, and by WriteCerts for bad options: the durio command
// (durio/cli) exits 2 for it, as for ErrConfig.
var ErrUsage = errors.New("usage")

func configErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
}

// MaxReplicaID is the largest replica id.
const MaxReplicaID = 1<<20 - 1

// maxClusterTokenBytes bounds --cluster-token.
const maxClusterTokenBytes = 256

// Validate checks the configuration and fills PeerURL, ClientURL and
// ListenPeer from the other fields. Its errors name the field (as the flag
// and YAML key) at fault.
func (c *Config) Validate() error {
	if err := c.validateMembership(); err != nil {
		return err
	}
	if c.ListenPeer == "" {
		c.ListenPeer, _ = peerHostPort(c.PeerURL)
	}
	if _, _, err := net.SplitHostPort(c.ListenPeer); err != nil {
		return configErr("listen-peer", "%v", err)
	}
	if c.ListenClient == "" {
		return configErr("listen-client", "an address is required")
	}
	if _, _, err := net.SplitHostPort(c.ListenClient); err != nil {
		return configErr("listen-client", "%v", err)
	}
	if c.ListenClient == c.ListenPeer && !strings.HasSuffix(c.ListenPeer, ":0") {
		return configErr("listen-client", "must differ from listen-peer (%s)", c.ListenPeer)
	}
	if c.DataDir == "" {
		return configErr("data-dir", "a folder is required")
	}
	if c.Persister == "" {
		return configErr("persister", "noop, file, badger or a plugin path is required")
	}
	if c.MaxBodyBytes <= 0 {
		return configErr("max-body-bytes", "%d must be positive", c.MaxBodyBytes)
	}
	if c.SnapshotBytes < 0 {
		return configErr("snapshot-bytes", "%d must not be negative (0 disables snapshots)", c.SnapshotBytes)
	}
	if c.RequestTimeout <= 0 {
		return configErr("request-timeout", "%v must be positive", c.RequestTimeout)
	}
	if tick := raft.DefaultConfig().TickInterval; c.HeartbeatInterval < tick || c.HeartbeatInterval%tick != 0 {
		return configErr("heartbeat-interval", "%v must be a positive multiple of raft's tick (%v)", c.HeartbeatInterval, tick)
	}
	if c.ElectionTimeout < 3*c.HeartbeatInterval || c.ElectionTimeout > maxElectionTimeout {
		return configErr("election-timeout", "%v must be at least three heartbeat intervals (%v) and at most %v",
			c.ElectionTimeout, 3*c.HeartbeatInterval, maxElectionTimeout)
	}
	if c.ReadBatchWindow < 0 || c.ReadBatchWindow >= c.HeartbeatInterval {
		return configErr("read-batch-window", "%v must be 0 (off) or positive and below --heartbeat-interval (%v)", c.ReadBatchWindow, c.HeartbeatInterval)
	}
	if c.StoreStallTimeout != 0 && c.StoreStallTimeout < minStoreStallTimeout {
		return configErr("store-stall-timeout", "%v must be 0 (never) or at least %v", c.StoreStallTimeout, minStoreStallTimeout)
	}
	if c.MaxValueBytes <= 0 {
		return configErr("max-value-bytes", "%d must be positive", c.MaxValueBytes)
	}
	if c.QuotaBytes < 0 {
		return configErr("quota-bytes", "%d must not be negative (0 sets no quota)", c.QuotaBytes)
	}
	if c.SessionIdleTimeout < time.Second {
		return configErr("session-idle-timeout", "%v must be at least 1s", c.SessionIdleTimeout)
	}
	if c.MaxSessions < 1 {
		return configErr("max-sessions", "%d must be at least 1", c.MaxSessions)
	}
	if _, err := parseLogLevel(c.LogLevel); err != nil {
		return configErr("log-level", "%v", err)
	}
	if c.PeerTokenFile != "" {
		if c.PeerToken != "" {
			return configErr("peer-token-file", "give peer-token or peer-token-file, not both")
		}
		data, err := os.ReadFile(c.PeerTokenFile)
		if err != nil {
			return configErr("peer-token-file", "%v", err)
		}
		if c.PeerToken = strings.TrimSpace(string(data)); c.PeerToken == "" {
			return configErr("peer-token-file", "%s is empty", c.PeerTokenFile)
		}
		c.PeerTokenFile = ""
	}
	c.clientTokens = nil
	if c.ClientAuthFile != "" {
		t, err := readClientAuth(c.ClientAuthFile)
		if err != nil {
			return configErr("client-auth-file", "%v", err)
		}
		c.clientTokens = t
	}
	if len(c.ClusterToken) > maxClusterTokenBytes {
		return configErr("cluster-token", "%d bytes, at most %d", len(c.ClusterToken), maxClusterTokenBytes)
	}
	for _, r := range c.ClusterToken {
		if r < 0x21 || r > 0x7e {
			return configErr("cluster-token", "%q: only printable ASCII without spaces", c.ClusterToken)
		}
	}
	if c.ClusterToken != "" && len(c.Join) != 0 {
		return configErr("cluster-token", "applies only when bootstrapping with peers: a joining replica takes the cluster's id")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return configErr("tls-cert", "tls-cert and tls-key must be given together")
	}
	if err := c.validatePeerSecurity(); err != nil {
		return err
	}
	return c.validateLimits()
}

// validateMembership checks how this replica finds its cluster: Peers to
// bootstrap a new one, or Join to join an existing one.
func (c *Config) validateMembership() error {
	switch {
	case len(c.Peers) == 0 && len(c.Join) == 0:
		return configErr("peers", "give peers (the peer URLs of a new cluster) or join (client URLs of an existing cluster)")
	case len(c.Peers) != 0 && len(c.Join) != 0:
		return configErr("join", "give peers (bootstrap a new cluster) or join (join an existing one), not both")
	}
	for i, p := range c.Peers {
		if _, err := peerHostPort(p); err != nil {
			return configErr("peers", "entry %d (%q): %v", i, p, err)
		}
	}
	for i, u := range c.Join {
		if _, err := peerHostPort(u); err != nil {
			return configErr("join", "entry %d (%q): %v", i, u, err)
		}
	}
	if c.ID < 0 || c.ID > MaxReplicaID {
		return configErr("id", "%d must be from 0 to %d", c.ID, MaxReplicaID)
	}
	if len(c.Peers) != 0 {
		if c.ID >= len(c.Peers) {
			return configErr("id", "%d is not an index into peers (0..%d)", c.ID, len(c.Peers)-1)
		}
		if c.PeerURL == "" {
			c.PeerURL = c.Peers[c.ID]
		} else if c.PeerURL != c.Peers[c.ID] {
			return configErr("peer-url", "%q differs from this replica's peers entry %q", c.PeerURL, c.Peers[c.ID])
		}
	}
	if len(c.ClientURLs) != 0 && len(c.ClientURLs) != len(c.Peers) {
		return configErr("client-urls", "has %d entries, peers has %d", len(c.ClientURLs), len(c.Peers))
	}
	for i, u := range c.ClientURLs {
		if _, err := peerHostPort(u); err != nil {
			return configErr("client-urls", "entry %d (%q): %v", i, u, err)
		}
	}
	if c.PeerURL == "" {
		return configErr("peer-url", "required with join: the URL the other replicas reach this replica's peer listener at")
	}
	if err := checkMemberURL(c.PeerURL); err != nil {
		return configErr("peer-url", "%q: %v", c.PeerURL, err)
	}
	if c.ClientURL == "" && c.ID < len(c.ClientURLs) {
		c.ClientURL = c.ClientURLs[c.ID]
	}
	if c.ClientURL == "" {
		if host, _, err := net.SplitHostPort(c.ListenClient); err == nil && host != "" && !net.ParseIP(host).IsUnspecified() {
			scheme := "http://"
			if c.TLSCert != "" {
				scheme = "https://"
			}
			c.ClientURL = scheme + c.ListenClient
		}
	}
	if c.ClientURL != "" {
		if err := checkMemberURL(c.ClientURL); err != nil {
			return configErr("client-url", "%q: %v", c.ClientURL, err)
		}
	}
	return nil
}

// PeerTLS reports whether the peer plane uses mutual TLS.
func (c *Config) PeerTLS() bool { return c.PeerCert != "" }

// validatePeerSecurity checks the peer TLS settings against the peer URLs
// and refuses an unauthenticated peer listener that others could reach.
func (c *Config) validatePeerSecurity() error {
	set := 0
	for _, f := range []string{c.PeerCert, c.PeerKey, c.PeerCA} {
		if f != "" {
			set++
		}
	}
	if set != 0 && set != 3 {
		return configErr("peer-cert", "peer-cert, peer-key and peer-ca must be given together")
	}
	for i, p := range append(slices.Clone(c.Peers), c.PeerURL) {
		field := "peers"
		if i == len(c.Peers) {
			field = "peer-url"
		}
		https := strings.HasPrefix(p, "https://")
		switch {
		case c.PeerTLS() && !https:
			return configErr(field, "entry %d (%q) must be https:// with peer-cert", i, p)
		case !c.PeerTLS() && https:
			return configErr(field, "entry %d (%q) is https://: give peer-cert, peer-key and peer-ca", i, p)
		}
	}
	if c.PeerTLS() || c.PeerToken != "" || c.InsecurePeers || isLoopback(c.ListenPeer) {
		return nil
	}
	return configErr("listen-peer", "%s is reachable from other machines but peers are not authenticated, "+
		"so anyone who can reach it could write any key or stop the cluster: "+
		"set peer-cert, peer-key and peer-ca (durio certs creates them) or peer-token-file, "+
		"or pass --insecure-peers if the network is trusted", c.ListenPeer)
}

// isLoopback reports whether hostport binds only a loopback address. An
// empty host binds every interface; names other than localhost may resolve
// anywhere.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *Config) validateLimits() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"read-timeout", c.ReadTimeout}, {"write-timeout", c.WriteTimeout}, {"idle-timeout", c.IdleTimeout},
		{"max-watch-wait", c.MaxWatchWait}} {
		if d.v <= 0 {
			return configErr(d.name, "%v must be positive", d.v)
		}
	}
	if c.MaxWatchWait < 10*time.Millisecond {
		return configErr("max-watch-wait", "%v must be at least 10ms, or watches and streams would spin", c.MaxWatchWait)
	}
	if c.WriteTimeout <= c.RequestTimeout {
		return configErr("write-timeout", "%v must exceed request-timeout (%v), or answers would be cut off", c.WriteTimeout, c.RequestTimeout)
	}
	for _, n := range []struct {
		name string
		v    int64
	}{{"max-header-bytes", int64(c.MaxHeaderBytes)}, {"max-peer-body-bytes", c.MaxPeerBodyBytes},
		{"max-client-conns", int64(c.MaxClientConns)}, {"max-peer-conns", int64(c.MaxPeerConns)}, {"max-inflight", int64(c.MaxInflight)},
		{"max-watchers", int64(c.MaxWatchers)}} {
		if n.v <= 0 {
			return configErr(n.name, "%d must be positive", n.v)
		}
	}
	if c.MemoryLimit < 0 {
		return configErr("memory-limit", "%d must not be negative (0 sets no limit)", c.MemoryLimit)
	}
	if c.MaxProcs < 0 {
		return configErr("max-procs", "%d must not be negative (0 chooses)", c.MaxProcs)
	}
	if c.HistoryEvents < 0 {
		return configErr("history-events", "%d must not be negative", c.HistoryEvents)
	}
	if c.HistoryBytes < 0 || c.HistoryBytes > maxKVHistoryBytes {
		return configErr("history-bytes", "%d must be in [0, %d]", c.HistoryBytes, int64(maxKVHistoryBytes))
	}
	if c.MaxPeerBodyBytes < c.MaxBodyBytes+64<<10 {
		return configErr("max-peer-body-bytes", "%d must exceed max-body-bytes (%d) by 64 KiB: forwarded requests cross the peer listener", c.MaxPeerBodyBytes, c.MaxBodyBytes)
	}
	for _, h := range c.ClientHosts {
		if h != "*" && (h == "" || strings.ContainsAny(h, ":/ ") || strings.Contains(h, "*")) {
			return configErr("client-hosts", "%q is not a host name like durio.example.com (no scheme, port or path), or *", h)
		}
	}
	for _, o := range c.CORSOrigins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			return configErr("cors-origins", "%q is not an origin like https://app.example or http://192.168.1.5:3000", o)
		}
	}
	return nil
}

// checkMemberURL checks a URL recorded in the membership: http(s), with a
// port, at most maxURLBytes long.
func checkMemberURL(raw string) error {
	if len(raw) > maxURLBytes {
		return fmt.Errorf("longer than %d bytes", maxURLBytes)
	}
	_, err := peerHostPort(raw)
	return err
}

// peerHostPort checks an http(s) URL and returns its host:port.
func peerHostPort(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("scheme must be http or https")
	}
	if u.Port() == "" {
		return "", fmt.Errorf("a port is required")
	}
	return u.Host, nil
}

// ParseServeFlags builds a Config from command-line arguments (without the
// subcommand name): the defaults, then the YAML file named by --config, then
// every flag that was given.
func ParseServeFlags(args []string) (Config, error) {
	fs := flag.NewFlagSet("durio serve", flag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	build := RegisterServeFlags(fs)
	if err := fs.Parse(args); err != nil {
		var help bytes.Buffer
		fs.SetOutput(&help)
		fs.PrintDefaults()
		return Config{}, fmt.Errorf("%w: %v\nflags:\n%s", ErrConfig, err, help.String())
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("%w: unexpected argument %q", ErrConfig, fs.Arg(0))
	}
	given := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	return build(func(name string) bool { return given[name] })
}

// RegisterServeFlags registers durio serve's flags on fs, the one place they
// are defined (the durio command binds its CLI to fs), and returns the
// function that builds the Config once they have been parsed: the defaults,
// then the YAML file named by --config, then every flag given reports as set.
func RegisterServeFlags(fs *flag.FlagSet) func(given func(name string) bool) (Config, error) {
	var (
		cfgFile   = fs.String("config", "", "YAML `file` with the same keys as the flags")
		id        = fs.Int("id", 0, "this replica's stable `id`: its index in --peers, or with --join any id no member has")
		peers     = fs.String("peers", "", "bootstrap a new cluster: comma-separated peer `URLs` of its replicas, in id order")
		clients   = fs.String("client-urls", "", "comma-separated client `URLs` of the --peers replicas, in id order (optional)")
		join      = fs.String("join", "", "join an existing cluster: comma-separated client `URLs` of some of its replicas")
		peerURL   = fs.String("peer-url", "", "`URL` the other replicas reach this replica's peer listener at (default: its --peers entry)")
		clientURL = fs.String("client-url", "", "`URL` clients reach this replica at (default: its --client-urls entry, else --listen-client)")
		lpeer     = fs.String("listen-peer", "", "peer listener `address` (default: host:port of --peer-url)")
		lclient   = fs.String("listen-client", "", "client listener `address`")
		dataDir   = fs.String("data-dir", "", "`folder` for this replica's state")
		persister = fs.String("persister", "", "store: noop, file, badger, or a plugin `path` (default badger)")
		maxBody   = fs.Int64("max-body-bytes", 0, "largest client request body in `bytes` (default 1 MiB)")
		snapBytes = fs.Int64("snapshot-bytes", 0, "stored raft log size in `bytes` that triggers a snapshot (or the last snapshot's size, if larger); 0 never snapshots (default 4 MiB)")
		timeout   = fs.Duration("request-timeout", 0, "how long a client request may wait for the cluster (default 5s)")
		election  = fs.Duration("election-timeout", 0, "least time a follower waits without word from a leader before it campaigns (random, up to twice it); raise it for slow disks or networks, the same on every replica (default 150ms)")
		heartbeat = fs.Duration("heartbeat-interval", 0, "how often an idle leader tells its followers it lives; at most a third of --election-timeout (default 50ms)")
		readBatch = fs.Duration("read-batch-window", 0, "while linearizable reads arrive faster than a leadership confirmation completes, start the next one no sooner than this after the last, so more reads share it; 0 off (default 1ms)")
		stall     = fs.Duration("store-stall-timeout", 0, "stop the replica (fail-stop) when one write of its raft log has not returned after this long: a hung disk or plugin; 0 never (default 30s)")
		maxValue  = fs.Int("max-value-bytes", 0, "largest stored value in `bytes`, Appends included (default 1 MiB - 8 KiB)")
		quota     = fs.Int64("quota-bytes", 0, "quota on the keys and values' size in `bytes` (plus 64 per key): writes that would grow them past it are refused; 0 sets none (default 256 MiB)")
		idle      = fs.Duration("session-idle-timeout", 0, "how long an exactly-once session lives without a write (default 10m)")
		sessions  = fs.Int("max-sessions", 0, "most exactly-once sessions kept; more evict the least recently used (default 4096)")
		logLevel  = fs.String("log-level", "", "debug, info, warn or error (default info)")
		token     = fs.String("peer-token", "", "shared `secret` every peer RPC must carry")
		tokenFile = fs.String("peer-token-file", "", "`file` holding the peer token")
		authFile  = fs.String("client-auth-file", "", "`file` of client tokens, one \"ROLE TOKEN [KEY-PREFIX]\" per line (ROLE read, write or admin; durio token makes one): clients must send one (re-read on SIGHUP)")
		clToken   = fs.String("cluster-token", "", "bootstrap only: a `name` mixed into the new cluster's id, so that clusters with the same --peers differ")
		tlsCert   = fs.String("tls-cert", "", "PEM certificate `file`: serve the client listener over HTTPS")
		tlsKey    = fs.String("tls-key", "", "PEM private key `file` for --tls-cert")
		pprof     = fs.Bool("pprof", false, "serve /debug/pprof/ on the peer listener")
		noStream  = fs.Bool("no-peer-stream", false, "send each peer RPC as its own HTTP request instead of over one stream per peer")
		noLean    = fs.Bool("no-lean-http", false, "serve the client listener with net/http alone, not the lean loop that serves the key-value routes")
		peerCert  = fs.String("peer-cert", "", "PEM certificate `file` of this replica for mutual TLS between peers")
		peerKey   = fs.String("peer-key", "", "PEM private key `file` for --peer-cert")
		peerCA    = fs.String("peer-ca", "", "PEM `file` of the CA that signed every replica's peer certificate")
		insecure  = fs.Bool("insecure-peers", false, "allow a non-loopback peer listener without mTLS or a peer token")
		readTO    = fs.Duration("read-timeout", 0, "longest time to read one request, body included (default 10s)")
		writeTO   = fs.Duration("write-timeout", 0, "longest time from a request's headers to the end of its answer (default 15s)")
		idleTO    = fs.Duration("idle-timeout", 0, "close keep-alive connections idle this long (default 60s)")
		maxHdr    = fs.Int("max-header-bytes", 0, "largest request header block in `bytes` (default 16 KiB)")
		maxPeer   = fs.Int64("max-peer-body-bytes", 0, "largest peer request body in `bytes` (default 16 MiB)")
		clientCap = fs.Int("max-client-conns", 0, "most open connections on the client listener (default 1024)")
		peerCap   = fs.Int("max-peer-conns", 0, "most open connections on the peer listener (default 256)")
		inflight  = fs.Int("max-inflight", 0, "most client requests served at once; more get 503 (default 512)")
		watchers  = fs.Int("max-watchers", 0, "most watches and blocking queries waiting at once; more get 429 (default 10000)")
		watchWait = fs.Duration("max-watch-wait", 0, "longest wait of one watch or blocking query (default 60s)")
		histEv    = fs.Int("history-events", 0, "most KV change events kept for watches and listings at older revisions; 0 keeps none (default 5000)")
		histBytes = fs.Int64("history-bytes", 0, "most `bytes` of keys and values in that history (default 1 MiB)")
		cors      = fs.String("cors-origins", "", "comma-separated web `origins` allowed to call the client API from a browser")
		cHosts    = fs.String("client-hosts", "", "comma-separated host `names` clients may reach this replica under besides IPs, localhost and client URLs (a load balancer's); * any")
		memLimit  = fs.Int64("memory-limit", 0, "soft limit of the replica's Go memory in `bytes` (not the plugin's); 0 sets none; GOMEMLIMIT wins (default none)")
		maxProcs  = fs.Int("max-procs", 0, "most `cores` the replica's Go code uses at once; 0 shares the machine's cores among the replicas of --peers on this host; GOMAXPROCS wins")
	)
	apply := func(cfg *Config, f *flag.Flag) {
		switch f.Name {
		case "id":
			cfg.ID = *id
		case "peers":
			cfg.Peers = splitList(*peers)
		case "client-urls":
			cfg.ClientURLs = splitList(*clients)
		case "join":
			cfg.Join = splitList(*join)
		case "peer-url":
			cfg.PeerURL = *peerURL
		case "client-url":
			cfg.ClientURL = *clientURL
		case "listen-peer":
			cfg.ListenPeer = *lpeer
		case "listen-client":
			cfg.ListenClient = *lclient
		case "data-dir":
			cfg.DataDir = *dataDir
		case "persister":
			cfg.Persister = *persister
		case "max-body-bytes":
			cfg.MaxBodyBytes = *maxBody
		case "snapshot-bytes":
			cfg.SnapshotBytes = *snapBytes
		case "request-timeout":
			cfg.RequestTimeout = *timeout
		case "election-timeout":
			cfg.ElectionTimeout = *election
		case "heartbeat-interval":
			cfg.HeartbeatInterval = *heartbeat
		case "read-batch-window":
			cfg.ReadBatchWindow = *readBatch
		case "store-stall-timeout":
			cfg.StoreStallTimeout = *stall
		case "max-value-bytes":
			cfg.MaxValueBytes = *maxValue
		case "quota-bytes":
			cfg.QuotaBytes = *quota
		case "session-idle-timeout":
			cfg.SessionIdleTimeout = *idle
		case "max-sessions":
			cfg.MaxSessions = *sessions
		case "log-level":
			cfg.LogLevel = *logLevel
		case "peer-token":
			cfg.PeerToken = *token
		case "peer-token-file":
			cfg.PeerTokenFile = *tokenFile
		case "client-auth-file":
			cfg.ClientAuthFile = *authFile
		case "cluster-token":
			cfg.ClusterToken = *clToken
		case "tls-cert":
			cfg.TLSCert = *tlsCert
		case "tls-key":
			cfg.TLSKey = *tlsKey
		case "pprof":
			cfg.Pprof = *pprof
		case "no-peer-stream":
			cfg.NoPeerStream = *noStream
		case "no-lean-http":
			cfg.NoLeanHTTP = *noLean
		case "peer-cert":
			cfg.PeerCert = *peerCert
		case "peer-key":
			cfg.PeerKey = *peerKey
		case "peer-ca":
			cfg.PeerCA = *peerCA
		case "insecure-peers":
			cfg.InsecurePeers = *insecure
		case "read-timeout":
			cfg.ReadTimeout = *readTO
		case "write-timeout":
			cfg.WriteTimeout = *writeTO
		case "idle-timeout":
			cfg.IdleTimeout = *idleTO
		case "max-header-bytes":
			cfg.MaxHeaderBytes = *maxHdr
		case "max-peer-body-bytes":
			cfg.MaxPeerBodyBytes = *maxPeer
		case "max-client-conns":
			cfg.MaxClientConns = *clientCap
		case "max-peer-conns":
			cfg.MaxPeerConns = *peerCap
		case "max-inflight":
			cfg.MaxInflight = *inflight
		case "max-watchers":
			cfg.MaxWatchers = *watchers
		case "max-watch-wait":
			cfg.MaxWatchWait = *watchWait
		case "history-events":
			cfg.HistoryEvents = *histEv
		case "history-bytes":
			cfg.HistoryBytes = *histBytes
		case "cors-origins":
			cfg.CORSOrigins = splitList(*cors)
		case "client-hosts":
			cfg.ClientHosts = splitList(*cHosts)
		case "memory-limit":
			cfg.MemoryLimit = *memLimit
		case "max-procs":
			cfg.MaxProcs = *maxProcs
		}
	}
	return func(given func(name string) bool) (Config, error) {
		cfg := DefaultConfig()
		if *cfgFile != "" {
			if err := loadConfigFile(*cfgFile, &cfg); err != nil {
				return Config{}, err
			}
		}
		fs.VisitAll(func(f *flag.Flag) {
			if given(f.Name) {
				apply(&cfg, f)
			}
		})
		if err := cfg.Validate(); err != nil {
			return Config{}, err
		}
		return cfg, nil
	}
}

// loadConfigFile reads YAML into cfg, refusing unknown keys.
func loadConfigFile(path string, cfg *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: config: %v", ErrConfig, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: config file %s: %v", ErrConfig, path, err)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
