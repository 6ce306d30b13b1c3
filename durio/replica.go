package durio

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/ruaft/ruaft/kvraft"
	"github.com/ruaft/ruaft/kvraft/kvwire"
	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/raft"
	"github.com/ruaft/ruaft/raft/twirptransport"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
	"github.com/twitchtv/twirp"
)

// Replica is one running durio replica: a raft node and a kvraft server
// behind two HTTP listeners.
type Replica struct {
	cfg     Config
	logger  *slog.Logger
	store   persist.Store
	kv      *kvraft.Server
	node    *raft.Node // r.kv's raft node
	metrics *metrics
	hist    *history           // behind GET /status/history
	stopBG  context.CancelFunc // stops the background goroutines below
	bg      sync.WaitGroup     // the leader watchers
	// leader tells the frontend which replica leads; dir is the address
	// book of the members, kept in step with raft's configuration.
	leader *leaderWatch
	dir    *directory

	peerLn, clientLn   net.Listener
	peerSrv, clientSrv *http.Server
	// clientLean serves the plain-HTTP client listener (nil with TLS):
	// the key-value routes itself, the rest through clientSrv.
	clientLean *leanServer
	// streamSrv serves the peer streams (upgraded peer connections, no
	// longer the peer http.Server's); peerStreams are this replica's
	// streams to its peers. Both nil with no-peer-stream.
	streamSrv   *twirptransport.StreamServer
	peerStreams *twirptransport.StreamPool
	serving     sync.WaitGroup // the two Serve goroutines
	failed      chan error     // a listener that stopped serving on its own, or a fatal store error
	health      *health        // fail-stop state behind /healthz and /readyz
	// auth guards the client listener when --client-auth-file is given;
	// nil otherwise.
	auth *clientAuth
	// endPolls ends the long polls (watches) at the start of Close, so that
	// the client listener's graceful shutdown does not wait them out.
	endPolls context.CancelFunc
	// removed is whether the replica knows it was removed from the
	// cluster, as of the last status sample (a second at most).
	removed atomic.Bool

	clusterID string // names the cluster (see join.go)
	// clusterChecked: peer requests naming another cluster are refused
	// (an id recorded by an older version is not enforced: readClusterID).
	clusterChecked bool
	join           *joinPlan // how this replica joins its cluster; nil if bootstrapped with --peers

	// clientCert and peerCert are the certificates the client listener
	// (--tls-cert) and the peers (--peer-cert) present; nil without TLS.
	// ReloadTLS reads them again.
	clientCert, peerCert *twirptransport.KeyPair

	closeOnce sync.Once
	closeErr  error
}

// DefaultSnapshotBytes is Config.SnapshotBytes's default: the raft log
// size above which a replica snapshots its key-value state. A replica keeps
// that much log in memory and in its store between snapshots; 4 MiB (about
// 12,000 puts of 256 bytes, close to etcd's 10,000-entry snapshot count)
// took 13-19 MiB off a replica + badger plugin under a sustained put load
// against 8 MiB, with no measurable CPU difference (docs/benchmarks.md). A
// snapshot writes the whole state, so a large data set wants a larger value.
const DefaultSnapshotBytes = 4 << 20

// StartReplica opens both listeners, starts raft and kvraft on store, and
// serves. The replica owns store from then on and closes it in Close.
func StartReplica(cfg Config, store persist.Store, logger *slog.Logger) (*Replica, error) {
	return StartReplicaContext(context.Background(), cfg, store, logger)
}

