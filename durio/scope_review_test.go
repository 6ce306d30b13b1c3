package durio

// Review of the key-prefix-limited client tokens of commit 66b2fce. The
// tests named TestScopeSound* pass: they pin down what was checked and
// found sound. The others fail on 66b2fce and describe the problem they
// show.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

const (
	scopeAppWrite = "sw-0123456789abcdef" // write, limited to "app/"
	scopeAppRead  = "sr-0123456789abcdef" // read, limited to "app/"
)

// scopeAuthFile is the token file of the scope review's replicas.
func scopeAuthFile(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "tokens")
	writeAuthFile(t, f, "read "+testReadToken+"\nwrite "+testWriteToken+"\nadmin "+testAdminToken+
		"\nwrite "+scopeAppWrite+" app/\nread "+scopeAppRead+" app/\n")
	return f
}

// scopeMustPut puts key=value with the unscoped write token (REST).
func scopeMustPut(t *testing.T, base, key, value string) uint64 {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"key": key, "value": value})
	code, body, _ := authDo(t, "POST", base+"/kvstore/put", testWriteToken, string(b))
	if code != http.StatusOK {
		t.Fatalf("put %q: %d %s", key, code, body)
	}
	var out struct{ Revision uint64 }
	_ = json.Unmarshal([]byte(body), &out)
	return out.Revision
}

// scopeValue is key's value as the unscoped read token sees it, and whether
// it exists.
func scopeValue(t *testing.T, base, key string) (string, bool) {
	t.Helper()
	code, body, _ := authDo(t, "GET", base+"/kvstore/get/"+url.PathEscape(key), testReadToken, "")
	switch code {
	case http.StatusOK:
		var kv struct{ Value string }
		if err := json.Unmarshal([]byte(body), &kv); err != nil {
			t.Fatalf("get %q: %s", key, body)
		}
		return kv.Value, true
	case http.StatusNotFound:
		return "", false
	}
	t.Fatalf("get %q: %d %s", key, code, body)
	return "", false
}

