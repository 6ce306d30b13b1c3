package kvraft

import "github.com/ruaft/ruaft/kvraft/kvclient"

// The client-side types, errors and the Clerk live in package kvclient,
// which imports nothing of raft or storage so that clients stay small; they
// are re-exported here so that kvraft reads as one package to its users.
type (
	// Consistency chooses how a Get is served.
	Consistency = kvclient.Consistency
	// WriteID identifies a write for exactly-once retries.
	WriteID = kvclient.WriteID
	// ResponseHeader says who served a request.
	ResponseHeader = kvclient.ResponseHeader
	// OpenSessionRequest asks for a new session.
	OpenSessionRequest = kvclient.OpenSessionRequest
	// OpenSessionResponse carries a new session.
	OpenSessionResponse = kvclient.OpenSessionResponse
	// GetRequest reads one key.
	GetRequest = kvclient.GetRequest
	// GetResponse carries a key's value.
	GetResponse = kvclient.GetResponse
	// PutRequest sets a key.
	PutRequest = kvclient.PutRequest
	// PutResponse acknowledges a Put.
	PutResponse = kvclient.PutResponse
	// AppendRequest appends to a key's value.
	AppendRequest = kvclient.AppendRequest
	// AppendResponse acknowledges an Append.
	AppendResponse = kvclient.AppendResponse
	// DeleteRequest removes a key.
	DeleteRequest = kvclient.DeleteRequest
	// DeleteResponse acknowledges a Delete.
	DeleteResponse = kvclient.DeleteResponse
	// Service is a replica's client API.
	Service = kvclient.Service
	// WrongLeaderError is the error of a replica that does not lead.
	WrongLeaderError = kvclient.WrongLeaderError
	// Clerk is the leader-following client.
	Clerk = kvclient.Clerk
	// ClerkConfig tunes a Clerk.
	ClerkConfig = kvclient.ClerkConfig
	// KeyValue is a key with its value and metadata.
	KeyValue = kvclient.KeyValue
	// Condition is a conditional write's condition.
	Condition = kvclient.Condition
	// ListRequest asks for a page of keys.
	ListRequest = kvclient.ListRequest
	// ListResponse is a page of keys.
	ListResponse = kvclient.ListResponse
	// Event is one change of one key.
	Event = kvclient.Event
	// WatchRequest waits for changes.
	WatchRequest = kvclient.WatchRequest
	// WatchResponse answers a Watch.
	WatchResponse = kvclient.WatchResponse
	// LeaseGrantRequest creates a lease.
	LeaseGrantRequest = kvclient.LeaseGrantRequest
	// LeaseGrantResponse carries a new lease.
	LeaseGrantResponse = kvclient.LeaseGrantResponse
	// LeaseKeepAliveRequest restarts a lease's TTL.
	LeaseKeepAliveRequest = kvclient.LeaseKeepAliveRequest
	// LeaseKeepAliveResponse answers a keep-alive.
	LeaseKeepAliveResponse = kvclient.LeaseKeepAliveResponse
	// LeaseRevokeRequest ends a lease.
	LeaseRevokeRequest = kvclient.LeaseRevokeRequest
	// LeaseRevokeResponse acknowledges a revoke.
	LeaseRevokeResponse = kvclient.LeaseRevokeResponse
	// LeaseTimeToLiveRequest describes a lease.
	LeaseTimeToLiveRequest = kvclient.LeaseTimeToLiveRequest
	// LeaseTimeToLiveResponse describes a lease.
	LeaseTimeToLiveResponse = kvclient.LeaseTimeToLiveResponse
	// TxnRequest writes several keys atomically.
	TxnRequest = kvclient.TxnRequest
	// TxnResponse answers a Txn.
	TxnResponse = kvclient.TxnResponse
	// Compare is one condition of a Txn.
	Compare = kvclient.Compare
	// TxnWrite is one write of a Txn.
	TxnWrite = kvclient.TxnWrite
	// ConditionFailedError is a failed condition with the key's state.
	ConditionFailedError = kvclient.ConditionFailedError
	// CompactedError is a revision older than the retained history.
	CompactedError = kvclient.CompactedError
)

// Event types; see kvclient.
const (
	EventPut    = kvclient.EventPut
	EventDelete = kvclient.EventDelete
)

// Read consistencies; see kvclient.
const (
	Linearizable = kvclient.Linearizable
	Stale        = kvclient.Stale
)

// Errors; see kvclient for their meaning.
var (
	ErrWrongLeader    = kvclient.ErrWrongLeader
	ErrTimeout        = kvclient.ErrTimeout
	ErrNoLeader       = kvclient.ErrNoLeader
	ErrNoKey          = kvclient.ErrNoKey
	ErrKilled         = kvclient.ErrKilled
	ErrInvalid        = kvclient.ErrInvalid
	ErrStale          = kvclient.ErrStale
	ErrTooLarge       = kvclient.ErrTooLarge
	ErrNoSession      = kvclient.ErrNoSession
	ErrTooManyPending = kvclient.ErrTooManyPending

	ErrConditionFailed = kvclient.ErrConditionFailed
	ErrLeaseNotFound   = kvclient.ErrLeaseNotFound
	ErrTooManyLeases   = kvclient.ErrTooManyLeases
	ErrNoSpace         = kvclient.ErrNoSpace
	ErrCompacted       = kvclient.ErrCompacted
	ErrFutureRevision  = kvclient.ErrFutureRevision
	ErrTooManyWatchers = kvclient.ErrTooManyWatchers
)

// NewClerk returns a clerk; see kvclient.NewClerk.
func NewClerk(servers []Service, cfg ClerkConfig) (*Clerk, error) {
	return kvclient.NewClerk(servers, cfg)
}

// DefaultClerkConfig returns the clerk configuration used when none is given.
func DefaultClerkConfig() ClerkConfig { return kvclient.DefaultClerkConfig() }

// Condition kinds; see kvclient.
const (
	CondNone        = kvclient.CondNone
	CondAbsent      = kvclient.CondAbsent
	CondModRevision = kvclient.CondModRevision
	CondVersion     = kvclient.CondVersion
	CondValue       = kvclient.CondValue
)

// IfAbsent is the condition that the key does not exist.
func IfAbsent() Condition { return kvclient.IfAbsent() }

// IfModRevision is the condition that the key exists at mod revision rev.
func IfModRevision(rev uint64) Condition { return kvclient.IfModRevision(rev) }

// IfVersion is the condition that the key's version is v (0: absent).
func IfVersion(v uint64) Condition { return kvclient.IfVersion(v) }

// IfValue is the condition that the key exists with value v.
func IfValue(v string) Condition { return kvclient.IfValue(v) }

// MaybeApplied reports whether a write that failed with err may have been
// applied; see kvclient.MaybeApplied.
func MaybeApplied(err error) bool { return kvclient.MaybeApplied(err) }

// TxnPut and TxnDelete build the writes of a Txn; see kvclient.
func TxnPut(key, value string) TxnWrite { return kvclient.TxnPut(key, value) }

// TxnDelete: see TxnPut.
func TxnDelete(key string) TxnWrite { return kvclient.TxnDelete(key) }

// MaxTxnOps bounds a Txn's conditions, and separately its writes.
const MaxTxnOps = kvclient.MaxTxnOps
