package raft

// The core's output: a ready batch for the node to store, send and apply, and advance after it.

import (
	"github.com/ruaft/ruaft/persist"
)

// ready is one batch of work for the node (etcd's Ready). The node stores
// snapshot, then hardState and entries with one Append when save is set,
// sends messages (a leader's AppendEntries and InstallSnapshot may go before
// the store call returns, everything else only after), applies committed,
// answers reads, and then calls advance.
type ready struct {
	hardState persist.HardState
	save      bool
	entries   []Entry
	snapshot  *persist.Snapshot
	messages  []message
	committed []Entry
	reads     []readState
}

func (rd *ready) empty() bool {
	return !rd.save && rd.snapshot == nil && len(rd.messages) == 0 && len(rd.committed) == 0 && len(rd.reads) == 0
}

func (c *core) ready() ready {
	c.flush()
	var rd ready
	rd.save = c.unsaved()
	rd.hardState = c.hardState()
	if last := c.log.lastIndex(); c.log.unstable <= last {
		rd.entries = c.log.slice(c.log.unstable, last+1)
		c.log.unstable = last + 1
	}
	if c.log.snapUnstable {
		s := c.log.snap
		rd.snapshot = &s
		c.log.snapUnstable = false
	}
	if rd.save {
		if rd.hardState.Commit < c.prevHS.Commit || rd.hardState.Term < c.prevHS.Term {
			c.violate("hard state went back from %+v to %+v", c.prevHS, rd.hardState)
		}
		c.prevHS = rd.hardState
	}
	if hi := min(c.log.commit, c.log.durable); hi > c.log.applied {
		rd.committed = c.log.slice(c.log.applied+1, hi+1)
		c.log.applied = hi
	}
	rd.messages, c.msgs = c.msgs, nil
	rd.reads, c.readStates = c.readStates, nil
	return rd
}

// takeMessages removes from the outbox, and returns in order, the messages
// for which now reports true; the others stay, in order, for the next
// ready.
func (c *core) takeMessages(now func(message) bool) []message {
	var taken []message
	kept := c.msgs[:0]
	for _, m := range c.msgs {
		if now(m) {
			taken = append(taken, m)
		} else {
			kept = append(kept, m)
		}
	}
	clear(c.msgs[len(kept):])
	c.msgs = kept
	return taken
}

// recycleMessages gives back the slice of a ready's messages, which the
// caller copied out and no longer reads, so that the next batches append to
// it instead of allocating.
func (c *core) recycleMessages(msgs []message) {
	if len(c.msgs) == 0 && cap(msgs) > cap(c.msgs) {
		// Dropping what they point to lets the requests be freed once
		// answered.
		clear(msgs)
		c.msgs = msgs[:0]
	}
}

// advance tells the core that rd was stored.
func (c *core) advance(rd ready) {
	if rd.snapshot != nil {
		c.log.durable = max(c.log.durable, rd.snapshot.Index)
	}
	if n := len(rd.entries); n > 0 {
		if last := rd.entries[n-1]; c.log.matchTerm(last.Index, last.Term) {
			c.log.durable = max(c.log.durable, last.Index)
		}
	}
	if c.role == Leader {
		c.maybeCommit()
	}
}
