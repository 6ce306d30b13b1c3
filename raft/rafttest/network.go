package rafttest

import (
	"fmt"
	"strconv"

	"github.com/ruaft/ruaft/internal/simnet"
)

// The simulated network as tests see it: the fault API (Partition, Heal,
// Disconnect, Connect, SetLink, SetUnreliable; the same names and meaning as
// kvraft/kvtest, both built on Links), the interceptor helpers and the RPC
// counters.

// MethodCount is the number of RPCs of method (MethodAppendEntries, ...)
// that servers have received.
func (c *Cluster) MethodCount(method string) int64 {
	c.methodMu.Lock()
	defer c.methodMu.Unlock()
	return c.methods[method]
}

// Connect attaches server i to the network: links to and from every other
// connected server are enabled.
func (c *Cluster) Connect(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.connected[i] = true
	for j := range c.n {
		if c.connected[j] {
			c.net.Enable(c.endNames[i][j], true)
			c.net.Enable(c.endNames[j][i], true)
		}
	}
}

// Disconnect detaches server i: links to and from it are disabled.
func (c *Cluster) Disconnect(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.connected[i] = false
	for j := range c.n {
		if c.endNames[i] != nil {
			c.net.Enable(c.endNames[i][j], false)
		}
		if c.endNames[j] != nil {
			c.net.Enable(c.endNames[j][i], false)
		}
	}
}

// SetLink enables or disables both directions of the link between servers i
// and j, without changing whether either counts as connected.
func (c *Cluster) SetLink(i, j int, on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.net.Enable(c.endNames[i][j], on)
	c.net.Enable(c.endNames[j][i], on)
}

// Partition splits the servers into groups: links within a group are
// enabled, links between groups disabled. Servers in no group are cut off
// from all. Every server counts as connected afterwards (CheckOneLeader and
// One consider all of them).
func (c *Cluster) Partition(groups ...[]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	group := make([]int, c.n)
	for i := range group {
		group[i] = -1 - i // alone
	}
	for g, members := range groups {
		for _, i := range members {
			group[i] = g
		}
	}
	for i := range c.n {
		c.connected[i] = true
		for j := range c.n {
			if i != j {
				c.net.Enable(c.endNames[i][j], group[i] == group[j])
			}
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
	return c.connected[i]
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
