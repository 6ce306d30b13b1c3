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
)

// NewClerk returns a clerk; see kvclient.NewClerk.
func NewClerk(servers []Service, cfg ClerkConfig) (*Clerk, error) {
	return kvclient.NewClerk(servers, cfg)
}

// DefaultClerkConfig returns the clerk configuration used when none is given.
func DefaultClerkConfig() ClerkConfig { return kvclient.DefaultClerkConfig() }
