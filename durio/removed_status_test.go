package durio

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// removedKV is a replica that knows it was removed from the cluster.
type removedKV struct{ mapKV }

func (s *removedKV) Status(context.Context, *kvv1.StatusRequest) (*kvv1.StatusResponse, error) {
	return &kvv1.StatusResponse{ReplicaId: 3, Role: kvv1.Role_ROLE_FOLLOWER, Term: 9, Removed: true}, nil
}

// A replica that knows it was removed (raft's Status.Removed, carried as
// StatusResponse.removed) is shown as "removed from cluster" by `durio
// status` (and "removed":true with --json) and by GET /status.
func TestStatusShowsRemovedReplica(t *testing.T) {
	kv := &removedKV{mapKV{m: map[string]string{}}}
	srv := httptest.NewServer(clientHandler(kv, DefaultLimits(), statusHandlers(3,
		func() map[int]kvv1.KVService { return map[int]kvv1.KVService{3: kv} }, nil)))
	t.Cleanup(srv.Close)

	run := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), append(args, "--endpoints", srv.URL, "--timeout", "2s"), strings.NewReader(""), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	if code, out := run("status"); code != ExitOK || !strings.Contains(out, "removed from cluster") {
		t.Fatalf("durio status: exit %d:\n%s", code, out)
	}
	if code, out := run("status", "--json"); code != ExitOK || !strings.Contains(out, `"removed":true`) {
		t.Fatalf("durio status --json: exit %d:\n%s", code, out)
	}

	resp, err := http.Get(srv.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st clusterStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if len(st.Replicas) != 1 || !st.Replicas[0].Removed || st.Replicas[0].Member != "" {
		t.Fatalf("/status: %+v", st)
	}
}
