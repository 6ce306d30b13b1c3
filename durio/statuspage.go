package durio

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twitchtv/twirp"

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
	Members []MemberJSON `json:"members,omitempty"`
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
	// Removed: the replica says it knows it was removed from the cluster.
	Removed bool `json:"removed,omitempty"`
	// ApplyLevel is the apply level in force in the replica's state,
	// MaxApplyLevel the highest its version supports.
	ApplyLevel    uint32 `json:"apply_level"`
	MaxApplyLevel uint32 `json:"max_apply_level"`
	// StateBytes is the size of the replica's keys and values as the quota
	// counts it, QuotaBytes its --quota-bytes (0: none).
	StateBytes uint64 `json:"state_bytes"`
	QuotaBytes uint64 `json:"quota_bytes"`
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
		Removed: st.GetRemoved(), ApplyLevel: st.GetApplyLevel(), MaxApplyLevel: st.GetMaxApplyLevel(),
		StateBytes: st.GetStateBytes(), QuotaBytes: st.GetQuotaBytes(),
	}
}

// statusHandlers adds GET /status (JSON) and GET / (the HTML page that
// renders it and refreshes itself every second).
func statusHandlers(self int, targets func() map[int]kvv1.KVService, members func(context.Context) []MemberJSON) func(mux *http.ServeMux) {
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

// historyPeerPath serves this replica's own history on the peer listener,
// where /status/history on any replica's client listener gathers it.
const historyPeerPath = "/peer/status/history"

// maxHistoryBytes bounds one replica's history answer: a full ring with
// every column at its largest stays below it (TestHistoryJSONBound), and a
// peer answer above it is refused rather than read.
const maxHistoryBytes = 1 << 20

// historyTimeout bounds the gathering of the cluster's history: a replica
// that has not answered by then is shown as unreachable.
const historyTimeout = time.Second

// historySource fetches one replica's history as JSON (a historyJSON).
type historySource struct {
	id    int
	fetch func(ctx context.Context, q historyQuery) ([]byte, error)
}

// historyQuery selects samples and events: those after SinceMS (Unix ms),
// and of those only the newest MaxSamples.
type historyQuery struct {
	SinceMS    int64
	MaxSamples int
}

// parseHistoryQuery reads ?since_ms= and ?seconds= (1 to the ring's span).
func parseHistoryQuery(r *http.Request) (historyQuery, error) {
	q := historyQuery{MaxSamples: historySamples}
	v := r.URL.Query()
	for _, name := range []string{"since_ms", "seconds"} {
		if len(v[name]) > 1 {
			return q, twirp.InvalidArgumentError(name, "is given more than once")
		}
	}
	if s := v.Get("since_ms"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return q, twirp.InvalidArgumentError("since_ms", "must be a non-negative integer (Unix milliseconds)")
		}
		q.SinceMS = n
	}
	if s := v.Get("seconds"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > historySamples {
			return q, twirp.InvalidArgumentError("seconds", fmt.Sprintf("must be from 1 to %d", historySamples))
		}
		q.MaxSamples = n
	}
	return q, nil
}

func (q historyQuery) encode() string {
	return "?since_ms=" + strconv.FormatInt(q.SinceMS, 10) + "&seconds=" + strconv.Itoa(q.MaxSamples)
}

// localHistory is the source of this replica's own history.
func localHistory(h *history) historySource {
	return historySource{id: h.id, fetch: func(_ context.Context, q historyQuery) ([]byte, error) {
		return json.Marshal(h.snapshot(time.Now(), q.SinceMS, q.MaxSamples))
	}}
}

// remoteHistory is the source of replica id's history, read from its peer
// listener at peerURL with client (which carries the peer credentials).
func remoteHistory(id int, peerURL string, client *http.Client) historySource {
	return historySource{id: id, fetch: func(ctx context.Context, q historyQuery) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, peerURL+historyPeerPath+q.encode(), nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxHistoryBytes+1))
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("answered %s", resp.Status)
		}
		if len(body) > maxHistoryBytes {
			return nil, fmt.Errorf("answer larger than %d bytes", maxHistoryBytes)
		}
		var head struct {
			ID *int `json:"id"`
		}
		if err := json.Unmarshal(body, &head); err != nil || head.ID == nil || *head.ID != id {
			return nil, errors.New("answer is not this replica's history")
		}
		return body, nil
	}}
}

// clusterHistory is the body of GET /status/history.
type clusterHistory struct {
	Self       int               `json:"self"`
	IntervalMS int64             `json:"interval_ms"`
	Replicas   []json.RawMessage `json:"replicas"`
}

// historyHandlers adds GET /status/history, which gathers every replica's
// history from the sources members returns (called per request, so that a
// membership change shows up) within timeout, and the peer route serving
// local.
func historyHandlers(self int, members func() []historySource, timeout time.Duration) func(mux *http.ServeMux) {
	return func(mux *http.ServeMux) {
		mux.HandleFunc("GET /status/history", func(w http.ResponseWriter, r *http.Request) {
			q, err := parseHistoryQuery(r)
			if err != nil {
				writeError(w, err)
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), timeout)
			defer cancel()
			srcs := members()
			out := clusterHistory{Self: self, IntervalMS: historyInterval.Milliseconds(), Replicas: make([]json.RawMessage, len(srcs))}
			var wg sync.WaitGroup
			for i, src := range srcs {
				wg.Go(func() {
					body, err := src.fetch(ctx, q)
					if err != nil {
						body, _ = json.Marshal(historyJSON{ID: src.id, Error: "unreachable: " + publicError(err)})
					}
					out.Replicas[i] = body
				})
			}
			wg.Wait()
			writeJSON(w, http.StatusOK, out)
		})
	}
}

// peerHistoryHandler serves this replica's history on the peer listener.
func peerHistoryHandler(h *history) http.HandlerFunc {
	src := localHistory(h)
	return func(w http.ResponseWriter, r *http.Request) {
		q, err := parseHistoryQuery(r)
		if err != nil {
			writeError(w, err)
			return
		}
		body, err := src.fetch(r.Context(), q)
		if err != nil {
			writeError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}
}
