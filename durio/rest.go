package durio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	"github.com/ruaft/ruaft/kvraft/kvwire"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// restHandler serves the original durio's REST routes on top of a KVService,
// so REST and Twirp share one implementation and one set of status codes:
//
//	GET    /kvstore/get/{key...}   -> 200 {"key","value","create_revision","mod_revision","version","lease"} | 404
//	GET    /kvstore/list           ?prefix=&after=&limit=&revision=&keys_only= -> 200 {"kvs","more","revision"}
//	GET    /kvstore/watch/{key...} ?prefix=&index=&wait=&limit=&prev_kv= -> 200 {"events","next_index","revision"} | 410
//	                               (Accept: text/event-stream or ?stream=true: a stream of server-sent events)
//	POST   /kvstore/put            {"key","value"[,condition][,"lease"|"ttl_ms"]} -> 200 {"revision"} | 409
//	POST   /kvstore/append         {"key","value"} -> 200 {"revision"}
//	POST   /kvstore/txn            {"conditions":[{"key",condition}],"writes":[{"put":{"key","value"[,"lease"]}}|{"delete":{"key"}}]}
//	                               -> 200 {"succeeded","revision"[,"failed","current"]}
//	DELETE /kvstore/{key...}       [?condition] -> 200 {"existed","revision"} | 409
//	GET    /kvstore/is_leader      -> 200 {"id","term","leader","leader_id"}
//	POST   /kvstore/session        -> 200 {"client_id","idle_timeout_seconds"}
//	POST   /kvstore/lease/grant    {"ttl_ms"} -> 200 {"id","ttl_ms"}
//	POST   /kvstore/lease/keepalive {"id"} -> 200 {"id","ttl_ms"} | 404
//	POST   /kvstore/lease/revoke   {"id"} -> 200 {"existed"}
//	GET    /kvstore/lease/{id}     ?keys= -> 200 {"id","ttl_ms","remaining_ms","keys"} | 404
//
// Every key-value answer carries the store revision it reflects in the
// X-Durio-Revision header. GET get and list with ?index=N are blocking
// queries (Consul style): they wait (up to ?wait=, default and cap
// --max-watch-wait) until the key, or a key under the prefix, changes after
// revision N, then answer the current state; pass the answer's
// X-Durio-Revision as the next index. A condition (body "if_absent": true,
// "if_revision": N (the key's mod_revision), "if_version": N or "if_value":
// "..."; query parameters of the same names for DELETE) that does not hold
// is 409 with the key's current state ("current", null if absent) and the
// store revision ("revision"), never retried. A txn whose conditions fail is not an
// error: 200 with "succeeded" false, the failed conditions' indexes
// ("failed") and the compared keys that exist ("current"); nothing was
// written. A put or txn naming a lease that does not exist is 404. Leases are never served by
// DELETE, so that every DELETE /kvstore/... path stays a key.
//
// Writes are exactly-once when they carry a session: put, append and txn
// bodies take "client_id" (from POST /kvstore/session), "sequence" (1, 2, 3, ...
// per write, the same on every retry of a write) and "ack" (every write of
// the session below it has finished; default: sequence); DELETE takes them
// as query parameters (?client_id=...&sequence=...&ack=...).
//
// A key is the rest of the path, slashes included (/kvstore/get/config/db/host
// is key "config/db/host"), percent-decoded; a key with empty, "." or ".."
// segments must percent-encode its slashes or dots, or the path is not
// canonical.
//
// Errors are Twirp error bodies ({"code","msg","meta"}) with the matching
// HTTP status.
type restHandler struct {
	svc   kvv1.KVService
	polls *longPolls
}

