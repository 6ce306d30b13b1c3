package rafttest

// Crash and restart of a server: its node killed, its persisted state kept
// (copied, or closed and reopened with Options.Store) and a fresh
// incarnation started from it, as the lab's crash1 and start1.

import (
	"context"
	"fmt"

	"github.com/ruaft/ruaft/internal/simnet"
	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/raft"
)

// Crash kills server i and keeps a copy of its persisted state, as the
// lab's crash1: the server is disconnected (see Links) and removed from the
// network, its node killed, and its store replaced by a copy so nothing the
// dead instance might still do can reach the restarted one. With Options.Store the store
// is closed as a crash leaves it, to be reopened by Restart.
func (c *Cluster) Crash(i int) {
	c.Disconnect(i)
	c.net.DeleteServer(serverName(i))
	c.mu.Lock()
	nd := c.nodes[i]
	c.nodes[i] = nil
	a := c.apps[i]
	c.mu.Unlock()
	if nd == nil {
		return
	}
	if err := nd.Kill(); err != nil {
		c.t.Errorf("server %d: Kill: %v", i, err)
	}
	a.dead.Store(true)
	if c.slots != nil {
		c.slots[i].Crash()
		c.mu.Lock()
		c.stores[i] = nil
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	c.stores[i] = c.stores[i].(*persist.Memory).Clone()
	c.mu.Unlock()
}

// Restart (re)starts server i from its persisted state, as the lab's start1:
// if it is running it is crashed first; it gets fresh endpoints and a copy
// of its store, and stays disconnected until Connect, Heal or Partition.
func (c *Cluster) Restart(i int) {
	c.Crash(i)
	c.mu.Lock()
	c.gens[i]++
	ends := make([]*simnet.End, c.n)
	c.endNames[i] = make([]string, c.n)
	for j := range c.n {
		name := fmt.Sprintf("%d->%d#%d", i, j, c.gens[i])
		c.endNames[i][j] = name
		ends[j] = c.net.MakeEnd(name)
		c.net.Connect(name, serverName(j))
	}
	var load persist.Store // to read the snapshot from before the node starts
	switch {
	case c.slots != nil:
	case c.stores[i] == nil:
		c.stores[i] = persist.NewMemory()
		load = c.stores[i]
	default:
		m := c.stores[i].(*persist.Memory)
		c.stores[i] = m.Clone()
		load = m.Clone()
	}
	c.lastApplied[i] = 0
	a := &app{c: c, id: i}
	c.apps[i] = a
	gen := c.gens[i]
	c.mu.Unlock()

	if c.slots != nil {
		st, err := c.slots[i].Open()
		if err != nil {
			c.t.Fatalf("server %d: %v", i, err)
		}
		load = st
		c.mu.Lock()
		c.stores[i] = st
		c.mu.Unlock()
	}
	c.mu.Lock()
	store := c.stores[i]
	c.mu.Unlock()

	// Mimic a KV server: restore the application from the stored snapshot
	// before the node starts.
	st, err := load.Load(context.Background())
	if err != nil {
		c.t.Fatalf("server %d: load: %v", i, err)
	}
	if st.Snapshot.Index > 0 && c.opts.Snapshots {
		c.mu.Lock()
		err := c.ingestSnapLocked(i, st.Snapshot.Data, st.Snapshot.Index)
		c.mu.Unlock()
		if err != nil {
			c.t.Fatalf("server %d: stored snapshot: %v", i, err)
		}
		a.lastSnap = st.Snapshot.Index
	}

	cfg := TestConfig(i, c.n)
	if v := c.opts.Voters; v > 0 {
		cfg.Peers = v
		if i >= v {
			cfg.Peers = 0 // a spare: joins with an empty configuration
		}
	}
	cfg.Seed = c.seed*7919 + uint64(gen)*131 + uint64(i) + 1
	cfg.Logger = c.log.logger(i, gen)
	if c.opts.Configure != nil {
		c.opts.Configure(&cfg)
	}
	nd, err := raft.New(cfg, NewTransport(ends), store, a)
	if err != nil {
		c.t.Fatalf("server %d: New: %v", i, err)
	}
	a.setNode(nd)
	c.mu.Lock()
	c.nodes[i] = nd
	c.mu.Unlock()
	h := Handler(nd)
	c.net.AddServer(serverName(i), func(ctx context.Context, method string, req []byte) ([]byte, error) {
		c.methodMu.Lock()
		c.methods[method]++
		c.methodMu.Unlock()
		reply, err := h(ctx, method, req)
		if c.trace {
			c.log.printf("%s", traceRPC(i, method, req, reply, err))
		}
		return reply, err
	})
}
