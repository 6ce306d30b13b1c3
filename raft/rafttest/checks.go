package rafttest

// The lab's checks: one leader per term, no leader, equal terms, agreement
// of applied commands (NCommitted, Wait, One) and the store size bound.

import (
	"bytes"
	"fmt"
	"slices"
	"time"
)

// checkApplyErrs fails the test now if an applier recorded an error.
func (c *Cluster) checkApplyErrs() {
	c.t.Helper()
	c.mu.Lock()
	errs := slices.Clone(c.applyErrs)
	c.mu.Unlock()
	if len(errs) > 0 {
		c.t.Fatalf("apply error: %v", errs[0])
	}
}

// sleep waits d; it is the harness's only bare sleep, used where the lab
// waits for time itself to pass (elections, heartbeats).
func sleep(d time.Duration) { time.Sleep(d) }

// CheckOneLeader checks that exactly one connected server thinks it is the
// leader of the newest term, trying 10 times about 500 ms apart, and
// returns it.
func (c *Cluster) CheckOneLeader() int {
	c.t.Helper()
	for range 10 {
		sleep(time.Duration(450+c.RandIntN(100)) * time.Millisecond)
		c.checkApplyErrs()
		leaders := make(map[uint64][]int)
		for i := range c.n {
			if c.Connected(i) {
				if term, leader := c.State(i); leader {
					leaders[term] = append(leaders[term], i)
				}
			}
		}
		var last uint64
		for term, ls := range leaders {
			if len(ls) > 1 {
				c.t.Fatalf("term %d has %d (>1) leaders: %v", term, len(ls), ls)
			}
			last = max(last, term)
		}
		if len(leaders) != 0 {
			return leaders[last][0]
		}
	}
	c.t.Fatalf("expected one leader, got none\n%s", c.StatusDump())
	return -1
}

// CheckTerms checks that every connected server has the same term and
// returns it.
func (c *Cluster) CheckTerms() uint64 {
	c.t.Helper()
	term, other := c.connectedTerms()
	if other != 0 {
		c.t.Fatalf("servers disagree on term: %d and %d", term, other)
	}
	return term
}

// connectedTerms returns the term of the first connected server and, if
// another connected server has a different one, that term (else 0).
func (c *Cluster) connectedTerms() (term, other uint64) {
	for i := range c.n {
		if c.Connected(i) {
			xterm, _ := c.State(i)
			if term == 0 {
				term = xterm
			} else if term != xterm {
				return term, xterm
			}
		}
	}
	return term, 0
}

// CheckNoLeader checks that no connected server thinks it is leader.
func (c *Cluster) CheckNoLeader() {
	c.t.Helper()
	for i := range c.n {
		if c.Connected(i) {
			if _, leader := c.State(i); leader {
				c.t.Fatalf("expected no leader among connected servers, but %d claims to be leader", i)
			}
		}
	}
}

// NCommitted returns how many servers have applied index, and the command,
// failing the test if they disagree.
func (c *Cluster) NCommitted(index uint64) (int, []byte) {
	c.t.Helper()
	n, cmd, err := c.nCommitted(index)
	if err != nil {
		c.t.Fatal(err)
	}
	return n, cmd
}

// nCommitted is NCommitted for any goroutine: it returns an error instead
// of failing the test.
func (c *Cluster) nCommitted(index uint64) (int, []byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.applyErrs) > 0 {
		return 0, nil, fmt.Errorf("apply error: %s", c.applyErrs[0])
	}
	count := 0
	var cmd []byte
	for i := range c.n {
		if v, ok := c.logs[i][index]; ok {
			if count > 0 && !bytes.Equal(cmd, v) {
				return 0, nil, fmt.Errorf("committed values do not match: index %d, %q, %q", index, cmd, v)
			}
			count++
			cmd = v
		}
	}
	return count, cmd, nil
}

// Skipped reports whether some server applied past index without a
// command there (a no-op entry).
func (c *Cluster) Skipped(index uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.skipped[index]
	return ok
}

// Applied returns how many servers applied cmd, at any index.
func (c *Cluster) Applied(cmd []byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for i := range c.n {
		for _, v := range c.logs[i] {
			if bytes.Equal(v, cmd) {
				n++
				break
			}
		}
	}
	return n
}

// Wait waits for at least n servers to apply index and returns the command.
// If startTerm is not 0 and some server moves past it, Wait gives up and
// returns nil, false: the leader that issued the entry is gone.
func (c *Cluster) Wait(index uint64, n int, startTerm uint64) ([]byte, bool) {
	c.t.Helper()
	to := 10 * time.Millisecond
	for range 30 {
		if nd, _ := c.NCommitted(index); nd >= n {
			break
		}
		sleep(to)
		if to < time.Second {
			to *= 2
		}
		if startTerm > 0 {
			for i := range c.n {
				if t, _ := c.State(i); t > startTerm {
					return nil, false
				}
			}
		}
	}
	nd, cmd := c.NCommitted(index)
	if nd < n {
		c.t.Fatalf("only %d decided for index %d; wanted %d\n%s", nd, index, n, c.StatusDump())
	}
	return cmd, true
}

// One submits cmd to the leader (trying every connected server until one
// accepts it) and waits for at least expected servers to apply it, within
// 10 s; with retry it resubmits if the first leader fails to commit it in 2
// s. It returns the index and fails the test if no agreement is reached.
func (c *Cluster) One(cmd []byte, expected int, retry bool) uint64 {
	c.t.Helper()
	index, err := c.OneErr(cmd, expected, retry)
	if err != nil {
		c.t.Fatal(err)
	}
	return index
}

// OneErr is One for any goroutine: it returns an error instead of failing
// the test.
func (c *Cluster) OneErr(cmd []byte, expected int, retry bool) (uint64, error) {
	t0 := time.Now()
	starts := c.RandIntN(c.n)
	for time.Since(t0) < 10*time.Second {
		var index uint64
		found := false
		for range c.n {
			starts = (starts + 1) % c.n
			if c.Connected(starts) {
				if idx, _, ok := c.Start(starts, cmd); ok {
					index, found = idx, true
					break
				}
			}
		}
		if found {
			t1 := time.Now()
			for time.Since(t1) < 2*time.Second {
				nd, cmd1, err := c.nCommitted(index)
				if err != nil {
					return 0, err
				}
				if nd > 0 && nd >= expected && bytes.Equal(cmd1, cmd) {
					c.mu.Lock()
					c.cmds++
					c.mu.Unlock()
					return index, nil
				}
				sleep(20 * time.Millisecond)
			}
			if !retry {
				return 0, fmt.Errorf("one(%q) failed to reach agreement\n%s", cmd, c.StatusDump())
			}
		} else {
			sleep(50 * time.Millisecond)
		}
	}
	return 0, fmt.Errorf("one(%q) failed to reach agreement in 10s\n%s", cmd, c.StatusDump())
}

// LastApplied returns the last index server i's application applied (or
// restored from a snapshot) in its current incarnation.
func (c *Cluster) LastApplied(i int) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastApplied[i]
}

// LogSize is the largest persisted Raft state (store Size) of any server.
func (c *Cluster) LogSize() int64 {
	c.mu.Lock()
	stores := slices.Clone(c.stores)
	c.mu.Unlock()
	var m int64
	for _, s := range stores {
		if s != nil {
			m = max(m, s.Size())
		}
	}
	return m
}
