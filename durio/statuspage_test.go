package durio

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

type downKV struct{ mapKV }

func (*downKV) Status(context.Context, *kvv1.StatusRequest) (*kvv1.StatusResponse, error) {
	return nil, errors.New("connection refused")
}

func TestStatusJSONAndPage(t *testing.T) {
	replicas := []kvv1.KVService{&downKV{}, &mapKV{m: map[string]string{}}}
	srv := httptest.NewServer(clientHandler(replicas[1], DefaultLimits(), statusHandlers(1, func() map[int]kvv1.KVService {
		return map[int]kvv1.KVService{0: replicas[0], 1: replicas[1]}
	}, func(context.Context) []MemberJSON {
		return []MemberJSON{{ID: 0, Role: "voter"}, {ID: 1, Role: "learner", ProgressKnown: true, Lag: 12}}
	})))
	defer srv.Close()

	resp, err := srv.Client().Get(srv.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st clusterStatus
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if st.Self != 1 || len(st.Replicas) != 2 || st.Replicas[0].Reachable || !st.Replicas[1].Reachable ||
		st.Replicas[1].Role != "follower" || st.Replicas[1].Term != 7 || st.Replicas[0].Error == "" ||
		st.Replicas[1].Member != "learner" || st.Replicas[0].Member != "voter" || len(st.Members) != 2 || st.Members[1].Lag != 12 {
		t.Fatalf("unexpected status %+v", st)
	}

	resp, err = srv.Client().Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(page), "durio cluster") {
		t.Fatalf("status page: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// Other paths stay 404.
	resp, err = srv.Client().Get(srv.URL + "/nothing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("/nothing: %d", resp.StatusCode)
	}
}
