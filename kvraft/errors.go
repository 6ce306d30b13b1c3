package kvraft

import (
	"errors"
	"fmt"

	"github.com/ruaft/ruaft/raft"
)

// Errors returned by Server handlers and by the Clerk. Match them with
// errors.Is.
var (
	// ErrWrongLeader means the replica could not serve the request because it
	// is not the leader (or stopped being it). A *WrongLeaderError carries a
	// hint and whether the write had already been proposed.
	ErrWrongLeader = errors.New("kvraft: not the leader")
	// ErrTimeout means the request did not finish in time. For a write the
	// outcome is unknown: it may have been applied. Retrying it with the same
	// WriteID applies it at most once.
	ErrTimeout = errors.New("kvraft: timed out; outcome unknown")
	// ErrNoLeader is the Clerk's answer when no replica accepted a request
	// before the caller's deadline and no attempt reached the point where the
	// write might have been applied: the write was not applied.
	ErrNoLeader = errors.New("kvraft: no leader reachable")
	// ErrNoKey answers a Get of a key that does not exist (Clerk.Get only;
	// the Server reports it with GetResponse.Found).
	ErrNoKey = errors.New("kvraft: no such key")
	// ErrKilled means the server has been stopped.
	ErrKilled = errors.New("kvraft: server killed")
	// ErrInvalid means the request is malformed (an empty key, or a sequence
	// number without a client id).
	ErrInvalid = errors.New("kvraft: invalid request")
	// ErrStale answers a write whose sequence number the client has already
	// acknowledged as finished (WriteID.Ack moved past it): the server no
	// longer remembers its result. Only a confused or very late retry sees it.
	ErrStale = errors.New("kvraft: request older than the client's acknowledged sequence")
)

// WrongLeaderError is the error a replica returns when it cannot serve a
// request because it does not lead. errors.Is(err, ErrWrongLeader) holds.
type WrongLeaderError struct {
	// Leader is the replica id this replica believes leads, or raft.NoLeader.
	Leader int
	// Proposed is true when the write had been proposed before leadership was
	// lost: it may or may not be applied (retry it with the same WriteID).
	Proposed bool
}

// Error describes the error.
func (e *WrongLeaderError) Error() string {
	s := "kvraft: not the leader"
	if e.Leader != raft.NoLeader {
		s += fmt.Sprintf(" (leader hint %d)", e.Leader)
	}
	if e.Proposed {
		s += "; the write was proposed, outcome unknown"
	}
	return s
}

// Is makes errors.Is(err, ErrWrongLeader) true.
func (e *WrongLeaderError) Is(target error) bool { return target == ErrWrongLeader }
