package durio

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/kvraft/kvwire"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// This file holds the client listener's authentication: bearer tokens read
// from --client-auth-file, each with a role and, for read and write, an
// optional key prefix it is limited to; a token's exactly-once sessions are
// its own (maskSession). Without the file the client listener answers
// anyone who can reach it (see Security in the README).

// Role is what a client token may do on the client listener. Each role may
// do everything the ones below it may.
type Role uint8

const (
	// RoleNone is what a request that needs no token asks for.
	RoleNone Role = iota
	// RoleRead reads: gets, listings, watches, status, lease lookups and the
	// member list.
	RoleRead
	// RoleWrite writes keys besides: puts, appends, deletes, sessions and
	// leases.
	RoleWrite
	// RoleAdmin changes the membership and downloads snapshots besides.
	RoleAdmin
)

var roleNames = [...]string{RoleNone: "none", RoleRead: "read", RoleWrite: "write", RoleAdmin: "admin"}

func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// Bounds of an auth file and of its tokens. A token is at least 16 bytes
// so that a guessing attack over the network is hopeless (`durio token`
// makes 32 hexadecimal digits), printable ASCII without spaces so that it
// fits an Authorization header as it is.
const (
	minClientTokenBytes = 16
	maxClientTokenBytes = 256
	maxClientAuthBytes  = 1 << 20
)

// grant is what a token may do: its role, over the keys under prefix ("":
// every key).
type grant struct {
	role   Role
	prefix string
	// sessionMask is XORed into the exactly-once session ids the token's
	// requests carry (see maskSession): a session opened with one token
	// is unusable with another.
	sessionMask uint64
}

// clientTokens maps the SHA-256 of each token to its grant. Looking the
// digest up (not the token) keeps the lookup's timing from telling an
// attacker anything about a token's bytes.
type clientTokens struct {
	roles map[[sha256.Size]byte]*grant
	// admin is the first admin token of the file, "" if none: what a
	// joining replica sends to the members it asks to add it.
	admin string
	// first is the file's first token (see FirstClientToken).
	first string
}

