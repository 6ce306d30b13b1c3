package durio

// Review of the client authentication of commit 81b44af. The tests named
// TestReviewSound* pass: they pin down what was checked and found sound.
// The others fail on 81b44af and describe the problem they show.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// recordingKV is a KVService that records the methods called. Watch, when
// gate is set, signals entered on its first call and waits for release
// before it answers with an event carrying secretAfterRevoke; Get answers
// that value too.
type recordingKV struct {
	mu      sync.Mutex
	calls   []string
	gate    bool
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

const secretAfterRevoke = "written-after-the-token-was-revoked"

func newRecordingKV(gate bool) *recordingKV {
	return &recordingKV{gate: gate, entered: make(chan struct{}), release: make(chan struct{})}
}

func (s *recordingKV) rec(m string) {
	s.mu.Lock()
	s.calls = append(s.calls, m)
	s.mu.Unlock()
}

func (s *recordingKV) called() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

func reviewHeader() *kvv1.ResponseHeader {
	return &kvv1.ResponseHeader{ReplicaId: 1, LeaderId: 1, Term: 1, Revision: 5}
}

func (s *recordingKV) Get(_ context.Context, req *kvv1.GetRequest) (*kvv1.GetResponse, error) {
	s.rec("Get")
	return &kvv1.GetResponse{Header: reviewHeader(), Key: req.GetKey(), Value: secretAfterRevoke, ModRevision: 5, CreateRevision: 5, Version: 1}, nil
}
func (s *recordingKV) Txn(context.Context, *kvv1.TxnRequest) (*kvv1.TxnResponse, error) {
	s.rec("Txn")
	return &kvv1.TxnResponse{Header: reviewHeader(), Succeeded: true}, nil
}
func (s *recordingKV) Put(context.Context, *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	s.rec("Put")
	return &kvv1.PutResponse{Header: reviewHeader()}, nil
}
func (s *recordingKV) Append(context.Context, *kvv1.AppendRequest) (*kvv1.AppendResponse, error) {
	s.rec("Append")
	return &kvv1.AppendResponse{Header: reviewHeader()}, nil
}
func (s *recordingKV) Delete(context.Context, *kvv1.DeleteRequest) (*kvv1.DeleteResponse, error) {
	s.rec("Delete")
	return &kvv1.DeleteResponse{Header: reviewHeader()}, nil
}
func (s *recordingKV) Status(context.Context, *kvv1.StatusRequest) (*kvv1.StatusResponse, error) {
	s.rec("Status")
	return &kvv1.StatusResponse{ReplicaId: 1, LeaderId: 1, LeaderKnown: true, Revision: 1}, nil
}
func (s *recordingKV) OpenSession(context.Context, *kvv1.OpenSessionRequest) (*kvv1.OpenSessionResponse, error) {
	s.rec("OpenSession")
	return &kvv1.OpenSessionResponse{}, nil
}
func (s *recordingKV) List(context.Context, *kvv1.ListRequest) (*kvv1.ListResponse, error) {
	s.rec("List")
	return &kvv1.ListResponse{Header: reviewHeader()}, nil
}
func (s *recordingKV) Watch(ctx context.Context, req *kvv1.WatchRequest) (*kvv1.WatchResponse, error) {
	s.rec("Watch")
	if s.gate && req.GetWaitMs() > 0 {
		s.once.Do(func() { close(s.entered) })
		select {
		case <-s.release:
		case <-ctx.Done():
			return &kvv1.WatchResponse{Header: reviewHeader(), NextAfterRevision: req.GetAfterRevision()}, nil
		}
	}
	if req.GetWaitMs() == 0 {
		return &kvv1.WatchResponse{Header: reviewHeader(), NextAfterRevision: req.GetAfterRevision()}, nil
	}
	return &kvv1.WatchResponse{Header: reviewHeader(), NextAfterRevision: 5, Events: []*kvv1.Event{{
		Type: kvv1.EventType_EVENT_TYPE_PUT,
		Kv:   &kvv1.KeyValue{Key: req.GetKey(), Value: secretAfterRevoke, CreateRevision: 5, ModRevision: 5, Version: 1},
	}}}, nil
}
func (s *recordingKV) LeaseGrant(context.Context, *kvv1.LeaseGrantRequest) (*kvv1.LeaseGrantResponse, error) {
	s.rec("LeaseGrant")
	return &kvv1.LeaseGrantResponse{Header: reviewHeader(), Id: 1, TtlMs: 1000}, nil
}
func (s *recordingKV) LeaseKeepAlive(context.Context, *kvv1.LeaseKeepAliveRequest) (*kvv1.LeaseKeepAliveResponse, error) {
	s.rec("LeaseKeepAlive")
	return &kvv1.LeaseKeepAliveResponse{Header: reviewHeader()}, nil
}
func (s *recordingKV) LeaseRevoke(context.Context, *kvv1.LeaseRevokeRequest) (*kvv1.LeaseRevokeResponse, error) {
	s.rec("LeaseRevoke")
	return &kvv1.LeaseRevokeResponse{Header: reviewHeader()}, nil
}
func (s *recordingKV) LeaseTimeToLive(context.Context, *kvv1.LeaseTimeToLiveRequest) (*kvv1.LeaseTimeToLiveResponse, error) {
	s.rec("LeaseTimeToLive")
	return &kvv1.LeaseTimeToLiveResponse{Header: reviewHeader()}, nil
}

// recordingMembers records the membership calls.
type recordingMembers struct{ kv *recordingKV }

func (m recordingMembers) MemberList(context.Context, *kvv1.MemberListRequest) (*kvv1.MemberListResponse, error) {
	m.kv.rec("MemberList")
	return &kvv1.MemberListResponse{}, nil
}
func (m recordingMembers) MemberAdd(context.Context, *kvv1.MemberAddRequest) (*kvv1.MemberAddResponse, error) {
	m.kv.rec("MemberAdd")
	return &kvv1.MemberAddResponse{}, nil
}
func (m recordingMembers) MemberPromote(context.Context, *kvv1.MemberPromoteRequest) (*kvv1.MemberPromoteResponse, error) {
	m.kv.rec("MemberPromote")
	return &kvv1.MemberPromoteResponse{}, nil
}
func (m recordingMembers) MemberRemove(context.Context, *kvv1.MemberRemoveRequest) (*kvv1.MemberRemoveResponse, error) {
	m.kv.rec("MemberRemove")
	return &kvv1.MemberRemoveResponse{}, nil
}

// reviewTokens are the tokens the review's handlers start with.
func reviewTokens(t *testing.T, file string) *clientTokens {
	t.Helper()
	tok, err := parseClientAuth([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// startReviewHandler serves clientHandler (as a replica wires it, with the
// admin routes the replica adds) over svc, guarded by auth, on 127.0.0.1.
func startReviewHandler(t *testing.T, svc *recordingKV, auth *clientAuth) string {
	t.Helper()
	limits := DefaultLimits()
	limits.MaxWatchWait = 30 * time.Second
	limits.RequestTimeout = 2 * time.Second
	limits.auth = auth
	extra := func(mux *http.ServeMux) {
		mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "# metrics\n") })
		ms := kvv1.NewMembershipServiceServer(recordingMembers{kv: svc})
		mux.Handle("POST "+ms.PathPrefix(), ms)
		mux.HandleFunc("GET /admin/snapshot", func(w http.ResponseWriter, r *http.Request) {
			svc.rec("Snapshot")
			_, _ = io.WriteString(w, "SNAPSHOT")
		})
		mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) { svc.rec("StatusPage") })
		mux.HandleFunc("GET /status/history", func(w http.ResponseWriter, r *http.Request) { svc.rec("History") })
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "<html>") })
	}
	srv := httptest.NewServer(clientHandler(svc, limits, extra))
	t.Cleanup(srv.Close)
	return srv.URL
}

