package durio

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/twitchtv/twirp"

	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// The REST routes of issue 16 that read many keys or wait: list, watch and
// the blocking form of get and list, plus the lease routes.

// MaxPageKeys is the most keys or events one page may hold (the contract's
// cap: a larger limit is lowered to it).
const MaxPageKeys = 10000

// setRevision sets the X-Durio-Revision header (0: unknown, left out).
func setRevision(w http.ResponseWriter, rev uint64) {
	if rev != 0 {
		w.Header().Set(RevisionHeader, strconv.FormatUint(rev, 10))
	}
}

// restList answers GET /kvstore/list.
type restList struct {
	KVs      []*restKV `json:"kvs"`
	More     bool      `json:"more"`
	Revision uint64    `json:"revision"`
}

func (h restHandler) list(w http.ResponseWriter, r *http.Request) {
	p := newQueryParams(r)
	req := &kvv1.ListRequest{Prefix: p.str("prefix"), After: p.str("after"), Limit: p.limit("limit", MaxPageKeys),
		KeysOnly: p.bool("keys_only"), Revision: p.uint("revision")}
	if p.bool("stale") {
		req.Consistency = kvv1.ReadConsistency_READ_CONSISTENCY_STALE
	}
	if !h.block(w, r, &p, req.Prefix, true) {
		return
	}
	resp, err := h.svc.List(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	out := restList{KVs: make([]*restKV, len(resp.GetKvs())), More: resp.GetMore(), Revision: resp.GetRevision()}
	for i, kv := range resp.GetKvs() {
		out.KVs[i] = toRESTKV(kv)
	}
	// The page's revision, not the store's: a blocking list that passes it
	// as index wakes for any change the page does not show.
	setRevision(w, resp.GetRevision())
	writeJSON(w, http.StatusOK, out)
}

// block runs the wait of a blocking query (?index=N[&wait=D]) for key (a
// prefix if prefix is set): it returns once something matching changed after
// revision N, the wait passed, the client left or the replica began
// shutting down, and the caller then answers with the current state. It
// answers the request itself (and returns false) when the parameters are
// bad or the watch fails. Without ?index it only checks the parameters.
func (h restHandler) block(w http.ResponseWriter, r *http.Request, p *queryParams, key string, prefix bool) bool {
	blocking := p.has("index")
	after := p.uint("index")
	wait := h.polls.capWait(p.wait("wait", h.polls.maxWait))
	if p.err == nil && !blocking && p.has("wait") {
		p.fail("wait", "needs index (the X-Durio-Revision of the answer to wait past)")
	}
	if p.err != nil {
		writeError(w, p.err)
		return false
	}
	if !blocking {
		return true
	}
	ctx, cancel := h.polls.begin(w, r, wait)
	defer cancel()
	// One event is enough to know it changed.
	watch := &kvv1.WatchRequest{Key: key, Prefix: prefix, AfterRevision: after, Limit: 1}
	_, err := h.waitEvents(ctx, watch, wait)
	var terr twirp.Error
	switch {
	case err == nil, ctx.Err() != nil:
		return true
	case errors.As(err, &terr) && terr.Code() == twirp.OutOfRange && terr.Meta("reason") == "compacted":
		return true // changed since index for certain
	}
	writeError(w, err)
	return false
}

// waitEvents long-polls Watch until it returns events or compacted, or
// wait passes, or ctx ends (then it returns the last, empty, answer and no
// error). The replica caps one Watch call's wait; this loops over as many
// as the caller's wait takes, moving after_revision forward each time.
func (h restHandler) waitEvents(ctx context.Context, req *kvv1.WatchRequest, wait time.Duration) (*kvv1.WatchResponse, error) {
	deadline := time.Now().Add(wait)
	for {
		req.WaitMs = uint64(max(time.Until(deadline), 0) / time.Millisecond)
		resp, err := h.svc.Watch(ctx, req)
		switch {
		case ctx.Err() != nil:
			// The client left or the replica is shutting down: an empty
			// answer, which a watcher repeats (elsewhere).
			return &kvv1.WatchResponse{NextAfterRevision: req.GetAfterRevision()}, nil
		case err != nil:
			return nil, err
		case resp.GetCompacted():
			return resp, compactedError(req.GetAfterRevision(), resp.GetCompactRevision())
		case len(resp.GetEvents()) > 0 || req.WaitMs == 0 || !time.Now().Before(deadline):
			return resp, nil
		}
		if next := resp.GetNextAfterRevision(); next > req.AfterRevision {
			req.AfterRevision = next
		}
	}
}

// restEvent is one change in a watch answer.
type restEvent struct {
	Type   string  `json:"type"` // "put" or "delete"
	KV     *restKV `json:"kv"`
	PrevKV *restKV `json:"prev_kv,omitempty"`
}

// restWatch answers GET /kvstore/watch/{key...}.
type restWatch struct {
	Events []restEvent `json:"events"`
	// NextIndex is the index of the next watch: every matching event up to
	// it has been returned.
	NextIndex uint64 `json:"next_index"`
	// Revision is the answering replica's store revision.
	Revision uint64 `json:"revision"`
}

// watch answers GET /kvstore/watch/{key...}?prefix=&index=&wait=&limit=&prev_kv=:
// every change of the key (or of the keys under it, with prefix) after
// revision index, waiting up to wait for the first. Without index it
// watches from the answering replica's current revision. Asked for
// text/event-stream (or with ?stream=true) it is a stream instead
// (watchStream).
func (h restHandler) watch(w http.ResponseWriter, r *http.Request) {
	p := newQueryParams(r)
	req := &kvv1.WatchRequest{Key: r.PathValue("key"), Prefix: p.bool("prefix"), AfterRevision: p.uint("index"),
		Limit: p.limit("limit", MaxPageKeys), PrevKv: p.bool("prev_kv")}
	if wantsStream(r, &p) {
		h.watchStream(w, r, &p, req)
		return
	}
	wait := h.polls.capWait(p.wait("wait", h.polls.maxWait))
	if p.err != nil {
		writeError(w, p.err)
		return
	}
	ctx, cancel := h.polls.begin(w, r, wait)
	defer cancel()
	if !p.has("index") {
		st, err := h.svc.Status(ctx, &kvv1.StatusRequest{})
		if err != nil {
			writeError(w, err)
			return
		}
		req.AfterRevision = st.GetRevision()
	}
	resp, err := h.waitEvents(ctx, req, wait)
	if err != nil {
		writeError(w, err)
		return
	}
	out := restWatch{Events: make([]restEvent, len(resp.GetEvents())), NextIndex: max(resp.GetNextAfterRevision(), req.AfterRevision),
		Revision: resp.GetHeader().GetRevision()}
	for i, ev := range resp.GetEvents() {
		typ := "put"
		if ev.GetType() == kvv1.EventType_EVENT_TYPE_DELETE {
			typ = "delete"
		}
		out.Events[i] = restEvent{Type: typ, KV: toRESTKV(ev.GetKv()), PrevKV: toRESTKV(ev.GetPrevKv())}
	}
	setRevision(w, out.Revision)
	writeJSON(w, http.StatusOK, out)
}

// restLeaseRequest is the body of the lease routes.
type restLeaseRequest struct {
	ID    uint64 `json:"id"`
	TTLMs uint64 `json:"ttl_ms"`
	restSession
}

// restLease answers the lease routes.
type restLease struct {
	ID          uint64   `json:"id"`
	TTLMs       uint64   `json:"ttl_ms"`
	RemainingMs *uint64  `json:"remaining_ms,omitempty"`
	Keys        []string `json:"keys,omitempty"`
	// MoreKeys: the lease has more keys than Keys holds (the first ones).
	MoreKeys bool `json:"more_keys,omitempty"`
}

func (h restHandler) leaseBody(w http.ResponseWriter, r *http.Request, needID bool) (restLeaseRequest, bool) {
	var body restLeaseRequest
	if !decodeJSON(w, r, &body, "a JSON object") {
		return body, false
	}
	if needID && body.ID == 0 {
		writeError(w, twirp.RequiredArgumentError("id"))
		return body, false
	}
	return body, true
}

func (h restHandler) leaseGrant(w http.ResponseWriter, r *http.Request) {
	body, ok := h.leaseBody(w, r, false)
	if !ok {
		return
	}
	if body.ID != 0 {
		writeError(w, twirp.InvalidArgumentError("id", "is chosen by the cluster; leave it out"))
		return
	}
	resp, err := h.svc.LeaseGrant(r.Context(), &kvv1.LeaseGrantRequest{TtlMs: body.TTLMs, Write: body.header()})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, restLease{ID: resp.GetId(), TTLMs: resp.GetTtlMs()})
}

