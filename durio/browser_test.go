package durio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"strings"
	"sync"
	"testing"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/kvraft/kvwire"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// request sends one request with the given headers and returns the status,
// the response headers and the body decoded as JSON (nil if empty). A body
// that is not JSON fails the test: every answer of the client port is JSON.
func request(t *testing.T, method, url, body string, header map[string]string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(data) > 0 {
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("%s %s: %d, body is not JSON: %q", method, url, resp.StatusCode, data)
		}
	}
	return resp.StatusCode, resp.Header, out
}

// --client-hosts names more hosts a request may use without an Origin (a
// load balancer's); "*" turns the DNS-rebinding check off. Without it a
// replica behind a load balancer that keeps the client's Host refused every
// request (403 unknown_host), and nothing could say otherwise.
func TestBrowserClientHosts(t *testing.T) {
	kv := &mapKV{m: map[string]string{"k": "v"}}
	for _, tc := range []struct {
		hosts      []string
		host       string
		wantStatus int
	}{
		{nil, "lb.example:8080", 403},
		{[]string{"LB.example"}, "lb.example:8080", 200},
		{[]string{"lb.example"}, "other.example:8080", 403},
		{[]string{"*"}, "anything.example:8080", 200},
	} {
		limits := DefaultLimits()
		limits.ClientURLs = []string{"http://pi1.lan:8080"}
		limits.ClientHosts = tc.hosts
		srv := httptest.NewServer(clientHandler(kv, limits, nil))
		code, _, _ := request(t, "GET", srv.URL+"/kvstore/get/k", "", map[string]string{"Host": tc.host})
		srv.Close()
		if code != tc.wantStatus {
			t.Errorf("--client-hosts %v, Host %s: %d, want %d", tc.hosts, tc.host, code, tc.wantStatus)
		}
	}
	for _, bad := range []string{"https://lb.example", "lb.example:8080", "*.example", ""} {
		cfg := DefaultConfig()
		cfg.Peers, cfg.ListenClient, cfg.ClientHosts = []string{"http://127.0.0.1:9001"}, "127.0.0.1:8001", []string{bad}
		if err := cfg.Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "client-hosts") {
			t.Errorf("--client-hosts %q: %v, want a client-hosts configuration error", bad, err)
		}
	}
}

