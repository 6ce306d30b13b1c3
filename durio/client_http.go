package durio

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	"github.com/ruaft/ruaft/kvraft/kvwire"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// Limits bounds what a client may send, how many requests are served at
// once, and which web origins may call.
type Limits struct {
	// MaxBodyBytes is the largest request body, in bytes (413 above it).
	MaxBodyBytes int64
	// MaxKeyBytes is the longest key, in bytes.
	MaxKeyBytes int
	// MaxValueBytes is the longest value, in bytes.
	MaxValueBytes int
	// MaxInflight is the most requests served at once (503 with
	// Retry-After above it); 0 means no cap.
	MaxInflight int
	// CORSOrigins are the web origins allowed to call cross-origin.
	CORSOrigins []string
	// ClientURLs are the replicas' client URLs: their host names are
	// accepted for same-origin browser requests (see browserPolicy).
	ClientURLs []string
	// ClientHosts are more host names requests may use (Config.ClientHosts).
	ClientHosts []string
	// MaxWatchWait caps the wait of a watch or blocking query.
	MaxWatchWait time.Duration
	// RequestTimeout is how long a request may wait for the cluster; a long
	// poll's write deadline is its wait plus this.
	RequestTimeout time.Duration
	// stop ends when the replica starts shutting down, ending long polls;
	// nil never ends.
	stop context.Context
	// memberHost, if not nil, reports whether a host name is that of a
	// member's client URL in the configuration in force: accepted for
	// same-origin browser requests like ClientURLs' hosts, and following
	// membership changes (a joiner has no ClientURLs at all).
	memberHost func(host string) bool
	// streams, if not nil, counts the watch streams open on the listener.
	streams *atomic.Int64
	// removed, if not nil, is set once the replica knows it was removed
	// from the cluster: its state no longer follows the cluster's, so it
	// refuses watches (503), and its streams end, for the clients to
	// watch at another replica instead of waiting for changes it will
	// never apply.
	removed *atomic.Bool
	// auth, if not nil, is the client tokens every request must carry one
	// of (see clientAuth).
	auth *clientAuth
}

// DefaultLimits are the limits durio serves with unless configured.
func DefaultLimits() Limits {
	return Limits{MaxBodyBytes: 1 << 20, MaxKeyBytes: 4 << 10, MaxValueBytes: 1<<20 - 8<<10,
		MaxWatchWait: DefaultMaxWatchWait, RequestTimeout: DefaultRequestTimeout}
}

// clientHandler is everything the client listener serves: the Twirp
// KVService (protobuf and JSON), the REST routes, and /healthz. Every other
// path, the peer routes among them, is a Twirp bad_route 404.
func clientHandler(svc kvv1.KVService, limits Limits, extra func(mux *http.ServeMux)) http.Handler {
	svc = validated{next: svc, limits: limits}
	mux := http.NewServeMux()
	twirpServer := kvv1.NewKVServiceServer(svc)
	polls := &longPolls{maxWait: limits.MaxWatchWait, slack: limits.RequestTimeout + time.Second, stop: limits.stop, streams: limits.streams}
	mux.Handle("POST "+twirpServer.PathPrefix(), twirpServer)
	mux.Handle("POST "+twirpWatchPath, polls.wrapTwirpWatch(twirpServer))
	restHandler{svc: svc, polls: polls}.register(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	if extra != nil {
		extra(mux)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, twirp.NewErrorf(twirp.BadRoute, "no route %s %s", r.Method, r.URL.Path))
	})
	policy := newBrowserPolicy(limits.CORSOrigins, limits.ClientURLs, limits.ClientHosts)
	policy.memberHost = limits.memberHost
	// The body is read before an in-flight slot is taken: a client that
	// sends its body slowly holds a connection, not one of the slots.
	h := limitBody(limits.MaxBodyBytes, limitInflight(limits.MaxInflight, mux))
	if limits.auth != nil {
		h = limits.auth.wrap(h)
	}
	return policy.guard(h)
}

// validated checks requests against the limits before they reach the
// cluster, so REST and Twirp callers get the same 400s.
type validated struct {
	next   kvv1.KVService
	limits Limits
}

var _ kvv1.KVService = validated{}

func (v validated) key(key string) error { return v.keyAt("key", key) }

func (v validated) value(value string) error {
	if len(value) > v.limits.MaxValueBytes {
		return twirp.InvalidArgumentError("value", "is longer than "+strconv.Itoa(v.limits.MaxValueBytes)+" bytes")
	}
	return nil
}