// StartReplicaContext is StartReplica, given up when ctx ends while it
// waits for the cluster (a replica joining with cfg.Join asks the cluster
// for its members, and to be added, for up to a minute): it then returns
// ctx's error, and the caller still owns store.
func StartReplicaContext(ctx context.Context, cfg Config, store persist.Store, logger *slog.Logger) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.clientTokens != nil && cfg.PeerToken == "" && !cfg.PeerTLS() {
		// The peer listener serves the KV and membership services to
		// forwarding replicas: without a peer token or mTLS, reaching it
		// is enough.
		logger.Warn("client tokens do not guard the peer listener: it has neither a peer token nor mutual TLS, so whoever reaches "+
			cfg.ListenPeer+" can read and write every key without a client token; set peer-token-file or peer-cert, peer-key and peer-ca",
			"listen_peer", cfg.ListenPeer)
	}
	r := &Replica{cfg: cfg, logger: logger, failed: make(chan error, 2)}
	// The gauges read r.kv, which is set before anything can scrape them.
	r.metrics = newMetrics(func() raft.Status { return r.kv.Status() })
	r.hist = newHistory(cfg.ID, time.Now())
	r.metrics.hist = r.hist
	r.store = meteredStore{Store: store, m: r.metrics}
	r.health = newHealth(logger, func() raft.Status { return r.kv.Status() }, store, storeDir(cfg), func(err error) {
		r.fatal(err)
		r.recordStoreFailure(time.Now(), err)
	})
	r.health.writeOverdue, r.health.stallTimeout = r.metrics.writeOverdue, cfg.StoreStallTimeout
	var err error
	if len(cfg.Join) > 0 {
		hc, herr := joinHTTPClient(cfg)
		if herr != nil {
			return nil, herr
		}
		jctx, cancel := context.WithTimeout(ctx, joinTimeout)
		r.join, err = prepareJoin(jctx, cfg, store, hc, logger.With("layer", "join"))
		cancel()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("durio: stopped while joining: %w", ctx.Err())
		}
		if err == nil {
			r.clusterID, r.clusterChecked = r.join.clusterID, r.join.clusterChecked
		}
	} else {
		r.clusterID, r.clusterChecked, err = clusterIDOf(cfg)
		if err == nil && cfg.ClusterToken != "" && r.clusterID != bootstrapClusterID(cfg) {
			logger.Warn("--cluster-token does not give the cluster id this replica recorded at its first start; "+
				"the recorded id stays (the token only names a new cluster)", "cluster_id", r.clusterID)
		}
	}
	if err != nil {
		return nil, err
	}
	var peerServerTLS, peerClientTLS *tls.Config
	if cfg.PeerTLS() {
		if r.peerCert, err = twirptransport.LoadKeyPair(cfg.PeerCert, cfg.PeerKey); err != nil {
			return nil, configErr("peer-cert", "%v", err)
		}
		if peerServerTLS, peerClientTLS, err = twirptransport.MutualTLSWith(r.peerCert, cfg.PeerCA); err != nil {
			return nil, configErr("peer-ca", "%v", err)
		}
	}
	if cfg.TLSCert != "" {
		if r.clientCert, err = twirptransport.LoadKeyPair(cfg.TLSCert, cfg.TLSKey); err != nil {
			return nil, configErr("tls-cert", "%v", err)
		}
	}
	r.noteCertExpiry()
	r.checkPeerCertHost()
	if r.peerLn, err = net.Listen("tcp", cfg.ListenPeer); err != nil {
		return nil, fmt.Errorf("durio: listen-peer: %w", err)
	}
	if r.clientLn, err = net.Listen("tcp", cfg.ListenClient); err != nil {
		r.peerLn.Close()
		return nil, fmt.Errorf("durio: listen-client: %w", err)
	}
	r.peerLn = newCapListener(r.peerLn, cfg.MaxPeerConns, r.metrics.refusedConns.WithLabelValues("peer").Inc,
		r.metrics.evictedConns.WithLabelValues("peer").Inc)
	r.clientLn = newCapListener(r.clientLn, cfg.MaxClientConns, r.metrics.refusedConns.WithLabelValues("client").Inc,
		r.metrics.evictedConns.WithLabelValues("client").Inc)
	if peerServerTLS != nil {
		r.peerLn = tls.NewListener(r.peerLn, peerServerTLS)
	}

	peerHTTP := twirptransport.WithHeader(twirptransport.WithToken(twirptransport.NewHTTPClient(peerClientTLS), cfg.PeerToken),
		clusterHeader, r.clusterID)
	r.peerStreams = newPeerStreams(cfg, peerClientTLS, r.clusterID)
	// The address book starts with the bootstrap peers (none for a replica
	// that joins) and follows the replicated configuration once raft runs.
	transport := twirptransport.New(cfg.ID, cfg.Peers, twirptransport.Options{HTTPClient: peerHTTP, Observe: r.metrics.observeRPC,
		Stream: r.peerStreams, DisableStream: r.peerStreams == nil})
	// The replica is assembled explicitly: the key-value state machine,
	// the raft node that applies to it, then the kvraft server on both.
	closeListeners := func() {
		r.peerLn.Close()
		r.clientLn.Close()
		if r.peerStreams != nil {
			r.peerStreams.Close()
		}
	}
	sm, err := kvraft.NewStateMachine(kvraftConfig(cfg, logger))
	if err != nil {
		closeListeners()
		return nil, fmt.Errorf("durio: start: %w", err)
	}
	node, err := raft.New(raftConfig(cfg, logger), historyTransport{Transport: transport, hist: r.hist}, r.store, sm)
	if err != nil {
		closeListeners()
		return nil, fmt.Errorf("durio: start raft node: %w", err)
	}
	if r.kv, err = kvraft.StartServer(sm, node); err != nil {
		_ = node.Kill()
		closeListeners()
		return nil, fmt.Errorf("durio: start: %w", err)
	}
	r.node = node

	r.hist.recordStart(r.kv.Status())
	r.loadStoreFailure(time.Now())
	r.leader = newLeaderWatch()
	r.dir = r.newDirectory(transport, peerHTTP)
	r.dir.streams = r.peerStreams
	leaderURL := r.dir.clientURL
	status := func(context.Context) (*kvv1.StatusResponse, error) { return r.status(), nil }
	local := kvwire.NewServer(r.kv, kvwire.ServerOptions{Status: status, LeaderURL: leaderURL})
	peerMux := http.NewServeMux()
	peerMux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, twirp.NewErrorf(twirp.BadRoute, "no route %s %s on the peer listener", r.Method, r.URL.Path))
	})
	peerMux.Handle("POST "+twirptransport.PathPrefix, twirptransport.NewHandler(node))
	// Requests forwarded by other replicas are logged as the client
	// listener logs its own, under the id the forwarding replica sends.
	peerLog := logger.With("listener", "peer")
	forwardServer := kvv1.NewKVServiceServer(local)
	peerMux.Handle("POST "+forwardServer.PathPrefix(), withRequestID(peerLog, forwardServer))
	// r.kv is a kvwire.WriteStarter: a forwarded batch's writes are all
	// proposed before any is waited for (asserted below).
	batches := kvwire.NewBatchServer(r.kv, forwardBatchOps).WithTimeout(cfg.RequestTimeout).WithLogger(peerLog)
	batchServer := kvv1.NewForwardServiceServer(batches)
	peerMux.Handle("POST "+batchServer.PathPrefix(), batchServer)
	if !cfg.NoPeerStream {
		r.streamSrv = newPeerStreamServer(cfg, node, batches, logger.With("listener", "peer-stream"))
		peerMux.Handle("GET "+twirptransport.StreamPath, r.streamSrv)
		r.metrics.registry.MustRegister(streamConnsGauge(r.streamSrv))
	}
	peerMux.Handle("GET "+historyPeerPath, peerHistoryHandler(r.hist))
	if cfg.Pprof {
		// The mutex and block profiles stay empty unless sampling is on;
		// these rates cost little (one contention event in 5, blocking
		// events of 10 µs and more) and only when profiling is asked for.
		runtime.SetMutexProfileFraction(5)
		runtime.SetBlockProfileRate(int((10 * time.Microsecond).Nanoseconds()))
		peerMux.HandleFunc("GET /debug/pprof/", pprof.Index)
		peerMux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		peerMux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}

	r.dir.localKV = local
	r.metrics.registry.MustRegister(membersCollector{dir: r.dir, node: r.node},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "durio_apply_level",
			Help: "The apply level in force in this replica's state: the rules it applies the log by (raised once every member supports a higher one)."},
			func() float64 { return float64(r.kv.ApplyLevel()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "durio_apply_level_supported",
			Help: "The highest apply level this replica's version supports."},
			func() float64 { return float64(kvraft.ApplyLevel) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "durio_kv_state_bytes",
			Help: "The size of this replica's keys and values as --quota-bytes counts it: their bytes plus 64 per key, and the same for the keys that sessions' remembered answers name (failed conditions)."},
			func() float64 { size, _ := r.kv.StateBytes(); return float64(size) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "durio_kv_quota_bytes",
			Help: "This replica's --quota-bytes (0: none); the leader's is in force. Writes that would grow durio_kv_state_bytes past it are refused."},
			func() float64 { _, quota := r.kv.StateBytes(); return float64(quota) }))
	r.dir.update(node.Membership())
	r.checkBootstrap()
	members := &memberService{node: r.node, dir: r.dir, leader: r.leader, self: cfg.ID, timeout: cfg.RequestTimeout,
		clusterID: r.clusterID, peerTLS: cfg.PeerTLS(), admit: r.kv.AdmitMember,
		whoIs: func(ctx context.Context, peerURL string) (int, bool) {
			ctx, cancel := context.WithTimeout(ctx, whoIsTimeout)
			defer cancel()
			st, err := kvv1.NewKVServiceProtobufClient(strings.TrimRight(peerURL, "/"), peerHTTP).Status(ctx, &kvv1.StatusRequest{})
			if err != nil {
				return 0, false
			}
			return int(st.GetReplicaId()), true
		}}
	peerMembers := kvv1.NewMembershipServiceServer(members)
	peerMux.Handle("POST "+peerMembers.PathPrefix(), peerMembers)
	clientMembers := *members
	clientMembers.forward = true

	fe, err := r.newFrontend()
	if err != nil {
		closeListeners()
		r.kv.Kill()
		return nil, fmt.Errorf("durio: start: %w", err)
	}
	limits := clientLimits(cfg)
	limits.memberHost = r.dir.isClientHost
	limits.stop, r.endPolls = context.WithCancel(context.Background())
	limits.streams = r.metrics.watchStreams
	limits.removed = &r.removed
	if cfg.clientTokens != nil {
		r.auth = &clientAuth{refused: func(reason string) { r.metrics.authRefused.WithLabelValues(reason).Inc() }}
		r.auth.tokens.Store(cfg.clientTokens)
		limits.auth = r.auth
	}

	extra := func(mux *http.ServeMux) {
		mux.Handle("GET /metrics", r.metrics.handler())
		statusHandlers(cfg.ID, r.dir.statusTargets, func(ctx context.Context) []MemberJSON {
			return r.memberSummary(ctx, &clientMembers)
		})(mux)
		ms := kvv1.NewMembershipServiceServer(&clientMembers)
		mux.Handle("POST "+ms.PathPrefix(), ms)
		historyHandlers(cfg.ID, r.historyMembers(peerHTTP), historyTimeout)(mux)
		mux.HandleFunc("GET /admin/snapshot", r.snapshotHandler)
	}
	// Authentication comes first, so an unauthenticated caller gets its 401
	// before a byte of its body is read; then the connection is vouched for
	// (no longer evicted at --max-peer-conns: see capListener); then the
	// cluster check (412).
	var peerHandler http.Handler = vouchConn(requireCluster(r.clusterID, r.clusterChecked, peerLog, twirptransport.LimitBody(cfg.MaxPeerBodyBytes, peerMux)))
	if cfg.PeerToken != "" {
		peerHandler = twirptransport.RequireToken(cfg.PeerToken, peerHandler)
	}
	r.peerSrv = newHTTPServer(cfg, peerHandler, peerLog)
	clientLog := logger.With("listener", "client")
	r.clientSrv = newHTTPServer(cfg, vouchConn(withRequestID(clientLog, r.health.wrap(r.metrics.instrumentMux(clientHandler(kvwire.NewServer(fe, kvwire.ServerOptions{Status: status, LeaderURL: leaderURL}), limits, extra))))), clientLog)
	r.serving.Add(2)
	go r.serve(r.peerSrv, r.peerLn, false)
	if r.clientCert != nil {
		r.clientSrv.TLSConfig = &tls.Config{GetCertificate: r.clientCert.GetCertificate}
	}
	if r.clientCert != nil || cfg.NoLeanHTTP {
		go r.serve(r.clientSrv, r.clientLn, r.clientCert != nil)
	} else {
		r.clientLean = newLeanServer(r.clientSrv, r.clientLn)
		r.clientLean.handedOff = r.metrics.handedConns.Inc
		go r.serveLean(r.clientLean)
	}
	var bgCtx context.Context
	bgCtx, r.stopBG = context.WithCancel(context.Background())
	r.bg.Go(func() {
		followEvents(bgCtx, node.Subscribe, r.leader.observe, r.metrics.leaderChangeCounter(), r.hist.observe)
	})
	r.bg.Go(func() { r.health.watch(bgCtx) })
	r.bg.Go(func() {
		// The status sampled each second also says whether this replica
		// was removed (watches then go elsewhere: limits.removed).
		r.hist.run(bgCtx, func() raft.Status {
			st := r.kv.Status()
			r.removed.Store(st.Removed)
			return st
		})
	})
	r.bg.Go(func() { r.dir.follow(bgCtx, node.Subscribe, node.Membership) })
	if r.join != nil {
		r.bg.Go(func() { r.join.run(bgCtx, r, &clientMembers) })
	}
	logger.Info("replica started", "id", cfg.ID, "peer", r.peerLn.Addr().String(), "client", r.clientLn.Addr().String())
	return r, nil
}

