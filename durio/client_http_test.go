package durio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/twitchtv/twirp"

	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// mapKV is an in-memory KVService for testing the HTTP layer alone.
type mapKV struct {
	mu sync.Mutex // guards m
	m  map[string]string
	// KVService (nil) stands in for the methods this fake does not
	// serve; calling one panics.
	kvv1.KVService
}

func (s *mapKV) Get(_ context.Context, req *kvv1.GetRequest) (*kvv1.GetResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[req.Key]
	if !ok {
		return nil, twirp.NotFoundError("no such key")
	}
	return &kvv1.GetResponse{Key: req.Key, Value: v}, nil
}

func (s *mapKV) Put(_ context.Context, req *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[req.Key] = req.Value
	return &kvv1.PutResponse{}, nil
}

func (s *mapKV) Append(_ context.Context, req *kvv1.AppendRequest) (*kvv1.AppendResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[req.Key] += req.Value
	return &kvv1.AppendResponse{}, nil
}

func (s *mapKV) Delete(_ context.Context, req *kvv1.DeleteRequest) (*kvv1.DeleteResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[req.Key]
	delete(s.m, req.Key)
	return &kvv1.DeleteResponse{Existed: ok}, nil
}

func (s *mapKV) Status(context.Context, *kvv1.StatusRequest) (*kvv1.StatusResponse, error) {
	return &kvv1.StatusResponse{ReplicaId: 1, Role: kvv1.Role_ROLE_FOLLOWER, Term: 7, LeaderId: 0, LeaderKnown: true}, nil
}

func (s *mapKV) OpenSession(context.Context, *kvv1.OpenSessionRequest) (*kvv1.OpenSessionResponse, error) {
	return &kvv1.OpenSessionResponse{ClientId: 1, IdleTimeoutSeconds: 60}, nil
}

func newTestClientServer(t *testing.T, limits Limits) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(clientHandler(&mapKV{m: map[string]string{}}, limits, nil))
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if len(data) > 0 {
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("%s %s: body is not JSON: %q", method, url, data)
		}
	}
	return resp.StatusCode, out
}

func TestRESTRoutes(t *testing.T) {
	srv := newTestClientServer(t, DefaultLimits())
	u := srv.URL
	if code, _ := do(t, "GET", u+"/kvstore/get/a", ""); code != http.StatusNotFound {
		t.Fatalf("missing key: %d", code)
	}
	if code, _ := do(t, "POST", u+"/kvstore/put", `{"key":"a","value":"x"}`); code != 200 {
		t.Fatalf("put: %d", code)
	}
	if code, _ := do(t, "POST", u+"/kvstore/append", `{"key":"a","value":"y"}`); code != 200 {
		t.Fatalf("append: %d", code)
	}
	code, body := do(t, "GET", u+"/kvstore/get/a", "")
	if code != 200 || body["key"] != "a" || body["value"] != "xy" {
		t.Fatalf("get: %d %v", code, body)
	}
	if code, _ := do(t, "DELETE", u+"/kvstore/a", ""); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if code, _ := do(t, "GET", u+"/kvstore/get/a", ""); code != http.StatusNotFound {
		t.Fatalf("get after delete: %d", code)
	}
	code, body = do(t, "GET", u+"/kvstore/is_leader", "")
	if code != 200 || body["leader"] != false || body["leader_id"] != float64(0) || body["term"] != float64(7) || body["id"] != float64(1) {
		t.Fatalf("is_leader: %d %v", code, body)
	}
	if code, body := do(t, "GET", u+"/healthz", ""); code != 200 || body["status"] != "ok" {
		t.Fatalf("healthz: %d %v", code, body)
	}
}