// rawRequest sends one request exactly as written (no client-side
// cleaning of the path) and returns the status code.
func rawRequest(t *testing.T, addr, method, target, token, contentType, body string, extra ...string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, addr)
	if token != "" {
		fmt.Fprintf(&b, "Authorization: Bearer %s\r\n", token)
	}
	if contentType != "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\n", contentType)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", extra[i], extra[i+1])
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestReviewSoundRouteMatrix (passes): with a read token, no path trick
// reaches a write or admin handler, and without a token nothing but the
// open routes is answered. Requests go out byte for byte (raw TCP), so the
// server sees the uncleaned paths.
func TestReviewSoundRouteMatrix(t *testing.T) {
	svc := newRecordingKV(false)
	auth := &clientAuth{}
	auth.tokens.Store(reviewTokens(t, "read "+testReadToken+"\nwrite "+testWriteToken+"\nadmin "+testAdminToken+"\n"))
	base := startReviewHandler(t, svc, auth)
	addr := strings.TrimPrefix(base, "http://")
	const (
		js = "application/json"
		pb = "application/protobuf"
	)
	put := `{"key":"k","value":"v"}`
	add := `{"id":9,"peer_url":"http://127.0.0.1:9","client_url":"http://127.0.0.1:9"}`
	type req struct{ method, target, ct, body string }
	writes := []req{
		{"POST", "/twirp/kv.v1.KVService/Put", js, put},
		{"POST", "/twirp/kv.v1.KVService/Put", pb, ""},
		{"POST", "/twirp/kv.v1.KVService/put", js, put},
		{"POST", "/twirp/kv.v1.KVService/PUT", js, put},
		{"POST", "/twirp/kv.v1.KVService/Put/", js, put},
		{"POST", "/twirp/kv.v1.KVService//Put", js, put},
		{"POST", "/twirp/kv.v1.KVService/./Put", js, put},
		{"POST", "/twirp/kv.v1.KVService/Get/../Put", js, put},
		{"POST", "/twirp/kv.v1.KVService%2FPut", js, put},
		{"POST", "/twirp/kv.v1.KVService/%50ut", js, put},
		{"POST", "/twirp/kv.v1.KVService/Put%2F", js, put},
		{"POST", "/twirp//kv.v1.KVService/Put", js, put},
		{"POST", "//twirp/kv.v1.KVService/Put", js, put},
		{"POST", "/twirp/kv.v1.KVService/Put?x=Get", js, put},
		{"POST", "/twirp/kv.v1.KVService/Put;Get", js, put},
		{"POST", "http://" + addr + "/twirp/kv.v1.KVService/Put", js, put},
		{"POST", "/twirp/kv.v1.KVService/OpenSession", js, `{}`},
		{"POST", "/twirp/kv.v1.KVService/LeaseGrant", js, `{"ttl_ms":1000}`},
		{"POST", "/twirp/kv.v1.KVService/LeaseKeepAlive", js, `{"id":1}`},
		{"POST", "/twirp/kv.v1.KVService/LeaseRevoke", js, `{"id":1}`},
		{"POST", "/twirp/kv.v1.KVService/Delete", js, `{"key":"k"}`},
		{"POST", "/twirp/kv.v1.KVService/Append", js, put},
		{"POST", "/twirp/kv.v1.MembershipService/MemberAdd", js, add},
		{"POST", "/twirp/kv.v1.MembershipService/memberadd", js, add},
		{"POST", "/twirp/kv.v1.MembershipService/MemberList/../MemberAdd", js, add},
		{"POST", "/twirp/kv.v1.MembershipService/MemberRemove", js, `{"id":9}`},
		{"POST", "/twirp/kv.v1.MembershipService/MemberPromote", js, `{"id":9}`},
		{"POST", "/kvstore/put", js, put},
		{"POST", "/kvstore/put/", js, put},
		{"POST", "//kvstore/put", js, put},
		{"POST", "/kvstore//put", js, put},
		{"POST", "/kvstore/./put", js, put},
		{"POST", "/kvstore/get/../put", js, put},
		{"POST", "/kvstore/%70ut", js, put},
		{"POST", "/KVSTORE/put", js, put},
		{"POST", "/kvstore/session", js, `{}`},
		{"POST", "/kvstore/lease/grant", js, `{"ttl_ms":1000}`},
		{"POST", "/kvstore/lease/keepalive", js, `{"id":1}`},
		{"POST", "/kvstore/lease/revoke", js, `{"id":1}`},
		{"DELETE", "/kvstore/k", "", ""},
		{"DELETE", "/kvstore/get/k", "", ""},
		{"PUT", "/kvstore/put", js, put},
		{"PATCH", "/kvstore/put", js, put},
		{"GET", "/admin/snapshot", "", ""},
		{"HEAD", "/admin/snapshot", "", ""},
		{"GET", "/admin/snapshot/", "", ""},
		{"GET", "//admin/snapshot", "", ""},
		{"GET", "/admin//snapshot", "", ""},
		{"GET", "/ADMIN/snapshot", "", ""},
		{"GET", "/admin/%73napshot", "", ""},
		{"GET", "/kvstore/../admin/snapshot", "", ""},
		{"GET", "/kvstore/%2e%2e/admin/snapshot", "", ""},
		{"GET", "/kvstore%2F..%2Fadmin/snapshot", "", ""},
		{"GET", "/status/../admin/snapshot", "", ""},
		{"GET", "/./admin/snapshot", "", ""},
		{"GET", "/healthz/../admin/snapshot", "", ""},
		{"GET", "/metrics/../admin/snapshot", "", ""},
		{"GET", "http://" + addr + "/admin/snapshot", "", ""},
		{"CONNECT", "/admin/snapshot", "", ""},
		{"OPTIONS", "/admin/snapshot", "", ""},
	}
	for _, r := range writes {
		for _, override := range [][]string{nil, {"X-HTTP-Method-Override", "GET"}} {
			code := rawRequest(t, addr, r.method, r.target, testReadToken, r.ct, r.body, override...)
			if code >= 200 && code < 300 {
				t.Errorf("read token: %s %s %v: %d", r.method, r.target, override, code)
			}
		}
	}
	// A key may hold anything: this is a read of the key
	// "../../admin/snapshot", not the snapshot route.
	if code := rawRequest(t, addr, "GET", "/kvstore/get/..%2F..%2Fadmin/snapshot", testReadToken, "", ""); code != http.StatusOK {
		t.Errorf("read token: a get of the key ../../admin/snapshot: %d", code)
	}
	for _, c := range svc.called() {
		switch c {
		case "Get", "List", "Watch", "Status", "LeaseTimeToLive", "MemberList", "StatusPage", "History":
		default:
			t.Errorf("a read token reached %s", c)
		}
	}

	// Without a token: only /, /healthz and /metrics answer 2xx; nothing
	// reaches the service.
	before := len(svc.called())
	reads := []req{
		{"GET", "/kvstore/get/k", "", ""},
		{"HEAD", "/kvstore/get/k", "", ""},
		{"GET", "/kvstore/watch/k?stream=true", "", ""},
		{"GET", "/kvstore/list", "", ""},
		{"GET", "/status", "", ""},
		{"GET", "/status/", "", ""},
		{"GET", "/status/history", "", ""},
		{"GET", "/./status", "", ""},
		{"GET", "//status", "", ""},
		{"GET", "/%73tatus", "", ""},
		{"GET", "/metrics/../status", "", ""},
		{"GET", "/healthz/../kvstore/get/k", "", ""},
		{"GET", "/../kvstore/get/k", "", ""},
		{"POST", "/twirp/kv.v1.KVService/Get", js, `{"key":"k"}`},
		{"POST", "/twirp/kv.v1.KVService/Watch", js, `{"key":"k","wait_ms":1}`},
		{"POST", "/twirp/kv.v1.MembershipService/MemberList", js, `{}`},
		{"OPTIONS", "/kvstore/get/k", "", ""},
	}
	for _, r := range append(reads, writes...) {
		code := rawRequest(t, addr, r.method, r.target, "", r.ct, r.body)
		if code >= 200 && code < 300 {
			t.Errorf("no token: %s %s: %d", r.method, r.target, code)
		}
	}
	if got := svc.called()[before:]; len(got) != 0 {
		t.Errorf("requests without a token reached %v", got)
	}
	for _, p := range []string{"/", "/healthz", "/metrics"} {
		if code := rawRequest(t, addr, "GET", p, "", "", ""); code != http.StatusOK {
			t.Errorf("GET %s without a token: %d", p, code)
		}
	}
	// Header tricks that must not authenticate.
	for name, h := range map[string][]string{
		"tab":           {"Authorization", "Bearer\t" + testAdminToken},
		"two headers":   {"Authorization", "Bearer " + testAdminToken, "Authorization", "Bearer " + testReadToken},
		"comma joined":  {"Authorization", "Bearer " + testReadToken + ", Bearer " + testAdminToken},
		"token only":    {"Authorization", testAdminToken},
		"basic":         {"Authorization", "Basic " + testAdminToken},
		"other header":  {"X-Authorization", "Bearer " + testAdminToken},
		"proxy header":  {"Proxy-Authorization", "Bearer " + testAdminToken},
		"non-ASCII":     {"Authorization", "Bearer " + testAdminToken + "\u00e9"},
		"trailing junk": {"Authorization", "Bearer " + testAdminToken + "x"},
	} {
		if code := rawRequest(t, addr, "GET", "/admin/snapshot", "", "", "", h...); code != http.StatusUnauthorized {
			t.Errorf("%s: GET /admin/snapshot: %d", name, code)
		}
	}
}

