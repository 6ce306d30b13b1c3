package raft

// Terms only grow, by one per election. A term far beyond a node's own
// cannot come from a correct peer: it is a corrupted or hostile message, and
// adopting it would let one request push the cluster toward 2^64, where the
// next election would wrap the term to 0 (and the stored term would keep the
// cluster leaderless across restarts).

// MaxTerm is the highest term a node adopts, stores or campaigns for. A
// cluster electing a leader every millisecond would reach it after more
// than a hundred million years.
const MaxTerm = 1 << 62

// maxTermJump is how far past its own term a term may be for a node to
// adopt it: 2^32 elections, over twenty years of back-to-back elections
// with the default timeouts, more than any partition lasts (and with
// pre-vote an isolated node does not raise its term at all).
const maxTermJump = 1 << 32

// plausibleTerm reports whether a term carried by a request or an answer
// can be legitimate: at most MaxTerm and at most maxTermJump ahead of c's.
func (c *core) plausibleTerm(t uint64) bool {
	return t <= MaxTerm && (t <= c.term || t-c.term <= maxTermJump)
}
