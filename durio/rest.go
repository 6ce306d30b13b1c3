package durio

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/twitchtv/twirp"

	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// restHandler serves the original durio's REST routes on top of a KVService,
// so REST and Twirp share one implementation and one set of status codes:
//
//	GET    /kvstore/get/{key...} -> 200 {"key","value"} | 404
//	POST   /kvstore/put          {"key","value"} -> 200
//	POST   /kvstore/append       {"key","value"} -> 200
//	DELETE /kvstore/{key...}     -> 200
//	GET    /kvstore/is_leader    -> 200 {"id","term","leader","leader_id"}
//	POST   /kvstore/session      -> 200 {"client_id","idle_timeout_seconds"}
//
// Writes are exactly-once when they carry a session: put and append bodies
// take "client_id" (from POST /kvstore/session), "sequence" (1, 2, 3, ...
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
	svc kvv1.KVService
}

// register adds the REST routes to mux.
func (h restHandler) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /kvstore/get/{key...}", h.get)
	mux.HandleFunc("POST /kvstore/put", h.put)
	mux.HandleFunc("POST /kvstore/append", h.append)
	mux.HandleFunc("GET /kvstore/is_leader", h.isLeader)
	mux.HandleFunc("DELETE /kvstore/{key...}", h.delete)
	mux.HandleFunc("POST /kvstore/session", h.openSession)
	// Anything else under /kvstore/ is an unknown route, answered like Twirp's.
	mux.HandleFunc("/kvstore/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, twirp.NewErrorf(twirp.BadRoute, "no route %s %s", r.Method, r.URL.Path))
	})
}

// restWrite is the body of put and append. Pointers tell a missing field from
// an empty one.
type restWrite struct {
	Key      *string `json:"key"`
	Value    *string `json:"value"`
	ClientID uint64  `json:"client_id,omitempty"`
	Sequence uint64  `json:"sequence,omitempty"`
	Ack      uint64  `json:"ack,omitempty"`
}

type restKV struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type restLeader struct {
	ID       uint32 `json:"id"`
	Term     uint64 `json:"term"`
	Leader   bool   `json:"leader"`
	LeaderID *int64 `json:"leader_id"`
}

func (h restHandler) get(w http.ResponseWriter, r *http.Request) {
	req := &kvv1.GetRequest{Key: r.PathValue("key")}
	if r.URL.Query().Get("stale") == "true" {
		req.Consistency = kvv1.ReadConsistency_READ_CONSISTENCY_STALE
	}
	resp, err := h.svc.Get(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, restKV{Key: resp.GetKey(), Value: resp.GetValue()})
}

func (h restHandler) put(w http.ResponseWriter, r *http.Request) {
	body, ok := decodeWrite(w, r)
	if !ok {
		return
	}
	_, err := h.svc.Put(r.Context(), &kvv1.PutRequest{Key: *body.Key, Value: *body.Value, Write: body.header()})
	writeEmpty(w, err)
}

func (h restHandler) append(w http.ResponseWriter, r *http.Request) {
	body, ok := decodeWrite(w, r)
	if !ok {
		return
	}
	_, err := h.svc.Append(r.Context(), &kvv1.AppendRequest{Key: *body.Key, Value: *body.Value, Write: body.header()})
	writeEmpty(w, err)
}

func (h restHandler) delete(w http.ResponseWriter, r *http.Request) {
	var b restWrite
	for name, dst := range map[string]*uint64{"client_id": &b.ClientID, "sequence": &b.Sequence, "ack": &b.Ack} {
		if v := r.URL.Query().Get(name); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				writeError(w, twirp.InvalidArgumentError(name, "must be an unsigned integer"))
				return
			}
			*dst = n
		}
	}
	_, err := h.svc.Delete(r.Context(), &kvv1.DeleteRequest{Key: r.PathValue("key"), Write: b.header()})
	writeEmpty(w, err)
}

// restSession is the body answering POST /kvstore/session.
type restSession struct {
	ClientID           uint64 `json:"client_id"`
	IdleTimeoutSeconds uint64 `json:"idle_timeout_seconds"`
}

func (h restHandler) openSession(w http.ResponseWriter, r *http.Request) {
	resp, err := h.svc.OpenSession(r.Context(), &kvv1.OpenSessionRequest{})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, restSession{ClientID: resp.GetClientId(), IdleTimeoutSeconds: resp.GetIdleTimeoutSeconds()})
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

func (b restWrite) header() *kvv1.WriteHeader {
	if b.ClientID == 0 && b.Sequence == 0 && b.Ack == 0 {
		return nil
	}
	return &kvv1.WriteHeader{ClientId: b.ClientID, Sequence: b.Sequence, Ack: b.Ack}
}

// decodeWrite reads a put/append body, answering 400 itself when the body is
// unusable. Oversized bodies never get here (see limitBody).
func decodeWrite(w http.ResponseWriter, r *http.Request) (restWrite, bool) {
	var body restWrite
	data, err := bodyBytes(r)
	if err != nil {
		writeError(w, errMalformedBody(err))
		return body, false
	}
	// encoding/json would quietly turn invalid UTF-8 into U+FFFD; Twirp
	// refuses it, and so does REST.
	if !utf8.Valid(data) {
		writeError(w, twirp.NewError(twirp.Malformed, "the body is not valid UTF-8"))
		return body, false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err = dec.Decode(&body)
	if err == nil {
		if extra := dec.Decode(&struct{}{}); extra != io.EOF {
			err = errors.New("trailing data after the JSON object")
		}
	}
	if err != nil {
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typeErr):
			field := typeErr.Field
			if field == "" {
				field = "body"
			}
			writeError(w, twirp.InvalidArgumentError(field, "must be a JSON "+typeErr.Type.Kind().String()))
		default:
			writeError(w, twirp.NewError(twirp.Malformed, "the body is not a JSON object with key and value: "+err.Error()))
		}
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
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes err as a Twirp error body with its HTTP status.
func writeError(w http.ResponseWriter, err error) {
	var terr twirp.Error
	if !errors.As(err, &terr) {
		terr = twirp.InternalErrorWith(err)
	}
	writeErrorStatus(w, httpStatus(terr), terr)
}

// writeErrorStatus writes terr as a Twirp error body with the given status.
func writeErrorStatus(w http.ResponseWriter, status int, terr twirp.Error) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	body := map[string]any{"code": terr.Code(), "msg": terr.Msg()}
	if meta := terr.MetaMap(); len(meta) > 0 {
		body["meta"] = meta
	}
	_ = json.NewEncoder(w).Encode(body)
}

// httpStatus is Twirp's status for an error code, except that an oversized body
// is 413 rather than 429, and an unknown outcome (deadline_exceeded) is 504
// rather than 408, which proxies and browsers retry on their own.
func httpStatus(err twirp.Error) int {
	switch {
	case err.Code() == twirp.ResourceExhausted && err.Meta("limit_bytes") != "":
		return http.StatusRequestEntityTooLarge
	case err.Code() == twirp.DeadlineExceeded:
		return http.StatusGatewayTimeout
	}
	return twirp.ServerHTTPStatusFromErrorCode(err.Code())
}

func errMalformedBody(err error) twirp.Error {
	return twirp.NewError(twirp.Malformed, "could not read the request body: "+err.Error())
}
