package durio

import (
	"context"
	"net/http"
	"strconv"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/durio/backup"
	"github.com/ruaft/ruaft/raft"
)

// snapshotHandler serves GET /admin/snapshot: a consistent snapshot of the
// state, taken on the leader (other replicas answer 503 with the leader's
// id), in the snapshot file format (package durio/backup).
func (r *Replica) snapshotHandler(w http.ResponseWriter, req *http.Request) {
	ctx, cancel := context.WithTimeout(req.Context(), r.cfg.RequestTimeout)
	defer cancel()
	if st := r.kv.Status(); st.Role != raft.Leader {
		terr := twirp.NewError(twirp.Unavailable, "not the leader: snapshots are taken on the leader")
		if st.Leader >= 0 {
			terr = terr.WithMeta("leader_id", strconv.Itoa(st.Leader))
		}
		writeError(w, terr)
		return
	}
	index, term, data, err := r.kv.Backup(ctx)
	if err != nil {
		writeError(w, twirp.NewError(twirp.Unavailable, "could not confirm a read point with the cluster: "+err.Error()))
		return
	}
	prefix := backup.Prefix(backup.NewHeader(index, term, r.cfg.ID, data))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(prefix)+len(data)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(prefix)
	_, _ = w.Write(data)
	r.logger.Info("snapshot served", "index", index, "term", term, "bytes", len(data), "remote", req.RemoteAddr)
}