// register adds the REST routes to mux.
func (h restHandler) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /kvstore/get/{key...}", h.get)
	mux.HandleFunc("POST /kvstore/put", h.put)
	mux.HandleFunc("POST /kvstore/append", h.append)
	mux.HandleFunc("POST /kvstore/txn", h.txn)
	mux.HandleFunc("GET /kvstore/is_leader", h.isLeader)
	mux.HandleFunc("DELETE /kvstore/{key...}", h.delete)
	mux.HandleFunc("POST /kvstore/session", h.openSession)
	mux.HandleFunc("GET /kvstore/list", h.list)
	mux.HandleFunc("GET /kvstore/watch/{key...}", h.watch)
	mux.HandleFunc("POST /kvstore/lease/grant", h.leaseGrant)
	mux.HandleFunc("POST /kvstore/lease/keepalive", h.leaseKeepAlive)
	mux.HandleFunc("POST /kvstore/lease/revoke", h.leaseRevoke)
	mux.HandleFunc("GET /kvstore/lease/{id}", h.leaseTimeToLive)
	// Anything else under /kvstore/ is an unknown route, answered like Twirp's.
	mux.HandleFunc("/kvstore/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, twirp.NewErrorf(twirp.BadRoute, "no route %s %s", r.Method, r.URL.Path))
	})
}

// restWrite is the body of put and append. Pointers tell a missing field from
// an empty one.
type restWrite struct {
	Key   *string `json:"key"`
	Value *string `json:"value"`
	restSession
	restCondition
	// Lease attaches the key to a lease; TTLMs grants one first.
	Lease uint64 `json:"lease,omitempty"`
	TTLMs uint64 `json:"ttl_ms,omitempty"`
}

// restSession is the exactly-once header of a write (see WriteHeader).
type restSession struct {
	ClientID uint64 `json:"client_id,omitempty"`
	Sequence uint64 `json:"sequence,omitempty"`
	Ack      uint64 `json:"ack,omitempty"`
}

// restCondition is a write's condition: at most one field set.
type restCondition struct {
	IfAbsent   bool    `json:"if_absent,omitempty"`
	IfRevision *uint64 `json:"if_revision,omitempty"`
	IfVersion  *uint64 `json:"if_version,omitempty"`
	IfValue    *string `json:"if_value,omitempty"`
}

// restKV is a key with its metadata, as get, list and watch answer it.
type restKV struct {
	Key            string `json:"key"`
	Value          string `json:"value"`
	CreateRevision uint64 `json:"create_revision"`
	ModRevision    uint64 `json:"mod_revision"`
	Version        uint64 `json:"version"`
	Lease          uint64 `json:"lease,omitempty"`
}

func toRESTKV(kv *kvv1.KeyValue) *restKV {
	if kv == nil {
		return nil
	}
	return &restKV{Key: kv.GetKey(), Value: kv.GetValue(), CreateRevision: kv.GetCreateRevision(),
		ModRevision: kv.GetModRevision(), Version: kv.GetVersion(), Lease: kv.GetLease()}
}

type restLeader struct {
	ID       uint32 `json:"id"`
	Term     uint64 `json:"term"`
	Leader   bool   `json:"leader"`
	LeaderID *int64 `json:"leader_id"`
}

func (h restHandler) get(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	p := newQueryParams(r)
	req := &kvv1.GetRequest{Key: key}
	if p.bool("stale") {
		req.Consistency = kvv1.ReadConsistency_READ_CONSISTENCY_STALE
	}
	if !h.block(w, r, &p, key, false) {
		return
	}
	resp, err := h.svc.Get(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	setRevision(w, resp.GetHeader().GetRevision())
	// Not writeJSON: the answer stays on the stack instead of in an any.
	kv := restKV{Key: resp.GetKey(), Value: resp.GetValue(), CreateRevision: resp.GetCreateRevision(),
		ModRevision: resp.GetModRevision(), Version: resp.GetVersion(), Lease: resp.GetLease()}
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusOK)
	writeAppended(w, func(b []byte) ([]byte, bool) { return append(kv.appendJSON(w, b), '\n'), true })
}

// restWritten answers put, append and delete.
type restWritten struct {
	Revision uint64 `json:"revision"`
	Existed  *bool  `json:"existed,omitempty"`
	Lease    uint64 `json:"lease,omitempty"`
	TTLMs    uint64 `json:"ttl_ms,omitempty"`
}