// readClientAuth reads and parses an auth file (see parseClientAuth).
func readClientAuth(path string) (*clientTokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxClientAuthBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxClientAuthBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxClientAuthBytes)
	}
	t, err := parseClientAuth(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// parseClientAuth parses an auth file: one token per line as "ROLE TOKEN"
// or "ROLE TOKEN PREFIX", ROLE being read, write or admin, and PREFIX (read
// and write only) the start of every key the token may use; blank lines
// and lines starting with # are skipped. A token given twice, an unknown
// role or a short token is an error naming the line (never the token).
func parseClientAuth(data []byte) (*clientTokens, error) {
	t := &clientTokens{roles: map[[sha256.Size]byte]*grant{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxClientAuthBytes)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 && len(fields) != 3 {
			return nil, fmt.Errorf("line %d: want \"ROLE TOKEN\" or \"ROLE TOKEN KEY-PREFIX\" (ROLE read, write or admin)", n)
		}
		var role Role
		switch fields[0] {
		case "read":
			role = RoleRead
		case "write":
			role = RoleWrite
		case "admin":
			role = RoleAdmin
		default:
			return nil, fmt.Errorf("line %d: role %q is not read, write or admin", n, fields[0])
		}
		token := fields[1]
		if err := checkClientToken(token); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		g := &grant{role: role, sessionMask: sessionMask(token)}
		if len(fields) == 3 {
			g.prefix = fields[2]
			switch {
			case role == RoleAdmin:
				return nil, fmt.Errorf("line %d: an admin token cannot be limited to a key prefix (it changes the membership and reads snapshots of every key)", n)
			case len(g.prefix) > maxScopePrefixBytes || !utf8.ValidString(g.prefix):
				return nil, fmt.Errorf("line %d: a key prefix must be valid UTF-8 of at most %d bytes", n, maxScopePrefixBytes)
			}
		}
		sum := sha256.Sum256([]byte(token))
		if _, dup := t.roles[sum]; dup {
			return nil, fmt.Errorf("line %d: the same token as an earlier line", n)
		}
		t.roles[sum] = g
		if t.first == "" {
			t.first = token
		}
		if role == RoleAdmin && t.admin == "" {
			t.admin = token
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(t.roles) == 0 {
		return nil, fmt.Errorf("no tokens (lines \"ROLE TOKEN\")")
	}
	return t, nil
}

// checkClientToken reports why token cannot be a client token.
func checkClientToken(token string) error {
	if len(token) < minClientTokenBytes || len(token) > maxClientTokenBytes {
		return fmt.Errorf("a token must be %d to %d bytes long", minClientTokenBytes, maxClientTokenBytes)
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("a token must be printable ASCII without spaces")
		}
	}
	return nil
}

// grant is the grant of a request's bearer token: nil when it carries
// none or one the file does not list.
func (t *clientTokens) grant(r *http.Request) *grant {
	h := r.Header["Authorization"]
	if len(h) != 1 {
		return nil
	}
	scheme, token, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil
	}
	token = strings.TrimSpace(token)
	if len(token) > maxClientTokenBytes {
		return nil
	}
	var buf [maxClientTokenBytes]byte // hashed without a heap copy
	return t.roles[sha256.Sum256(buf[:copy(buf[:], token)])]
}

// sessionMask derives a token's session id mask: 53 bits (session ids are
// below 2^53, so that JavaScript clients hold them exactly) that only the
// token's holders can compute.
func sessionMask(token string) uint64 {
	sum := sha256.Sum256([]byte("durio exactly-once session id mask\x00" + token))
	return binary.BigEndian.Uint64(sum[:8]) & (1<<53 - 1)
}

// clientAuth guards the client listener with the tokens it holds; the
// tokens can be replaced while it serves (Replica.ReloadClientAuth).
type clientAuth struct {
	tokens atomic.Pointer[clientTokens]
	// refused, if not nil, counts refused requests: "unauthenticated" for
	// a missing or unknown token, "permission_denied" for a role too low.
	refused func(reason string)
}

// wrap refuses a request whose token's role is below what its route needs
// (requiredRole): 401 with a WWW-Authenticate challenge without a known
// token, 403 with one whose role is too low. It runs inside the browser
// guard, so CORS preflights (which carry no credentials) are answered
// before it and its refusals carry the CORS headers a page needs to read
// them.
func (a *clientAuth) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		need := requiredRole(r)
		if need == RoleNone {
			next.ServeHTTP(w, r)
			return
		}
		g := a.tokens.Load().grant(r)
		known, role := g != nil, RoleNone
		if known {
			role = g.role
			// The KV service checks each request's keys against the
			// token's prefix and masks its session ids (validated,
			// grantOf): the grant goes in the request's info, else (a
			// handler without withRequestID, in tests) a context value.
			if info, _ := r.Context().Value(requestInfoKey{}).(*requestInfo); info != nil {
				info.grant = g
			} else {
				r = r.WithContext(context.WithValue(r.Context(), grantKey{}, g))
			}
		}
		switch {
		case !known:
			if a.refused != nil {
				a.refused("unauthenticated")
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="durio"`)
			writeError(w, twirp.NewError(twirp.Unauthenticated,
				"this replica requires a client token: send \"Authorization: Bearer TOKEN\" (see --client-auth-file)"))
		case role < need:
			if a.refused != nil {
				a.refused("permission_denied")
			}
			writeError(w, twirp.NewError(twirp.PermissionDenied,
				"this needs a token with the "+need.String()+" role; the one given has the "+role.String()+" role"))
		case isLongPoll(r):
			// A long poll or watch stream may outlive its token (revoked by
			// a reload while it waits): its answer is checked again when it
			// starts (revocableWriter), and a stream asks again before each
			// message it sends (stillAuthorized).
			check := func() bool {
				now := a.tokens.Load().grant(r)
				return now != nil && now.role >= need && now.prefix == g.prefix
			}
			rw := &revocableWriter{ResponseWriter: w, check: check, refused: a.refused}
			next.ServeHTTP(rw, r.WithContext(context.WithValue(r.Context(), authCheckKey{}, check)))
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// revocableWriter answers 401 in place of a long poll's answer when the
// token that admitted the request was revoked while it waited.
type revocableWriter struct {
	http.ResponseWriter
	check   func() bool
	refused func(reason string)
	decided bool
	denied  bool
}

// decide checks the token once, at the answer's first byte or header.
func (w *revocableWriter) decide() {
	if w.decided {
		return
	}
	w.decided = true
	if w.check() {
		return
	}
	w.denied = true
	if w.refused != nil {
		w.refused("unauthenticated")
	}
	h := w.Header()
	h.Del(RevisionHeader) // the answer's own headers say nothing to a revoked token
	h.Del("Content-Type")
	h.Set("WWW-Authenticate", `Bearer realm="durio"`)
	writeError(w.ResponseWriter, twirp.NewError(twirp.Unauthenticated, "the client token was revoked while this request waited"))
}

func (w *revocableWriter) WriteHeader(code int) {
	if w.decide(); !w.denied {
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *revocableWriter) Write(b []byte) (int, error) {
	if w.decide(); w.denied {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (long polls
// move their write deadline, streams flush).
func (w *revocableWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type authCheckKey struct{}

type grantKey struct{}

// maxScopePrefixBytes bounds a token's key prefix (a key's own bound).
const maxScopePrefixBytes = 4 << 10

// grantOf is the grant of the token the request of ctx carries; nil when
// the listener checks no tokens.
func grantOf(ctx context.Context) *grant {
	if info, _ := ctx.Value(requestInfoKey{}).(*requestInfo); info != nil {
		return info.grant // wrap puts it there when the request has an info
	}
	g, _ := ctx.Value(grantKey{}).(*grant)
	return g
}

// keyScope is the key prefix the request of ctx is limited to by its
// token, "" for every key.
func keyScope(ctx context.Context) string {
	if g := grantOf(ctx); g != nil {
		return g.prefix
	}
	return ""
}

// maskSession turns the session id a client sent into the session's id in
// the cluster, and back (XOR is its own inverse), with the mask of the
// request's token: a client holding another token's session id (from a
// log, say) names a session that does not exist, so it can neither write
// under it, nor raise its floor, nor read its cached results. Without
// tokens, ids are as they are.
func maskSession(ctx context.Context, id uint64) uint64 {
	if g := grantOf(ctx); g != nil && id != 0 {
		return id ^ g.sessionMask
	}
	return id
}

// ReasonOutOfScope is the reason (meta "reason") of a permission_denied
// refusal of a key, listing or watch outside the token's key prefix, as
// opposed to a token whose role is too low.
const ReasonOutOfScope = "out_of_scope"

// outOfScope is the refusal of a key (or a listing or watch prefix) a
// token limited to prefix may not use; nil if it may.
func outOfScope(prefix, key, what string) error {
	if strings.HasPrefix(key, prefix) {
		return nil
	}
	return twirp.NewError(twirp.PermissionDenied, "this token may only use keys starting with "+strconv.Quote(prefix)+
		"; the "+what+" does not").WithMeta(kvwire.MetaReason, ReasonOutOfScope)
}

// stillAuthorized reports whether the token that admitted the request of
// ctx still allows it, the tokens having been reloaded since; true when
// the listener checks no tokens.
func stillAuthorized(ctx context.Context) bool {
	if check, _ := ctx.Value(authCheckKey{}).(func() bool); check != nil {
		return check()
	}
	return true
}

// The Twirp path prefixes of the client API's two services, and the role
// each of their methods and each REST write route needs (set by init).
var (
	kvServicePrefix     = kvv1.KVServicePathPrefix
	memberServicePrefix = kvv1.MembershipServicePathPrefix
	kvServiceRoles      = map[string]Role{}
	membershipRoles     = map[string]Role{}
	restWriteRoutes     = map[string]bool{}
)

func init() {
	for _, m := range []string{"Get", "Status", "List", "Watch", "LeaseTimeToLive"} {
		kvServiceRoles[m] = RoleRead
	}
	for _, m := range []string{"Put", "Append", "Delete", "Txn", "OpenSession", "LeaseGrant", "LeaseKeepAlive", "LeaseRevoke"} {
		kvServiceRoles[m] = RoleWrite
	}
	membershipRoles["MemberList"] = RoleRead
	for _, m := range []string{"MemberAdd", "MemberPromote", "MemberRemove"} {
		membershipRoles[m] = RoleAdmin
	}
	for _, p := range []string{"/kvstore/put", "/kvstore/append", "/kvstore/txn", "/kvstore/session",
		"/kvstore/lease/grant", "/kvstore/lease/keepalive", "/kvstore/lease/revoke"} {
		restWriteRoutes[p] = true
	}
}

// requiredRole is the least role a client request needs. Health, readiness
// and metrics (as etcd's) and the status page's HTML (which asks for a
// token when its data calls are refused) need none; a route not named here
// needs admin, so that one added later is closed until it is classified.
func requiredRole(r *http.Request) Role {
	p := r.URL.Path
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case get && (p == "/healthz" || p == "/readyz" || p == "/metrics" || p == "/"):
		return RoleNone
	case r.Method == http.MethodPost && strings.HasPrefix(p, kvServicePrefix):
		if role, ok := kvServiceRoles[p[len(kvServicePrefix):]]; ok {
			return role
		}
	case r.Method == http.MethodPost && strings.HasPrefix(p, memberServicePrefix):
		if role, ok := membershipRoles[p[len(memberServicePrefix):]]; ok {
			return role
		}
	case get && (p == "/status" || p == "/status/history" || strings.HasPrefix(p, "/kvstore/")):
		return RoleRead
	case r.Method == http.MethodPost && restWriteRoutes[p]:
		return RoleWrite
	case r.Method == http.MethodDelete && strings.HasPrefix(p, "/kvstore/"):
		return RoleWrite
	}
	return RoleAdmin
}

// NewClientTokenLine makes a line of a --client-auth-file: role (read,
// write or admin), a new random token (128 bits, in hexadecimal) and, if
// not "", the key prefix the token is limited to (read and write only).
func NewClientTokenLine(role, prefix string) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	line := role + " " + hex.EncodeToString(b[:])
	if prefix != "" {
		line += " " + prefix
	}
	if _, err := parseClientAuth([]byte(line)); err != nil {
		_, msg, _ := strings.Cut(err.Error(), ": ") // drop "line 1"
		return "", fmt.Errorf("%w: %s", ErrUsage, msg)
	}
	return line, nil
}

// FirstClientToken returns the first token of a --client-auth-file, after
// checking the whole file as durio serve does: what a tool that follows a
// cluster it started (durio dev, tests) asks with. Every role may read the
// status.
func FirstClientToken(path string) (string, error) {
	t, err := readClientAuth(path)
	if err != nil {
		return "", err
	}
	return t.first, nil
}