// TestScopeSessionsNotBoundToToken (fails on 66b2fce; Medium): exactly-once
// sessions belong to no token. The duplicate table is keyed by client_id
// and sequence only, so a token limited to "app/" that sends a write of
// its own key under another client's client_id can
//
//   - make that client's next write of a key outside "app/" a "duplicate":
//     it is answered 200 with the scoped token's result and never applied
//     (a silently lost write outside the prefix);
//   - raise that client's floor with ack, so that every later write of the
//     session, to any key, is refused as stale;
//   - read back the outcome (revision, existed) of that client's writes of
//     keys outside the prefix by replaying their sequence numbers.
//
// The client_id is a 53-bit random number, so the attack needs the victim's
// id (it travels in DELETE query strings, proxy and access logs, shared
// client code...), but nothing in the README says a session id is a
// secret that widens a prefix-limited token to every key. A fix binds a
// session to the scope that opened it (the replicated session record
// carries the prefix and writes of another prefix are refused), or gives
// scoped tokens their own id space.
func TestScopeSessionsNotBoundToToken(t *testing.T) {
	_, base := startAuthReplica(t, scopeAuthFile(t))
	openSession := func() uint64 {
		t.Helper()
		code, body, _ := authDo(t, "POST", base+"/kvstore/session", testWriteToken, `{}`)
		var s struct {
			ClientID uint64 `json:"client_id"`
		}
		if code != http.StatusOK || json.Unmarshal([]byte(body), &s) != nil || s.ClientID == 0 {
			t.Fatalf("session: %d %s", code, body)
		}
		return s.ClientID
	}
	put := func(token, key, value string, id, seq, ack uint64) (int, string) {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"key": key, "value": value, "client_id": id, "sequence": seq, "ack": ack})
		code, body, _ := authDo(t, "POST", base+"/kvstore/put", token, string(b))
		return code, body
	}

	t.Run("write outside the prefix silently dropped", func(t *testing.T) {
		victim := openSession()
		scopeMustPut(t, base, "config/db", "old")
		// The scoped token writes its own key as the victim's next write.
		if code, body := put(scopeAppWrite, "app/x", "attacker", victim, 1, 1); code != http.StatusOK {
			t.Logf("the scoped token's write under another client's session was refused: %d %s", code, body)
		}
		code, body := put(testWriteToken, "config/db", "new", victim, 1, 1)
		v, _ := scopeValue(t, base, "config/db")
		if v != "new" {
			t.Errorf("a token limited to \"app/\" made another client's write of config/db vanish: that write answered %d %s, "+
				"yet config/db is still %q (the duplicate table answered it with the scoped token's result)", code, body, v)
		}
	})

	t.Run("floor raised by ack", func(t *testing.T) {
		victim := openSession()
		if code, body := put(testWriteToken, "config/a", "1", victim, 1, 1); code != http.StatusOK {
			t.Fatalf("victim's first write: %d %s", code, body)
		}
		if code, body := put(scopeAppWrite, "app/y", "attacker", victim, 1000000, 1000000); code != http.StatusOK {
			t.Logf("the scoped token's write under another client's session was refused: %d %s", code, body)
		}
		code, body := put(testWriteToken, "config/a", "2", victim, 2, 2)
		if v, _ := scopeValue(t, base, "config/a"); v != "2" {
			t.Errorf("a token limited to \"app/\" blocked another client's writes outside the prefix: its next write answered %d %s, config/a is %q",
				code, body, v)
		}
	})

	t.Run("outcome of another client's write", func(t *testing.T) {
		victim := openSession()
		scopeMustPut(t, base, "config/b", "x")
		code, body, _ := authDo(t, "DELETE", base+"/kvstore/config/b?client_id="+strconv.FormatUint(victim, 10)+"&sequence=1&ack=1", testWriteToken, "")
		if code != http.StatusOK || !strings.Contains(body, `"existed":true`) {
			t.Fatalf("victim's delete: %d %s", code, body)
		}
		// Replaying the victim's sequence number on a key of its own prefix
		// answers with the result of the victim's delete of config/b.
		code, body, _ = authDo(t, "DELETE", base+"/kvstore/app/never-written?client_id="+strconv.FormatUint(victim, 10)+"&sequence=1&ack=1", scopeAppWrite, "")
		if code == http.StatusOK && strings.Contains(body, `"existed":true`) {
			t.Errorf("a token limited to \"app/\" read the outcome of another client's delete of config/b (existed) "+
				"through a key it never wrote: %d %s", code, body)
		}
	})
}

// keyRecordingKV records every key or prefix that reaches the service
// behind validated.
type keyRecordingKV struct {
	*recordingKV
	mu   sync.Mutex
	keys []string
}

func (s *keyRecordingKV) key(method, k string) {
	s.mu.Lock()
	s.keys = append(s.keys, method+" "+strconv.Quote(k))
	s.mu.Unlock()
}

func (s *keyRecordingKV) recorded() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.keys
	s.keys = nil
	return out
}

