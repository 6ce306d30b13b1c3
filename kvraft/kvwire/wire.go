// Package kvwire converts between kvraft's client types (package kvclient)
// and their kv.v1 protobuf forms, and between kvclient's errors and Twirp
// errors: the counterpart of raft/wire for the key-value API.
//
// Every hop of durio's request path goes through it: Server exposes a
// kvclient.Service (a replica, or durio's forwarding frontend) as the
// kv.v1 KVService; Client is a kvclient.Service over a KVService client, so
// the Clerk can drive remote replicas; Forwarder and BatchServer carry many
// writes per call between replicas. An error crosses the wire and comes
// back as the same kvclient error (errors.Is holds on both sides), and the
// Twirp error stays in the chain (errors.As finds it) for callers that
// show the server's own words.
package kvwire

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"

	"github.com/twitchtv/twirp"
	"google.golang.org/protobuf/proto"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// Meta keys of the Twirp errors this package writes and reads.
const (
	// MetaLeaderID is the id of the replica the answering one believes leads.
	MetaLeaderID = "leader_id"
	// MetaLeaderURL is that replica's client URL, when known.
	MetaLeaderURL = "leader_url"
	// MetaProposed is "true" when a refused or unfinished write may have
	// been applied.
	MetaProposed = "proposed"
	// MetaReason names which refusal a failed_precondition or
	// invalid_argument is (one of the Reason constants).
	MetaReason = "reason"
)

// Reasons carried in MetaReason.
const (
	ReasonStale          = "stale"
	ReasonKilled         = "killed"
	ReasonTooLarge       = "too_large"
	ReasonNoSession      = "no_session"
	ReasonTooManyPending = "too_many_pending"
	// ReasonConditionFailed: a conditional write's condition did not hold
	// (failed_precondition); the meta keys below describe the key.
	ReasonConditionFailed = "condition_failed"
	ReasonLeaseNotFound   = "lease_not_found"
	ReasonTooManyLeases   = "too_many_leases"
	ReasonTooManyWatchers = "too_many_watchers"
	// ReasonNoSpace: the write would grow the keys and values past the
	// cluster's quota (failed_precondition: not to be retried until room
	// is made, as gRPC advises for a state the client must fix first; and
	// clients from before the quota take that code as final, where they
	// would retry resource_exhausted); nothing was applied.
	ReasonNoSpace = "no_space"
	// ReasonCompacted and ReasonFutureRevision answer a List at a revision
	// outside the retained history (out_of_range).
	ReasonCompacted      = "compacted"
	ReasonFutureRevision = "future_revision"
)

// Meta keys of a failed condition (reason condition_failed) and of a
// compacted revision; numbers are decimal.
const (
	MetaRevision        = "revision"
	MetaExists          = "exists"
	MetaValue           = "value"
	MetaCreateRevision  = "create_revision"
	MetaModRevision     = "mod_revision"
	MetaVersion         = "version"
	MetaCompactRevision = "compact_revision"
)

// WriteIDToProto converts a write id; the zero id (no identification) is
// nil.
func WriteIDToProto(id kvclient.WriteID) *kvv1.WriteHeader {
	if id == (kvclient.WriteID{}) {
		return nil
	}
	return writeIDInto(new(kvv1.WriteHeader), id)
}

// writeIDInto is WriteIDToProto into p (see headerInto).
func writeIDInto(p *kvv1.WriteHeader, id kvclient.WriteID) *kvv1.WriteHeader {
	if id == (kvclient.WriteID{}) {
		return nil
	}
	p.ClientId, p.Sequence, p.Ack = id.ClientID, id.Seq, id.Ack
	return p
}

// WriteIDFromProto converts a write header; nil is the zero id.
func WriteIDFromProto(h *kvv1.WriteHeader) kvclient.WriteID {
	return kvclient.WriteID{ClientID: h.GetClientId(), Seq: h.GetSequence(), Ack: h.GetAck()}
}

// HeaderToProto converts a response header.
func HeaderToProto(h kvclient.ResponseHeader) *kvv1.ResponseHeader {
	return headerInto(new(kvv1.ResponseHeader), h)
}

// headerInto is HeaderToProto into p, which a caller allocates together
// with the message that carries it: one allocation instead of two on
// every answer.
func headerInto(p *kvv1.ResponseHeader, h kvclient.ResponseHeader) *kvv1.ResponseHeader {
	p.ReplicaId, p.LeaderId, p.Term, p.Revision = uint32(h.ReplicaID), uint32(h.ReplicaID), h.Term, h.Revision
	return p
}

