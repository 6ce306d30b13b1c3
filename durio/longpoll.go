package durio

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twitchtv/twirp"

	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// Long polls (REST blocking queries and watches, Twirp Watch) hold a request
// open for up to their wait. They differ from ordinary requests in three
// ways, all handled here:
//
//   - they do not take a --max-inflight slot (a thousand idle watchers would
//     otherwise starve every read and write); the state machine caps how many
//     wait at once (--max-watchers, 429 with Retry-After above it);
//   - the server's write timeout, sized for ordinary requests, is pushed back
//     to the wait plus the request timeout, so an answer at the end of a
//     long wait is not cut off;
//   - they end as soon as the replica starts shutting down (with an empty
//     answer, which a watcher simply repeats elsewhere), so a graceful
//     shutdown does not wait out every watcher.

// RevisionHeader carries the store revision an answer reflects
// (ResponseHeader.revision): the index of the next blocking query.
const RevisionHeader = "X-Durio-Revision"

// twirpWatchPath is the Twirp Watch method's path.
const twirpWatchPath = kvv1.KVServicePathPrefix + "Watch"

// longPolls governs the long polls of one client listener.
type longPolls struct {
	// maxWait caps a long poll's wait (a longer one is lowered to it).
	maxWait time.Duration
	// slack is added to the wait for the write deadline: the time to
	// answer after the wait ended (a linearizable read, for example).
	slack time.Duration
	// stop ends when the replica starts shutting down; nil never ends.
	stop context.Context
	// streams, if not nil, counts the open watch streams.
	streams *atomic.Int64
}

// isLongPoll reports whether r may wait: a Twirp Watch, a REST watch, or a
// REST get or list with an index (a blocking query). The check is cheap:
// it runs for every request, ahead of the in-flight limit; only a get or
// list whose query might name an index is parsed, as its handler parses
// it (a name may be percent-encoded: %69ndex is index).
func isLongPoll(r *http.Request) bool {
	p := r.URL.Path
	switch {
	case p == twirpWatchPath:
		return true
	case r.Method != http.MethodGet && r.Method != http.MethodHead: // the GET routes answer HEAD too
		return false
	case strings.HasPrefix(p, "/kvstore/watch/"):
		return true
	case strings.HasPrefix(p, "/kvstore/get/") || p == "/kvstore/list":
		q := r.URL.RawQuery
		if !strings.Contains(q, "ndex") && !strings.Contains(q, "%") {
			return false
		}
		params := newQueryParams(r)
		return params.has("index")
	}
	return false
}

// begin prepares a long poll that will wait up to wait: it pushes the
// write deadline back and returns a context that ends when the request
// does or the replica starts shutting down. The caller must call the
// returned cancel.
func (lp *longPolls) begin(w http.ResponseWriter, r *http.Request, wait time.Duration) (context.Context, context.CancelFunc) {
	// An error means the writer cannot move its deadline (an
	// httptest.ResponseRecorder, say); the server's own timeout then applies.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + lp.slack))
	ctx, cancel := context.WithCancel(r.Context())
	if lp.stop == nil {
		return ctx, cancel
	}
	unhook := context.AfterFunc(lp.stop, cancel)
	return ctx, func() { unhook(); cancel() }
}

// wrapTwirpWatch prepares a Twirp Watch call like a REST long poll: the
// wait is only known once the body is decoded, so the deadline is pushed
// back by the longest wait allowed.
func (lp *longPolls) wrapTwirpWatch(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := lp.begin(w, r, lp.maxWait)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// capWait lowers a wait above the cap to the cap.
func (lp *longPolls) capWait(wait time.Duration) time.Duration {
	return min(wait, lp.maxWait)
}

// queryParams reads the query parameters of a REST request, refusing
// malformed values with a Twirp invalid_argument naming the parameter.
type queryParams struct {
	q   url.Values
	err error
}

// newQueryParams returns a value, not a pointer: the handlers keep it on
// their stack, so a request without a query string allocates nothing.
func newQueryParams(r *http.Request) queryParams {
	if r.URL.RawQuery == "" { // most requests: nothing to parse
		return queryParams{}
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	p := queryParams{q: q}
	if err != nil {
		p.err = twirp.NewError(twirp.Malformed, "the query string is malformed: "+err.Error())
	}
	return p
}

// has reports whether the parameter was given.
func (p *queryParams) has(name string) bool {
	_, ok := p.q[name]
	return ok
}

// str returns a string parameter ("" if absent); given at most once.
func (p *queryParams) str(name string) string {
	vs := p.q[name]
	if len(vs) > 1 {
		p.fail(name, "is given more than once")
	}
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// uint returns an unsigned integer parameter (0 if absent).
func (p *queryParams) uint(name string) uint64 {
	s := p.str(name)
	if s == "" {
		return 0
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		p.fail(name, "must be an unsigned integer")
	}
	return n
}

// number returns an unsigned integer parameter that is present, where an
// empty value is no number (a condition's revision: ?if_revision= must not
// stand for 0).
func (p *queryParams) number(name string) uint64 {
	if p.str(name) == "" {
		p.fail(name, "must be an unsigned integer")
		return 0
	}
	return p.uint(name)
}

// limit returns a page-size parameter: 0 if absent, lowered to max above it
// (the contract's rule, so REST and Twirp agree).
func (p *queryParams) limit(name string, max uint32) uint32 {
	n := p.uint(name)
	return uint32(min(n, uint64(max)))
}

// bool returns a boolean parameter: true, false, 1, 0 or empty (true, as in
// ?keys_only).
func (p *queryParams) bool(name string) bool {
	if !p.has(name) {
		return false
	}
	switch p.str(name) {
	case "", "true", "1":
		return true
	case "false", "0":
		return false
	}
	p.fail(name, "must be true or false")
	return false
}

// wait returns a duration parameter such as 30s or 5m; a bare number is
// seconds (as Consul accepts). Absent, it is def.
func (p *queryParams) wait(name string, def time.Duration) time.Duration {
	s := p.str(name)
	if s == "" {
		return def
	}
	var d time.Duration
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		d = time.Duration(n) * time.Second
	} else if d, err = time.ParseDuration(s); err != nil || d < 0 {
		p.fail(name, "must be a duration such as 30s or 5m")
	}
	return d
}

func (p *queryParams) fail(name, msg string) {
	if p.err == nil {
		p.err = twirp.InvalidArgumentError(name, msg)
	}
}