func (h restHandler) put(w http.ResponseWriter, r *http.Request) {
	body, ok := decodeWrite(w, r)
	if !ok {
		return
	}
	cond, err := body.condition()
	if err == nil && body.Lease != 0 && body.TTLMs != 0 {
		err = twirp.InvalidArgumentError("ttl_ms", "and lease cannot both be given")
	}
	if err != nil {
		writeError(w, err)
		return
	}
	out := restWritten{Lease: body.Lease}
	if body.TTLMs != 0 {
		// A lease of its own: granted first, without the caller's header
		// (which numbers one write). Should the put be refused, the lease
		// is revoked (best effort); should its outcome be unknown, the
		// lease expires unused, if it is.
		lease, err := h.svc.LeaseGrant(r.Context(), &kvv1.LeaseGrantRequest{TtlMs: body.TTLMs})
		if err != nil {
			writeError(w, err)
			return
		}
		out.Lease, out.TTLMs = lease.GetId(), lease.GetTtlMs()
	}
	resp, err := h.svc.Put(r.Context(), &kvv1.PutRequest{Key: *body.Key, Value: *body.Value, Write: body.header(),
		Lease: out.Lease, Condition: cond})
	if err != nil {
		if body.TTLMs != 0 && !kvclient.MaybeApplied(kvwire.ErrorFromTwirp(err)) {
			// Not applied: no key is on the lease granted for it. Left, it
			// would live out its TTL, and a client putting with a TTL into
			// a full store (no_space) would fill the lease table.
			_, _ = h.svc.LeaseRevoke(r.Context(), &kvv1.LeaseRevokeRequest{Id: out.Lease})
		}
		writeKeyError(w, *body.Key, err)
		return
	}
	out.Revision = resp.GetHeader().GetRevision()
	if body.TTLMs != 0 && body.ClientID != 0 {
		h.answerRetriedTTLPut(r.Context(), *body.Key, &out)
	}
	setRevision(w, out.Revision)
	writeJSON(w, http.StatusOK, out)
}

// answerRetriedTTLPut corrects the answer of a put with ttl_ms and a
// session that was a retry of a write already applied: the put itself was
// not applied again (exactly once), but the lease granted for it just now
// is not the one the key is on, so the answer names the key's lease (and
// the fresh one is revoked, best effort; else it expires unused). A retry
// is told apart by the key's state: still at the put's revision, on
// another lease. When the key has changed since, the answer stays as it
// is (the key's lease is then a later write's business).
func (h restHandler) answerRetriedTTLPut(ctx context.Context, key string, out *restWritten) {
	cur, err := h.svc.Get(ctx, &kvv1.GetRequest{Key: key})
	if err != nil || cur.GetModRevision() != out.Revision || cur.GetLease() == out.Lease {
		return
	}
	_, _ = h.svc.LeaseRevoke(ctx, &kvv1.LeaseRevokeRequest{Id: out.Lease})
	out.Lease, out.TTLMs = cur.GetLease(), 0
	if cur.GetLease() != 0 {
		if ttl, err := h.svc.LeaseTimeToLive(ctx, &kvv1.LeaseTimeToLiveRequest{Id: cur.GetLease()}); err == nil {
			out.TTLMs = ttl.GetTtlMs()
		}
	}
}

func (h restHandler) append(w http.ResponseWriter, r *http.Request) {
	body, ok := decodeWrite(w, r)
	if !ok {
		return
	}
	if body.restCondition != (restCondition{}) || body.Lease != 0 || body.TTLMs != 0 {
		writeError(w, twirp.InvalidArgumentError("body", "append takes no condition, lease or ttl_ms"))
		return
	}
	resp, err := h.svc.Append(r.Context(), &kvv1.AppendRequest{Key: *body.Key, Value: *body.Value, Write: body.header()})
	if err != nil {
		writeError(w, err)
		return
	}
	setRevision(w, resp.GetHeader().GetRevision())
	writeJSON(w, http.StatusOK, restWritten{Revision: resp.GetHeader().GetRevision()})
}