// kvraftConfig is the configuration of a replica's kvraft server.
func kvraftConfig(cfg Config, logger *slog.Logger) kvraft.Config {
	kc := kvraft.DefaultConfig(cfg.ID)
	kc.RequestTimeout = cfg.RequestTimeout
	kc.MaxValueBytes = cfg.MaxValueBytes
	kc.MaxStateBytes = cfg.QuotaBytes
	kc.SessionIdleTimeout = cfg.SessionIdleTimeout
	kc.SessionTick = min(kc.SessionTick, cfg.SessionIdleTimeout/4)
	kc.MaxSessions = cfg.MaxSessions
	kc.MaxWatchers = cfg.MaxWatchers
	kc.WatchMaxWait = cfg.MaxWatchWait
	kc.HistoryMaxEvents = cfg.HistoryEvents
	kc.HistoryMaxBytes = int(cfg.HistoryBytes)
	kc.Logger = logger.With("layer", "kvraft")
	return kc
}

// electionTimeouts are the bounds of raft's random election wait for cfg:
// --election-timeout and twice it (raft's own for a Config that sets none).
func electionTimeouts(cfg Config) (lo, hi time.Duration) {
	if cfg.ElectionTimeout <= 0 {
		d := raft.DefaultConfig()
		return d.ElectionTimeoutMin, d.ElectionTimeoutMax
	}
	return cfg.ElectionTimeout, 2 * cfg.ElectionTimeout
}

