// Package kvclient is what a client of a kvraft replica needs, and nothing of
// raft or storage: the request and response types, the Service contract a
// replica implements, the errors with the one definition of an unknown
// outcome (MaybeApplied), and the Clerk, the one leader-following retry
// engine. The Go client of durio, durio's forwarding frontend and the
// kvraft tests all use the Clerk.
package kvclient

import (
	"context"
	"time"
)

// Consistency chooses how a Get is served.
type Consistency int

const (
	// Linearizable reads go through the leader with a raft ReadIndex round:
	// the result reflects every write acknowledged before the call.
	Linearizable Consistency = iota
	// Stale reads the receiving replica's local state, which may lag; it
	// needs no leader.
	Stale
)

// WriteID identifies a write for exactly-once retries.
//
// A client numbers its writes 1, 2, 3, ... (Seq) and may have several in
// flight at once. Ack tells the servers which results the client still
// needs: every write with a sequence number below Ack has finished from the
// client's point of view (it got the answer, or gave up), so the servers may
// forget those results, and will never apply those writes again. Ack 0 means
// Seq, the convention of a client with one write in flight at a time.
// ClientID 0 means no identification: the write is applied each time it is
// received.
type WriteID struct {
	ClientID uint64
	Seq      uint64
	Ack      uint64
}

// ResponseHeader says who served a request.
type ResponseHeader struct {
	// ReplicaID is the id of the replica that answered.
	ReplicaID int
	// Term is the raft term the answering replica was in.
	Term uint64
	// Revision is the store revision the answer reflects: for a read, the
	// revision of the state it read; for an applied write, the revision
	// right after it (its own, if it changed a key).
	Revision uint64
}

// KeyValue is a key with its value and metadata.
type KeyValue struct {
	Key, Value string
	// CreateRevision is the revision that created the key (since it was
	// last absent); ModRevision the revision of its last change; Version
	// the number of changes since creation (1 after the creating Put).
	// Keys written before revisions existed have 0, 0 and 1.
	CreateRevision, ModRevision, Version uint64
	// Lease is the id of the key's lease, 0 for none.
	Lease uint64
}

// ConditionKind chooses what a Condition compares.
type ConditionKind int

// Condition kinds.
const (
	// CondNone: no condition, the write always applies.
	CondNone ConditionKind = iota
	// CondAbsent holds if the key does not exist.
	CondAbsent
	// CondModRevision holds if the key exists with ModRevision equal to
	// Condition.ModRevision.
	CondModRevision
	// CondVersion holds if the key's version equals Condition.Version, a
	// missing key having version 0.
	CondVersion
	// CondValue holds if the key exists with the value Condition.Value.
	CondValue
)

// Condition is what must hold, when a conditional Put or Delete is
// applied, for it to take effect (compare-and-swap). The zero Condition
// always holds.
type Condition struct {
	Kind        ConditionKind
	ModRevision uint64
	Version     uint64
	Value       string
}

// IfAbsent is the condition that the key does not exist.
func IfAbsent() Condition { return Condition{Kind: CondAbsent} }

// IfModRevision is the condition that the key exists at mod revision rev.
func IfModRevision(rev uint64) Condition { return Condition{Kind: CondModRevision, ModRevision: rev} }

// IfVersion is the condition that the key's version is v (0: absent).
func IfVersion(v uint64) Condition { return Condition{Kind: CondVersion, Version: v} }

// IfValue is the condition that the key exists with value v.
func IfValue(v string) Condition { return Condition{Kind: CondValue, Value: v} }

// OpenSessionRequest asks the cluster for a new session.
type OpenSessionRequest struct{}

// OpenSessionResponse carries a new session: its id is the WriteID.ClientID
// of the client's writes. The cluster issues ids (below 2^53, at random),
// so no caller can write under another's id without knowing it, and it
// forgets a session idle for IdleTimeout (measured by the log's clock) or
// evicted as least recently used when the table is full; a write in a
// forgotten session fails with ErrNoSession.
type OpenSessionResponse struct {
	Header      ResponseHeader
	ClientID    uint64
	IdleTimeout time.Duration
}

// GetRequest reads one key.
type GetRequest struct {
	Key         string
	Consistency Consistency
}

// GetResponse carries a key's value and metadata; Found is false (and the
// rest zero) for a missing key.
type GetResponse struct {
	Header                               ResponseHeader
	Value                                string
	Found                                bool
	CreateRevision, ModRevision, Version uint64
	Lease                                uint64
}