func (s *keyRecordingKV) Get(ctx context.Context, req *kvv1.GetRequest) (*kvv1.GetResponse, error) {
	s.key("Get", req.GetKey())
	return s.recordingKV.Get(ctx, req)
}
func (s *keyRecordingKV) Put(ctx context.Context, req *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	s.key("Put", req.GetKey())
	return s.recordingKV.Put(ctx, req)
}
func (s *keyRecordingKV) Txn(ctx context.Context, req *kvv1.TxnRequest) (*kvv1.TxnResponse, error) {
	for _, c := range req.GetConditions() {
		s.key("Txn", c.GetKey())
	}
	for _, w := range req.GetWrites() {
		s.key("Txn", w.GetPut().GetKey()+w.GetDelete().GetKey())
	}
	return s.recordingKV.Txn(ctx, req)
}
func (s *keyRecordingKV) Append(ctx context.Context, req *kvv1.AppendRequest) (*kvv1.AppendResponse, error) {
	s.key("Append", req.GetKey())
	return s.recordingKV.Append(ctx, req)
}
func (s *keyRecordingKV) Delete(ctx context.Context, req *kvv1.DeleteRequest) (*kvv1.DeleteResponse, error) {
	s.key("Delete", req.GetKey())
	return s.recordingKV.Delete(ctx, req)
}
func (s *keyRecordingKV) List(ctx context.Context, req *kvv1.ListRequest) (*kvv1.ListResponse, error) {
	s.key("List", req.GetPrefix())
	return s.recordingKV.List(ctx, req)
}
func (s *keyRecordingKV) Watch(ctx context.Context, req *kvv1.WatchRequest) (*kvv1.WatchResponse, error) {
	s.key("Watch", req.GetKey())
	return s.recordingKV.Watch(ctx, req)
}
func (s *keyRecordingKV) LeaseRevoke(ctx context.Context, req *kvv1.LeaseRevokeRequest) (*kvv1.LeaseRevokeResponse, error) {
	s.key("LeaseRevoke", "")
	return s.recordingKV.LeaseRevoke(ctx, req)
}