func (v validated) write(h *kvv1.WriteHeader) error {
	if h == nil {
		return nil
	}
	if (h.GetClientId() == 0) != (h.GetSequence() == 0) || h.GetClientId() == 0 && h.GetAck() != 0 {
		return twirp.InvalidArgumentError("write", "client_id and sequence must be set together, and ack only with them")
	}
	return nil
}

func (v validated) Get(ctx context.Context, req *kvv1.GetRequest) (*kvv1.GetResponse, error) {
	if err := firstErr(v.key(req.GetKey()), v.scope(ctx, req.GetKey(), "key")); err != nil {
		return nil, err
	}
	if err := v.consistency(req.GetConsistency()); err != nil {
		return nil, err
	}
	resp, err := v.next.Get(ctx, req)
	return resp, public(ctx, err)
}

func (v validated) Put(ctx context.Context, req *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	if err := firstErr(v.key(req.GetKey()), v.value(req.GetValue()), v.write(req.GetWrite()), v.condition(req.GetCondition()),
		v.scope(ctx, req.GetKey(), "key")); err != nil {
		return nil, err
	}
	if err := v.session(ctx, req.GetWrite()); err != nil {
		return nil, err
	}
	resp, err := v.next.Put(ctx, req)
	return resp, public(ctx, err)
}

func (v validated) Append(ctx context.Context, req *kvv1.AppendRequest) (*kvv1.AppendResponse, error) {
	if err := firstErr(v.key(req.GetKey()), v.value(req.GetValue()), v.write(req.GetWrite()), v.scope(ctx, req.GetKey(), "key")); err != nil {
		return nil, err
	}
	if err := v.session(ctx, req.GetWrite()); err != nil {
		return nil, err
	}
	resp, err := v.next.Append(ctx, req)
	return resp, public(ctx, err)
}

func (v validated) Delete(ctx context.Context, req *kvv1.DeleteRequest) (*kvv1.DeleteResponse, error) {
	if err := firstErr(v.key(req.GetKey()), v.write(req.GetWrite()), v.condition(req.GetCondition()), v.scope(ctx, req.GetKey(), "key")); err != nil {
		return nil, err
	}
	if err := v.session(ctx, req.GetWrite()); err != nil {
		return nil, err
	}
	resp, err := v.next.Delete(ctx, req)
	return resp, public(ctx, err)
}

// Txn checks every condition and write as Put and Delete check theirs, and
// the Txn's own bounds (kvclient.MaxTxnOps; keys and values together at
// most MaxValueBytes; a key written once).
func (v validated) Txn(ctx context.Context, req *kvv1.TxnRequest) (*kvv1.TxnResponse, error) {
	if err := v.txn(ctx, req); err != nil {
		return nil, err
	}
	if err := v.session(ctx, req.GetWrite()); err != nil {
		return nil, err
	}
	resp, err := v.next.Txn(ctx, req)
	return resp, public(ctx, err)
}

func (v validated) txn(ctx context.Context, req *kvv1.TxnRequest) error {
	conds, writes := req.GetConditions(), req.GetWrites()
	switch {
	case len(writes) == 0:
		return twirp.RequiredArgumentError("writes")
	case len(writes) > kvclient.MaxTxnOps:
		return twirp.InvalidArgumentError("writes", "has more than "+strconv.Itoa(kvclient.MaxTxnOps)+" writes")
	case len(conds) > kvclient.MaxTxnOps:
		return twirp.InvalidArgumentError("conditions", "has more than "+strconv.Itoa(kvclient.MaxTxnOps)+" conditions")
	}
	if err := v.write(req.GetWrite()); err != nil {
		return err
	}
	size := 0
	for i, c := range conds {
		at := "conditions[" + strconv.Itoa(i) + "]"
		if err := firstErr(v.keyAt(at+".key", c.GetKey()), v.condition(c.GetCondition())); err != nil {
			return err
		}
		if c.GetCondition().GetKind() == kvv1.ConditionKind_CONDITION_KIND_UNSPECIFIED {
			return twirp.InvalidArgumentError(at+".condition.kind", "is required")
		}
		if err := v.scope(ctx, c.GetKey(), at+".key"); err != nil {
			return err
		}
		size += len(c.GetKey()) + len(c.GetCondition().GetValue())
	}
	keys := make(map[string]struct{}, len(writes))
	for i, w := range writes {
		at := "writes[" + strconv.Itoa(i) + "]"
		var key, value string
		switch op := w.GetOp().(type) {
		case *kvv1.TxnWrite_Put:
			key, value = op.Put.GetKey(), op.Put.GetValue()
		case *kvv1.TxnWrite_Delete:
			key = op.Delete.GetKey()
		default:
			return twirp.InvalidArgumentError(at, "needs put or delete")
		}
		if err := firstErr(v.keyAt(at+".key", key), v.value(value), v.scope(ctx, key, at+".key")); err != nil {
			return err
		}
		if _, dup := keys[key]; dup {
			return twirp.InvalidArgumentError(at+".key", "is written twice in one txn")
		}
		keys[key] = struct{}{}
		size += len(key) + len(value)
	}
	if size > v.limits.MaxValueBytes {
		return twirp.InvalidArgumentError("writes", "keys and values together are longer than "+strconv.Itoa(v.limits.MaxValueBytes)+" bytes")
	}
	return nil
}