// HeaderFromProto converts a response header.
func HeaderFromProto(h *kvv1.ResponseHeader) kvclient.ResponseHeader {
	return kvclient.ResponseHeader{ReplicaID: int(h.GetReplicaId()), Term: h.GetTerm(), Revision: h.GetRevision()}
}

// KeyValueToProto converts a key-value; nil stays nil.
func KeyValueToProto(kv *kvclient.KeyValue) *kvv1.KeyValue {
	if kv == nil {
		return nil
	}
	return &kvv1.KeyValue{Key: kv.Key, Value: kv.Value, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision,
		Version: kv.Version, Lease: kv.Lease}
}

// KeyValueFromProto converts a key-value; nil stays nil.
func KeyValueFromProto(p *kvv1.KeyValue) *kvclient.KeyValue {
	if p == nil {
		return nil
	}
	return &kvclient.KeyValue{Key: p.GetKey(), Value: p.GetValue(), CreateRevision: p.GetCreateRevision(),
		ModRevision: p.GetModRevision(), Version: p.GetVersion(), Lease: p.GetLease()}
}

// ConditionToProto converts a condition; the empty condition is nil.
func ConditionToProto(c kvclient.Condition) *kvv1.Condition {
	if c == (kvclient.Condition{}) {
		return nil
	}
	return &kvv1.Condition{Kind: kvv1.ConditionKind(c.Kind), ModRevision: c.ModRevision, Version: c.Version, Value: c.Value}
}

// ConditionFromProto converts a condition; nil is no condition. An
// unknown kind stays unknown, for the server to refuse.
func ConditionFromProto(p *kvv1.Condition) kvclient.Condition {
	return kvclient.Condition{Kind: kvclient.ConditionKind(p.GetKind()), ModRevision: p.GetModRevision(),
		Version: p.GetVersion(), Value: p.GetValue()}
}

// ConsistencyFromProto converts a read consistency; unspecified is
// linearizable.
func ConsistencyFromProto(c kvv1.ReadConsistency) kvclient.Consistency {
	if c == kvv1.ReadConsistency_READ_CONSISTENCY_STALE {
		return kvclient.Stale
	}
	return kvclient.Linearizable
}

// ConsistencyToProto converts a read consistency.
func ConsistencyToProto(c kvclient.Consistency) kvv1.ReadConsistency {
	if c == kvclient.Stale {
		return kvv1.ReadConsistency_READ_CONSISTENCY_STALE
	}
	return kvv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE
}

// PutRequestFromProto converts a Put.
func PutRequestFromProto(p *kvv1.PutRequest) *kvclient.PutRequest {
	return &kvclient.PutRequest{Key: p.GetKey(), Value: p.GetValue(), Write: WriteIDFromProto(p.GetWrite()),
		Lease: p.GetLease(), Condition: ConditionFromProto(p.GetCondition())}
}

// PutRequestToProto converts a Put.
func PutRequestToProto(r *kvclient.PutRequest) *kvv1.PutRequest {
	// The request and its write header in one allocation.
	m := new(struct {
		req kvv1.PutRequest
		id  kvv1.WriteHeader
	})
	m.req.Key, m.req.Value, m.req.Write = r.Key, r.Value, writeIDInto(&m.id, r.Write)
	m.req.Lease, m.req.Condition = r.Lease, ConditionToProto(r.Condition)
	return &m.req
}

// AppendRequestFromProto converts an Append.
func AppendRequestFromProto(p *kvv1.AppendRequest) *kvclient.AppendRequest {
	return &kvclient.AppendRequest{Key: p.GetKey(), Value: p.GetValue(), Write: WriteIDFromProto(p.GetWrite())}
}

// AppendRequestToProto converts an Append.
func AppendRequestToProto(r *kvclient.AppendRequest) *kvv1.AppendRequest {
	return &kvv1.AppendRequest{Key: r.Key, Value: r.Value, Write: WriteIDToProto(r.Write)}
}

// DeleteRequestFromProto converts a Delete.
func DeleteRequestFromProto(p *kvv1.DeleteRequest) *kvclient.DeleteRequest {
	return &kvclient.DeleteRequest{Key: p.GetKey(), Write: WriteIDFromProto(p.GetWrite()),
		Condition: ConditionFromProto(p.GetCondition())}
}