// restTxn is the body of txn: conditions with the same fields as a put's,
// each naming its key, and writes of which each is a put or a delete.
type restTxn struct {
	Conditions []restCompare  `json:"conditions"`
	Writes     []restTxnWrite `json:"writes"`
	restSession
}

type restCompare struct {
	Key *string `json:"key"`
	restCondition
}

type restTxnWrite struct {
	Put *struct {
		Key   *string `json:"key"`
		Value *string `json:"value"`
		Lease uint64  `json:"lease,omitempty"`
	} `json:"put"`
	Delete *struct {
		Key *string `json:"key"`
	} `json:"delete"`
}

// restTxnAnswer answers txn; failed and current only when it did not
// succeed.
type restTxnAnswer struct {
	Succeeded bool      `json:"succeeded"`
	Revision  uint64    `json:"revision"`
	Failed    *[]uint32 `json:"failed,omitempty"`
	Current   *[]restKV `json:"current,omitempty"`
}

func (h restHandler) txn(w http.ResponseWriter, r *http.Request) {
	var body restTxn
	if !decodeJSON(w, r, &body, `a JSON object with "writes" and optional "conditions"`) {
		return
	}
	req, err := body.request()
	if err != nil {
		writeError(w, err)
		return
	}
	resp, err := h.svc.Txn(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	out := restTxnAnswer{Succeeded: resp.GetSucceeded(), Revision: resp.GetHeader().GetRevision()}
	if !out.Succeeded {
		failed := append([]uint32{}, resp.GetFailed()...)
		current := make([]restKV, 0, len(resp.GetCurrent()))
		for _, kv := range resp.GetCurrent() {
			current = append(current, *toRESTKV(kv))
		}
		out.Failed, out.Current = &failed, &current
	}
	setRevision(w, out.Revision)
	writeJSON(w, http.StatusOK, out)
}

// request converts the body, refusing missing keys and values and a
// write that is neither a put nor a delete (or both); the rest is checked
// by validated, as for Twirp.
func (b restTxn) request() (*kvv1.TxnRequest, error) {
	req := &kvv1.TxnRequest{Write: b.header(), Conditions: make([]*kvv1.Compare, len(b.Conditions)),
		Writes: make([]*kvv1.TxnWrite, len(b.Writes))}
	for i, c := range b.Conditions {
		at := "conditions[" + strconv.Itoa(i) + "]"
		if c.Key == nil {
			return nil, twirp.RequiredArgumentError(at + ".key")
		}
		cond, err := c.condition()
		if err != nil {
			return nil, twirp.InvalidArgumentError(at, "give exactly one of if_absent, if_revision, if_version and if_value")
		}
		if cond == nil {
			return nil, twirp.RequiredArgumentError(at + ": one of if_absent, if_revision, if_version and if_value")
		}
		req.Conditions[i] = &kvv1.Compare{Key: *c.Key, Condition: cond}
	}
	for i, wr := range b.Writes {
		at := "writes[" + strconv.Itoa(i) + "]"
		switch {
		case (wr.Put == nil) == (wr.Delete == nil):
			return nil, twirp.InvalidArgumentError(at, "needs exactly one of put and delete")
		case wr.Put != nil && wr.Put.Key == nil:
			return nil, twirp.RequiredArgumentError(at + ".put.key")
		case wr.Put != nil && wr.Put.Value == nil:
			return nil, twirp.RequiredArgumentError(at + ".put.value")
		case wr.Delete != nil && wr.Delete.Key == nil:
			return nil, twirp.RequiredArgumentError(at + ".delete.key")
		case wr.Put != nil:
			req.Writes[i] = &kvv1.TxnWrite{Op: &kvv1.TxnWrite_Put{Put: &kvv1.TxnPut{Key: *wr.Put.Key, Value: *wr.Put.Value, Lease: wr.Put.Lease}}}
		default:
			req.Writes[i] = &kvv1.TxnWrite{Op: &kvv1.TxnWrite_Delete{Delete: &kvv1.TxnDelete{Key: *wr.Delete.Key}}}
		}
	}
	return req, nil
}

func (h restHandler) delete(w http.ResponseWriter, r *http.Request) {
	p := newQueryParams(r)
	b := restWrite{restSession: restSession{ClientID: p.uint("client_id"), Sequence: p.uint("sequence"), Ack: p.uint("ack")}}
	if p.has("if_absent") {
		p.fail("if_absent", "makes no sense for a delete")
	}
	if p.has("if_revision") {
		n := p.number("if_revision")
		b.IfRevision = &n
	}
	if p.has("if_version") {
		n := p.number("if_version")
		b.IfVersion = &n
	}
	if p.has("if_value") {
		v := p.str("if_value")
		b.IfValue = &v
	}
	cond, err := b.condition()
	if p.err != nil {
		err = p.err
	}
	if err != nil {
		writeError(w, err)
		return
	}
	resp, err := h.svc.Delete(r.Context(), &kvv1.DeleteRequest{Key: r.PathValue("key"), Write: b.header(), Condition: cond})
	if err != nil {
		writeKeyError(w, r.PathValue("key"), err)
		return
	}
	existed := resp.GetExisted()
	setRevision(w, resp.GetHeader().GetRevision())
	writeJSON(w, http.StatusOK, restWritten{Revision: resp.GetHeader().GetRevision(), Existed: &existed})
}

// condition is the write's condition, nil if none; more than one is an
// error.
func (c restCondition) condition() (*kvv1.Condition, error) {
	var conds []*kvv1.Condition
	if c.IfAbsent {
		conds = append(conds, &kvv1.Condition{Kind: kvv1.ConditionKind_CONDITION_KIND_ABSENT})
	}
	if c.IfRevision != nil {
		conds = append(conds, &kvv1.Condition{Kind: kvv1.ConditionKind_CONDITION_KIND_MOD_REVISION, ModRevision: *c.IfRevision})
	}
	if c.IfVersion != nil {
		conds = append(conds, &kvv1.Condition{Kind: kvv1.ConditionKind_CONDITION_KIND_VERSION, Version: *c.IfVersion})
	}
	if c.IfValue != nil {
		conds = append(conds, &kvv1.Condition{Kind: kvv1.ConditionKind_CONDITION_KIND_VALUE, Value: *c.IfValue})
	}
	switch len(conds) {
	case 0:
		return nil, nil
	case 1:
		return conds[0], nil
	}
	return nil, twirp.InvalidArgumentError("condition", "give at most one of if_absent, if_revision, if_version and if_value")
}

// restOpened is the body answering POST /kvstore/session.
type restOpened struct {
	ClientID           uint64 `json:"client_id"`
	IdleTimeoutSeconds uint64 `json:"idle_timeout_seconds"`
}

func (h restHandler) openSession(w http.ResponseWriter, r *http.Request) {
	resp, err := h.svc.OpenSession(r.Context(), &kvv1.OpenSessionRequest{})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, restOpened{ClientID: resp.GetClientId(), IdleTimeoutSeconds: resp.GetIdleTimeoutSeconds()})
}