func TestBrowserRules(t *testing.T) {
	kv := &mapKV{m: map[string]string{}}
	limits := DefaultLimits()
	limits.CORSOrigins = []string{"https://app.example"}
	limits.ClientURLs = []string{"http://pi1.lan:8080"}
	srv := httptest.NewServer(clientHandler(kv, limits, nil))
	defer srv.Close()
	put := `{"key":"k","value":"v"}`
	json := map[string]string{"Content-Type": "application/json"}
	with := func(h map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range h {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	cases := []struct {
		name, method, path, body string
		header                   map[string]string
		status                   int
		acao                     string // expected Access-Control-Allow-Origin
	}{
		{"CSRF form post", "POST", "/kvstore/put", put, map[string]string{"Content-Type": "text/plain", "Origin": "http://evil.example"}, 403, ""},
		{"text/plain without origin", "POST", "/kvstore/put", put, map[string]string{"Content-Type": "text/plain"}, 415, ""},
		{"urlencoded", "POST", "/kvstore/append", put, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, ""},
		{"multipart to twirp", "POST", "/twirp/kv.v1.KVService/Put", put, map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, 415, ""},
		{"no content type", "POST", "/kvstore/put", put, nil, 415, ""},
		{"JSON from an evil origin", "POST", "/kvstore/put", put, with(json, "Origin", "http://evil.example"), 403, ""},
		{"GET from an evil origin", "GET", "/kvstore/get/k", "", map[string]string{"Origin": "http://evil.example"}, 403, ""},
		{"null origin", "POST", "/kvstore/put", put, with(json, "Origin", "null"), 403, ""},
		{"preflight from an evil origin", "OPTIONS", "/kvstore/put", "", map[string]string{"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}, 403, ""},
		{"rebinding: same origin under a foreign name", "POST", "/kvstore/put", put, with(json, "Origin", "http://attacker.example:1234", "Host", "attacker.example:1234"), 403, ""},
		// Browsers send no Origin with a same-origin GET: a rebound name
		// could read every key but for the Host check.
		{"rebinding: same-origin GET under a foreign name", "GET", "/kvstore/list", "", map[string]string{"Host": "attacker.example:1234"}, 403, ""},
		{"rebinding: twirp under a foreign name", "POST", "/twirp/kv.v1.KVService/Get", `{"key":"k"}`, with(json, "Host", "attacker.example:1234"), 403, ""},
		{"GET without origin under a client URL's name", "GET", "/kvstore/get/k", "", map[string]string{"Host": "PI1.lan:8080"}, 404, ""},
		{"GET without origin under localhost", "GET", "/kvstore/get/k", "", map[string]string{"Host": "localhost:8080"}, 404, ""},
		{"health check under any name", "GET", "/healthz", "", map[string]string{"Host": "monitor.example:1234"}, 200, ""},
		{"preflight from the allowed origin", "OPTIONS", "/twirp/kv.v1.KVService/Put", "", map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}, 204, "https://app.example"},
		{"JSON from the allowed origin", "POST", "/kvstore/put", put, with(json, "Origin", "https://app.example"), 200, "https://app.example"},
		{"twirp JSON from the allowed origin", "POST", "/twirp/kv.v1.KVService/Put", put, with(json, "Origin", "https://app.example"), 200, "https://app.example"},
		{"JSON with charset", "POST", "/kvstore/put", put, map[string]string{"Content-Type": "application/json; charset=utf-8"}, 200, ""},
		{"same origin by IP", "POST", "/kvstore/put", put, with(json, "Origin", srv.URL), 200, ""},
		{"same origin by a client URL's name", "POST", "/kvstore/put", put, with(json, "Origin", "http://pi1.lan:8080", "Host", "pi1.lan:8080"), 200, ""},
		{"no origin (curl, Go client)", "POST", "/kvstore/put", put, json, 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			kv.mu.Lock()
			clear(kv.m)
			kv.mu.Unlock()
			code, h, body := request(t, c.method, srv.URL+c.path, c.body, c.header)
			if code != c.status {
				t.Fatalf("got %d %v, want %d", code, body, c.status)
			}
			if got := h.Get("Access-Control-Allow-Origin"); got != c.acao {
				t.Fatalf("Access-Control-Allow-Origin %q, want %q", got, c.acao)
			}
			if code >= 400 && (body["code"] == nil || body["msg"] == "") {
				t.Fatalf("error without a Twirp body: %v", body)
			}
			if meta, _ := body["meta"].(map[string]any); strings.HasPrefix(c.name, "rebinding: same-origin GET") && meta["reason"] != ReasonUnknownHost {
				t.Fatalf("refusal of an unknown host: meta %v, want reason %s", meta, ReasonUnknownHost)
			}
			if code == 204 && (!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
				!strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "content-type") ||
				// fetch-based event-stream clients send it on reconnect
				!strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "last-event-id")) {
				t.Fatalf("preflight headers: %v", h)
			}
			kv.mu.Lock()
			_, applied := kv.m["k"]
			kv.mu.Unlock()
			if applied != (code == 200 && c.method == "POST") {
				t.Fatalf("applied=%v with status %d", applied, code)
			}
		})
	}
}

// No answer of the client port is a redirect or HTML, whatever the path.
func TestNoRedirects(t *testing.T) {
	srv := newTestClientServer(t, DefaultLimits())
	for _, path := range []string{"/kvstore/get/../x", "//a", "/kvstore/get//k", "/kvstore/./get/k", "/kvstore", "/twirp/kv.v1.KVService/../Get"} {
		for _, method := range []string{"GET", "POST"} {
			code, h, body := request(t, method, srv.URL+path, `{"key":"k"}`, map[string]string{"Content-Type": "application/json"})
			if code != 404 || body["code"] != string(twirp.BadRoute) || h.Get("Location") != "" {
				t.Errorf("%s %s: %d %v Location=%q, want a JSON 404", method, path, code, body, h.Get("Location"))
			}
		}
	}
}