// DeleteRequestToProto converts a Delete.
func DeleteRequestToProto(r *kvclient.DeleteRequest) *kvv1.DeleteRequest {
	return &kvv1.DeleteRequest{Key: r.Key, Write: WriteIDToProto(r.Write), Condition: ConditionToProto(r.Condition)}
}

// ErrorToTwirp maps a kvclient error (from a replica or a Clerk) to the
// Twirp error durio answers with. leaderURL, if not nil, gives the client
// URL of a hinted leader for MetaLeaderURL. A Twirp error passes through.
//
//	*WrongLeaderError, ErrNoLeader, ErrKilled -> unavailable (503)
//	ErrTimeout, context errors                -> deadline_exceeded (504), outcome unknown
//	ErrInvalid, ErrTooLarge                   -> invalid_argument (400)
//	ErrStale, ErrNoSession, ErrTooManyPending -> failed_precondition (412)
//	*ConditionFailedError, ErrLeaseNotFound   -> failed_precondition, with MetaReason
//	ErrTooManyLeases, ErrTooManyWatchers      -> resource_exhausted, with MetaReason
//	ErrNoSpace                                -> failed_precondition, with MetaReason
//	*CompactedError, ErrFutureRevision        -> out_of_range, with MetaReason
func ErrorToTwirp(err error, leaderURL func(id int) string) error {
	if err == nil {
		return nil
	}
	var wl *kvclient.WrongLeaderError
	var terr twirp.Error
	var cf *kvclient.ConditionFailedError
	var ce *kvclient.CompactedError
	if errors.As(err, &terr) && remoteRefusal(terr) {
		// Another replica's refusal of the request itself, which
		// ErrorFromTwirp wrapped in its sentinel: mapped again, it would
		// repeat its own words around the remote's ("kvraft: no such
		// session: twirp error failed_precondition: kvraft: no such
		// session: ...") and lose the remote's meta, so that the answer
		// depended on the replica asked.
		return terr
	}
	switch {
	case errors.As(err, &cf):
		t := twirp.NewError(twirp.FailedPrecondition, cf.Error()).WithMeta(MetaReason, ReasonConditionFailed).
			WithMeta(MetaRevision, strconv.FormatUint(cf.Revision, 10)).WithMeta(MetaExists, strconv.FormatBool(cf.Current != nil))
		if c := cf.Current; c != nil {
			t = t.WithMeta("key", c.Key).WithMeta(MetaValue, c.Value).WithMeta(MetaCreateRevision, strconv.FormatUint(c.CreateRevision, 10)).
				WithMeta(MetaModRevision, strconv.FormatUint(c.ModRevision, 10)).
				WithMeta(MetaVersion, strconv.FormatUint(c.Version, 10))
			if c.Lease != 0 {
				t = t.WithMeta("lease", strconv.FormatUint(c.Lease, 10))
			}
		}
		return t
	case errors.Is(err, kvclient.ErrLeaseNotFound):
		return twirp.NewError(twirp.FailedPrecondition, err.Error()).WithMeta(MetaReason, ReasonLeaseNotFound)
	case errors.Is(err, kvclient.ErrTooManyLeases):
		return twirp.NewError(twirp.ResourceExhausted, err.Error()).WithMeta(MetaReason, ReasonTooManyLeases)
	case errors.Is(err, kvclient.ErrTooManyWatchers):
		return twirp.NewError(twirp.ResourceExhausted, err.Error()).WithMeta(MetaReason, ReasonTooManyWatchers)
	case errors.Is(err, kvclient.ErrNoSpace):
		return twirp.NewError(twirp.FailedPrecondition, err.Error()).WithMeta(MetaReason, ReasonNoSpace)
	case errors.As(err, &ce):
		return twirp.NewError(twirp.OutOfRange, err.Error()).WithMeta(MetaReason, ReasonCompacted).
			WithMeta(MetaCompactRevision, strconv.FormatUint(ce.CompactRevision, 10))
	case errors.Is(err, kvclient.ErrFutureRevision):
		return twirp.NewError(twirp.OutOfRange, err.Error()).WithMeta(MetaReason, ReasonFutureRevision)
	case errors.Is(err, kvclient.ErrNoLeader):
		return twirp.NewError(twirp.Unavailable, "no leader reachable in time").WithMeta("cause", err.Error())
	case errors.Is(err, kvclient.ErrTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return twirp.NewError(twirp.DeadlineExceeded,
			"timed out; the write may or may not have been applied: retry it with the same client_id and sequence").
			WithMeta(MetaProposed, "true").WithMeta("cause", err.Error())
	case errors.As(err, &wl):
		t := twirp.NewError(twirp.Unavailable, "not the leader")
		if wl.Leader != kvclient.NoLeader {
			t = t.WithMeta(MetaLeaderID, strconv.Itoa(wl.Leader))
			if u := urlOf(leaderURL, wl.Leader); u != "" {
				t = t.WithMeta(MetaLeaderURL, u)
			}
		}
		if wl.Proposed {
			t = t.WithMeta(MetaProposed, "true")
		}
		return t
	case errors.Is(err, kvclient.ErrKilled):
		return twirp.NewError(twirp.Unavailable, "replica shutting down").WithMeta(MetaProposed, "true").WithMeta(MetaReason, ReasonKilled)
	case errors.Is(err, kvclient.ErrTooLarge):
		return twirp.NewError(twirp.InvalidArgument, err.Error()).WithMeta("argument", "value").WithMeta(MetaReason, ReasonTooLarge)
	case errors.Is(err, kvclient.ErrInvalid):
		return twirp.NewError(twirp.InvalidArgument, err.Error())
	case errors.Is(err, kvclient.ErrStale):
		return twirp.NewError(twirp.FailedPrecondition, err.Error()).WithMeta(MetaReason, ReasonStale)
	case errors.Is(err, kvclient.ErrNoSession):
		return twirp.NewError(twirp.FailedPrecondition, err.Error()+": open a session (OpenSession, POST /kvstore/session)").
			WithMeta(MetaReason, ReasonNoSession)
	case errors.Is(err, kvclient.ErrTooManyPending):
		return twirp.NewError(twirp.FailedPrecondition, err.Error()+": send a higher ack").WithMeta(MetaReason, ReasonTooManyPending)
	case errors.As(err, &terr):
		return terr
	default:
		return twirp.InternalErrorWith(err)
	}
}

// remoteRefusal reports whether terr is a definite refusal of the request
// (bad input, a failed precondition, a revision out of range), which reads
// the same whichever replica gave it.
func remoteRefusal(terr twirp.Error) bool {
	switch terr.Code() {
	case twirp.InvalidArgument, twirp.Malformed, twirp.FailedPrecondition, twirp.OutOfRange:
		return true
	case twirp.ResourceExhausted:
		// The cluster's verdict on the write, not one replica's load.
		return terr.Meta(MetaReason) == ReasonTooManyLeases
	}
	return false
}

func urlOf(leaderURL func(int) string, id int) string {
	if leaderURL == nil {
		return ""
	}
	return leaderURL(id)
}

// TLSRejected reports whether err is a TLS failure that retrying cannot
// fix: an untrusted or mismatched certificate, or a plain-HTTP server on an
// https URL.
func TLSRejected(err error) bool {
	var (
		verify    *tls.CertificateVerificationError
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
	)
	// net/http turns the RecordHeaderError of an https request answered
	// in plain HTTP into ErrSchemeMismatch.
	return errors.As(err, &verify) || errors.As(err, &unknownCA) || errors.As(err, &hostname) ||
		errors.As(err, &invalid) || errors.As(err, &record) || errors.Is(err, http.ErrSchemeMismatch)
}

// ErrorFromTwirp maps what a KVService client returned to a kvclient
// error, keeping err in the chain. A call that got no answer stays an
// unknown outcome, except a refused connection (ErrUnreachable: nothing
// was sent) and a TLS verification failure (ErrRejected: retrying cannot
// help). not_found is not an error here: Client.Get reports it as Found
// false.
func ErrorFromTwirp(err error) error {
	if err == nil {
		return nil
	}
	if NoAnswer(err) {
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return fmt.Errorf("%w: %w", kvclient.ErrUnreachable, err)
		case TLSRejected(err):
			return fmt.Errorf("%w: %w", kvclient.ErrRejected, err)
		}
		return err
	}
	var terr twirp.Error
	errors.As(err, &terr)
	if terr.Code() == twirp.Internal && errors.Is(err, proto.Error) && strings.HasPrefix(terr.Msg(), "failed to marshal") {
		// The request could not be encoded, so it was never sent: a
		// string that is not valid UTF-8, which no retry can send either.
		return fmt.Errorf("%w: %w", kvclient.ErrInvalid, err)
	}
	switch terr.Code() {
	case twirp.Unavailable:
		if terr.Meta(MetaReason) == ReasonKilled {
			return fmt.Errorf("%w: %w", kvclient.ErrKilled, err)
		}
		wl := &kvclient.WrongLeaderError{Leader: kvclient.NoLeader, Proposed: terr.Meta(MetaProposed) == "true"}
		if id, perr := strconv.Atoi(terr.Meta(MetaLeaderID)); perr == nil && id >= 0 {
			wl.Leader = id
		}
		return fmt.Errorf("%w: %w", wl, err)
	case twirp.DeadlineExceeded:
		return fmt.Errorf("%w: %w", kvclient.ErrTimeout, err)
	case twirp.InvalidArgument, twirp.Malformed, twirp.OutOfRange:
		switch terr.Meta(MetaReason) {
		case ReasonCompacted:
			rev, _ := strconv.ParseUint(terr.Meta(MetaCompactRevision), 10, 64)
			return fmt.Errorf("%w: %w", &kvclient.CompactedError{CompactRevision: rev}, err)
		case ReasonFutureRevision:
			return fmt.Errorf("%w: %w", kvclient.ErrFutureRevision, err)
		}
		if terr.Meta(MetaReason) == ReasonTooLarge {
			return refusedAs(kvclient.ErrTooLarge, err, terr)
		}
		return fmt.Errorf("%w: %w", kvclient.ErrInvalid, err)
	case twirp.FailedPrecondition:
		switch terr.Meta(MetaReason) {
		case ReasonNoSession:
			return fmt.Errorf("%w: %w", kvclient.ErrNoSession, err)
		case ReasonTooManyPending:
			return fmt.Errorf("%w: %w", kvclient.ErrTooManyPending, err)
		case ReasonConditionFailed:
			return fmt.Errorf("%w: %w", conditionFailedFromMeta(terr), err)
		case ReasonLeaseNotFound:
			return refusedAs(kvclient.ErrLeaseNotFound, err, terr)
		case ReasonNoSpace:
			return refusedAs(kvclient.ErrNoSpace, err, terr)
		}
		return fmt.Errorf("%w: %w", kvclient.ErrStale, err)
	case twirp.ResourceExhausted:
		switch terr.Meta(MetaReason) {
		case ReasonTooManyLeases:
			return refusedAs(kvclient.ErrTooManyLeases, err, terr)
		case ReasonTooManyWatchers:
			// Another replica (or a later try) may have room.
			return fmt.Errorf("%w: %w: %w", &kvclient.WrongLeaderError{Leader: kvclient.NoLeader}, kvclient.ErrTooManyWatchers, err)
		}
		if terr.Meta("limit_bytes") != "" {
			// The request body was over the listener's limit.
			return fmt.Errorf("%w: %w", kvclient.ErrInvalid, err)
		}
		// Overloaded: nothing was done; try again (elsewhere).
		return fmt.Errorf("%w: %w", &kvclient.WrongLeaderError{Leader: kvclient.NoLeader}, err)
	case twirp.Unauthenticated, twirp.PermissionDenied, twirp.BadRoute, twirp.Unimplemented:
		return fmt.Errorf("%w: %w", kvclient.ErrRejected, err)
	}
	return err
}