// raftConfig is the configuration of a replica's raft node.
func raftConfig(cfg Config, logger *slog.Logger) raft.Config {
	rc := raft.DefaultConfig()
	// --peers bootstraps the first configuration, with every member's
	// addresses (used only while the store holds none: a new cluster, or
	// one written before configurations were stored); a joining replica
	// starts with none at all.
	rc.ID, rc.Bootstrap = cfg.ID, bootstrapMembers(cfg)
	rc.SnapshotThresholdBytes = cfg.SnapshotBytes
	rc.ElectionTimeoutMin, rc.ElectionTimeoutMax = electionTimeouts(cfg)
	// A peer RPC may take as long as the longest election wait; no shorter
	// than raft's default.
	rc.RPCTimeout = max(rc.RPCTimeout, rc.ElectionTimeoutMax)
	if cfg.HeartbeatInterval > 0 {
		rc.HeartbeatInterval = cfg.HeartbeatInterval
	}
	rc.ReadBatchWindow = cfg.ReadBatchWindow
	// And at least the size of the last snapshot: a snapshot writes the
	// whole state, so a state larger than --snapshot-bytes would otherwise
	// be written again every --snapshot-bytes of log (measured: 1 MB puts
	// into a 100 MB state slowed to one per 0.5 s and timed out).
	rc.SnapshotStateRatio = 1
	// Every replica tells its leader which apply level it supports, so the
	// cluster moves to a new one once all do (kvraft.ApplyLevel).
	rc.AppVersion = kvraft.ApplyLevel
	rc.Logger = logger.With("layer", "raft")
	return rc
}