// scopeRaw sends one request byte for byte (no client-side cleaning of the
// path, no redirect followed) and returns the status and body.
func scopeRaw(t *testing.T, addr, method, target, token, body string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nAuthorization: Bearer %s\r\n", method, target, addr, token)
	if body != "" {
		b.WriteString("Content-Type: application/json\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// TestScopeSoundNoOutOfScopeKeyReachesBackend (passes): whatever the route
// (REST, Twirp JSON, blocking queries, watch long polls and streams, list
// continuations, percent-encoded and dot-segment paths, boundary keys), a
// token limited to "app/" never gets a key or prefix outside "app/" past
// validated, and a LeaseRevoke never gets past it at all. Paths go out raw,
// so the server sees them uncleaned; a redirect is not followed (its
// target is a new request, checked anew).
func TestScopeSoundNoOutOfScopeKeyReachesBackend(t *testing.T) {
	svc := &keyRecordingKV{recordingKV: newRecordingKV(false)}
	auth := &clientAuth{}
	auth.tokens.Store(reviewTokens(t, "write "+scopeAppWrite+" app/\nread "+scopeAppRead+" app/\nwrite "+testWriteToken+"\n"))
	limits := DefaultLimits()
	limits.MaxWatchWait = 2 * time.Second
	limits.RequestTimeout = 2 * time.Second
	limits.auth = auth
	srv := startScopeServer(t, clientHandler(svc, limits, nil))
	addr := strings.TrimPrefix(srv, "http://")

	type req struct{ method, target, body string }
	out := []req{
		{"GET", "/kvstore/get/other", ""},
		{"GET", "/kvstore/get/app", ""},
		{"GET", "/kvstore/get/apple", ""},
		{"GET", "/kvstore/get/App/x", ""},
		{"GET", "/kvstore/get/%EF%BD%81pp/x", ""}, // fullwidth a
		{"GET", "/kvstore/get/app/../other", ""},
		{"GET", "/kvstore/get/./other", ""},
		{"GET", "/kvstore/get//app/x", ""},
		{"GET", "/kvstore/get/other?index=1&wait=1s", ""},
		{"GET", "/kvstore/get/other?stale=true", ""},
		{"DELETE", "/kvstore/other", ""},
		{"DELETE", "/kvstore/app/../other", ""},
		{"DELETE", "/kvstore/other?if_value=x", ""},
		{"POST", "/kvstore/put", `{"key":"other","value":"v"}`},
		{"POST", "/kvstore/put", `{"key":"other","value":"v","ttl_ms":1000}`},
		{"POST", "/kvstore/put", `{"key":"app","value":"v","if_absent":true}`},
		{"POST", "/kvstore/put", `{"key":"other","value":"v","client_id":5,"sequence":1}`},
		{"POST", "/kvstore/put", `{"key":"app/x","key":"other","value":"v"}`},
		{"POST", "/kvstore/put", `{"key":"\u0061pp","value":"v"}`},
		{"POST", "/kvstore/append", `{"key":"other","value":"v"}`},
		{"GET", "/kvstore/list", ""},
		{"GET", "/kvstore/list?prefix=", ""},
		{"GET", "/kvstore/list?prefix=app", ""},
		{"GET", "/kvstore/list?prefix=other&after=app/", ""},
		{"GET", "/kvstore/list?prefix=&after=app/", ""},
		{"GET", "/kvstore/list?prefix=other&revision=1", ""},
		{"GET", "/kvstore/list?prefix=&index=1&wait=1s", ""},
		{"GET", "/kvstore/list?prefix=app/&prefix=", ""},
		{"GET", "/kvstore/list?prefix=&prefix=app/", ""},
		{"GET", "/kvstore/watch/other?wait=1s", ""},
		{"GET", "/kvstore/watch/?prefix=true&wait=1s", ""},
		{"GET", "/kvstore/watch/app?prefix=true&wait=1s", ""},
		{"GET", "/kvstore/watch/app/../other?wait=1s", ""},
		{"GET", "/kvstore/watch/other?stream=true&wait=1s", ""},
		{"GET", "/kvstore/watch/?prefix=true&stream=true&prev_kv=true", ""},
		{"POST", "/kvstore/lease/revoke", `{"id":7}`},
		{"POST", "/kvstore/lease/revoke", `{"id":7,"client_id":5,"sequence":1}`},
		{"POST", "/twirp/kv.v1.KVService/Get", `{"key":"other"}`},
		{"POST", "/twirp/kv.v1.KVService/Put", `{"key":"other","value":"v"}`},
		{"POST", "/twirp/kv.v1.KVService/Put", `{"key":"other","value":"v","lease":"7"}`},
		{"POST", "/twirp/kv.v1.KVService/Append", `{"key":"other","value":"v"}`},
		{"POST", "/twirp/kv.v1.KVService/Delete", `{"key":"other"}`},
		{"POST", "/twirp/kv.v1.KVService/List", `{}`},
		{"POST", "/twirp/kv.v1.KVService/List", `{"prefix":"ap","after":"app/"}`},
		{"POST", "/twirp/kv.v1.KVService/Watch", `{"key":"other","wait_ms":100}`},
		{"POST", "/twirp/kv.v1.KVService/Watch", `{"key":"","prefix":true,"wait_ms":100,"prev_kv":true}`},
		{"POST", "/twirp/kv.v1.KVService/Watch", `{"key":"app","prefix":true,"wait_ms":100}`},
		{"POST", "/twirp/kv.v1.KVService/LeaseRevoke", `{"id":"7"}`},
	}
	for _, tok := range []string{scopeAppWrite, scopeAppRead} {
		for _, r := range out {
			code, body := scopeRaw(t, addr, r.method, r.target, tok, r.body)
			if code < 300 {
				t.Errorf("%s %s %s with a token limited to app/: %d %s", r.method, r.target, r.body, code, body)
			}
			if strings.Contains(body, secretAfterRevoke) {
				t.Errorf("%s %s %s shows a value: %d %s", r.method, r.target, r.body, code, body)
			}
			for _, k := range svc.recorded() {
				method, quoted, _ := strings.Cut(k, " ")
				key, _ := strconv.Unquote(quoted)
				if method == "LeaseRevoke" || !strings.HasPrefix(key, "app/") {
					t.Errorf("%s %s %s with a token limited to app/ reached the cluster as %s", r.method, r.target, r.body, k)
				}
			}
		}
	}
	// And what it may do does reach the cluster, with its own key.
	in := []req{
		{"GET", "/kvstore/get/app/x", ""},
		// Escaped slashes and dots are not cleaned: these are literal keys
		// such as "app/../other", under app/ (the store never cleans keys).
		{"GET", "/kvstore/get/app%2F..%2F..%2Fx", ""},
		{"GET", "/kvstore/get/app/..%2Fother", ""},
		{"GET", "/kvstore/get/app%2F..%2Fother", ""},
		{"GET", "/kvstore/get/app/%2E%2E/other", ""},
		{"DELETE", "/kvstore/app%2F..%2Fother", ""},
		{"GET", "/kvstore/list?prefix=app/&after=zzz", ""},
		{"GET", "/kvstore/list?prefix=app/&after=a", ""},
		{"GET", "/kvstore/watch/app/?prefix=true&wait=1s", ""},
		{"POST", "/twirp/kv.v1.KVService/Watch", `{"key":"app/","prefix":true,"wait_ms":100}`},
	}
	for _, r := range in {
		tok := scopeAppRead
		if r.method == "DELETE" {
			tok = scopeAppWrite
		}
		code, body := scopeRaw(t, addr, r.method, r.target, tok, r.body)
		keys := svc.recorded()
		if code != http.StatusOK || len(keys) == 0 {
			t.Errorf("%s %s %s with a token limited to app/: %d %s (reached: %v)", r.method, r.target, r.body, code, body, keys)
		}
		for _, k := range keys {
			_, quoted, _ := strings.Cut(k, " ")
			if key, _ := strconv.Unquote(quoted); !strings.HasPrefix(key, "app/") {
				t.Errorf("%s %s reached the cluster as %s", r.method, r.target, k)
			}
		}
	}
}

// startScopeServer serves h on 127.0.0.1 until the test ends.
func startScopeServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String()
}

// TestScopeSoundReadsStayInPrefix (passes): on a real replica, a token
// limited to "app/" sees only keys under "app/" in listings (from any
// continuation point, at an older revision, keys only), prefix watches
// (long poll, Twirp, stream, with prev_kv and from revision 1) and lease
// lookups, although "app", "apple", "ap" and "other" change around them;
// and a key path with dot segments is no way out of the prefix.
func TestScopeSoundReadsStayInPrefix(t *testing.T) {
	_, base := startAuthReplica(t, scopeAuthFile(t))
	const secret = "outside-secret"
	first := scopeMustPut(t, base, "other", secret)
	scopeMustPut(t, base, "app", secret)
	scopeMustPut(t, base, "apple", secret)
	scopeMustPut(t, base, "app/a", "1")
	scopeMustPut(t, base, "ap", secret)
	mid := scopeMustPut(t, base, "app/b", "2")
	scopeMustPut(t, base, "other", secret+"2")
	scopeMustPut(t, base, "app/a", "3")
	scopeMustPut(t, base, "app0", secret)
	scopeMustPut(t, base, "zzz", secret)
	if code, body, _ := authDo(t, "DELETE", base+"/kvstore/apple", testWriteToken, ""); code != http.StatusOK {
		t.Fatalf("delete: %d %s", code, body)
	}
	last := scopeMustPut(t, base, "app/c", "4")

	checkKeys := func(what, body string, keys []string) {
		t.Helper()
		if strings.Contains(body, secret) {
			t.Errorf("%s shows a value outside app/: %s", what, body)
		}
		for _, k := range keys {
			if !strings.HasPrefix(k, "app/") {
				t.Errorf("%s shows key %q: %s", what, k, body)
			}
		}
	}
	for _, q := range []string{"prefix=app/", "prefix=app/&after=", "prefix=app/&after=a", "prefix=app/&after=app",
		"prefix=app/&after=app/a", "prefix=app/&after=zzz", "prefix=app/&after=app/~", "prefix=app/&limit=1&after=app/a",
		"prefix=app/&revision=" + strconv.FormatUint(mid, 10), "prefix=app/&revision=" + strconv.FormatUint(first, 10) + "&after=a",
		"prefix=app/&keys_only=true", "prefix=app/&index=" + strconv.FormatUint(first, 10),
		"prefix=app/b&after=apple", "prefix=app/&stale=true"} {
		code, body, _ := authDo(t, "GET", base+"/kvstore/list?"+q, scopeAppRead, "")
		var l struct{ KVs []struct{ Key string } }
		if code != http.StatusOK || json.Unmarshal([]byte(body), &l) != nil {
			t.Errorf("list ?%s: %d %s", q, code, body)
			continue
		}
		keys := make([]string, len(l.KVs))
		for i, kv := range l.KVs {
			keys[i] = kv.Key
		}
		checkKeys("list ?"+q, body, keys)
	}
	for _, body := range []string{`{"prefix":"app/","after":"zzz"}`, `{"prefix":"app/","after":"a","revision":` + strconv.FormatUint(mid, 10) + `}`} {
		code, out, _ := authDo(t, "POST", base+"/twirp/kv.v1.KVService/List", scopeAppRead, body)
		var l struct{ Kvs []struct{ Key string } }
		if code != http.StatusOK || json.Unmarshal([]byte(out), &l) != nil {
			t.Errorf("twirp list %s: %d %s", body, code, out)
			continue
		}
		var keys []string
		for _, kv := range l.Kvs {
			keys = append(keys, kv.Key)
		}
		checkKeys("twirp list "+body, out, keys)
	}
	// A prefix watch from the start of history, with previous values.
	code, body, _ := authDo(t, "GET", base+"/kvstore/watch/app/?prefix=true&prev_kv=true&index=1&wait=1s", scopeAppRead, "")
	var w struct {
		Events []struct {
			KV     struct{ Key string }  `json:"kv"`
			PrevKV *struct{ Key string } `json:"prev_kv"`
		}
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &w) != nil || len(w.Events) < 4 {
		t.Fatalf("watch: %d %s", code, body)
	}
	var keys []string
	for _, ev := range w.Events {
		keys = append(keys, ev.KV.Key)
		if ev.PrevKV != nil {
			keys = append(keys, ev.PrevKV.Key)
		}
	}
	checkKeys("prefix watch", body, keys)
	code, body, _ = authDo(t, "POST", base+"/twirp/kv.v1.KVService/Watch", scopeAppRead,
		`{"key":"app/","prefix":true,"prev_kv":true,"after_revision":"1","wait_ms":1000}`)
	if code != http.StatusOK || !strings.Contains(body, "app/c") {
		t.Fatalf("twirp watch: %d %s", code, body)
	}
	checkKeys("twirp prefix watch", body, nil)
	// The stream from revision 1: read up to the last change under app/.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/kvstore/watch/app/?prefix=true&prev_kv=true&index=1&stream=true", nil)
	req.Header.Set("Authorization", "Bearer "+scopeAppRead)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %v %v", resp, err)
	}
	var seen strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		seen.WriteString(line + "\n")
		if strings.HasPrefix(line, "data: ") && strings.Contains(line, `"mod_revision":`+strconv.FormatUint(last, 10)+`,`) {
			break
		}
	}
	resp.Body.Close()
	if !strings.Contains(seen.String(), `"app/c"`) {
		t.Fatalf("the stream never showed app/c: %s", seen.String())
	}
	for _, line := range strings.Split(seen.String(), "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var ev struct {
			KV     struct{ Key string }  `json:"kv"`
			PrevKV *struct{ Key string } `json:"prev_kv"`
		}
		if json.Unmarshal([]byte(data), &ev) != nil {
			t.Fatalf("stream message %q", data)
		}
		ks := []string{ev.KV.Key}
		if ev.PrevKV != nil {
			ks = append(ks, ev.PrevKV.Key)
		}
		checkKeys("stream", data, ks)
	}
	// Dot segments: the path is not canonical (404 bad_route, or a redirect
	// to the cleaned path, a new request checked anew); escaped ones are a literal
	// key under app/ (absent here); never the other key's value.
	addr := strings.TrimPrefix(base, "http://")
	for _, target := range []string{"/kvstore/get/app/../other", "/kvstore/get/app%2F..%2Fother", "/kvstore/get/app/%2e%2e/other"} {
		code, body := scopeRaw(t, addr, "GET", target, scopeAppRead, "")
		if code == http.StatusOK || strings.Contains(body, secret) {
			t.Errorf("GET %s: %d %s", target, code, body)
		}
	}
	// Through Go's client (which follows redirects, keeping the token on
	// the same host): refused either way.
	if code, body, _ := authDo(t, "GET", base+"/kvstore/get/app/../other", scopeAppRead, ""); code < 400 || strings.Contains(body, secret) {
		t.Errorf("GET app/../other followed: %d %s", code, body)
	}
	// A DELETE with dot segments deletes nothing outside.
	for _, target := range []string{"/kvstore/app/../other", "/kvstore/app%2F..%2Fother"} {
		scopeRaw(t, addr, "DELETE", target, scopeAppWrite, "")
	}
	if v, ok := scopeValue(t, base, "other"); !ok || v != secret+"2" {
		t.Errorf("other after the scoped token's dot-segment deletes: %q %v", v, ok)
	}
}