// refusedAs is ErrorFromTwirp's error for a replica's definite refusal
// sentinel, carried by err (whose Twirp error is terr): in the replica's
// words alone when they already say what sentinel says, so that a user
// reads it once ("kvraft: ... quota ... is reached (key "k"; the quota is
// 2000 bytes)", not that sentence, then "twirp error failed_precondition:"
// and the sentence again); errors.Is finds sentinel and errors.As the
// Twirp error either way.
func refusedAs(sentinel, err error, terr twirp.Error) error {
	if !strings.Contains(terr.Msg(), sentinel.Error()) {
		return fmt.Errorf("%w: %w", sentinel, err)
	}
	return &remoteError{msg: terr.Msg(), sentinel: sentinel, remote: err}
}

// conditionFailedFromMeta rebuilds a *ConditionFailedError from the meta
// of a condition_failed error.
func conditionFailedFromMeta(terr twirp.Error) *kvclient.ConditionFailedError {
	num := func(key string) uint64 {
		v, _ := strconv.ParseUint(terr.Meta(key), 10, 64)
		return v
	}
	cf := &kvclient.ConditionFailedError{Revision: num(MetaRevision)}
	if terr.Meta(MetaExists) == "true" {
		cf.Current = &kvclient.KeyValue{Key: terr.Meta("key"), Value: terr.Meta(MetaValue), CreateRevision: num(MetaCreateRevision),
			ModRevision: num(MetaModRevision), Version: num(MetaVersion), Lease: num("lease")}
	}
	return cf
}