// TestReviewRevokedTokenPendingLongPolls failed on 81b44af: a long poll
// admitted before its token was revoked (SIGHUP, ReloadClientAuth) still
// answers with what was written after the revocation, for up to
// --max-watch-wait (60 s by default). Only the REST watch *stream* asks
// stillAuthorized; the Twirp Watch long poll, the REST watch long poll and
// the REST blocking queries (?index=) do not. The service here blocks in
// Watch until the token is revoked, then "sees" a change.
func TestReviewRevokedTokenPendingLongPolls(t *testing.T) {
	for name, c := range map[string]struct{ method, path, body string }{
		"twirp watch":    {"POST", "/twirp/kv.v1.KVService/Watch", `{"key":"k","after_revision":1,"wait_ms":30000}`},
		"rest watch":     {"GET", "/kvstore/watch/k?index=1&wait=30s", ""},
		"blocking get":   {"GET", "/kvstore/get/k?index=1&wait=30s", ""},
		"rest stream ok": {"GET", "/kvstore/watch/k?index=1&wait=30s&stream=true", ""},
		// The handlers decode the query's names: a percent-encoded
		// "index" blocks as well, and was not taken for a long poll, so
		// it answered with the change after the revocation.
		"blocking get, encoded index":  {"GET", "/kvstore/get/k?%69ndex=1&wait=30s", ""},
		"blocking list, encoded index": {"GET", "/kvstore/list?prefix=k&%69ndex=1&wait=30s", ""},
	} {
		t.Run(name, func(t *testing.T) {
			svc := newRecordingKV(true)
			auth := &clientAuth{}
			auth.tokens.Store(reviewTokens(t, "read "+testReadToken+"\nwrite "+testWriteToken+"\n"))
			base := startReviewHandler(t, svc, auth)
			type answer struct {
				code int
				body string
				err  error
			}
			done := make(chan answer, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			go func() {
				req, _ := http.NewRequestWithContext(ctx, c.method, base+c.path, strings.NewReader(c.body))
				req.Header.Set("Authorization", "Bearer "+testReadToken)
				if c.body != "" {
					req.Header.Set("Content-Type", "application/json")
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					done <- answer{err: err}
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				done <- answer{code: resp.StatusCode, body: string(b)}
			}()
			select {
			case <-svc.entered:
			case a := <-done:
				t.Fatalf("answered before waiting: %+v", a)
			case <-ctx.Done():
				t.Fatal("the long poll never reached Watch")
			}
			// Revoke the read token, as ReloadClientAuth does.
			auth.tokens.Store(reviewTokens(t, "write "+testWriteToken+"\n"))
			close(svc.release)
			var a answer
			select {
			case a = <-done:
			case <-ctx.Done():
				t.Fatal("no answer within 10s")
			}
			if a.err != nil {
				t.Fatalf("the long poll failed: %v", a.err)
			}
			if strings.Contains(a.body, secretAfterRevoke) {
				t.Fatalf("after its token was revoked the long poll delivered a later change: %d %s", a.code, a.body)
			}
			if !strings.Contains(c.path, "stream=true") && (a.code != http.StatusUnauthorized || twirpCode(a.body) != "unauthenticated") {
				t.Fatalf("a long poll whose token was revoked answered %d %s, want 401 unauthenticated", a.code, a.body)
			}
		})
	}
}

// TestReviewStatusPageAsksForToken failed on 81b44af (fixed since): requiredRole keeps
// the status page's HTML open because the page "asks for a token when its
// data calls are refused", but the page never sends Authorization: with
// --client-auth-file its fetch("status") and fetch("status/history") get
// 401 and the page shows nothing (browsers do not prompt for a Bearer
// challenge).
func TestReviewStatusPageAsksForToken(t *testing.T) {
	page := string(statusPage)
	if !strings.Contains(page, "Authorization") {
		t.Fatal("the status page never sends an Authorization header, so it cannot work with --client-auth-file")
	}
}

// TestReviewSoundJoinDoesNotFollowRedirects (passes): a --join target that
// redirects does not get the joiner's admin token re-sent to the host the
// redirect names, because the Twirp clients refuse redirects (the client
// package's WithToken leaks on plain requests; see
// durio/client/auth_review_test.go). The other host is named
// other-host.invalid and dialled at 127.0.0.1.
func TestReviewSoundJoinDoesNotFollowRedirects(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer other.Close()
	_, otherPort, _ := net.SplitHostPort(other.Listener.Addr().String())
	var firstAuth []string
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		firstAuth = append(firstAuth, r.Header.Get("Authorization"))
		mu.Unlock()
		http.Redirect(w, r, "http://other-host.invalid:"+otherPort+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	defer first.Close()
	d := &net.Dialer{Timeout: 2 * time.Second}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
	}}}
	defer hc.CloseIdleConnections()
	cfg := DefaultConfig()
	cfg.ID, cfg.Join, cfg.PeerURL, cfg.ListenClient = 2, []string{first.URL}, "http://127.0.0.1:7002", "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.clientTokens = reviewTokens(t, "admin "+testAdminToken+"\n")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := prepareJoin(ctx, cfg, persist.NewMemory(), hc, discardLogger()); err == nil {
		t.Fatal("a join through a redirect succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(firstAuth) == 0 || firstAuth[0] != "Bearer "+testAdminToken {
		t.Fatalf("the --join target got %q, want the admin token", firstAuth)
	}
	if len(seen) != 0 {
		t.Fatalf("the joiner followed the redirect: the other host got %q", seen)
	}
}

