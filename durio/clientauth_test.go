package durio

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ruaft/ruaft/persist"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

const (
	testReadToken  = "r-0123456789abcdef"
	testWriteToken = "w-0123456789abcdef"
	testAdminToken = "a-0123456789abcdef"
)

func writeAuthFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestParseClientAuth(t *testing.T) {
	good := "# durio client tokens\n\nread  " + testReadToken + "\r\nwrite\t" + testWriteToken + "\n  admin " + testAdminToken + "  \nadmin a-second-admin-token\n"
	tok, err := parseClientAuth([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(tok.roles) != 4 || tok.admin != testAdminToken {
		t.Fatalf("parsed %d tokens, first admin %q", len(tok.roles), tok.admin)
	}
	scoped, err := parseClientAuth([]byte("write " + testWriteToken + " app/\nread " + testReadToken + " app/public/\n"))
	if err != nil {
		t.Fatal(err)
	}
	for token, want := range map[string]grant{testWriteToken: {role: RoleWrite, prefix: "app/"}, testReadToken: {role: RoleRead, prefix: "app/public/"}} {
		got := scoped.roles[sha256.Sum256([]byte(token))]
		if got == nil || got.role != want.role || got.prefix != want.prefix || got.sessionMask == 0 || got.sessionMask >= 1<<53 {
			t.Errorf("%s: %+v, want %+v with a 53-bit session mask", token[:1], got, want)
		}
	}
	if sessionMask(testWriteToken) == sessionMask(testReadToken) {
		t.Error("two tokens share a session mask")
	}
	secret := "s3cret-s3cret-s3cret"
	for name, tc := range map[string]struct{ file, want string }{
		"empty":          {"", "no tokens"},
		"only comments":  {"# read " + secret + "\n", "no tokens"},
		"unknown role":   {"root " + secret + "\n", `line 1: role "root"`},
		"missing token":  {"read\n", "line 1: want"},
		"short token":    {"# x\nread short-token\n", "line 2: a token must be 16"},
		"long token":     {"read " + strings.Repeat("x", 257) + "\n", "line 1: a token must be 16"},
		"non-ASCII":      {"read " + secret + "é\n", "printable ASCII"},
		"control byte":   {"read " + secret + "\x7f\n", "printable ASCII"},
		"duplicate":      {"read " + secret + "\nadmin " + secret + "\n", "line 2: the same token"},
		"role uppercase": {"READ " + secret + "\n", `role "READ"`},
		"four fields":    {"read " + secret + " app/ x\n", "line 1: want"},
		"admin prefix":   {"admin " + secret + " app/\n", "line 1: an admin token cannot be limited"},
		"bad prefix":     {"write " + secret + " \xff\n", "line 1: a key prefix must be valid UTF-8"},
		"long prefix":    {"write " + secret + " " + strings.Repeat("p", 4097) + "\n", "at most 4096 bytes"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseClientAuth([]byte(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error %q shows the token", err)
			}
		})
	}

	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	writeAuthFile(t, big, strings.Repeat("#", maxClientAuthBytes+1))
	if _, err := readClientAuth(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("a file over the bound: %v", err)
	}
	cfg := DefaultConfig()
	cfg.Peers = []string{"http://127.0.0.1:7001"}
	cfg.ListenClient = "127.0.0.1:0"
	cfg.DataDir = dir
	cfg.ClientAuthFile = filepath.Join(dir, "missing")
	if err := cfg.Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "client-auth-file") {
		t.Fatalf("a missing auth file: %v", err)
	}
}

// Every method of the client API's services has a role of its own; one
// added to a proto later fails here until it is classified (until then
// it needs admin).
func TestRequiredRoleCoversEveryMethod(t *testing.T) {
	for _, svc := range []struct {
		desc  protoreflect.ServiceDescriptor
		roles map[string]Role
	}{
		{kvv1.File_kv_v1_kv_proto.Services().ByName("KVService"), kvServiceRoles},
		{kvv1.File_kv_v1_membership_proto.Services().ByName("MembershipService"), membershipRoles},
	} {
		methods := svc.desc.Methods()
		for i := 0; i < methods.Len(); i++ {
			if _, ok := svc.roles[string(methods.Get(i).Name())]; !ok {
				t.Errorf("%s.%s has no role in clientauth.go", svc.desc.Name(), methods.Get(i).Name())
			}
		}
		if methods.Len() != len(svc.roles) {
			t.Errorf("%s: %d methods, %d roles", svc.desc.Name(), methods.Len(), len(svc.roles))
		}
	}
	for _, tc := range []struct {
		method, path string
		want         Role
	}{
		{"GET", "/healthz", RoleNone},
		{"GET", "/metrics", RoleNone},
		{"GET", "/", RoleNone},
		{"HEAD", "/", RoleNone},
		{"POST", "/", RoleAdmin},
		{"GET", "/status", RoleRead},
		{"GET", "/status/history", RoleRead},
		{"GET", "/kvstore/get/a", RoleRead},
		{"GET", "/kvstore/list", RoleRead},
		{"GET", "/kvstore/watch/a", RoleRead},
		{"GET", "/kvstore/is_leader", RoleRead},
		{"GET", "/kvstore/lease/12", RoleRead},
		{"POST", "/kvstore/put", RoleWrite},
		{"POST", "/kvstore/append", RoleWrite},
		{"POST", "/kvstore/session", RoleWrite},
		{"POST", "/kvstore/lease/grant", RoleWrite},
		{"POST", "/kvstore/lease/keepalive", RoleWrite},
		{"POST", "/kvstore/lease/revoke", RoleWrite},
		{"DELETE", "/kvstore/a", RoleWrite},
		{"POST", "/kvstore/get/a", RoleAdmin},
		{"POST", "/twirp/kv.v1.KVService/Get", RoleRead},
		{"POST", "/twirp/kv.v1.KVService/Watch", RoleRead},
		{"POST", "/twirp/kv.v1.KVService/Put", RoleWrite},
		{"POST", "/twirp/kv.v1.KVService/Nope", RoleAdmin},
		{"GET", "/twirp/kv.v1.KVService/Get", RoleAdmin},
		{"POST", "/twirp/kv.v1.MembershipService/MemberList", RoleRead},
		{"POST", "/twirp/kv.v1.MembershipService/MemberRemove", RoleAdmin},
		{"POST", "/twirp/kv.v1.ForwardService/Forward", RoleAdmin},
		{"GET", "/admin/snapshot", RoleAdmin},
		{"GET", "/debug/pprof/", RoleAdmin},
		{"OPTIONS", "/kvstore/put", RoleAdmin},
	} {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		if got := requiredRole(r); got != tc.want {
			t.Errorf("%s %s needs %v, want %v", tc.method, tc.path, got, tc.want)
		}
	}
}

// startAuthReplica starts a one-member replica whose client listener
// checks the tokens of authFile, and waits until it leads.
func startAuthReplica(t *testing.T, authFile string) (*Replica, string) {
	t.Helper()
	cfg := oneMemberConfig(t)
	cfg.ClientAuthFile = authFile
	cfg.CORSOrigins = []string{"https://app.example"}
	r, err := StartReplica(cfg, persist.NewNoop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	base := "http://" + r.ClientAddr()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body, _ := authDo(t, "GET", base+"/kvstore/is_leader", testReadToken, "")
		if code == http.StatusOK && strings.Contains(body, `"leader":true`) {
			return r, base
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader after 10s: %d %s", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// authDo sends one request with token as its bearer token ("" for none)
// and returns the status, the body and the answer's headers.
func authDo(t *testing.T, method, url, token, body string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func twirpCode(body string) string {
	var e struct{ Code string }
	_ = json.Unmarshal([]byte(body), &e)
	return e.Code
}

func TestReplicaClientAuth(t *testing.T) {
	authFile := filepath.Join(t.TempDir(), "tokens")
	writeAuthFile(t, authFile, "read "+testReadToken+"\nwrite "+testWriteToken+"\nadmin "+testAdminToken+"\n")
	r, base := startAuthReplica(t, authFile)

	// Open without a token: health, metrics, the status page's HTML.
	for _, p := range []string{"/healthz", "/metrics", "/"} {
		if code, body, _ := authDo(t, "GET", base+p, "", ""); code != http.StatusOK {
			t.Errorf("GET %s without a token: %d %s", p, code, body)
		}
	}
	// No token, an unknown one, another scheme, two headers: 401 with a
	// challenge, before the request reaches the cluster.
	for name, req := range map[string]struct {
		token string
		hdr   []string
	}{
		"none":        {},
		"unknown":     {token: "x-0123456789abcdef"},
		"prefix":      {token: testAdminToken[:len(testAdminToken)-1]},
		"basic":       {hdr: []string{"Authorization", "Basic " + testAdminToken}},
		"two headers": {hdr: []string{"Authorization", "Bearer " + testAdminToken, "Authorization", "Bearer " + testAdminToken}},
		"no space":    {hdr: []string{"Authorization", "Bearer" + testAdminToken}},
	} {
		for _, c := range []struct{ method, path, body string }{
			{"GET", "/kvstore/get/k", ""},
			{"POST", "/kvstore/put", `{"key":"k","value":"v"}`},
			{"POST", "/twirp/kv.v1.KVService/Get", `{"key":"k"}`},
			{"GET", "/status", ""},
			{"GET", "/admin/snapshot", ""},
			{"GET", "/no/such/route", ""},
		} {
			code, body, h := authDo(t, c.method, base+c.path, req.token, c.body, req.hdr...)
			if code != http.StatusUnauthorized || twirpCode(body) != "unauthenticated" || h.Get("WWW-Authenticate") != `Bearer realm="durio"` {
				t.Errorf("%s: %s %s: %d %s %q", name, c.method, c.path, code, body, h.Get("WWW-Authenticate"))
			}
			if strings.Contains(body, testAdminToken[:10]) {
				t.Errorf("%s: the answer shows the token: %s", name, body)
			}
		}
	}
	if code, body, _ := authDo(t, "GET", base+"/kvstore/get/k", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("a refused put wrote: %d %s", code, body)
	}

	// Each role: what it may do and what it may not (403).
	steps := []struct {
		token, method, path, body string
		want                      int
	}{
		{testReadToken, "POST", "/kvstore/put", `{"key":"k","value":"v"}`, http.StatusForbidden},
		{testReadToken, "POST", "/twirp/kv.v1.KVService/Put", `{"key":"k","value":"v"}`, http.StatusForbidden},
		{testReadToken, "DELETE", "/kvstore/k", "", http.StatusForbidden},
		{testReadToken, "POST", "/kvstore/lease/grant", `{"ttl_ms":5000}`, http.StatusForbidden},
		{testReadToken, "GET", "/kvstore/get/k", "", http.StatusNotFound},
		{testWriteToken, "POST", "/kvstore/put", `{"key":"k","value":"v"}`, http.StatusOK},
		{testReadToken, "GET", "/kvstore/get/k", "", http.StatusOK},
		{testReadToken, "POST", "/twirp/kv.v1.KVService/Get", `{"key":"k"}`, http.StatusOK},
		{testReadToken, "GET", "/kvstore/list?prefix=k", "", http.StatusOK},
		{testReadToken, "GET", "/status", "", http.StatusOK},
		{testReadToken, "POST", "/twirp/kv.v1.MembershipService/MemberList", `{}`, http.StatusOK},
		{testReadToken, "GET", "/admin/snapshot", "", http.StatusForbidden},
		{testWriteToken, "GET", "/admin/snapshot", "", http.StatusForbidden},
		{testWriteToken, "POST", "/twirp/kv.v1.MembershipService/MemberRemove", `{"id":7}`, http.StatusForbidden},
		{testWriteToken, "DELETE", "/kvstore/k", "", http.StatusOK},
		{testAdminToken, "GET", "/admin/snapshot", "", http.StatusOK},
		{testAdminToken, "POST", "/kvstore/put", `{"key":"k2","value":"v"}`, http.StatusOK},
		{testAdminToken, "GET", "/no/such/route", "", http.StatusNotFound},
	}
	for _, s := range steps {
		code, body, _ := authDo(t, s.method, base+s.path, s.token, s.body)
		if code != s.want || code == http.StatusForbidden && twirpCode(body) != "permission_denied" {
			t.Errorf("%s with the %s token: %d %s, want %d", s.method+" "+s.path, s.token[:1], code, body, s.want)
		}
	}

	// Browsers: a preflight needs no token and allows the header; a
	// refusal carries the CORS headers, so the page can read it.
	code, _, h := authDo(t, "OPTIONS", base+"/kvstore/put", "", "", "Origin", "https://app.example",
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type")
	if code != http.StatusNoContent || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight: %d, allow-headers %q", code, h.Get("Access-Control-Allow-Headers"))
	}
	code, _, h = authDo(t, "GET", base+"/kvstore/get/k", "", "", "Origin", "https://app.example")
	if code != http.StatusUnauthorized || h.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(h.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
		t.Errorf("cross-origin refusal: %d %v", code, h)
	}
	code, _, _ = authDo(t, "GET", base+"/kvstore/get/k", testReadToken, "", "Origin", "https://evil.example")
	if code != http.StatusForbidden {
		t.Errorf("a token does not lift the origin rule: %d", code)
	}

	_, metrics, _ := authDo(t, "GET", base+"/metrics", "", "")
	for _, want := range []string{`durio_client_auth_refused_total{reason="unauthenticated"}`, `durio_client_auth_refused_total{reason="permission_denied"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// Reload: a revoked token is refused at once, a new one admitted; a
	// bad file leaves the tokens in force.
	const newRead = "n-0123456789abcdef"
	writeAuthFile(t, authFile, "read "+newRead+"\nadmin "+testAdminToken+"\n")
	if err := r.ReloadClientAuth(); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := authDo(t, "GET", base+"/kvstore/get/k2", testReadToken, ""); code != http.StatusUnauthorized {
		t.Errorf("a revoked token: %d", code)
	}
	if code, _, _ := authDo(t, "GET", base+"/kvstore/get/k2", newRead, ""); code != http.StatusOK {
		t.Errorf("a new token: %d", code)
	}
	writeAuthFile(t, authFile, "root "+newRead+"\n")
	if err := r.ReloadClientAuth(); err == nil || strings.Contains(err.Error(), newRead) {
		t.Errorf("reloading a bad file: %v", err)
	}
	if code, _, _ := authDo(t, "GET", base+"/kvstore/get/k2", newRead, ""); code != http.StatusOK {
		t.Errorf("after a failed reload: %d", code)
	}
}

// A watch stream whose token is revoked ends at its next message; the
// reconnect meets the 401.
func TestReplicaClientAuthRevokesStreams(t *testing.T) {
	authFile := filepath.Join(t.TempDir(), "tokens")
	writeAuthFile(t, authFile, "read "+testReadToken+"\nwrite "+testWriteToken+"\n")
	r, base := startAuthReplica(t, authFile)

	req, _ := http.NewRequest("GET", base+"/kvstore/watch/w?stream=true", nil)
	req.Header.Set("Authorization", "Bearer "+testReadToken)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	put := func(v string) {
		t.Helper()
		if code, body, _ := authDo(t, "POST", base+"/kvstore/put", testWriteToken, `{"key":"w","value":"`+v+`"}`); code != http.StatusOK {
			t.Fatalf("put: %d %s", code, body)
		}
	}
	// awaitData waits for a data line with v, or for the stream's end.
	awaitData := func(v string) (seen, ended bool) {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return false, true
				}
				if strings.HasPrefix(l, "data: ") && strings.Contains(l, `"value":"`+v+`"`) {
					return true, false
				}
			case <-ctx.Done():
				t.Fatal("no answer from the stream within 20s")
			}
		}
	}
	put("one")
	if seen, _ := awaitData("one"); !seen {
		t.Fatal("the stream ended before the first change")
	}
	writeAuthFile(t, authFile, "write "+testWriteToken+"\n")
	if err := r.ReloadClientAuth(); err != nil {
		t.Fatal(err)
	}
	put("two")
	if seen, ended := awaitData("two"); seen || !ended {
		t.Fatalf("after the revocation the stream delivered %v, ended %v", seen, ended)
	}
	if code, _, _ := authDo(t, "GET", base+"/kvstore/watch/w?stream=true", testReadToken, ""); code != http.StatusUnauthorized {
		t.Fatalf("reconnect with the revoked token: %d", code)
	}
}

// A joining replica asks the members with the first admin token of its
// own file; without one, the cluster's refusal ends the join at once.
func TestJoinSendsAdminToken(t *testing.T) {
	authFile := filepath.Join(t.TempDir(), "tokens")
	writeAuthFile(t, authFile, "read "+testReadToken+"\nadmin "+testAdminToken+"\n")
	_, base := startAuthReplica(t, authFile)
	cfg := DefaultConfig()
	cfg.ID, cfg.Join, cfg.PeerURL, cfg.ListenClient = 2, []string{base}, "http://127.0.0.1:7002", "127.0.0.1:0"

	withTokens := cfg
	withTokens.DataDir = t.TempDir()
	withTokens.clientTokens, _ = parseClientAuth([]byte("read " + testReadToken + "\nadmin " + testAdminToken + "\n"))
	plan, err := prepareJoin(context.Background(), withTokens, persist.NewMemory(), http.DefaultClient, discardLogger())
	if err != nil || !validClusterID(plan.clusterID) {
		t.Fatalf("join with the admin token: %+v %v", plan, err)
	}

	without := cfg
	without.DataDir = t.TempDir()
	start := time.Now()
	_, err = prepareJoin(context.Background(), without, persist.NewMemory(), http.DefaultClient, discardLogger())
	if err == nil || !strings.Contains(err.Error(), "unauthenticated") && !strings.Contains(err.Error(), "client token") {
		t.Fatalf("join without a token: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("a refused join took %v: a 401 is not worth retrying", time.Since(start))
	}
}

// A token with a key prefix uses only keys under it, through every route
// that names a key (REST and Twirp alike), and cannot revoke leases or see
// other keys on one.
func TestReplicaClientAuthKeyPrefix(t *testing.T) {
	const appWrite, appRead = "aw-0123456789abcdef", "ar-0123456789abcdef"
	authFile := filepath.Join(t.TempDir(), "tokens")
	writeAuthFile(t, authFile, "read "+testReadToken+"\nwrite "+testWriteToken+"\nwrite "+appWrite+" app/\nread "+appRead+" app/pub/\n")
	r, base := startAuthReplica(t, authFile)
	code, body, _ := authDo(t, "POST", base+"/kvstore/lease/grant", testWriteToken, `{"ttl_ms":60000}`)
	var grantResp struct {
		ID uint64 `json:"id"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &grantResp) != nil || grantResp.ID == 0 {
		t.Fatalf("lease grant: %d %s", code, body)
	}
	leaseID := strconv.FormatUint(grantResp.ID, 10)
	for _, kv := range []string{`{"key":"other","value":"secret"}`, `{"key":"app/pub/x","value":"1","lease":` + leaseID + `}`,
		`{"key":"apple","value":"2","lease":` + leaseID + `}`} {
		if code, body, _ := authDo(t, "POST", base+"/kvstore/put", testWriteToken, kv); code != http.StatusOK {
			t.Fatalf("put %s: %d %s", kv, code, body)
		}
	}
	steps := []struct {
		token, method, path, body string
		want                      int
	}{
		{appWrite, "POST", "/kvstore/put", `{"key":"app/a","value":"v"}`, http.StatusOK},
		{appWrite, "POST", "/kvstore/put", `{"key":"other","value":"mine"}`, http.StatusForbidden},
		{appWrite, "POST", "/kvstore/put", `{"key":"apple","value":"mine"}`, http.StatusForbidden},
		{appWrite, "POST", "/kvstore/append", `{"key":"other","value":"x"}`, http.StatusForbidden},
		{appWrite, "DELETE", "/kvstore/other", "", http.StatusForbidden},
		{appWrite, "POST", "/twirp/kv.v1.KVService/Put", `{"key":"other","value":"mine"}`, http.StatusForbidden},
		{appWrite, "POST", "/twirp/kv.v1.KVService/Delete", `{"key":"other"}`, http.StatusForbidden},
		{appWrite, "GET", "/kvstore/get/other", "", http.StatusForbidden},
		{appWrite, "GET", "/kvstore/get/other?index=1&wait=1s", "", http.StatusForbidden},
		{appWrite, "POST", "/twirp/kv.v1.KVService/Get", `{"key":"other"}`, http.StatusForbidden},
		{appWrite, "GET", "/kvstore/get/app/a", "", http.StatusOK},
		{appWrite, "GET", "/kvstore/list?prefix=app/", "", http.StatusOK},
		{appWrite, "GET", "/kvstore/list", "", http.StatusForbidden},
		{appWrite, "GET", "/kvstore/list?prefix=ap", "", http.StatusForbidden},
		{appWrite, "POST", "/twirp/kv.v1.KVService/List", `{"prefix":""}`, http.StatusForbidden},
		{appWrite, "GET", "/kvstore/watch/other?wait=10ms", "", http.StatusForbidden},
		{appWrite, "GET", "/kvstore/watch/?prefix=true&wait=10ms", "", http.StatusForbidden},
		{appWrite, "GET", "/kvstore/watch/other?stream=true", "", http.StatusForbidden},
		{appWrite, "POST", "/twirp/kv.v1.KVService/Watch", `{"key":"","prefix":true,"wait_ms":10}`, http.StatusForbidden},
		{appWrite, "GET", "/kvstore/watch/app/?prefix=true&index=1&wait=10ms", "", http.StatusOK},
		{appWrite, "POST", "/kvstore/lease/revoke", `{"id":` + leaseID + `}`, http.StatusForbidden},
		{appWrite, "POST", "/kvstore/lease/keepalive", `{"id":` + leaseID + `}`, http.StatusOK},
		{appWrite, "POST", "/kvstore/session", `{}`, http.StatusOK},
		{appWrite, "GET", "/status", "", http.StatusOK},
		{appWrite, "GET", "/admin/snapshot", "", http.StatusForbidden},
		{appRead, "GET", "/kvstore/get/app/pub/x", "", http.StatusOK},
		{appRead, "GET", "/kvstore/get/app/a", "", http.StatusForbidden},
		{appRead, "POST", "/kvstore/put", `{"key":"app/pub/y","value":"v"}`, http.StatusForbidden},
	}
	for _, s := range steps {
		code, body, _ := authDo(t, s.method, base+s.path, s.token, s.body)
		if code != s.want || code == http.StatusForbidden && twirpCode(body) != "permission_denied" {
			t.Errorf("%s %s with token %s: %d %s, want %d", s.method, s.path, s.token[:2], code, body, s.want)
		}
		if code == http.StatusOK && strings.Contains(body, "secret") {
			t.Errorf("%s %s with token %s shows another key's value: %s", s.method, s.path, s.token[:2], body)
		}
	}
	// The lease holds app/pub/x and apple: a scoped token sees only its own.
	code, body, _ = authDo(t, "GET", base+"/kvstore/lease/"+leaseID+"?keys=true", appWrite, "")
	if code != http.StatusOK || !strings.Contains(body, "app/pub/x") || strings.Contains(body, "apple") {
		t.Errorf("lease keys for a scoped token: %d %s", code, body)
	}
	code, body, _ = authDo(t, "GET", base+"/kvstore/lease/"+leaseID+"?keys=true", testReadToken, "")
	if code != http.StatusOK || !strings.Contains(body, "apple") {
		t.Errorf("lease keys for an unscoped token: %d %s", code, body)
	}
	// A reload that moves a token's prefix ends its streams like a
	// revocation.
	req, _ := http.NewRequest("GET", base+"/kvstore/watch/app/?prefix=true&stream=true", nil)
	req.Header.Set("Authorization", "Bearer "+appWrite)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	writeAuthFile(t, authFile, "write "+testWriteToken+"\nwrite "+appWrite+" app/pub/\n")
	if err := r.ReloadClientAuth(); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := authDo(t, "POST", base+"/kvstore/put", testWriteToken, `{"key":"app/b","value":"v"}`); code != http.StatusOK {
		t.Fatalf("put: %d %s", code, body)
	}
	rest, err := io.ReadAll(resp.Body) // ends when the replica ends the stream
	if err != nil || strings.Contains(string(rest), `"app/b"`) {
		t.Fatalf("the stream after its token's prefix moved: %v, delivered %q", err, rest)
	}
}
