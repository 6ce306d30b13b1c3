package raft

// Ending the senders of peers that left the configuration: without it a
// node keeps RPCWorkersPerPeer idle goroutines (and a queue) for every
// peer id it ever sent to, until Kill — unbounded under endless membership
// churn with new ids.

import "slices"

// sendTargetsKey summarises what decides the core's send targets; while it
// is unchanged, so are they and nothing needs pruning.
type sendTargetsKey struct {
	confGen uint64
	leaving int
	lead    int
}

// sendTargetsKey returns the current key.
func (c *core) sendTargetsKey() sendTargetsKey {
	return sendTargetsKey{confGen: c.confGen, leaving: len(c.leaving), lead: c.lead}
}

// mayMessage reports whether c may send to p in its present state: p is a
// member of the configuration in force, a removed node a leader still tells
// of its removal (leaving), or the leader (which may lead from outside the
// configuration until its own removal commits: a follower forwards reads
// to it).
func (c *core) mayMessage(p int) bool {
	return slices.Contains(c.peerIDs, p) || c.isLeaving(p) || p == c.lead
}

// pruneSendersLocked closes the send queue of every peer the core may no
// longer message, which ends that peer's senders once they sent what was
// queued. n.mu must be held, on the loop goroutine (which alone adds to
// n.peers; peersMu keeps the ticker's sends off a closed queue).
func (n *Node) pruneSendersLocked() {
	key := n.core.sendTargetsKey()
	if key == n.sendersKey {
		return
	}
	n.sendersKey = key
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	for p, ch := range n.peers {
		if !n.core.mayMessage(p) {
			close(ch)
			delete(n.peers, p)
			n.logger.Debug("raft: stopped the senders of a peer outside the configuration", "peer", p)
		}
	}
}
