package durio

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// removedKV is a replica that knows it was removed from the cluster.
type removedKV struct{ mapKV }

func (s *removedKV) Status(context.Context, *kvv1.StatusRequest) (*kvv1.StatusResponse, error) {
	return &kvv1.StatusResponse{ReplicaId: 3, Role: kvv1.Role_ROLE_FOLLOWER, Term: 9, Removed: true}, nil
}

// A replica that knows it was removed (raft's Status.Removed, carried as
// StatusResponse.removed) says so in GET /status (the status page shows it
// as "removed from cluster"; durio/cli tests `durio status`).
func TestStatusShowsRemovedReplica(t *testing.T) {
	kv := &removedKV{mapKV{m: map[string]string{}}}
	srv := httptest.NewServer(clientHandler(kv, DefaultLimits(), statusHandlers(3,
		func() map[int]kvv1.KVService { return map[int]kvv1.KVService{3: kv} }, nil)))
	t.Cleanup(srv.Close)

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