func TestRESTRefusesInvalidUTF8(t *testing.T) {
	srv := newTestClientServer(t, DefaultLimits())
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/kvstore/put", "{\"key\":\"k\",\"value\":\"\xff\"}"},
		{"POST", "/kvstore/append", "{\"key\":\"\xc3\",\"value\":\"v\"}"},
		{"GET", "/kvstore/get/%FF", ""},
		{"POST", "/twirp/kv.v1.KVService/Put", "{\"key\":\"k\",\"value\":\"\xff\"}"},
	} {
		code, _, body := request(t, c.method, srv.URL+c.path, c.body, map[string]string{"Content-Type": "application/json"})
		if code != 400 {
			t.Errorf("%s %s %q: %d %v, want 400", c.method, c.path, c.body, code, body)
		}
	}
}

// failingKV answers every call with err.
type failingKV struct {
	mapKV
	err error
}

func (f *failingKV) Put(context.Context, *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	return nil, f.err
}

func TestUnknownOutcomeIs504(t *testing.T) {
	kv := &failingKV{err: twirp.NewError(twirp.DeadlineExceeded, "timed out; the outcome is unknown")}
	srv := httptest.NewServer(clientHandler(kv, DefaultLimits(), nil))
	defer srv.Close()
	for _, path := range []string{"/kvstore/put", "/twirp/kv.v1.KVService/Put"} {
		code, _, body := request(t, "POST", srv.URL+path, `{"key":"k","value":"v"}`, map[string]string{"Content-Type": "application/json"})
		if code != http.StatusGatewayTimeout || body["code"] != string(twirp.DeadlineExceeded) {
			t.Errorf("%s: %d %v, want 504 deadline_exceeded", path, code, body)
		}
	}
	// Go's Twirp client still sees the code.
	_, err := kvv1.NewKVServiceProtobufClient(srv.URL, http.DefaultClient).Put(context.Background(), &kvv1.PutRequest{Key: "k"})
	var terr twirp.Error
	if !errors.As(err, &terr) || terr.Code() != twirp.DeadlineExceeded {
		t.Fatalf("Twirp client: %v", err)
	}
}

// Internal errors and stack traces stay in the log, under the request id
// the answer names; the id is echoed, or made up when absent.
func TestInternalErrorsAndRequestIDs(t *testing.T) {
	stack := "open /var/lib/durio/store/000001.sst: input/output error\n" + string(debug.Stack())
	kv := &failingKV{mapKV: mapKV{m: map[string]string{}}, err: errors.New(stack)}
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&syncWriterBuf{b: &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := httptest.NewServer(withRequestID(logger, clientHandler(kv, DefaultLimits(), nil)))
	defer srv.Close()
	for _, path := range []string{"/kvstore/put", "/twirp/kv.v1.KVService/Put"} {
		code, h, body := request(t, "POST", srv.URL+path, `{"key":"k","value":"v"}`,
			map[string]string{"Content-Type": "application/json", "X-Request-Id": "abc-123"})
		msg, _ := body["msg"].(string)
		if code != 500 || strings.Contains(msg, "/var/lib") || strings.Contains(msg, ".go:") || !strings.Contains(msg, "abc-123") {
			t.Errorf("%s: %d %q", path, code, msg)
		}
		if h.Get("X-Request-Id") != "abc-123" {
			t.Errorf("%s: X-Request-Id %q not echoed", path, h.Get("X-Request-Id"))
		}
	}
	if !strings.Contains(logs.String(), `"request_id":"abc-123"`) || !strings.Contains(logs.String(), "/var/lib/durio") {
		t.Errorf("the log lacks the request id or the cause:\n%s", logs.String())
	}
	for _, sent := range []string{"", "bad id with spaces", strings.Repeat("x", 200)} {
		_, h, _ := request(t, "GET", srv.URL+"/healthz", "", map[string]string{"X-Request-Id": sent})
		if id := h.Get("X-Request-Id"); id == "" || id == sent || !kvwire.ValidRequestID(id) {
			t.Errorf("sent %q: got id %q, want a fresh one", sent, id)
		}
	}
}

// syncWriterBuf is a bytes.Buffer safe for the server's goroutines.
type syncWriterBuf struct {
	mu sync.Mutex // guards b
	b  *bytes.Buffer
}

func (w *syncWriterBuf) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func TestPublicErrorDropsStacks(t *testing.T) {
	err := errors.New("raft: applier panicked: boom\ngoroutine 7 [running]:\nruntime/debug.Stack()\n\t/usr/lib/go/src/runtime/debug/stack.go:26 +0x5e")
	if got := publicError(err); got != "raft: applier panicked: boom" {
		t.Fatalf("publicError = %q", got)
	}
}