// TestScopeSoundLeasesCannotReachOutside (passes): a token limited to
// "app/" cannot revoke a lease holding keys outside its prefix by any
// route (REST, Twirp, with or without a session header), a put with
// ttl_ms of an outside key leaves it untouched, and a lease lookup lists
// only its keys.
func TestScopeSoundLeasesCannotReachOutside(t *testing.T) {
	_, base := startAuthReplica(t, scopeAuthFile(t))
	code, body, _ := authDo(t, "POST", base+"/kvstore/lease/grant", testWriteToken, `{"ttl_ms":60000}`)
	var g struct{ ID uint64 }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &g) != nil || g.ID == 0 {
		t.Fatalf("grant: %d %s", code, body)
	}
	id := strconv.FormatUint(g.ID, 10)
	for _, kv := range []string{`{"key":"other","value":"held","lease":` + id + `}`, `{"key":"app/mine","value":"1","lease":` + id + `}`} {
		if code, body, _ := authDo(t, "POST", base+"/kvstore/put", testWriteToken, kv); code != http.StatusOK {
			t.Fatalf("put %s: %d %s", kv, code, body)
		}
	}
	code, body, _ = authDo(t, "POST", base+"/kvstore/session", scopeAppWrite, `{}`)
	var s struct {
		ClientID uint64 `json:"client_id"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &s) != nil {
		t.Fatalf("session: %d %s", code, body)
	}
	cid := strconv.FormatUint(s.ClientID, 10)
	for _, c := range []struct{ path, body string }{
		{"/kvstore/lease/revoke", `{"id":` + id + `}`},
		{"/kvstore/lease/revoke", `{"id":` + id + `,"client_id":` + cid + `,"sequence":1}`},
		{"/twirp/kv.v1.KVService/LeaseRevoke", `{"id":"` + id + `"}`},
		{"/twirp/kv.v1.KVService/LeaseRevoke", `{"id":"` + id + `","write":{"client_id":"` + cid + `","sequence":"2"}}`},
		{"/kvstore/put", `{"key":"other","value":"mine","ttl_ms":1000}`},
		{"/twirp/kv.v1.KVService/Put", `{"key":"other","value":"mine","lease":"` + id + `"}`},
	} {
		code, body, _ := authDo(t, "POST", base+c.path, scopeAppWrite, c.body)
		if code != http.StatusForbidden || twirpCode(body) != "permission_denied" {
			t.Errorf("POST %s %s with a token limited to app/: %d %s", c.path, c.body, code, body)
		}
	}
	if v, ok := scopeValue(t, base, "other"); !ok || v != "held" {
		t.Errorf("other after the scoped token's attempts: %q %v", v, ok)
	}
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/kvstore/lease/" + id + "?keys=true", ""},
		{"POST", "/twirp/kv.v1.KVService/LeaseTimeToLive", `{"id":"` + id + `","keys":true}`},
	} {
		code, body, _ := authDo(t, c.method, base+c.path, scopeAppRead, c.body)
		if code != http.StatusOK || !strings.Contains(body, "app/mine") || strings.Contains(body, "other") {
			t.Errorf("%s %s for a token limited to app/: %d %s", c.method, c.path, code, body)
		}
	}
}

// TestScopeSoundLongPollPrefixMoved (passes): a watch long poll and a
// blocking list admitted for "app/" whose token is moved to "app/pub/" by
// a reload while they wait answer 401, never the change under "app/" that
// woke them.
func TestScopeSoundLongPollPrefixMoved(t *testing.T) {
	authFile := scopeAuthFile(t)
	r, base := startAuthReplica(t, authFile)
	rev := scopeMustPut(t, base, "app/start", "0")
	type answer struct {
		code int
		body string
		err  error
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	targets := []string{
		"/kvstore/watch/app/?prefix=true&index=" + strconv.FormatUint(rev, 10) + "&wait=10s",
		"/kvstore/list?prefix=app/&index=" + strconv.FormatUint(rev, 10) + "&wait=10s",
		"/kvstore/get/app/moved?index=" + strconv.FormatUint(rev, 10) + "&wait=10s",
	}
	done := make(chan answer, len(targets))
	for _, target := range targets {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", base+target, nil)
			req.Header.Set("Authorization", "Bearer "+scopeAppRead)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				done <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			done <- answer{code: resp.StatusCode, body: string(b)}
		}()
	}
	time.Sleep(300 * time.Millisecond) // let them wait (a refusal at the door is fine too)
	writeAuthFile(t, authFile, "read "+testReadToken+"\nwrite "+testWriteToken+"\nread "+scopeAppRead+" app/pub/\n")
	if err := r.ReloadClientAuth(); err != nil {
		t.Fatal(err)
	}
	scopeMustPut(t, base, "app/moved", "after-the-move")
	for range targets {
		select {
		case a := <-done:
			if a.err != nil {
				t.Fatalf("long poll: %v", a.err)
			}
			if a.code == http.StatusOK || strings.Contains(a.body, "after-the-move") || strings.Contains(a.body, "app/start") {
				t.Errorf("a long poll whose token's prefix moved answered %d %s", a.code, a.body)
			}
		case <-ctx.Done():
			t.Fatal("no answer in time")
		}
	}
}

// TestScopeSoundParse (passes): prefixes in the auth file.
func TestScopeSoundParse(t *testing.T) {
	tok := "t-0123456789abcdef"
	for _, bad := range []string{
		"admin " + tok + " app/",
		"write " + tok + " app/ more",
		"write " + tok + " app/ # comment",
		"read " + tok + " \xff",
		"read " + tok + " " + strings.Repeat("a", maxScopePrefixBytes+1),
	} {
		if _, err := parseClientAuth([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		} else if strings.Contains(err.Error(), tok) {
			t.Errorf("%q: the error names the token: %v", bad, err)
		}
	}
	for line, want := range map[string]grant{
		"write " + tok + " app/":           {role: RoleWrite, prefix: "app/"},
		"read " + tok + "\tapp/pub/ ":      {role: RoleRead, prefix: "app/pub/"},
		"write " + tok:                     {role: RoleWrite},
		"read " + tok + " #not-a-comment/": {role: RoleRead, prefix: "#not-a-comment/"},
	} {
		ts, err := parseClientAuth([]byte(line))
		if err != nil {
			t.Errorf("%q: %v", line, err)
			continue
		}
		req, _ := http.NewRequest("GET", "/", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if g := ts.grant(req); g == nil || g.role != want.role || g.prefix != want.prefix {
			t.Errorf("%q: grant %+v, want %+v", line, g, want)
		}
	}
	// A scoped grant puts its prefix in the request's context; an unscoped
	// one none (every key).
	if err := outOfScope("app/", "app", "key"); err == nil {
		t.Error(`"app" is within "app/"`)
	}
	if err := outOfScope("app/", "app/", "key"); err != nil {
		t.Errorf(`"app/" is outside "app/": %v`, err)
	}
}