// NoAnswer reports whether err means the server never answered: Twirp
// clients report transport failures as "internal" errors that wrap the
// *url.Error from net/http, while errors a server sent wrap nothing.
func NoAnswer(err error) bool {
	var terr twirp.Error
	if !errors.As(err, &terr) {
		return true
	}
	var uerr *url.Error
	return terr.Code() == twirp.Internal &&
		(errors.As(err, &uerr) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled))
}

// TxnRequestFromProto converts a Txn. A write with neither put nor delete
// becomes a put of the empty key, which the server refuses.
func TxnRequestFromProto(p *kvv1.TxnRequest) *kvclient.TxnRequest {
	r := &kvclient.TxnRequest{Conditions: make([]kvclient.Compare, len(p.GetConditions())),
		Writes: make([]kvclient.TxnWrite, len(p.GetWrites())), Write: WriteIDFromProto(p.GetWrite())}
	for i, c := range p.GetConditions() {
		r.Conditions[i] = kvclient.Compare{Key: c.GetKey(), Condition: ConditionFromProto(c.GetCondition())}
	}
	for i, w := range p.GetWrites() {
		switch op := w.GetOp().(type) {
		case *kvv1.TxnWrite_Put:
			r.Writes[i] = kvclient.TxnWrite{Key: op.Put.GetKey(), Value: op.Put.GetValue(), Lease: op.Put.GetLease()}
		case *kvv1.TxnWrite_Delete:
			r.Writes[i] = kvclient.TxnWrite{Delete: true, Key: op.Delete.GetKey()}
		}
	}
	return r
}