func (h restHandler) leaseKeepAlive(w http.ResponseWriter, r *http.Request) {
	body, ok := h.leaseBody(w, r, true)
	if !ok {
		return
	}
	if body.TTLMs != 0 || body.restSession != (restSession{}) {
		writeError(w, twirp.InvalidArgumentError("body", "keepalive takes only id"))
		return
	}
	resp, err := h.svc.LeaseKeepAlive(r.Context(), &kvv1.LeaseKeepAliveRequest{Id: body.ID})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, restLease{ID: resp.GetId(), TTLMs: resp.GetTtlMs()})
}

func (h restHandler) leaseRevoke(w http.ResponseWriter, r *http.Request) {
	body, ok := h.leaseBody(w, r, true)
	if !ok {
		return
	}
	if body.TTLMs != 0 {
		writeError(w, twirp.InvalidArgumentError("ttl_ms", "is not taken by revoke"))
		return
	}
	resp, err := h.svc.LeaseRevoke(r.Context(), &kvv1.LeaseRevokeRequest{Id: body.ID, Write: body.header()})
	if err != nil {
		writeError(w, err)
		return
	}
	setRevision(w, resp.GetHeader().GetRevision())
	writeJSON(w, http.StatusOK, map[string]bool{"existed": resp.GetExisted()})
}

func (h restHandler) leaseTimeToLive(w http.ResponseWriter, r *http.Request) {
	p := newQueryParams(r)
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		p.fail("id", "must be a lease id (a positive integer)")
	}
	keys := p.bool("keys")
	if p.err != nil {
		writeError(w, p.err)
		return
	}
	resp, err := h.svc.LeaseTimeToLive(r.Context(), &kvv1.LeaseTimeToLiveRequest{Id: id, Keys: keys})
	if err != nil {
		writeError(w, err)
		return
	}
	remaining := resp.GetRemainingMs()
	writeJSON(w, http.StatusOK, restLease{ID: resp.GetId(), TTLMs: resp.GetTtlMs(), RemainingMs: &remaining, Keys: resp.GetKeys(), MoreKeys: resp.GetMoreKeys()})
}
