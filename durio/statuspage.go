package durio

import (
	"context"
	_ "embed"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

//go:embed web/status.html
var statusPage []byte

// clusterStatus is the body of GET /status: this replica's view and what
// each replica says of itself when asked over the peer listener.
type clusterStatus struct {
	Self     int              `json:"self"`
	Replicas []replicaSummary `json:"replicas"`
	// Members is the configuration as the leader knows it (with each
	// member's lag), or as this replica does when no leader answers.
	Members []memberJSON `json:"members,omitempty"`
}

type replicaSummary struct {
	ID            int    `json:"id"`
	Reachable     bool   `json:"reachable"`
	Role          string `json:"role,omitempty"`
	Term          uint64 `json:"term"`
	LeaderKnown   bool   `json:"leader_known"`
	LeaderID      uint32 `json:"leader_id"`
	CommitIndex   uint64 `json:"commit_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	LastLogIndex  uint64 `json:"last_log_index"`
	SnapshotIndex uint64 `json:"snapshot_index"`
	LogSizeBytes  uint64 `json:"log_size_bytes"`
	Error         string `json:"error,omitempty"`
	// Member is "voter", "learner", or "" for a replica outside the
	// configuration (joining, or removed).
	Member string `json:"member"`
}

func summarize(id int, st *kvv1.StatusResponse, err error) replicaSummary {
	if err != nil {
		return replicaSummary{ID: id, Error: err.Error()}
	}
	return replicaSummary{
		ID: id, Reachable: true, Role: strings.ToLower(strings.TrimPrefix(st.GetRole().String(), "ROLE_")),
		Term: st.GetTerm(), LeaderKnown: st.GetLeaderKnown(), LeaderID: st.GetLeaderId(),
		CommitIndex: st.GetCommitIndex(), AppliedIndex: st.GetAppliedIndex(), LastLogIndex: st.GetLastLogIndex(),
		SnapshotIndex: st.GetSnapshotIndex(), LogSizeBytes: st.GetLogSizeBytes(), Error: st.GetError(),
	}
}

// statusHandlers adds GET /status (JSON) and GET / (the HTML page that
// renders it and refreshes itself every second).
func statusHandlers(self int, targets func() map[int]kvv1.KVService, members func(context.Context) []memberJSON) func(mux *http.ServeMux) {
	return func(mux *http.ServeMux) {
		mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), 500*time.Millisecond)
			defer cancel()
			replicas := targets()
			ids := slices.Sorted(maps.Keys(replicas))
			out := clusterStatus{Self: self, Replicas: make([]replicaSummary, len(ids))}
			var wg sync.WaitGroup
			if members != nil {
				wg.Go(func() { out.Members = members(ctx) })
			}
			for i, id := range ids {
				wg.Go(func() {
					st, err := replicas[id].Status(ctx, &kvv1.StatusRequest{})
					out.Replicas[i] = summarize(id, st, err)
				})
			}
			wg.Wait()
			role := make(map[int]string, len(out.Members))
			for _, m := range out.Members {
				role[m.ID] = m.Role
			}
			for i := range out.Replicas {
				out.Replicas[i].Member = role[out.Replicas[i].ID]
			}
			writeJSON(w, http.StatusOK, out)
		})
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write(statusPage)
		})
	}
}
