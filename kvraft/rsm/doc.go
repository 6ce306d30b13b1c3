// Package rsm is the replicated-state-machine layer between raft and an
// application such as kvraft (the MIT lab's 4A "rsm"). Submit proposes a
// command through raft and waits until the command is applied, returning the
// state machine's result to the caller that proposed it, or until the
// attempt fails: this replica is not or no longer the leader (its term
// changed, or another entry took the command's index), a snapshot replaced
// the state, the caller's deadline passed, or the RSM was killed.
//
// Waiting callers are matched to applied entries by (index, term): raft puts
// at most one entry at an index in a term, so commands need no identifier
// of their own. No lock is held while a caller waits; a single watcher
// goroutine polls the node's term while commands are pending.
package rsm
