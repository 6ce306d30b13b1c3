package rafttest

import (
	"testing"
)

// The MIT 6.5840 lab 3D tests: log compaction with snapshots. The
// application snapshots every SnapshotInterval indexes (Options.Snapshots)
// and checks every snapshot it is handed against what the servers applied.

func snapCommon(t *testing.T, opts Options, disconnect, reliable, crash bool) {
	const iters = 30
	const servers = 3
	opts.Unreliable, opts.Snapshots = !reliable, true
	c := NewCluster(t, servers, opts)

	c.One(c.RandCmd(), servers, true)
	leader1 := c.CheckOneLeader()

	for i := range iters {
		victim := (leader1 + 1) % servers
		sender := leader1
		if i%3 == 1 {
			sender = (leader1 + 1) % servers
			victim = leader1
		}

		if disconnect {
			c.Disconnect(victim)
			c.One(c.RandCmd(), servers-1, true)
		}
		if crash {
			c.Crash(victim)
			c.One(c.RandCmd(), servers-1, true)
		}

		// Perhaps send enough to get a snapshot.
		nn := SnapshotInterval/2 + c.RandIntN(SnapshotInterval)
		for range nn {
			c.Start(sender, c.RandCmd())
		}

		// Let applier threads catch up with the Start()s.
		if !disconnect && !crash {
			// Make sure all followers have caught up, so that an
			// InstallSnapshot RPC isn't required for
			// TestSnapshotBasic3D.
			c.One(c.RandCmd(), servers, true)
		} else {
			c.One(c.RandCmd(), servers-1, true)
		}

		if size := c.LogSize(); size >= MaxLogSize {
			t.Fatalf("log size too large: %d bytes", size)
		}
		if disconnect {
			// Reconnect a follower, who may be behind and need to
			// receive a snapshot to catch up.
			c.Connect(victim)
			c.One(c.RandCmd(), servers, true)
			leader1 = c.CheckOneLeader()
		}
		if crash {
			c.Restart(victim)
			c.Connect(victim)
			c.One(c.RandCmd(), servers, true)
			leader1 = c.CheckOneLeader()
		}
	}
}

func TestSnapshotBasic3D(t *testing.T) {
	snapCommon(t, Options{}, false, true, false)
}

func TestSnapshotInstall3D(t *testing.T) {
	t.Parallel() // long and mostly waiting; see the package doc
	snapCommon(t, Options{}, true, true, false)
}

func TestSnapshotInstallUnreliable3D(t *testing.T) {
	t.Parallel() // long and mostly waiting; see the package doc
	snapCommon(t, Options{}, true, false, false)
}

func TestSnapshotInstallCrash3D(t *testing.T) {
	t.Parallel() // long and mostly waiting; see the package doc
	snapCommon(t, Options{}, false, true, true)
}

func TestSnapshotInstallUnCrash3D(t *testing.T) {
	t.Parallel() // long and mostly waiting; see the package doc
	snapCommon(t, Options{}, false, false, true)
}

// TestSnapshotAllCrash3D: crash and restart all servers, after snapshots.
func TestSnapshotAllCrash3D(t *testing.T) {
	snapshotAllCrash(t, Options{})
}

func snapshotAllCrash(t *testing.T, opts Options) {
	const servers = 3
	const iters = 5
	opts.Snapshots = true
	c := NewCluster(t, servers, opts)

	c.One(c.RandCmd(), servers, true)

	for range iters {
		// Perhaps enough to get a snapshot.
		nn := SnapshotInterval/2 + c.RandIntN(SnapshotInterval)
		for range nn {
			c.One(c.RandCmd(), servers, true)
		}

		index1 := c.One(c.RandCmd(), servers, true)

		// Crash all.
		for i := range servers {
			c.Crash(i)
		}

		// Revive all.
		for i := range servers {
			c.Restart(i)
			c.Connect(i)
		}

		index2 := c.One(c.RandCmd(), servers, true)
		if index2 < index1+1 {
			t.Fatalf("index decreased from %d to %d", index1, index2)
		}
	}
}

// TestSnapshotInit3D: do servers correctly initialize their in-memory copy
// of the snapshot, making sure that future writes to persistent state
// don't lose state?
func TestSnapshotInit3D(t *testing.T) {
	snapshotInit(t, Options{})
}

func snapshotInit(t *testing.T, opts Options) {
	const servers = 3
	opts.Snapshots = true
	c := NewCluster(t, servers, opts)

	c.One(c.RandCmd(), servers, true)

	// Enough ops to make a snapshot.
	for range SnapshotInterval + 1 {
		c.One(c.RandCmd(), servers, true)
	}

	// Crash all.
	for i := range servers {
		c.Crash(i)
	}
	// Revive all.
	for i := range servers {
		c.Restart(i)
		c.Connect(i)
	}

	// A single op, to get something to be written back to persistent
	// storage.
	c.One(c.RandCmd(), servers, true)

	// Crash all.
	for i := range servers {
		c.Crash(i)
	}
	// Revive all.
	for i := range servers {
		c.Restart(i)
		c.Connect(i)
	}

	// Do another op to trigger a potential bug.
	c.One(c.RandCmd(), servers, true)
}