// clientLimits are the client listener's limits from cfg.
func clientLimits(cfg Config) Limits {
	l := DefaultLimits()
	l.MaxBodyBytes = cfg.MaxBodyBytes
	l.MaxValueBytes = cfg.MaxValueBytes
	l.MaxInflight = cfg.MaxInflight
	l.CORSOrigins = cfg.CORSOrigins
	l.ClientURLs = cfg.ClientURLs
	l.ClientHosts = cfg.ClientHosts
	l.MaxWatchWait = cfg.MaxWatchWait
	l.RequestTimeout = cfg.RequestTimeout
	return l
}

// newHTTPServer applies the listener limits every durio listener shares.
func newHTTPServer(cfg Config, h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(5*time.Second, cfg.ReadTimeout),
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ConnContext:       withCappedConn,
		// TLS handshake failures and the like: worth seeing, not alarming.
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelInfo),
	}
}

func (r *Replica) serve(srv *http.Server, ln net.Listener, withTLS bool) {
	defer r.serving.Done()
	var err error
	if withTLS {
		err = srv.ServeTLS(ln, "", "") // srv.TLSConfig has the certificate
	} else {
		err = srv.Serve(ln)
	}
	if !errors.Is(err, http.ErrServerClosed) {
		r.failed <- fmt.Errorf("durio: listener %s: %w", ln.Addr(), err)
	}
}

