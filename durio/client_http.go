package durio

import (
	"context"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/twitchtv/twirp"

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
}

// DefaultLimits are the limits durio serves with unless configured.
func DefaultLimits() Limits {
	return Limits{MaxBodyBytes: 1 << 20, MaxKeyBytes: 4 << 10, MaxValueBytes: 1<<20 - 8<<10}
}

// clientHandler is everything the client listener serves: the Twirp
// KVService (protobuf and JSON), the REST routes, and /healthz. Every other
// path, the peer routes among them, is a Twirp bad_route 404.
func clientHandler(svc kvv1.KVService, limits Limits, extra func(mux *http.ServeMux)) http.Handler {
	svc = validated{next: svc, limits: limits}
	mux := http.NewServeMux()
	twirpServer := kvv1.NewKVServiceServer(svc)
	mux.Handle("POST "+twirpServer.PathPrefix(), twirpServer)
	restHandler{svc: svc}.register(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	if extra != nil {
		extra(mux)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, twirp.NewErrorf(twirp.BadRoute, "no route %s %s", r.Method, r.URL.Path))
	})
	policy := newBrowserPolicy(limits.CORSOrigins, limits.ClientURLs)
	return policy.guard(limitInflight(limits.MaxInflight, limitBody(limits.MaxBodyBytes, mux)))
}

// validated checks requests against the limits before they reach the
// cluster, so REST and Twirp callers get the same 400s.
type validated struct {
	next   kvv1.KVService
	limits Limits
}

var _ kvv1.KVService = validated{}

func (v validated) key(key string) error {
	switch {
	case key == "":
		return twirp.RequiredArgumentError("key")
	case len(key) > v.limits.MaxKeyBytes:
		return twirp.InvalidArgumentError("key", "is longer than "+strconv.Itoa(v.limits.MaxKeyBytes)+" bytes")
	case !utf8.ValidString(key):
		return twirp.InvalidArgumentError("key", "is not valid UTF-8")
	}
	return nil
}

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
	if err := v.key(req.GetKey()); err != nil {
		return nil, err
	}
	if _, ok := kvv1.ReadConsistency_name[int32(req.GetConsistency())]; !ok {
		return nil, twirp.InvalidArgumentError("consistency", "is not a known ReadConsistency")
	}
	resp, err := v.next.Get(ctx, req)
	return resp, public(ctx, err)
}

func (v validated) Put(ctx context.Context, req *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	if err := firstErr(v.key(req.GetKey()), v.value(req.GetValue()), v.write(req.GetWrite())); err != nil {
		return nil, err
	}
	resp, err := v.next.Put(ctx, req)
	return resp, public(ctx, err)
}

func (v validated) Append(ctx context.Context, req *kvv1.AppendRequest) (*kvv1.AppendResponse, error) {
	if err := firstErr(v.key(req.GetKey()), v.value(req.GetValue()), v.write(req.GetWrite())); err != nil {
		return nil, err
	}
	resp, err := v.next.Append(ctx, req)
	return resp, public(ctx, err)
}

func (v validated) Delete(ctx context.Context, req *kvv1.DeleteRequest) (*kvv1.DeleteResponse, error) {
	if err := firstErr(v.key(req.GetKey()), v.write(req.GetWrite())); err != nil {
		return nil, err
	}
	resp, err := v.next.Delete(ctx, req)
	return resp, public(ctx, err)
}

func (v validated) Status(ctx context.Context, req *kvv1.StatusRequest) (*kvv1.StatusResponse, error) {
	resp, err := v.next.Status(ctx, req)
	return resp, public(ctx, err)
}

func (v validated) OpenSession(ctx context.Context, req *kvv1.OpenSessionRequest) (*kvv1.OpenSessionResponse, error) {
	return v.next.OpenSession(ctx, req)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// The methods of issue 16 pass through unchecked here for now; kvedge adds
// their limits.

func (v validated) List(ctx context.Context, req *kvv1.ListRequest) (*kvv1.ListResponse, error) {
	resp, err := v.next.List(ctx, req)
	return resp, public(ctx, err)
}

func (v validated) Watch(ctx context.Context, req *kvv1.WatchRequest) (*kvv1.WatchResponse, error) {
	resp, err := v.next.Watch(ctx, req)
	return resp, public(ctx, err)
}

func (v validated) LeaseGrant(ctx context.Context, req *kvv1.LeaseGrantRequest) (*kvv1.LeaseGrantResponse, error) {
	resp, err := v.next.LeaseGrant(ctx, req)
	return resp, public(ctx, err)
}

func (v validated) LeaseKeepAlive(ctx context.Context, req *kvv1.LeaseKeepAliveRequest) (*kvv1.LeaseKeepAliveResponse, error) {
	resp, err := v.next.LeaseKeepAlive(ctx, req)
	return resp, public(ctx, err)
}

func (v validated) LeaseRevoke(ctx context.Context, req *kvv1.LeaseRevokeRequest) (*kvv1.LeaseRevokeResponse, error) {
	resp, err := v.next.LeaseRevoke(ctx, req)
	return resp, public(ctx, err)
}

func (v validated) LeaseTimeToLive(ctx context.Context, req *kvv1.LeaseTimeToLiveRequest) (*kvv1.LeaseTimeToLiveResponse, error) {
	resp, err := v.next.LeaseTimeToLive(ctx, req)
	return resp, public(ctx, err)
}
