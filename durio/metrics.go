package durio

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/raft"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// metrics are one replica's Prometheus metrics, on a registry of its own (no
// globals, so several replicas can live in one process in tests).
type metrics struct {
	registry *prometheus.Registry

	leaderChanges prometheus.Counter
	rpcs          *prometheus.CounterVec   // by rpc and result
	rpcLatency    *prometheus.HistogramVec // by rpc
	storeAppend   prometheus.Histogram
	storeEntries  prometheus.Counter
	snapshots     prometheus.Counter
	snapshotBytes prometheus.Gauge
	requests      *prometheus.CounterVec   // by route and code
	reqLatency    *prometheus.HistogramVec // by route
	refusedConns  *prometheus.CounterVec   // by listener
	evictedConns  *prometheus.CounterVec   // by listener
	handedConns   prometheus.Counter       // lean loop hand-overs
	authRefused   *prometheus.CounterVec   // by reason
	tlsExpiry     *prometheus.GaugeVec     // by listener
	// watchStreams counts the watch streams open on the client listener.
	watchStreams *atomic.Int64
	// appending is when the store Append in progress started, on
	// monoClock, 0 when none is (raft makes one at a time); snapshotting
	// the same for a SaveSnapshot, which may run beside Appends
	// (persist.BackgroundSnapshots). meteredStore sets them, for the stall
	// check and the in-flight gauge.
	appending, snapshotting atomic.Int64
	// allowance is how long the snapshot in progress may run before it
	// counts as late, in nanoseconds, by its size (snapshotAllowance).
	allowance atomic.Int64
	// routes caches the request observers per route label (string ->
	// *routeObservers; see route).
	routes sync.Map
	// rpcObs caches the observers per peer RPC (string -> *rpcObservers).
	rpcObs sync.Map
	// hist, when set, also gets every client request, store append and
	// snapshot (for GET /status/history).
	hist *history
}

// latencyBuckets span 50 µs to ~3 s, for RPCs, fsyncs and requests alike.
var latencyBuckets = prometheus.ExponentialBuckets(50e-6, 2, 17)