// keyAt is key for a key named name.
func (v validated) keyAt(name, key string) error {
	switch {
	case key == "":
		return twirp.RequiredArgumentError(name)
	case len(key) > v.limits.MaxKeyBytes:
		return twirp.InvalidArgumentError(name, "is longer than "+strconv.Itoa(v.limits.MaxKeyBytes)+" bytes")
	case !utf8.ValidString(key):
		return twirp.InvalidArgumentError(name, "is not valid UTF-8")
	}
	return nil
}

func (v validated) Status(ctx context.Context, req *kvv1.StatusRequest) (*kvv1.StatusResponse, error) {
	resp, err := v.next.Status(ctx, req)
	return resp, public(ctx, err)
}

func (v validated) OpenSession(ctx context.Context, req *kvv1.OpenSessionRequest) (*kvv1.OpenSessionResponse, error) {
	resp, err := v.next.OpenSession(ctx, req)
	if err == nil && grantOf(ctx) != nil {
		// The id the client holds is the session's masked with its
		// token's mask (maskSession).
		if resp.ClientId = maskSession(ctx, resp.GetClientId()); resp.ClientId == 0 {
			// The session's id is the mask itself (one chance in 2^53):
			// 0 would mean no session; the client opens another.
			return nil, twirp.NewError(twirp.Unavailable, "could not open a session; try again")
		}
	}
	return resp, err
}

// session maps the session id a write carries to the cluster's (see
// maskSession); a request naming the id the mask maps to 0 names no
// session.
func (v validated) session(ctx context.Context, h *kvv1.WriteHeader) error {
	if h == nil || h.GetClientId() == 0 {
		return nil
	}
	if h.ClientId = maskSession(ctx, h.GetClientId()); h.ClientId == 0 {
		return twirp.NewError(twirp.FailedPrecondition, "client_id is not an open session").
			WithMeta(kvwire.MetaReason, kvwire.ReasonNoSession)
	}
	return nil
}

