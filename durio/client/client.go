// Package client is the Go client of durio: a small package (Twirp over
// net/http, no storage, plugin or gRPC code) that talks to any replica's
// client listener and follows the leader.
//
// Requests go to the replica that answered last; a replica that does not
// lead forwards them itself, so any endpoint will do. When an endpoint
// fails to answer, the client moves to the next. Writes carry a client id
// and a sequence number, so a write retried after a timeout or a lost
// connection is applied at most once. The retry loop is kvclient.Clerk,
// the same one durio's replicas use to forward requests.
package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	"github.com/ruaft/ruaft/kvraft/kvwire"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// ErrNotFound is returned by Get for a missing key.
var ErrNotFound = kvclient.ErrNoKey

// Errors a call may end with, besides ErrNotFound and the server's refusals
// (kvclient.ErrInvalid, ErrTooLarge, ...). Match them with errors.Is; the
// server's Twirp error, when there was one, is in the chain too
// (errors.As with a twirp.Error).
var (
	// ErrUnknownOutcome means the call timed out after a write may have been
	// applied. Retrying it through the same Client is safe only as a new
	// write; the old one may or may not have taken effect.
	ErrUnknownOutcome = kvclient.ErrTimeout
	// ErrUnavailable means no replica accepted the request in time; a write
	// was not applied.
	ErrUnavailable = kvclient.ErrNoLeader
	// ErrRejected means the replica refused the request for a reason that
	// another replica would repeat, as a missing or unknown token
	// (Options.Token; the Twirp code is unauthenticated) or one whose role
	// does not allow the request (permission_denied). Nothing was done.
	ErrRejected = kvclient.ErrRejected
)

// Options configure a Client.
type Options struct {
	// HTTPClient carries the calls; default: a pooled keep-alive client.
	HTTPClient *http.Client
	// JSON selects Twirp's JSON encoding instead of protobuf.
	JSON bool
	// AttemptTimeout bounds the wait for one endpoint before trying the
	// next; default 6 s, just over a replica's default request timeout
	// (5 s), so that the server's own answer (503, 504) arrives. Lower it to
	// leave a stalled endpoint sooner.
	AttemptTimeout time.Duration
	// FollowMembers makes the client keep its endpoints in step with the
	// cluster's membership by itself (Refresh, before a call): when a
	// replica names a leader the client does not know (a member added
	// since), and at most every FollowInterval otherwise. Off by default:
	// the members' client URLs (durio serve --client-url) must be reachable
	// from the client, which they may not be behind a proxy or NAT.
	FollowMembers bool
	// FollowInterval is how old the endpoints may get with FollowMembers;
	// default DefaultFollowInterval.
	FollowInterval time.Duration
	// StreamIdleTimeout is how long FollowStream waits for any message on
	// a replica's stream before it resumes at another; default
	// DefaultStreamIdleTimeout. FollowStream asks for a heartbeat every
	// half of it, at most 10 s; replicas send one no more often than every
	// second, so keep it above 2 s.
	StreamIdleTimeout time.Duration
	// Token, if set, goes with every request as "Authorization: Bearer
	// Token": what replicas started with --client-auth-file require. A
	// request the token does not allow fails at once (ErrRejected wrapping
	// a Twirp unauthenticated or permission_denied error), never retried
	// elsewhere.
	Token string
}

// DefaultFollowInterval is Options.FollowInterval's default.
const DefaultFollowInterval = 30 * time.Second

// DefaultAttemptTimeout is Options.AttemptTimeout's default.
const DefaultAttemptTimeout = 6 * time.Second

// Client is a durio client. It is safe for concurrent use; concurrent calls
// are not serialised.
type Client struct {
	hc    *http.Client
	json  bool
	set   *endpointSet // the replicas, by id; Refresh replaces them
	clerk *kvclient.Clerk
	// streamIdle is Options.StreamIdleTimeout.
	streamIdle time.Duration
	// follow, with Options.FollowMembers, is the interval of the automatic
	// refresh (the first call refreshes too); 0 when off.
	follow time.Duration
	// refreshMu is held by the one call that refreshes automatically (the
	// others go on with the endpoints they have); it guards lastRefresh.
	refreshMu   sync.Mutex
	lastRefresh time.Time
}