// serveLean is serve for the plain-HTTP client listener.
func (r *Replica) serveLean(s *leanServer) {
	defer r.serving.Done()
	if err := s.Serve(); !errors.Is(err, http.ErrServerClosed) {
		r.failed <- fmt.Errorf("durio: listener %s: %w", s.ln.Addr(), err)
	}
}

// ClientAddr is the client listener's address.
func (r *Replica) ClientAddr() string { return r.clientLn.Addr().String() }

// PeerAddr is the peer listener's address.
func (r *Replica) PeerAddr() string { return r.peerLn.Addr().String() }

// status describes the replica for Status and /kvstore/is_leader.
func (r *Replica) status() *kvv1.StatusResponse {
	st := r.kv.Status()
	out := &kvv1.StatusResponse{
		ReplicaId:     uint32(st.ID),
		Role:          kvv1.Role(int32(st.Role) + 1),
		Term:          st.Term,
		CommitIndex:   st.Commit,
		AppliedIndex:  st.Applied,
		LastLogIndex:  st.LastIndex,
		SnapshotIndex: st.SnapshotIndex,
		LogSizeBytes:  uint64(max(st.LogSizeBytes, 0)),
		Sessions:      uint64(r.kv.Sessions()),
		Removed:       st.Removed,
		ApplyLevel:    r.kv.ApplyLevel(),
		MaxApplyLevel: kvraft.ApplyLevel,
	}
	out.StateBytes, out.QuotaBytes = r.kv.StateBytes()
	rev, compact, leases := r.kv.Revisions()
	out.Revision, out.CompactRevision, out.Leases = rev, compact, uint64(leases)
	if st.Leader != raft.NoLeader {
		out.LeaderKnown, out.LeaderId = true, uint32(st.Leader)
		out.LeaderUrl = r.dir.clientURL(st.Leader)
	}
	if st.Err != nil {
		out.Error = publicError(st.Err)
	}
	return out
}

// ReloadClientAuth reads --client-auth-file again and serves with the
// tokens it now holds: requests already admitted finish, except that a long
// poll whose token was revoked answers 401 instead of its result and a
// watch stream whose token was revoked ends before its next message; later
// requests are checked against the new tokens. On an error the tokens in
// force stay. A replica started without the file has nothing to reload:
// authentication cannot be turned on or off without a restart.
func (r *Replica) ReloadClientAuth() error {
	if r.auth == nil {
		return nil
	}
	t, err := readClientAuth(r.cfg.ClientAuthFile)
	if err != nil {
		return err
	}
	r.auth.tokens.Store(t)
	return nil
}

// ReloadTLS reads the client listener's certificate and key (--tls-cert,
// --tls-key) and the peer certificate and key (--peer-cert, --peer-key)
// again, for a renewed certificate: handshakes from then on present the
// new ones; connections already open keep theirs. A pair that does not
// load (unreadable, a key that does not match, an expired certificate, a
// peer certificate the peers' CA did not sign)
// keeps the one in force and is reported. The CA (--peer-ca) is read only
// at start. It returns the files reloaded.
func (r *Replica) ReloadTLS() (reloaded []string, err error) {
	var errs []error
	for _, c := range r.certs() {
		if err := c.pair.Reload(); err != nil {
			errs = append(errs, err)
			continue
		}
		reloaded = append(reloaded, c.file)
	}
	r.noteCertExpiry()
	r.checkPeerCertHost()
	return reloaded, errors.Join(errs...)
}