// scope refuses a key (or a listing's or watch's prefix) outside the key
// prefix the request's token is limited to (see clientAuth).
func (v validated) scope(ctx context.Context, key, what string) error {
	if prefix := keyScope(ctx); prefix != "" {
		return outOfScope(prefix, key, what)
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// optionalKey checks a prefix or continuation key: like key, but may be
// empty.
func (v validated) optionalKey(name, key string) error {
	switch {
	case len(key) > v.limits.MaxKeyBytes:
		return twirp.InvalidArgumentError(name, "is longer than "+strconv.Itoa(v.limits.MaxKeyBytes)+" bytes")
	case !utf8.ValidString(key):
		return twirp.InvalidArgumentError(name, "is not valid UTF-8")
	}
	return nil
}

func (v validated) condition(c *kvv1.Condition) error {
	if c == nil {
		return nil
	}
	if _, ok := kvv1.ConditionKind_name[int32(c.GetKind())]; !ok {
		return twirp.InvalidArgumentError("condition.kind", "is not a known ConditionKind")
	}
	if len(c.GetValue()) > v.limits.MaxValueBytes {
		return twirp.InvalidArgumentError("condition.value", "is longer than "+strconv.Itoa(v.limits.MaxValueBytes)+" bytes")
	}
	return nil
}

func (v validated) consistency(c kvv1.ReadConsistency) error {
	if _, ok := kvv1.ReadConsistency_name[int32(c)]; !ok {
		return twirp.InvalidArgumentError("consistency", "is not a known ReadConsistency")
	}
	return nil
}

func (v validated) List(ctx context.Context, req *kvv1.ListRequest) (*kvv1.ListResponse, error) {
	if err := firstErr(v.optionalKey("prefix", req.GetPrefix()), v.optionalKey("after", req.GetAfter()),
		v.consistency(req.GetConsistency()), v.scope(ctx, req.GetPrefix(), "listing's prefix")); err != nil {
		return nil, err
	}
	resp, err := v.next.List(ctx, req)
	return resp, public(ctx, err)
}

// Watch lowers a wait above --max-watch-wait to it. A removed replica
// refuses it (see Limits.removed).
func (v validated) Watch(ctx context.Context, req *kvv1.WatchRequest) (*kvv1.WatchResponse, error) {
	if v.limits.removed != nil && v.limits.removed.Load() {
		return nil, twirp.NewError(twirp.Unavailable, "this replica was removed from the cluster and no longer applies its "+
			"changes; watch at another replica").WithMeta("reason", "removed")
	}
	check := v.optionalKey("key", req.GetKey())
	if req.GetKey() == "" && !req.GetPrefix() {
		check = twirp.InvalidArgumentError("key", "is required unless prefix is set (an empty prefix watches every key)")
	}
	if check == nil {
		check = v.scope(ctx, req.GetKey(), "watched key or prefix")
	}
	if check != nil {
		return nil, check
	}
	if maxMs := max(uint64(v.limits.MaxWatchWait/time.Millisecond), 1); req.GetWaitMs() > maxMs {
		req.WaitMs = maxMs
	}
	resp, err := v.next.Watch(ctx, req)
	return resp, public(ctx, err)
}

func (v validated) LeaseGrant(ctx context.Context, req *kvv1.LeaseGrantRequest) (*kvv1.LeaseGrantResponse, error) {
	if err := v.write(req.GetWrite()); err != nil {
		return nil, err
	}
	if err := v.session(ctx, req.GetWrite()); err != nil {
		return nil, err
	}
	resp, err := v.next.LeaseGrant(ctx, req)
	return resp, public(ctx, err)
}

func (v validated) leaseID(id uint64) error {
	if id == 0 {
		return twirp.RequiredArgumentError("id")
	}
	return nil
}

func (v validated) LeaseKeepAlive(ctx context.Context, req *kvv1.LeaseKeepAliveRequest) (*kvv1.LeaseKeepAliveResponse, error) {
	if err := v.leaseID(req.GetId()); err != nil {
		return nil, err
	}
	resp, err := v.next.LeaseKeepAlive(ctx, req)
	return resp, public(ctx, err)
}

func (v validated) LeaseRevoke(ctx context.Context, req *kvv1.LeaseRevokeRequest) (*kvv1.LeaseRevokeResponse, error) {
	if err := firstErr(v.leaseID(req.GetId()), v.write(req.GetWrite())); err != nil {
		return nil, err
	}
	if prefix := keyScope(ctx); prefix != "" {
		// Revoking deletes every key on the lease, which may lie outside
		// the token's prefix: leave its keys to expire instead.
		return nil, twirp.NewError(twirp.PermissionDenied, "a token limited to keys starting with "+strconv.Quote(prefix)+
			" cannot revoke leases (their keys may lie elsewhere); let the lease expire, or delete the keys")
	}
	if err := v.session(ctx, req.GetWrite()); err != nil {
		return nil, err
	}
	resp, err := v.next.LeaseRevoke(ctx, req)
	return resp, public(ctx, err)
}

func (v validated) LeaseTimeToLive(ctx context.Context, req *kvv1.LeaseTimeToLiveRequest) (*kvv1.LeaseTimeToLiveResponse, error) {
	if err := v.leaseID(req.GetId()); err != nil {
		return nil, err
	}
	resp, err := v.next.LeaseTimeToLive(ctx, req)
	if prefix := keyScope(ctx); err == nil && prefix != "" && len(resp.GetKeys()) > 0 {
		// Only the keys the token may see.
		keys := resp.Keys[:0:0]
		for _, k := range resp.GetKeys() {
			if strings.HasPrefix(k, prefix) {
				keys = append(keys, k)
			}
		}
		resp.Keys = keys
	}
	return resp, public(ctx, err)
}
