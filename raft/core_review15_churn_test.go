package raft

// The random membership churn of the issue 15 review (rv helpers in
// core_review15_test.go).

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

// TestReview15RandomChurn runs random scripts over the deterministic net:
// membership changes (add, promote, remove, at whichever core leads)
// interleaved with proposals, reads, partitions, crashes and restarts, and
// compactions, checking after every step at most one leader per term, log
// matching over the committed prefixes, that no committed entry ever
// changes, and that each core's configuration in force is the latest of its
// log; at the end, healed and restarted, the cluster must elect a leader
// and commit on every voter.
//
// RAFT_CHURN_SEEDS sets how many seeds run (default 30) and RAFT_CHURN_BASE
// the first one (default 0; "random" picks one, logged), for stress runs
// that explore new scripts: a failing seed replays exactly.
func TestReview15RandomChurn(t *testing.T) {
	seeds, base := 30, uint64(0)
	if testing.Short() {
		seeds = 10
	}
	if v := os.Getenv("RAFT_CHURN_SEEDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("RAFT_CHURN_SEEDS: %v", err)
		}
		seeds = n
	}
	switch v := os.Getenv("RAFT_CHURN_BASE"); v {
	case "":
	case "random":
		base = rand.Uint64() >> 1
		t.Logf("RAFT_CHURN_BASE=%d", base)
	default:
		b, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("RAFT_CHURN_BASE: %v", err)
		}
		base = b
	}
	for k := range uint64(seeds) {
		seed := base + k
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { rvChurn(t, seed, 700) })
	}
}

