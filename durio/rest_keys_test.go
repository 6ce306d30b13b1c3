package durio

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Keys with slashes work in the REST routes, raw or percent-encoded, and so
// do keys whose slashes make a non-canonical path once encoded.
func TestRESTKeysWithSlashes(t *testing.T) {
	kv := &mapKV{m: map[string]string{}}
	srv := httptest.NewServer(clientHandler(kv, DefaultLimits(), nil))
	defer srv.Close()
	do := func(method, path, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultTransport.RoundTrip(req) // no redirects followed
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(data)
	}
	cases := []struct{ key, path string }{
		{"config/db/host", "config/db/host"},
		{"config/db/port", "config%2Fdb%2Fport"},
		{"dir/", "dir/"},
		{"a//b", "a%2F%2Fb"},
		{"../x", "%2E%2E/x"},
		{"is_leader/x", "is_leader/x"},
		{"naïve key/ü", "na%C3%AFve%20key/%C3%BC"},
	}
	for _, c := range cases {
		if code, body := do("POST", "/kvstore/put", `{"key":"`+c.key+`","value":"v"}`); code != 200 {
			t.Fatalf("put %q: %d %s", c.key, code, body)
		}
		code, body := do("GET", "/kvstore/get/"+c.path, "")
		if code != 200 || !strings.Contains(body, `"value":"v"`) {
			t.Fatalf("GET /kvstore/get/%s: %d %s", c.path, code, body)
		}
		if code, body := do("DELETE", "/kvstore/"+c.path, ""); code != 200 {
			t.Fatalf("DELETE /kvstore/%s: %d %s", c.path, code, body)
		}
		kv.mu.Lock()
		_, still := kv.m[c.key]
		kv.mu.Unlock()
		if still {
			t.Fatalf("DELETE /kvstore/%s left key %q", c.path, c.key)
		}
		if code, _ := do("GET", "/kvstore/get/"+c.path, ""); code != 404 {
			t.Fatalf("GET after DELETE of %q: %d", c.key, code)
		}
	}
	// The other routes are unchanged: is_leader is not a key lookup, and an
	// empty key is refused.
	if code, body := do("GET", "/kvstore/is_leader", ""); code != 200 || !strings.Contains(body, `"term":7`) {
		t.Fatalf("is_leader: %d %s", code, body)
	}
	if code, body := do("GET", "/kvstore/get/", ""); code != 400 {
		t.Fatalf("empty key: %d %s", code, body)
	}
}
