package rafttest

// The simulated network as tests see it: the fault API (Partition, Heal,
// Disconnect, Connect, SetLink, SetUnreliable; the same names and meaning as
// kvraft/kvtest, both built on Links), the interceptor helpers and the RPC
// counters.

import (
	"fmt"
	"strconv"

	"github.com/ruaft/ruaft/internal/simnet"
)

// MethodCount is the number of RPCs of method (MethodAppendEntries, ...)
// that servers have received.
func (c *Cluster) MethodCount(method string) int64 {
	c.methodMu.Lock()
	defer c.methodMu.Unlock()
	return c.methods[method]
}

// Partition lets servers talk only within their group; servers in no group
// are cut off from everyone. Every server counts as connected afterwards
// (CheckOneLeader and One consider all of them).
func (c *Cluster) Partition(groups ...[]int) {
	c.changeLinks(func(l *Links) { l.Partition(groups...) })
}

// Heal connects every server and brings every link up.
func (c *Cluster) Heal() { c.changeLinks((*Links).Heal) }

// Disconnect cuts server i off from everyone.
func (c *Cluster) Disconnect(i int) { c.changeLinks(func(l *Links) { l.Disconnect(i) }) }

// Connect reconnects server i to every connected server, whatever
// partition separated it before.
func (c *Cluster) Connect(i int) { c.changeLinks(func(l *Links) { l.Connect(i) }) }

// SetLink enables or disables both directions of the link between servers i
// and j, without changing whether either counts as connected.
func (c *Cluster) SetLink(i, j int, on bool) { c.changeLinks(func(l *Links) { l.SetLink(i, j, on) }) }

// changeLinks applies change to the fault model and the model to the
// network: each endpoint of each incarnation's server enabled iff its link
// is up.
func (c *Cluster) changeLinks(change func(*Links)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	change(c.links)
	for i := range c.n {
		if c.endNames[i] == nil {
			continue
		}
		for j := range c.n {
			c.net.Enable(c.endNames[i][j], c.links.Up(i, j))
		}
	}
}

// CallFrom returns the server that made a call seen by the interceptor, or
// -1 if the call is not between servers of the cluster.
func CallFrom(info simnet.CallInfo) int {
	var from, to, gen int
	if _, err := fmt.Sscanf(info.End, "%d->%d#%d", &from, &to, &gen); err != nil {
		return -1
	}
	return from
}

// CallTo returns the server a call seen by the interceptor is addressed to,
// or -1.
func CallTo(info simnet.CallInfo) int {
	to, err := strconv.Atoi(info.Server)
	if err != nil {
		return -1
	}
	return to
}

// Connected reports whether server i is connected.
func (c *Cluster) Connected(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.links.Connected(i)
}

// SetUnreliable turns the network's unreliable mode on or off.
func (c *Cluster) SetUnreliable(on bool) { c.net.SetReliable(!on) }

// SetLongReordering turns long reordering of replies on or off.
func (c *Cluster) SetLongReordering(on bool) { c.net.SetLongReordering(on) }

// RPCTotal is the number of RPCs sent so far.
func (c *Cluster) RPCTotal() int64 { return c.net.Total().Calls }

// BytesTotal is the number of request and reply bytes sent so far.
func (c *Cluster) BytesTotal() int64 { return c.net.Total().Bytes }

// RPCCount is the number of RPCs server i has received (in all its
// incarnations).
func (c *Cluster) RPCCount(i int) int64 { return c.net.ServerStats(serverName(i)).Calls }