func rvChurn(t *testing.T, seed uint64, steps int) {
	const n = 7
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	pre, cq := rng.IntN(4) != 0, rng.IntN(4) != 0
	cn := rvNet(t, n, []int{0, 1, 2}, nil, func(c *coreConfig) {
		c.seed = seed
		c.preVote, c.checkQuorum = pre, cq
		c.maxPromoteLag = 20
	})
	leaderOf := map[uint64]int{}
	var script []string
	logf := func(format string, args ...any) { script = append(script, fmt.Sprintf(format, args...)) }
	defer func() {
		if t.Failed() {
			t.Logf("seed %d (prevote %v, check-quorum %v), script:\n%s", seed, pre, cq, strings.Join(script, "\n"))
		}
	}()
	live := func() []int {
		var out []int
		for i, c := range cn.cores {
			if c != nil {
				out = append(out, i)
			}
		}
		return out
	}
	check := func() {
		t.Helper()
		for i, c := range cn.cores {
			if c == nil {
				continue
			}
			if c.role == Leader {
				if o, ok := leaderOf[c.term]; ok && o != i {
					t.Fatalf("two leaders in term %d: %d and %d", c.term, o, i)
				}
				leaderOf[c.term] = i
			}
			// The configuration in force is the latest in the log.
			want := c.confs[0].m
			for k := c.log.firstIndex(); k <= c.log.lastIndex(); k++ {
				if e := c.log.entry(k); e.Type == persist.EntryConfig {
					m, err := decodeMembership(e.Data)
					if err != nil {
						t.Fatalf("core %d entry %d: %v", i, k, err)
					}
					want = m
				}
			}
			if c.conf().String() != want.String() {
				t.Fatalf("core %d: configuration in force %v, latest in its log %v", i, c.conf(), want)
			}
			for j := i + 1; j < n; j++ {
				d := cn.cores[j]
				if d == nil {
					continue
				}
				hi := min(c.log.commit, d.log.commit, c.log.lastIndex(), d.log.lastIndex())
				for k := max(c.log.firstIndex(), d.log.firstIndex()); k <= hi; k++ {
					if a, b := c.log.entry(k), d.log.entry(k); a.Term != b.Term {
						t.Fatalf("committed index %d: core %d has term %d, core %d term %d", k, i, a.Term, j, b.Term)
					}
				}
			}
		}
		cn.rvCheckApplied()
		cn.checkNoViolations()
		if t.Failed() {
			t.FailNow()
		}
	}
	cn.tick(3 * cn.cfgs[0].electionTicksMax)
	for step := range steps {
		ls := cn.leaders()
		r := rng.IntN(100)
		switch {
		case r < 30:
			cn.tick(1 + rng.IntN(3))
		case r < 45 && len(ls) > 0:
			l := ls[rng.IntN(len(ls))]
			if _, _, ok := cn.cores[l].propose(fmt.Appendf(nil, "s%d-%d", seed, step)); ok {
				logf("%d: propose at %d", step, l)
			}
			cn.stabilize()
		case r < 58 && len(ls) > 0:
			l := ls[rng.IntN(len(ls))]
			m := cn.cores[l].conf()
			var ch confChange
			switch op := rng.IntN(3); {
			case op == 0 || len(m.Members) < 3:
				var out []int
				for id := range n {
					if !m.Contains(id) {
						out = append(out, id)
					}
				}
				if len(out) == 0 {
					continue
				}
				ch = rvAdd(out[rng.IntN(len(out))])
			case op == 1 && len(m.Learners()) > 0:
				ch = rvPromote(m.Learners()[rng.IntN(len(m.Learners()))])
			default:
				ch = rvRemove(m.Members[rng.IntN(len(m.Members))].ID)
			}
			err := cn.rvChange(l, ch)
			logf("%d: %v %d at %d: %v", step, ch.op, ch.member.ID, l, err)
		case r < 66:
			var a, b []int
			for _, i := range live() {
				if rng.IntN(2) == 0 {
					a = append(a, i)
				} else {
					b = append(b, i)
				}
			}
			cn.partition(a, b)
			logf("%d: partition %v %v", step, a, b)
		case r < 74:
			cn.heal()
			logf("%d: heal", step)
		case r < 79:
			if l := live(); len(l) > 0 {
				i := l[rng.IntN(len(l))]
				cn.crash(i)
				logf("%d: crash %d", step, i)
			}
		case r < 86:
			for i, c := range cn.cores {
				if c == nil {
					cn.restart(i)
					logf("%d: restart %d", step, i)
					break
				}
			}
			cn.stabilize()
		case r < 93 && len(live()) > 0:
			l := live()
			i := l[rng.IntN(len(l))]
			c := cn.cores[i]
			idx := min(c.log.applied, c.log.durable)
			if idx <= c.log.snap.Index {
				continue
			}
			term, _ := c.log.term(idx)
			snap := persist.Snapshot{Index: idx, Term: term, Data: fmt.Appendf(nil, "state@%d", idx), Config: c.snapshotConfig(idx)}
			if err := cn.stores[i].SaveSnapshot(context.Background(), snap); err != nil {
				t.Fatal(err)
			}
			if err := c.compact(snap); err != nil {
				t.Fatalf("compact core %d: %v", i, err)
			}
			logf("%d: compact %d at %d", step, i, idx)
		case len(live()) > 0:
			l := live()
			i := l[rng.IntN(len(l))]
			cn.cores[i].readIndex(uint64(step + 1))
			cn.stabilize()
		}
		check()
	}
	// Healed and all up: a leader is elected and commits on every voter of
	// its configuration (leadership may still move meanwhile: then again
	// with the next leader).
	for i, c := range cn.cores {
		if c == nil {
			cn.restart(i)
		}
	}
	cn.heal()
	logf("end: heal, restart all")
	dump := func() {
		for i, c := range cn.cores {
			t.Logf("core %d: %v term %d lead %d conf %v (at %d) snap %d last %d/%d commit %d", i, c.role, c.term, c.lead, c.conf(), c.confIndex(), c.log.snap.Index, c.log.lastIndex(), c.log.lastTerm(), c.log.commit)
		}
	}
	budget := 50 * cn.cfgs[0].electionTicksMax
	l, idx, term := -1, uint64(0), uint64(0)
	for k := 0; ; k++ {
		if k > budget {
			dump()
			t.Fatalf("no leader committed a last entry on all its voters within %d ticks after healing (leaders %v)", budget, cn.leaders())
		}
		ls := cn.leaders()
		if len(ls) == 1 && (l != ls[0] || cn.cores[l].term != term) {
			c := cn.cores[ls[0]]
			if c.log.commit >= c.noopIndex {
				l, term = ls[0], c.term
				idx = cn.propose(l, fmt.Sprint("final-", k))
			}
		}
		if l >= 0 && cn.cores[l].role == Leader && cn.cores[l].term == term {
			done := true
			for _, v := range cn.cores[l].voters {
				if cn.cores[v].log.commit < idx {
					done = false
				}
			}
			if done {
				break
			}
		}
		cn.tick(1)
	}
	check()
}