func (h restHandler) isLeader(w http.ResponseWriter, r *http.Request) {
	st, err := h.svc.Status(r.Context(), &kvv1.StatusRequest{})
	if err != nil {
		writeError(w, err)
		return
	}
	out := restLeader{ID: st.GetReplicaId(), Term: st.GetTerm(), Leader: st.GetRole() == kvv1.Role_ROLE_LEADER}
	if st.GetLeaderKnown() {
		id := int64(st.GetLeaderId())
		out.LeaderID = &id
	}
	writeJSON(w, http.StatusOK, out)
}

func (b restSession) header() *kvv1.WriteHeader {
	if b.ClientID == 0 && b.Sequence == 0 && b.Ack == 0 {
		return nil
	}
	return &kvv1.WriteHeader{ClientId: b.ClientID, Sequence: b.Sequence, Ack: b.Ack}
}

// decodeWrite reads a put/append body, answering 400 itself when the body is
// unusable.
func decodeWrite(w http.ResponseWriter, r *http.Request) (restWrite, bool) {
	var body restWrite
	if !decodeJSONWith(w, r, &body, "a JSON object with key and value", func(data []byte) bool {
		var fast restWrite
		if !decodeWriteFast(data, &fast) {
			return false
		}
		body = fast
		return true
	}) {
		return body, false
	}
	switch {
	case body.Key == nil:
		writeError(w, twirp.RequiredArgumentError("key"))
		return body, false
	case body.Value == nil:
		writeError(w, twirp.RequiredArgumentError("value"))
		return body, false
	}
	return body, true
}