func newMetrics(status func() raft.Status) *metrics {
	r := prometheus.NewRegistry()
	m := &metrics{
		registry:     r,
		watchStreams: new(atomic.Int64),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{Name: "durio_raft_leader_changes_total",
			Help: "Terms in which this replica learned of a new leader (itself included)."}),
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "durio_raft_rpcs_sent_total",
			Help: "Raft RPCs sent to peers, by RPC and result (ok or error)."}, []string{"rpc", "result"}),
		rpcLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "durio_raft_rpc_duration_seconds",
			Help: "Round-trip time of Raft RPCs sent to peers.", Buckets: latencyBuckets}, []string{"rpc"}),
		storeAppend: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "durio_store_append_duration_seconds",
			Help: "Time of one durable store Append (one batch, including fsync).", Buckets: latencyBuckets}),
		storeEntries: prometheus.NewCounter(prometheus.CounterOpts{Name: "durio_store_appended_entries_total",
			Help: "Log entries written to the store."}),
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{Name: "durio_snapshots_total",
			Help: "Snapshots saved to the store."}),
		snapshotBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "durio_snapshot_size_bytes",
			Help: "Size of the last snapshot saved."}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "durio_http_requests_total",
			Help: "Client requests, by route and HTTP status code."}, []string{"route", "code"}),
		reqLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "durio_http_request_duration_seconds",
			Help: "Client request latency, by route.", Buckets: latencyBuckets}, []string{"route"}),
		refusedConns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "durio_http_refused_connections_total",
			Help: "Connections closed on accept because the listener was at its connection cap with every open connection vouched for, by listener (client or peer)."}, []string{"listener"}),
		evictedConns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "durio_http_evicted_connections_total",
			Help: "Connections closed at the connection cap to make room for a new one because no request had been vouched for on them yet (client: no request header yet; peer: no request that passed authentication), by listener."}, []string{"listener"}),
		handedConns: prometheus.NewCounter(prometheus.CounterOpts{Name: "durio_http_lean_handoffs_total",
			Help: "Client connections the lean HTTP/1.1 loop handed to net/http: a request it does not serve itself (a route other than the key-value ones that answer at once, a watch or blocking query, HTTP/1.0, anything unusual in the header); net/http serves that connection from then on."}),
		authRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "durio_client_auth_refused_total",
			Help: "Client requests refused by --client-auth-file, by reason: unauthenticated (no known token) or permission_denied (a role too low)."}, []string{"reason"}),
		tlsExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "durio_tls_certificate_expiry_timestamp_seconds",
			Help: "When the certificate a listener presents expires (Unix seconds), by listener (client: --tls-cert; peer: --peer-cert); SIGHUP reads renewed files."}, []string{"listener"}),
	}
	gauge := func(name, help string, f func(raft.Status) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(status()) })
	}
	counter := func(name, help string, f func(raft.Status) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return f(status()) })
	}
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.leaderChanges, m.rpcs, m.rpcLatency, m.storeAppend, m.storeEntries, m.snapshots, m.snapshotBytes,
		m.requests, m.reqLatency, m.refusedConns, m.evictedConns, m.handedConns, m.authRefused, m.tlsExpiry,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "durio_store_append_inflight_seconds",
			Help: "How long the store write in progress (a raft log Append or a snapshot) has run, 0 when none runs: a disk or plugin that hangs shows here before --store-stall-timeout stops the replica (a snapshot gets a second per MiB more)."},
			func() float64 { return m.appendAge().Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "durio_watch_streams",
			Help: "Watch streams (server-sent events) open on the client listener."},
			func() float64 { return float64(m.watchStreams.Load()) }),
		counter("durio_raft_read_rounds_total", "Leadership-confirmation rounds this replica started as leader for linearizable reads (reads coalesce: one round in flight, shared by every read waiting).",
			func(s raft.Status) float64 { return float64(s.ReadRounds) }),
		counter("durio_raft_read_index_requests_total", "Read-index requests this replica sent to the leader as a follower (one per batch of follower reads).",
			func(s raft.Status) float64 { return float64(s.ReadIndexRequests) }),
		gauge("durio_raft_term", "Current Raft term.", func(s raft.Status) float64 { return float64(s.Term) }),
		gauge("durio_raft_is_leader", "1 if this replica leads.", func(s raft.Status) float64 { return b2f(s.Role == raft.Leader) }),
		gauge("durio_raft_role", "Raft role: 0 follower, 1 pre-candidate, 2 candidate, 3 leader.", func(s raft.Status) float64 { return float64(s.Role) }),
		gauge("durio_raft_leader_id", "Id of the known leader, -1 if none.", func(s raft.Status) float64 { return float64(s.Leader) }),
		gauge("durio_raft_commit_index", "Highest committed log index.", func(s raft.Status) float64 { return float64(s.Commit) }),
		gauge("durio_raft_applied_index", "Highest log index applied to the key-value state.", func(s raft.Status) float64 { return float64(s.Applied) }),
		gauge("durio_raft_apply_lag_entries", "Committed entries not yet applied.", func(s raft.Status) float64 { return float64(s.Commit) - float64(s.Applied) }),
		gauge("durio_raft_last_log_index", "Index of the last log entry.", func(s raft.Status) float64 { return float64(s.LastIndex) }),
		gauge("durio_raft_snapshot_index", "Last index covered by the snapshot.", func(s raft.Status) float64 { return float64(s.SnapshotIndex) }),
		gauge("durio_raft_log_size_bytes", "Persisted log size (the snapshot threshold compares with it).", func(s raft.Status) float64 { return float64(s.LogSizeBytes) }),
		gauge("durio_replica_healthy", "0 once a store error stopped this replica from accepting writes.", func(s raft.Status) float64 { return b2f(s.Err == nil) }),
	)
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// handler serves /metrics.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// leaderChangeCounter returns the observer (see followEvents) that counts
// leader changes. Events coalesce, so it counts by LeaderChanges rather than
// by events received: a change it did not see is still counted.
func (m *metrics) leaderChangeCounter() func(raft.Event) {
	var counted uint64 // only the one event goroutine touches it
	return func(ev raft.Event) {
		if ev.LeaderChanges > counted {
			m.leaderChanges.Add(float64(ev.LeaderChanges - counted))
			counted = ev.LeaderChanges
		}
	}
}