// New returns a client for the given client URLs ("host:port" means
// http://host:port).
func New(endpoints []string, opts Options) (*Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("durio client: no endpoints")
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient()
	}
	if opts.Token != "" {
		var err error
		if hc, err = WithToken(hc, opts.Token); err != nil {
			return nil, err
		}
	}
	c := &Client{hc: hc, json: opts.JSON, set: &endpointSet{}, streamIdle: cmp.Or(opts.StreamIdleTimeout, DefaultStreamIdleTimeout)}
	if opts.FollowMembers {
		c.follow = cmp.Or(opts.FollowInterval, DefaultFollowInterval)
	}
	// Until Refresh learns the members' ids, endpoint i stands for
	// replica i (the order of --peers in a cluster that never changed).
	byID := make(map[int]string, len(endpoints))
	for i, e := range endpoints {
		if !strings.Contains(e, "://") {
			e = "http://" + e
		}
		byID[i] = strings.TrimRight(e, "/")
	}
	c.set.replace(c.newEndpoints(byID))
	cfg := kvclient.DefaultClerkConfig()
	cfg.AttemptTimeout = DefaultAttemptTimeout
	if opts.AttemptTimeout > 0 {
		cfg.AttemptTimeout = opts.AttemptTimeout
	}
	cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 200*time.Millisecond
	var err error
	if c.clerk, err = kvclient.NewClerkOf(c.set, cfg); err != nil {
		return nil, err
	}
	return c, nil
}

func defaultHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}}
}

// Get returns a key's value, read linearizably, or ErrNotFound.
func (c *Client) Get(ctx context.Context, key string) (string, error) {
	return c.kv(ctx).Get(ctx, key)
}

// GetStale returns a key's value as the endpoint that answers has it,
// possibly behind the latest writes, or ErrNotFound. It works without a
// leader.
func (c *Client) GetStale(ctx context.Context, key string) (string, error) {
	return c.kv(ctx).GetStale(ctx, key)
}

// GetStaleAt reads a key from endpoint i's local state (by position in
// the endpoints), without failover: what that replica has applied.
func (c *Client) GetStaleAt(ctx context.Context, i int, key string) (string, error) {
	eps := c.set.list()
	if i < 0 || i >= len(eps) {
		return "", fmt.Errorf("durio client: no endpoint %d", i)
	}
	resp, err := kvwire.NewClient(eps[i].kv).Get(ctx, &kvclient.GetRequest{Key: key, Consistency: kvclient.Stale})
	switch {
	case err != nil:
		return "", err
	case !resp.Found:
		return "", ErrNotFound
	}
	return resp.Value, nil
}

// Put sets key to value.
func (c *Client) Put(ctx context.Context, key, value string) error {
	return c.kv(ctx).Put(ctx, key, value)
}

// Append appends value to key's value (a missing key counts as empty).
func (c *Client) Append(ctx context.Context, key, value string) error {
	return c.kv(ctx).Append(ctx, key, value)
}

// Delete removes key and reports whether it existed.
func (c *Client) Delete(ctx context.Context, key string) (bool, error) {
	return c.kv(ctx).Delete(ctx, key)
}

// Endpoints returns the client URLs the client uses, normalised: the ones
// it was made with, or after Refresh the members' client URLs, by id.
func (c *Client) Endpoints() []string {
	eps := c.set.list()
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.url
	}
	return out
}

// StatusOf asks one endpoint (by position in Endpoints) for its status,
// without failover.
func (c *Client) StatusOf(ctx context.Context, i int) (*kvv1.StatusResponse, error) {
	eps := c.set.list()
	if i < 0 || i >= len(eps) {
		return nil, fmt.Errorf("durio client: no endpoint %d", i)
	}
	return eps[i].kv.Status(ctx, &kvv1.StatusRequest{})
}

// WithToken returns a copy of hc that sends "Authorization: Bearer token"
// with every request (what Options.Token does), for other HTTP calls to
// replicas started with --client-auth-file, such as a snapshot download.
// The token must be printable ASCII without spaces.
func WithToken(hc *http.Client, token string) (*http.Client, error) {
	if token == "" {
		return nil, errors.New("durio client: empty token")
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c > '~' {
			return nil, errors.New("durio client: a token must be printable ASCII without spaces")
		}
	}
	c := *hc
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	c.Transport = bearerTransport{next: next, value: "Bearer " + token}
	return &c, nil
}

type bearerTransport struct {
	next  http.RoundTripper
	value string
}

// RoundTrip adds the token to a request for the origin the client was
// asked to call: a redirect to another origin (or from https to http) goes
// without it, as net/http's own Authorization headers do.
func (t bearerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	first := req
	for first.Response != nil && first.Response.Request != nil {
		first = first.Response.Request // the request this redirect came from
	}
	if first.URL.Host != req.URL.Host || first.URL.Scheme != req.URL.Scheme {
		return t.next.RoundTrip(req)
	}
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", t.value)
	return t.next.RoundTrip(req)
}
