package rafttest

// Links is the fault model of the simulated cluster, shared by this
// package's Cluster and kvraft/kvtest's, so that the same call means the same
// thing in both (the lab's config.go semantics):
//
//   - Partition(groups...): every server counts as connected; links within a
//     group are up, links between groups down; a server in no group is cut
//     off from all.
//   - Heal(): every server connected, every link up.
//   - Disconnect(i): server i is cut off from everyone; the links between the
//     other servers do not change.
//   - Connect(i): server i is reconnected to every server that is itself
//     connected (not to the ones still disconnected), whatever partition
//     separated it before.
//   - SetLink(i, j, on): one link, both directions, without changing whether
//     i or j counts as connected.
//   - Crash(i) disconnects i as it kills it; Restart(i) starts it still
//     disconnected, until Connect, Heal or Partition.
//
// The link between i and j is up when both are connected and the link itself
// is. Links is not safe for concurrent use: the clusters guard it with
// their mutex and apply Up to the network after each change.
type Links struct {
	connected []bool
	// link[i][j] == link[j][i]: the link itself (partitions, SetLink).
	link [][]bool
}

// NewLinks returns the model of n servers, all connected.
func NewLinks(n int) *Links {
	l := &Links{connected: make([]bool, n), link: make([][]bool, n)}
	for i := range n {
		l.link[i] = make([]bool, n)
	}
	l.Heal()
	return l
}

// N is the number of servers.
func (l *Links) N() int { return len(l.connected) }

// Partition connects every server and lets servers talk only within their
// group; servers in no group are cut off from everyone.
func (l *Links) Partition(groups ...[]int) {
	group := make([]int, len(l.connected))
	for i := range group {
		group[i] = -1 - i // alone
	}
	for g, members := range groups {
		for _, i := range members {
			group[i] = g
		}
	}
	for i := range l.link {
		l.connected[i] = true
		for j := range l.link[i] {
			l.link[i][j] = group[i] == group[j]
		}
	}
}

// Heal connects every server and brings every link up.
func (l *Links) Heal() {
	for i := range l.link {
		l.connected[i] = true
		for j := range l.link[i] {
			l.link[i][j] = true
		}
	}
}

// Disconnect cuts server i off from everyone.
func (l *Links) Disconnect(i int) { l.connected[i] = false }

// Connect reconnects server i to every connected server.
func (l *Links) Connect(i int) {
	l.connected[i] = true
	for j := range l.link {
		l.link[i][j], l.link[j][i] = true, true
	}
}

// SetLink sets the link between i and j, both directions.
func (l *Links) SetLink(i, j int, on bool) { l.link[i][j], l.link[j][i] = on, on }

// Connected reports whether server i is connected.
func (l *Links) Connected(i int) bool { return l.connected[i] }

// Up reports whether server i can reach server j.
func (l *Links) Up(i, j int) bool { return l.connected[i] && l.connected[j] && l.link[i][j] }