// observeRPC records one RPC's outcome and latency.
func (m *metrics) observeRPC(rpc string, start time.Time, err error) {
	o, ok := m.rpcObs.Load(rpc)
	if !ok {
		o, _ = m.rpcObs.LoadOrStore(rpc, &rpcObservers{ok: m.rpcs.WithLabelValues(rpc, "ok"),
			failed: m.rpcs.WithLabelValues(rpc, "error"), latency: m.rpcLatency.WithLabelValues(rpc)})
	}
	ro := o.(*rpcObservers)
	if err != nil {
		ro.failed.Inc()
	} else {
		ro.ok.Inc()
	}
	ro.latency.Observe(time.Since(start).Seconds())
}

// rpcObservers are the metrics of one peer RPC, found once.
type rpcObservers struct {
	ok, failed prometheus.Counter
	latency    prometheus.Observer
}

// instrumentMux wraps the client listener's handler, counting requests by
// route: the ServeMux pattern that matched (so keys never become labels),
// refined to the method for Twirp calls that reached a method. The
// observers of each route and code are looked up once and kept (see
// routeObservers), not hashed out of the vectors per request.
func (m *metrics) instrumentMux(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// withRequestID, outside, already counts the status: share its
		// writer rather than wrapping the response twice.
		sw, ok := w.(*statusWriter)
		if !ok {
			sw = &statusWriter{ResponseWriter: w, code: http.StatusOK}
		}
		next.ServeHTTP(sw, r)
		route := r.Pattern
		switch {
		case route == "" || route == "/":
			route = "unmatched"
		case strings.HasPrefix(route, "POST /twirp/"):
			if t, ok := twirpRoutes[r.URL.Path]; ok {
				route = t
			}
		}
		d := time.Since(start)
		ro := m.route(route)
		ro.code(m, route, sw.code).Inc()
		ro.latency.Observe(d.Seconds())
		if m.hist != nil {
			m.hist.observeRequest(r.Method, r.URL.Path, r.URL.RawQuery, sw.code, d)
		}
	})
}

// routeObservers are the metrics of one route, found once: the latency
// histogram and the request counter per status code seen so far.
type routeObservers struct {
	latency prometheus.Observer
	codes   sync.Map // int (HTTP status) -> prometheus.Counter
}

// route returns the observers of route, creating them on its first request.
// Routes are ServeMux patterns and Twirp methods, a fixed set.
func (m *metrics) route(route string) *routeObservers {
	if ro, ok := m.routes.Load(route); ok {
		return ro.(*routeObservers)
	}
	ro, _ := m.routes.LoadOrStore(route, &routeObservers{latency: m.reqLatency.WithLabelValues(route)})
	return ro.(*routeObservers)
}

// code returns the request counter of route with status code.
func (ro *routeObservers) code(m *metrics, route string, code int) prometheus.Counter {
	if c, ok := ro.codes.Load(code); ok {
		return c.(prometheus.Counter)
	}
	c, _ := ro.codes.LoadOrStore(code, m.requests.WithLabelValues(route, strconv.Itoa(code)))
	return c.(prometheus.Counter)
}

// twirpRoutes are the Twirp paths that get a route label of their own, with
// that label.
var twirpRoutes = map[string]string{}