// PutRequest sets a key.
type PutRequest struct {
	Key, Value string
	Write      WriteID
	// Lease attaches the key to a lease (0: none; a Put without a lease
	// detaches the key from the one it had).
	Lease uint64
	// Condition must hold for the Put to apply; a failed one is a
	// *ConditionFailedError.
	Condition Condition
}

// PutResponse acknowledges a Put applied exactly once.
type PutResponse struct {
	Header ResponseHeader
}

// AppendRequest appends to a key's value (a missing key counts as empty).
type AppendRequest struct {
	Key, Value string
	Write      WriteID
}

// AppendResponse acknowledges an Append applied exactly once.
type AppendResponse struct {
	Header ResponseHeader
}

// DeleteRequest removes a key; deleting a missing key succeeds.
type DeleteRequest struct {
	Key       string
	Write     WriteID
	Condition Condition
}

// DeleteResponse acknowledges a Delete applied exactly once.
type DeleteResponse struct {
	Header ResponseHeader
	// Existed is true if the key was present when the delete was applied.
	Existed bool
}

// Compare is one condition of a Txn: Condition must hold for Key. Its
// Kind must not be CondNone.
type Compare struct {
	Key       string
	Condition Condition
}

// TxnWrite is one write of a Txn: a Put of Key (with Value and Lease), or
// a Delete of Key if Delete is set (Value and Lease then unused).
type TxnWrite struct {
	Delete     bool
	Key, Value string
	// Lease attaches a put key to a lease, as PutRequest.Lease.
	Lease uint64
}

// TxnPut and TxnDelete build the writes of a Txn.
func TxnPut(key, value string) TxnWrite { return TxnWrite{Key: key, Value: value} }

// TxnDelete: see TxnPut.
func TxnDelete(key string) TxnWrite { return TxnWrite{Delete: true, Key: key} }

// TxnRequest writes several keys atomically: if every Condition holds when
// it is applied, every write is applied, in order and exactly once, by one
// log entry, each at its own (consecutive) revision; otherwise none is.
// A key may be written at most once per Txn. A Put naming a lease that
// does not exist fails the whole Txn with ErrLeaseNotFound.
type TxnRequest struct {
	Conditions []Compare
	Writes     []TxnWrite
	Write      WriteID
}

// Bytes is the size of the keys and values r carries (conditions' keys and
// values, writes' keys and put values): what the server bounds by its
// largest value.
func (r *TxnRequest) Bytes() int {
	n := 0
	for _, c := range r.Conditions {
		n += len(c.Key) + len(c.Condition.Value)
	}
	for _, w := range r.Writes {
		n += len(w.Key)
		if !w.Delete {
			n += len(w.Value)
		}
	}
	return n
}

// MaxTxnOps bounds a Txn's conditions, and separately its writes.
const MaxTxnOps = 128

// ApplyLevel is the highest apply level this module's replicas support
// (see kvraft.ApplyLevel): the rules the replicas of a cluster agree to
// apply the log by. A replica joining a cluster reports it (MemberAdd),
// and is refused if the cluster is at a higher level.
const ApplyLevel uint32 = 2

// TxnResponse answers a Txn. Succeeded is false when a condition did not
// hold (no write was applied): Failed lists those conditions' indexes, and
// Current every compared key that existed at Header.Revision, once each,
// in the order of the conditions. If Succeeded, Header.Revision is the
// revision after the last write.
type TxnResponse struct {
	Header    ResponseHeader
	Succeeded bool
	Failed    []int
	Current   []KeyValue
}

// ListRequest asks for a page of the keys under Prefix, greater than
// After, in increasing byte order.
type ListRequest struct {
	Prefix, After string
	// Limit is the most keys in the page; 0 means DefaultListLimit, and
	// the server lowers larger values to its cap.
	Limit    int
	KeysOnly bool
	// Revision reads the keys as they were at that revision (0: current);
	// outside the retained history it fails with ErrCompacted or
	// ErrFutureRevision.
	Revision    uint64
	Consistency Consistency
}

// DefaultListLimit is the page size of a ListRequest with Limit 0.
const DefaultListLimit = 1000

// ListResponse is one page; More says whether keys remain after the last
// one (ask again with After set to it and Revision to this Revision).
type ListResponse struct {
	Header   ResponseHeader
	KVs      []KeyValue
	More     bool
	Revision uint64
}

// EventType is what an Event did.
type EventType int

// Event types.
const (
	EventPut EventType = iota + 1
	EventDelete
)

// Event is one change of one key; KV.ModRevision is its revision (for a
// delete, KV has only Key and ModRevision). PrevKV is the key before the
// change, when asked for and present.
type Event struct {
	Type   EventType
	KV     KeyValue
	PrevKV *KeyValue
}