func TestBadInput(t *testing.T) {
	limits := DefaultLimits()
	limits.MaxBodyBytes = 1024
	limits.MaxKeyBytes = 16
	srv := newTestClientServer(t, limits)
	u := srv.URL
	huge := `{"key":"a","value":"` + strings.Repeat("v", 2048) + `"}`
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     twirp.ErrorCode
	}{
		{"malformed JSON", "POST", "/kvstore/put", `{"key":`, 400, twirp.Malformed},
		{"not an object", "POST", "/kvstore/put", `[1,2]`, 400, twirp.InvalidArgument},
		{"trailing data", "POST", "/kvstore/put", `{"key":"a","value":"b"} x`, 400, twirp.Malformed},
		{"wrong type", "POST", "/kvstore/put", `{"key":1,"value":"b"}`, 400, twirp.InvalidArgument},
		{"unknown field", "POST", "/kvstore/append", `{"key":"a","value":"b","x":1}`, 400, twirp.Malformed},
		{"missing key", "POST", "/kvstore/put", `{"value":"b"}`, 400, twirp.InvalidArgument},
		{"missing value", "POST", "/kvstore/append", `{"key":"a"}`, 400, twirp.InvalidArgument},
		{"empty key", "POST", "/kvstore/put", `{"key":"","value":"b"}`, 400, twirp.InvalidArgument},
		{"long key", "POST", "/kvstore/put", `{"key":"` + strings.Repeat("k", 17) + `","value":"b"}`, 400, twirp.InvalidArgument},
		{"huge body", "POST", "/kvstore/put", huge, 413, twirp.ResourceExhausted},
		{"huge twirp body", "POST", "/twirp/kv.v1.KVService/Put", huge, 413, twirp.ResourceExhausted},
		{"twirp malformed", "POST", "/twirp/kv.v1.KVService/Put", `{"key":`, 400, twirp.Malformed},
		{"twirp missing key", "POST", "/twirp/kv.v1.KVService/Get", `{}`, 400, twirp.InvalidArgument},
		{"half a write header", "POST", "/twirp/kv.v1.KVService/Put", `{"key":"a","write":{"client_id":"3"}}`, 400, twirp.InvalidArgument},
		{"unknown route", "GET", "/nope", "", 404, twirp.BadRoute},
		{"unknown kvstore route", "GET", "/kvstore/nope", "", 404, twirp.BadRoute},
		{"wrong method", "PUT", "/kvstore/put", `{"key":"a","value":"b"}`, 404, twirp.BadRoute},
		{"peer route", "POST", "/twirp/raft.v1.RaftService/AppendEntries", `{}`, 404, twirp.BadRoute},
		{"twirp GET", "GET", "/twirp/kv.v1.KVService/Get", "", 404, twirp.BadRoute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := do(t, c.method, u+c.path, c.body)
			if code != c.status || body["code"] != string(c.code) || body["msg"] == "" {
				t.Fatalf("got %d %v, want %d with code %q", code, body, c.status, c.code)
			}
		})
	}
	// A field of the wrong type is named as the client spelled it, not
	// with the Go types it is decoded through (restSession.sequence).
	for body, want := range map[string]string{
		`{"key":"a","value":"b","sequence":-1}`:                                           "sequence",
		`{"key":"a","value":"b","if_revision":"3"}`:                                       "if_revision",
		`{"writes":[{"put":{"key":"a","value":"b"}}],"client_id":"x"}`:                    "client_id",
		`{"conditions":[{"key":"a","if_version":1.5}],"writes":[{"delete":{"key":"a"}}]}`: "conditions.if_version",
		`{"writes":[{"put":{"key":"a","value":"b","lease":-1}}]}`:                         "writes.put.lease",
	} {
		path := "/kvstore/put"
		if strings.Contains(body, "writes") {
			path = "/kvstore/txn"
		}
		code, out := do(t, "POST", u+path, body)
		meta, _ := out["meta"].(map[string]any)
		if code != 400 || meta["argument"] != want || !strings.HasPrefix(out["msg"].(string), want+" ") {
			t.Errorf("%s: %d %v, want 400 naming %q", body, code, out, want)
		}
	}
	// A chunked body (no Content-Length) over the limit is refused the same way.
	req, _ := http.NewRequest("POST", u+"/kvstore/put", io.MultiReader(strings.NewReader(huge)))
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked huge body: %d", resp.StatusCode)
	}
	// The server still serves after all of that.
	if code, _ := do(t, "POST", u+"/kvstore/put", `{"key":"a","value":"b"}`); code != 200 {
		t.Fatalf("put after bad input: %d", code)
	}
}

func TestTwirpClients(t *testing.T) {
	srv := newTestClientServer(t, DefaultLimits())
	ctx := context.Background()
	for name, c := range map[string]kvv1.KVService{
		"protobuf": kvv1.NewKVServiceProtobufClient(srv.URL, srv.Client()),
		"json":     kvv1.NewKVServiceJSONClient(srv.URL, srv.Client()),
	} {
		t.Run(name, func(t *testing.T) {
			key := "k-" + name
			if _, err := c.Put(ctx, &kvv1.PutRequest{Key: key, Value: "1"}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Append(ctx, &kvv1.AppendRequest{Key: key, Value: "2"}); err != nil {
				t.Fatal(err)
			}
			got, err := c.Get(ctx, &kvv1.GetRequest{Key: key})
			if err != nil || got.Value != "12" {
				t.Fatalf("get: %v %v", got, err)
			}
			del, err := c.Delete(ctx, &kvv1.DeleteRequest{Key: key})
			if err != nil || !del.Existed {
				t.Fatalf("delete: %v %v", del, err)
			}
			_, err = c.Get(ctx, &kvv1.GetRequest{Key: key})
			var terr twirp.Error
			if !errors.As(err, &terr) || terr.Code() != twirp.NotFound {
				t.Fatalf("get after delete: %v", err)
			}
			_, err = c.Put(ctx, &kvv1.PutRequest{Key: "", Value: "x"})
			if !errors.As(err, &terr) || terr.Code() != twirp.InvalidArgument {
				t.Fatalf("empty key: %v", err)
			}
			_, err = c.Put(ctx, &kvv1.PutRequest{Key: "big", Value: string(bytes.Repeat([]byte("v"), 2<<20))})
			if !errors.As(err, &terr) || terr.Code() != twirp.ResourceExhausted {
				t.Fatalf("huge value: %v", err)
			}
		})
	}
}