// Client tokens do not guard a peer listener that has neither a peer
// token nor mutual TLS (it serves the KV and membership services to
// forwarding replicas): the replica says so at start.
func TestReviewClientAuthWarnsOfOpenPeers(t *testing.T) {
	authFile := filepath.Join(t.TempDir(), "tokens")
	writeAuthFile(t, authFile, "read "+testReadToken+"\n")
	for _, peerToken := range []string{"", "s3cret-s3cret-s3cret"} {
		cfg := oneMemberConfig(t)
		cfg.ClientAuthFile = authFile
		cfg.PeerToken = peerToken
		logs := &syncWriterBuf{b: new(bytes.Buffer)}
		r, err := StartReplica(cfg, persist.NewNoop(), slog.New(slog.NewJSONHandler(logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		_ = r.Close(context.Background())
		logs.mu.Lock()
		text := logs.b.String()
		logs.mu.Unlock()
		warned := strings.Contains(text, "client tokens do not guard the peer listener")
		if warned != (peerToken == "") {
			t.Errorf("peer token %q: warned %v; log:\n%s", peerToken, warned, text)
		}
	}
}

// TestReviewReadmeDocumentsClientAuth failed on 81b44af (fixed since): the commit left the
// README's Security section saying the client listener has no
// authentication, and the flag table without --client-auth-file, SIGHUP or
// the CLI's --token-file and exit code 8.
func TestReviewReadmeDocumentsClientAuth(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	if strings.Contains(readme, "durio itself has no client authentication") {
		t.Error("the README still says durio has no client authentication")
	}
	for _, want := range []string{"--client-auth-file", "--token-file"} {
		if !strings.Contains(readme, want) {
			t.Errorf("the README does not mention %s", want)
		}
	}
}
