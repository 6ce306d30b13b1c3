package kvclient

import (
	"errors"
	"fmt"
)

// NoLeader is WrongLeaderError.Leader when the replica knows of no leader.
// It equals raft.NoLeader.
const NoLeader = -1

// Errors returned by replicas (kvraft.Server, or a remote replica through
// kvwire) and by the Clerk. Match them with errors.Is.
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
	// ErrUnreachable means a request could not be sent at all (the
	// connection was refused): the replica never saw it.
	ErrUnreachable = errors.New("kvraft: replica unreachable; request not sent")
	// ErrNoKey answers a Get of a key that does not exist (Clerk.Get only;
	// replicas report it with GetResponse.Found).
	ErrNoKey = errors.New("kvraft: no such key")
	// ErrKilled means the server has been stopped. A write it had proposed
	// may still be applied by the others.
	ErrKilled = errors.New("kvraft: server killed")
	// ErrInvalid means the request is malformed (an empty key, or a sequence
	// number without a client id).
	ErrInvalid = errors.New("kvraft: invalid request")
	// ErrStale answers a write whose sequence number the client has already
	// acknowledged as finished (WriteID.Ack moved past it): the server no
	// longer remembers its result. Only a confused or very late retry sees it.
	ErrStale = errors.New("kvraft: request older than the client's acknowledged sequence")
	// ErrTooLarge means the write was refused, and not applied, because the
	// value it would store is larger than the cluster's cap (for an Append:
	// the value after appending).
	ErrTooLarge = errors.New("kvraft: value too large")
	// ErrNoSession means the write's client id is not an open session: it was
	// never opened, or it expired or was evicted. The write was not applied;
	// the client must open a new session (and treats its writes in flight as
	// of unknown outcome).
	ErrNoSession = errors.New("kvraft: no such session")
	// ErrRejected means the request was refused for a reason that retrying
	// cannot fix (authentication, TLS verification, an unknown route): it
	// was not applied.
	ErrRejected = errors.New("kvraft: request rejected")
	// ErrTooManyPending means the session already has the most writes in
	// flight a replica keeps results for (see WriteID.Ack); the write was not
	// applied.
	ErrTooManyPending = errors.New("kvraft: too many unacknowledged writes in the session")
	// ErrConditionFailed means a conditional write's condition did not
	// hold when it was applied: it was not applied. The error is a
	// *ConditionFailedError with the key's current state.
	ErrConditionFailed = errors.New("kvraft: condition failed")
	// ErrLeaseNotFound means the lease does not exist (it expired, was
	// revoked, or never existed); the write was not applied.
	ErrLeaseNotFound = errors.New("kvraft: no such lease")
	// ErrTooManyLeases means the cluster holds the most leases it keeps;
	// the grant was not applied.
	ErrTooManyLeases = errors.New("kvraft: too many leases")
	// ErrNoSpace means the write would grow the keys and values past the
	// cluster's quota on their size (durio's --quota-bytes); it was not
	// applied. Deletes, and writes that do not grow the state, still
	// apply: make room, then write again.
	ErrNoSpace = errors.New("kvraft: the cluster's quota on the size of keys and values is reached")
	// ErrCompacted means a List or Watch named a revision older than the
	// retained history (a *CompactedError says which is the oldest).
	ErrCompacted = errors.New("kvraft: revision compacted")
	// ErrFutureRevision means a List named a revision newer than the
	// replica's store.
	ErrFutureRevision = errors.New("kvraft: revision not reached yet")
	// ErrTooManyWatchers means the replica has the most waiting watchers
	// it serves; try later or at another replica.
	ErrTooManyWatchers = errors.New("kvraft: too many watchers")
)

// ConditionFailedError is the error of a conditional write whose condition
// did not hold. errors.Is(err, ErrConditionFailed) holds.
type ConditionFailedError struct {
	// Revision is the store revision when the condition was evaluated.
	Revision uint64
	// Current is the key at that point; nil if it was absent.
	Current *KeyValue
}

// Error describes the error.
func (e *ConditionFailedError) Error() string {
	if e.Current == nil {
		return fmt.Sprintf("kvraft: condition failed at revision %d: the key is absent", e.Revision)
	}
	return fmt.Sprintf("kvraft: condition failed at revision %d: key %q is at mod revision %d, version %d",
		e.Revision, e.Current.Key, e.Current.ModRevision, e.Current.Version)
}

// Is makes errors.Is(err, ErrConditionFailed) true.
func (e *ConditionFailedError) Is(target error) bool { return target == ErrConditionFailed }

// CompactedError is the error of a List at a revision the replica no
// longer retains. errors.Is(err, ErrCompacted) holds.
type CompactedError struct {
	// CompactRevision is the newest revision no longer retained: the
	// oldest revision a List may name.
	CompactRevision uint64
}

// Error describes the error.
func (e *CompactedError) Error() string {
	return fmt.Sprintf("kvraft: revision compacted (the oldest retained is %d)", e.CompactRevision)
}

// Is makes errors.Is(err, ErrCompacted) true.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

// WrongLeaderError is the error a replica returns when it cannot serve a
// request because it does not lead. errors.Is(err, ErrWrongLeader) holds.
type WrongLeaderError struct {
	// Leader is the replica id this replica believes leads, or NoLeader.
	Leader int
	// Proposed is true when the write had been proposed before leadership was
	// lost: it may or may not be applied (retry it with the same WriteID).
	Proposed bool
}

// Error describes the error.
func (e *WrongLeaderError) Error() string {
	s := "kvraft: not the leader"
	if e.Leader != NoLeader {
		s += fmt.Sprintf(" (leader hint %d)", e.Leader)
	}
	if e.Proposed {
		s += "; the write was proposed, outcome unknown"
	}
	return s
}

// Is makes errors.Is(err, ErrWrongLeader) true.
func (e *WrongLeaderError) Is(target error) bool { return target == ErrWrongLeader }

// Definitive reports whether err is an answer that retrying cannot change:
// the request was refused and nothing was applied (or, for ErrStale, the
// result is no longer known anywhere). A Clerk returns such errors at once.
func Definitive(err error) bool {
	return errors.Is(err, ErrInvalid) || errors.Is(err, ErrStale) || errors.Is(err, ErrTooLarge) ||
		errors.Is(err, ErrNoSession) || errors.Is(err, ErrTooManyPending) || errors.Is(err, ErrRejected) ||
		errors.Is(err, ErrConditionFailed) || errors.Is(err, ErrLeaseNotFound) || errors.Is(err, ErrTooManyLeases) ||
		errors.Is(err, ErrNoSpace) || errors.Is(err, ErrCompacted) || errors.Is(err, ErrFutureRevision)
}

// MaybeApplied is the one definition of "the outcome is unknown": it reports
// whether a write that failed with err may nevertheless have been applied.
// It is false only when the error proves that the write did not reach a log:
// a refusal before proposing (a WrongLeaderError without Proposed, a
// Definitive error, ErrNoLeader) or a request never sent (ErrUnreachable).
// Everything else — timeouts, lost connections, a server killed while the
// write was pending, an error this package does not know — may hide an
// applied write, which the client may retry with the same WriteID.
func MaybeApplied(err error) bool {
	switch {
	case err == nil, errors.Is(err, ErrTimeout):
		// ErrTimeout first: a Clerk's verdict wraps the last attempt's
		// error, which alone may say less.
		return true
	case errors.Is(err, ErrNoLeader), errors.Is(err, ErrUnreachable), Definitive(err):
		return false
	}
	var wl *WrongLeaderError
	if errors.As(err, &wl) {
		return wl.Proposed
	}
	return true
}