// checkPeerCertHost warns when the peer certificate is not valid for the
// host of this replica's peer URL: the peers check that name when they
// connect, so they would refuse it, and this replica's own log would only
// say "remote error: tls: bad certificate".
func (r *Replica) checkPeerCertHost() {
	if r.peerCert == nil {
		return
	}
	u, err := url.Parse(r.cfg.PeerURL)
	if err != nil || u.Hostname() == "" {
		return
	}
	if err := r.peerCert.Leaf().VerifyHostname(u.Hostname()); err != nil {
		r.logger.Warn("the peer certificate is not valid for this replica's peer URL: the peers will refuse to connect to it; "+
			"issue one for that host (durio certs --hosts)", "file", r.cfg.PeerCert, "peer_url", r.cfg.PeerURL, "err", err)
	}
}

// certPair is one listener's certificate: the listener (client or peer),
// its file, and the pair served.
type certPair struct {
	listener, file string
	pair           *twirptransport.KeyPair
}

// certs returns the certificates this replica serves (none without TLS).
func (r *Replica) certs() []certPair {
	var out []certPair
	for _, c := range []certPair{{"client", r.cfg.TLSCert, r.clientCert}, {"peer", r.cfg.PeerCert, r.peerCert}} {
		if c.pair != nil {
			out = append(out, c)
		}
	}
	return out
}

// noteCertExpiry sets the certificates' expiry gauges, and warns of one that
// is not valid now.
func (r *Replica) noteCertExpiry() {
	now := time.Now()
	for _, c := range r.certs() {
		leaf := c.pair.Leaf()
		r.metrics.tlsExpiry.WithLabelValues(c.listener).Set(float64(leaf.NotAfter.Unix()))
		// It still starts (a certificate renewed a moment later is
		// picked up on SIGHUP), but whoever connects will refuse it.
		if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
			r.logger.Warn("the "+c.listener+" certificate is not valid now (expired, or not yet valid): every "+c.listener+
				" that connects will refuse it; renew it (durio certs) and send SIGHUP", "file", c.file,
				"not_before", leaf.NotBefore.UTC().Format(time.RFC3339), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
		}
	}
}

// Close shuts the replica down gracefully: the client listener stops
// accepting and in-flight requests finish or fail (bounded by ctx), then raft
// and kvraft stop, then the peer listener, then the store (and its plugin).
// It is idempotent.
func (r *Replica) Close(ctx context.Context) error {
	r.closeOnce.Do(func() {
		var errs []error
		r.endPolls()
		r.stopBG()
		r.bg.Wait()
		shutdown := r.clientSrv.Shutdown
		if r.clientLean != nil {
			shutdown = r.clientLean.Shutdown
		}
		if err := shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("client listener: %w", err))
		}
		r.dir.close()
		if err := r.kv.Kill(); err != nil {
			errs = append(errs, fmt.Errorf("raft: %w", err))
		}
		if r.peerStreams != nil {
			r.peerStreams.Close()
		}
		if err := r.peerSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("peer listener: %w", err))
		}
		if r.streamSrv != nil {
			r.streamSrv.Close()
		}
		if err := r.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("store: %w", err))
		}
		r.serving.Wait()
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}

// Failed returns a channel that receives an error if a listener stops
// serving on its own or the store failed (see health); the replica should
// then be closed, and the process exit non-zero.
func (r *Replica) Failed() <-chan error { return r.failed }

// followEvents hands every event the raft node publishes to each observer in
// turn, in order, until ctx ends or the node is killed: one subscription
// serves every part of the replica that follows role, term and leader
// (forwarding first, so a failover is noticed before anything else runs).
// Observers must be quick: they run on this one goroutine.
func followEvents(ctx context.Context, subscribe func() (<-chan raft.Event, func()), observers ...func(raft.Event)) {
	events, cancel := subscribe()
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			for _, observe := range observers {
				observe(ev)
			}
		}
	}
}

var _ kvwire.WriteStarter = (*kvraft.Server)(nil)