// WatchRequest waits up to Wait for changes of Key (or of every key with
// prefix Key, if Prefix) with a revision above AfterRevision.
type WatchRequest struct {
	Key           string
	Prefix        bool
	AfterRevision uint64
	// Wait is how long to wait when there is no matching event yet; 0
	// answers at once. The server lowers it to its cap.
	Wait time.Duration
	// Limit is the most events in one answer; 0 means DefaultWatchLimit.
	Limit  int
	PrevKV bool
}

// DefaultWatchLimit is the most events in an answer to a WatchRequest
// with Limit 0.
const DefaultWatchLimit = 1000

// WatchResponse answers a Watch: every matching event after the request's
// AfterRevision (oldest first, up to the limit), none if the wait ended, or
// Compacted if those events are no longer retained. NextAfterRevision is
// the AfterRevision of the next call.
type WatchResponse struct {
	Header            ResponseHeader
	Events            []Event
	NextAfterRevision uint64
	Compacted         bool
	CompactRevision   uint64
}

// LeaseGrantRequest creates a lease that lives TTL without a keep-alive.
type LeaseGrantRequest struct {
	TTL   time.Duration
	Write WriteID
}

// LeaseGrantResponse carries a new lease's id.
type LeaseGrantResponse struct {
	Header ResponseHeader
	ID     uint64
	TTL    time.Duration
}

// LeaseKeepAliveRequest restarts a lease's TTL.
type LeaseKeepAliveRequest struct {
	ID uint64
}

// LeaseKeepAliveResponse answers a keep-alive: the lease lives at least TTL
// from when the leader received it.
type LeaseKeepAliveResponse struct {
	Header ResponseHeader
	ID     uint64
	TTL    time.Duration
}

// LeaseRevokeRequest ends a lease and deletes its keys.
type LeaseRevokeRequest struct {
	ID    uint64
	Write WriteID
}

// LeaseRevokeResponse acknowledges a revoke.
type LeaseRevokeResponse struct {
	Header  ResponseHeader
	Existed bool
}

// LeaseTimeToLiveRequest describes a lease; Keys asks for its keys.
type LeaseTimeToLiveRequest struct {
	ID   uint64
	Keys bool
}

// LeaseTimeToLiveResponse describes a lease as the leader sees it.
type LeaseTimeToLiveResponse struct {
	Header         ResponseHeader
	ID             uint64
	TTL, Remaining time.Duration
	// Keys are the lease's keys in order, at most the most a List page
	// holds; MoreKeys is true if the lease has more.
	Keys     []string
	MoreKeys bool
}

// Service is a replica's client API as the Clerk sees it: kvraft.Server implements
// it in-process, tests wrap it in the simulated network, and durio
// implements it over Twirp with package kvwire. Errors follow the server's contract: a
// *WrongLeaderError, ErrTimeout, ErrKilled, ErrInvalid, or any other error
// meaning no answer arrived (the request may or may not have been executed).
type Service interface {
	// OpenSession opens an exactly-once session through the log.
	OpenSession(ctx context.Context, req *OpenSessionRequest) (*OpenSessionResponse, error)
	Get(ctx context.Context, req *GetRequest) (*GetResponse, error)
	Put(ctx context.Context, req *PutRequest) (*PutResponse, error)
	Append(ctx context.Context, req *AppendRequest) (*AppendResponse, error)
	Delete(ctx context.Context, req *DeleteRequest) (*DeleteResponse, error)
	// List reads a page of keys under a prefix.
	List(ctx context.Context, req *ListRequest) (*ListResponse, error)
	// Watch waits for changes after a revision (a long poll).
	Watch(ctx context.Context, req *WatchRequest) (*WatchResponse, error)
	// LeaseGrant creates a lease through the log.
	LeaseGrant(ctx context.Context, req *LeaseGrantRequest) (*LeaseGrantResponse, error)
	// LeaseKeepAlive restarts a lease's TTL at the leader.
	LeaseKeepAlive(ctx context.Context, req *LeaseKeepAliveRequest) (*LeaseKeepAliveResponse, error)
	// LeaseRevoke ends a lease and deletes its keys, through the log.
	LeaseRevoke(ctx context.Context, req *LeaseRevokeRequest) (*LeaseRevokeResponse, error)
	// LeaseTimeToLive describes a lease, at the leader.
	LeaseTimeToLive(ctx context.Context, req *LeaseTimeToLiveRequest) (*LeaseTimeToLiveResponse, error)
	// Txn writes several keys atomically if its conditions hold.
	Txn(ctx context.Context, req *TxnRequest) (*TxnResponse, error)
}