// TxnRequestToProto converts a Txn.
func TxnRequestToProto(r *kvclient.TxnRequest) *kvv1.TxnRequest {
	p := &kvv1.TxnRequest{Conditions: make([]*kvv1.Compare, len(r.Conditions)),
		Writes: make([]*kvv1.TxnWrite, len(r.Writes)), Write: WriteIDToProto(r.Write)}
	for i, c := range r.Conditions {
		cond := ConditionToProto(c.Condition)
		if cond == nil {
			cond = &kvv1.Condition{} // the server refuses it, as it would the Go request
		}
		p.Conditions[i] = &kvv1.Compare{Key: c.Key, Condition: cond}
	}
	for i, w := range r.Writes {
		if w.Delete {
			p.Writes[i] = &kvv1.TxnWrite{Op: &kvv1.TxnWrite_Delete{Delete: &kvv1.TxnDelete{Key: w.Key}}}
			continue
		}
		p.Writes[i] = &kvv1.TxnWrite{Op: &kvv1.TxnWrite_Put{Put: &kvv1.TxnPut{Key: w.Key, Value: w.Value, Lease: w.Lease}}}
	}
	return p
}

// TxnResponseToProto converts a Txn's answer.
func TxnResponseToProto(r *kvclient.TxnResponse) *kvv1.TxnResponse {
	p := &kvv1.TxnResponse{Header: HeaderToProto(r.Header), Succeeded: r.Succeeded}
	txnOutcomeInto(p, r)
	return p
}

// txnOutcomeInto sets p's succeeded, failed and current from r.
func txnOutcomeInto(p *kvv1.TxnResponse, r *kvclient.TxnResponse) {
	p.Succeeded = r.Succeeded
	for _, i := range r.Failed {
		p.Failed = append(p.Failed, uint32(i))
	}
	for i := range r.Current {
		p.Current = append(p.Current, KeyValueToProto(&r.Current[i]))
	}
}

// TxnResponseFromProto converts a Txn's answer; h is its header (a
// forwarded Txn's comes in its WriteResult).
func TxnResponseFromProto(p *kvv1.TxnResponse, h *kvv1.ResponseHeader) *kvclient.TxnResponse {
	r := &kvclient.TxnResponse{Header: HeaderFromProto(h), Succeeded: p.GetSucceeded()}
	for _, i := range p.GetFailed() {
		r.Failed = append(r.Failed, int(i))
	}
	for _, kv := range p.GetCurrent() {
		r.Current = append(r.Current, *KeyValueFromProto(kv))
	}
	return r
}