// decodeJSON reads a JSON object into dst, refusing unknown fields,
// trailing data and invalid UTF-8, and answers 400 itself when the body is
// unusable. Oversized bodies never get here (see limitBody).
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any, what string) bool {
	return decodeJSONWith(w, r, dst, what, nil)
}

// decodeJSONWith is decodeJSON trying fast first (if not nil): a reader
// without reflection for the plain bodies of a hot route, which reports
// false to leave a body to encoding/json.
func decodeJSONWith(w http.ResponseWriter, r *http.Request, dst any, what string, fast func([]byte) bool) bool {
	data, err := bodyBytes(r)
	if err != nil {
		writeError(w, errMalformedBody(err))
		return false
	}
	// encoding/json would quietly turn invalid UTF-8 into U+FFFD; Twirp
	// refuses it, and so does REST.
	if !utf8.Valid(data) {
		writeError(w, twirp.NewError(twirp.Malformed, "the body is not valid UTF-8"))
		return false
	}
	if fast != nil && fast(data) {
		return true
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err = dec.Decode(dst)
	if err == nil {
		if extra := dec.Decode(&struct{}{}); extra != io.EOF {
			err = errors.New("trailing data after the JSON object")
		}
	}
	if err != nil {
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typeErr):
			field := jsonFieldPath(typeErr.Field)
			if field == "" {
				field = "body"
			}
			writeError(w, twirp.InvalidArgumentError(field, "must be a JSON "+typeErr.Type.Kind().String()))
		default:
			writeError(w, twirp.NewError(twirp.Malformed, "the body is not "+what+": "+err.Error()))
		}
		return false
	}
	return true
}

// jsonFieldPath is a field path of encoding/json's as the client spells
// it: without the names of the embedded Go structs it passes through
// (restSession.sequence is the body's "sequence"), which start with a
// lower-case "rest" and have an upper-case letter no JSON field name has.
func jsonFieldPath(path string) string {
	parts := strings.Split(path, ".")
	kept := parts[:0]
	for _, p := range parts {
		if strings.HasPrefix(p, "rest") && strings.ToLower(p) != p {
			continue
		}
		kept = append(kept, p)
	}
	return strings.Join(kept, ".")
}

// errBodyTooLarge is the error for a request body over the limit; it maps to
// HTTP 413 (see httpStatus).
func errBodyTooLarge(limit int64) twirp.Error {
	return twirp.NewError(twirp.ResourceExhausted, "request body larger than "+strconv.FormatInt(limit, 10)+" bytes").
		WithMeta("limit_bytes", strconv.FormatInt(limit, 10))
}

// emptyJSON is the body of a successful write: what encoding/json writes
// for struct{}{}, without encoding it each time.
var emptyJSON = []byte("{}\n")

// jsonContentType is the Content-Type of every JSON answer, one shared
// slice (net/http never modifies header values) instead of one per
// response.
var jsonContentType = []string{"application/json"}

func writeEmpty(w http.ResponseWriter, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(emptyJSON)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	if !writeAppended(w, func(b []byte) ([]byte, bool) { return appendFastJSON(w, b, v) }) {
		_ = json.NewEncoder(w).Encode(v)
	}
}

