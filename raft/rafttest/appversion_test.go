package rafttest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ruaft/ruaft/raft"
)

// TestAppVersionReported: a leader reports in Status.Progress the
// Config.AppVersion each member sends with its AppendEntries answers, its
// own for itself, 0 for a member it has not heard from in its term, and a
// member's new version once it restarts with one (a rolling upgrade).
func TestAppVersionReported(t *testing.T) {
	const servers = 3
	var mu sync.Mutex
	versions := map[int]uint32{0: 2, 1: 2, 2: 0} // server 2 runs an "old" version
	c := NewCluster(t, servers, Options{ShortDelays: true, Configure: func(cfg *raft.Config) {
		mu.Lock()
		defer mu.Unlock()
		cfg.AppVersion = versions[cfg.ID]
	}})
	c.One(c.RandCmd(), servers, true)

	// progressVersions waits until the leader has heard from every member
	// and returns what it reports.
	progressVersions := func(want map[int]uint32) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		var last string
		for time.Now().Before(deadline) {
			leader := c.CheckOneLeader()
			pr := c.Node(leader).Status().Progress
			got := make(map[int]uint32, len(pr))
			for id, p := range pr {
				got[id] = p.AppVersion
			}
			last = fmt.Sprint(got)
			if last == fmt.Sprint(want) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("leader reports app versions %s, want %v", last, want)
	}
	progressVersions(map[int]uint32{0: 2, 1: 2, 2: 0})

	// A follower's Status has no progress, hence no versions.
	leader := c.CheckOneLeader()
	if pr := c.Node((leader + 1) % servers).Status().Progress; pr != nil {
		t.Fatalf("a follower reports progress %v", pr)
	}

	// Server 2 is upgraded: it restarts with version 2, and the leader
	// (whoever it is after the restart) learns it from its answers.
	mu.Lock()
	versions[2] = 2
	mu.Unlock()
	c.Crash(2)
	c.Restart(2)
	c.Connect(2)
	c.One(c.RandCmd(), servers, true)
	progressVersions(map[int]uint32{0: 2, 1: 2, 2: 2})

	// A new leader starts knowing only its own version, then learns the
	// others' from their answers.
	leader = c.CheckOneLeader()
	c.Disconnect(leader)
	c.One(c.RandCmd(), servers-1, true)
	newLeader := c.CheckOneLeader()
	pr := c.Node(newLeader).Status().Progress
	if pr[newLeader].AppVersion != 2 {
		t.Fatalf("new leader %d reports its own version as %d, want 2", newLeader, pr[newLeader].AppVersion)
	}
	if v := pr[leader].AppVersion; v != 0 {
		t.Fatalf("new leader %d reports version %d for the disconnected old leader %d, which has not answered it", newLeader, v, leader)
	}
	c.Connect(leader)
	c.One(c.RandCmd(), servers, true)
	progressVersions(map[int]uint32{0: 2, 1: 2, 2: 2})
}