func init() {
	for _, m := range []string{"Get", "Put", "Append", "Delete", "Txn", "Status"} {
		twirpRoutes[kvv1.KVServicePathPrefix+m] = "POST " + kvv1.KVServicePathPrefix + m
	}
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// meteredStore records store latency and snapshot figures.
type meteredStore struct {
	persist.Store
	m *metrics
}

// monoBase is the origin of monoClock.
var monoBase = time.Now()

// monoClock is a monotonic clock reading in nanoseconds, never 0: a wall
// clock step must not make a write look stalled.
func monoClock() int64 { return int64(time.Since(monoBase)) + 1 }

func (s meteredStore) Append(ctx context.Context, hs persist.HardState, entries []persist.Entry) error {
	start := time.Now()
	s.m.appending.Store(monoClock())
	err := s.Store.Append(ctx, hs, entries)
	s.m.appending.Store(0)
	d := time.Since(start)
	if s.m.hist != nil {
		s.m.hist.observeAppend(d, err)
	}
	if err == nil {
		s.m.storeAppend.Observe(d.Seconds())
		s.m.storeEntries.Add(float64(len(entries)))
	}
	return err
}

// appendAge is how long the store write in progress (the older of an
// Append and a SaveSnapshot) has run, 0 if none runs.
func (m *metrics) appendAge() time.Duration {
	return max(since(m.appending.Load()), since(m.snapshotting.Load()))
}

// since is how long ago the monoClock reading t was, 0 for t == 0.
func since(t int64) time.Duration {
	if t == 0 {
		return 0
	}
	return time.Duration(monoClock() - t)
}

// writeOverdue is how long a store write in progress has run beyond its
// allowance (the stall check's and /readyz's input): an Append's age, or a
// snapshot's less snapshotAllowance of its size, whichever is more.
func (m *metrics) writeOverdue() time.Duration {
	snap := max(0, since(m.snapshotting.Load())-time.Duration(m.allowance.Load()))
	return max(since(m.appending.Load()), snap)
}

// snapshotAllowance is how long a snapshot of n bytes may take to store
// before it counts against --store-stall-timeout: a second per MiB, a
// slow SD card's speed, so that a large state's snapshot is not taken for
// a hung disk while a store that hangs on it is still caught.
func snapshotAllowance(n int) time.Duration {
	return time.Duration(n) * time.Second / (1 << 20)
}

// CanLoadSnapshot passes the store's persist.SnapshotLoader through, so
// that raft need not keep the snapshot's data in memory.
func (s meteredStore) CanLoadSnapshot() bool {
	l, ok := s.Store.(persist.SnapshotLoader)
	return ok && l.CanLoadSnapshot()
}

// LoadSnapshot implements persist.SnapshotLoader (see CanLoadSnapshot).
func (s meteredStore) LoadSnapshot(ctx context.Context) (persist.Snapshot, error) {
	l, ok := s.Store.(persist.SnapshotLoader)
	if !ok {
		return persist.Snapshot{}, fmt.Errorf("durio: load snapshot: %w", errors.ErrUnsupported)
	}
	return l.LoadSnapshot(ctx)
}

// SnapshotsBesideAppends passes the store's persist.BackgroundSnapshots
// through, so that raft compacts its log beside its appends.
func (s meteredStore) SnapshotsBesideAppends() bool {
	return persist.TakesSnapshotsBesideAppends(s.Store)
}

func (s meteredStore) SaveSnapshot(ctx context.Context, snap persist.Snapshot) error {
	s.m.allowance.Store(int64(snapshotAllowance(len(snap.Data))))
	s.m.snapshotting.Store(monoClock())
	err := s.Store.SaveSnapshot(ctx, snap)
	s.m.snapshotting.Store(0)
	s.m.allowance.Store(0)
	if s.m.hist != nil {
		s.m.hist.observeSnapshot(err)
	}
	if err == nil {
		s.m.snapshots.Inc()
		s.m.snapshotBytes.Set(float64(len(snap.Data)))
	}
	return err
}