// writeError writes err as a Twirp error body with its HTTP status. An
// error that names a store revision (a failed condition) carries it in the
// X-Durio-Revision header too; too many watchers asks to retry in a second.
func writeError(w http.ResponseWriter, err error) {
	var terr twirp.Error
	if !errors.As(err, &terr) {
		terr = twirp.InternalErrorWith(err)
	}
	if rev := terr.Meta("revision"); rev != "" {
		w.Header().Set(RevisionHeader, rev)
	}
	if terr.Code() == twirp.ResourceExhausted && terr.Meta("reason") == "too_many_watchers" {
		w.Header().Set("Retry-After", "1")
	}
	writeErrorStatus(w, httpStatus(terr), terr)
}

// writeErrorStatus writes terr as a Twirp error body with the given status.
// A failed condition's body also has the key's state as structured fields:
// "current" (a key like get answers, null if absent) and "revision".
func writeErrorStatus(w http.ResponseWriter, status int, terr twirp.Error) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	if !conditionFailed(terr) &&
		writeAppended(w, func(b []byte) ([]byte, bool) { return appendErrorJSON(b, terr), true }) {
		return
	}
	body := map[string]any{"code": terr.Code(), "msg": terr.Msg()}
	if meta := terr.MetaMap(); len(meta) > 0 {
		body["meta"] = meta
	}
	if conditionFailed(terr) {
		body["revision"] = metaUint(terr, "revision")
		var current *restKV
		if terr.Meta("exists") == "true" {
			current = &restKV{Value: terr.Meta("value"), CreateRevision: metaUint(terr, "create_revision"),
				ModRevision: metaUint(terr, "mod_revision"), Version: metaUint(terr, "version"), Lease: metaUint(terr, "lease")}
			current.Key = terr.Meta("key") // set by writeKeyError
		}
		body["current"] = current
	}
	_ = json.NewEncoder(w).Encode(body)
}

// conditionFailed reports a write refused because its condition did not
// hold (definite: nothing was applied).
func conditionFailed(err twirp.Error) bool {
	return err.Code() == twirp.FailedPrecondition && err.Meta("reason") == "condition_failed"
}

// writeKeyError is writeError for a write of key: a failed condition's
// answer names the key in its "current" state.
func writeKeyError(w http.ResponseWriter, key string, err error) {
	var terr twirp.Error
	if errors.As(err, &terr) && conditionFailed(terr) && terr.Meta("exists") == "true" {
		err = terr.WithMeta("key", key)
	}
	writeError(w, err)
}

func metaUint(err twirp.Error, key string) uint64 {
	n, _ := strconv.ParseUint(err.Meta(key), 10, 64)
	return n
}

// httpStatus is Twirp's status for an error code, except that an oversized body
// is 413 rather than 429, an unknown outcome (deadline_exceeded) is 504
// rather than 408, which proxies and browsers retry on their own, a failed
// condition is 409 (Conflict, as in etcd's and Consul's HTTP APIs), a
// missing lease 404, a compacted revision 410 (Gone), and a write over the
// quota 507 (Insufficient Storage; not 412, which says nothing of room).
func httpStatus(err twirp.Error) int {
	switch {
	case err.Code() == twirp.ResourceExhausted && err.Meta("limit_bytes") != "":
		return http.StatusRequestEntityTooLarge
	case err.Code() == twirp.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case conditionFailed(err):
		return http.StatusConflict
	case err.Code() == twirp.FailedPrecondition && err.Meta("reason") == "lease_not_found":
		return http.StatusNotFound
	case err.Code() == twirp.OutOfRange && err.Meta("reason") == "compacted":
		return http.StatusGone
	case err.Code() == twirp.FailedPrecondition && err.Meta("reason") == "no_space":
		return http.StatusInsufficientStorage
	}
	return twirp.ServerHTTPStatusFromErrorCode(err.Code())
}

func errMalformedBody(err error) twirp.Error {
	return twirp.NewError(twirp.Malformed, "could not read the request body: "+err.Error())
}
