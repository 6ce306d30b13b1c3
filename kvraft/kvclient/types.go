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
}

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

// GetResponse carries a key's value; Found is false (and Value empty) for a
// missing key.
type GetResponse struct {
	Header ResponseHeader
	Value  string
	Found  bool
}

// PutRequest sets a key.
type PutRequest struct {
	Key, Value string
	Write      WriteID
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
	Key   string
	Write WriteID
}

// DeleteResponse acknowledges a Delete applied exactly once.
type DeleteResponse struct {
	Header ResponseHeader
	// Existed is true if the key was present when the delete was applied.
	Existed bool
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
}
