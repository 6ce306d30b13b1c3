// Command tracestat summarises an execution trace of the raft package's
// BenchmarkCommit* (go test -trace, or -test.trace on a test binary): for
// each kind of goroutine (proposers, the nodes' loops, appliers, senders,
// the hop transport's servers, the ticker) how long it waited for a CPU once
// runnable and how long it ran at a stretch; the GC's mark phases,
// stop-the-world pauses and mark assists; and, for the commits the
// benchmark logged as slow (category "slowcommit"), how their proposers
// spent that time. Run from this folder: go run . trace.out
package main

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

type gstate struct {
	class    string
	state    trace.GoState
	since    trace.Time
	blockCls string
	// history of (time, state, blockCls) for proposers only
	hist []seg
}

type seg struct {
	from, to trace.Time
	st       string
}

var classes = []struct{ sub, name string }{
	{"raft.propose", "proposer"},
	{"benchCommit.func1.1", "proposer"},
	{"(*Node).loop", "loop"},
	{"(*Node).applier", "applier"},
	{"(*Node).sender", "sender"},
	{"(*Node).ticker", "ticker"},
	{"newHopNet.func1", "hopserver"},
	{"gcBgMarkWorker", "gcworker"},
}

func classify(s trace.Stack) string {
	for f := range s.Frames() {
		for _, c := range classes {
			if strings.Contains(f.Func, c.sub) {
				return c.name
			}
		}
	}
	return ""
}

func blockWhere(s trace.Stack) string {
	for f := range s.Frames() {
		switch {
		case strings.Contains(f.Func, "(*Node).Start"):
			return "wait-Start"
		case strings.Contains(f.Func, "raft.propose"):
			return "wait-apply"
		case strings.Contains(f.Func, "sync.(*Mutex)"):
			return "wait-mutex"
		}
	}
	return "wait-other"
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[int(p*float64(len(d)-1))]
}

func main() {
	f, err := os.Open(os.Args[1])
	if err != nil {
		panic(err)
	}
	r, err := trace.NewReader(f)
	if err != nil {
		panic(err)
	}
	gs := map[trace.GoID]*gstate{}
	lat := map[string][]time.Duration{}
	runDur := map[string][]time.Duration{}
	var gcMark []seg
	var stw []seg
	var markStart trace.Time
	stwStart := map[string]trace.Time{}
	assist := map[string]time.Duration{}
	assistStart := map[trace.GoID]trace.Time{}
	type slow struct {
		g      trace.GoID
		t0, t1 trace.Time
	}
	var slows []slow
	var first, last trace.Time
	runnable := 0
	var runnableArea float64
	var lastT trace.Time
	for {
		e, err := r.ReadEvent()
		if err != nil {
			break
		}
		t := e.Time()
		if first == 0 {
			first = t
		}
		last = t
		if lastT != 0 {
			runnableArea += float64(runnable) * float64(t-lastT)
		}
		lastT = t
		switch e.Kind() {
		case trace.EventStateTransition:
			st := e.StateTransition()
			if st.Resource.Kind != trace.ResourceGoroutine {
				continue
			}
			id := st.Resource.Goroutine()
			from, to := st.Goroutine()
			g := gs[id]
			if g == nil {
				g = &gstate{}
				gs[id] = g
			}
			if g.class == "" {
				g.class = classify(st.Stack)
			}
			if from == trace.GoRunnable {
				runnable--
			}
			if to == trace.GoRunnable {
				runnable++
			}
			if from == trace.GoRunning && g.since != 0 {
				runDur[g.class] = append(runDur[g.class], time.Duration(t-g.since))
			}
			if from == trace.GoRunnable && to == trace.GoRunning && g.since != 0 {
				lat[g.class] = append(lat[g.class], time.Duration(t-g.since))
			}
			if g.class == "proposer" && g.since != 0 {
				name := g.state.String()
				if g.state == trace.GoWaiting {
					name = g.blockCls
				}
				g.hist = append(g.hist, seg{g.since, t, name})
			}
			if to == trace.GoWaiting {
				g.blockCls = blockWhere(st.Stack)
			}
			g.state, g.since = to, t
		case trace.EventRangeBegin:
			rg := e.Range()
			switch {
			case rg.Name == "GC concurrent mark phase":
				markStart = t
			case strings.HasPrefix(rg.Name, "stop-the-world"):
				stwStart[rg.Name] = t
			case rg.Name == "GC mark assist":
				assistStart[e.Goroutine()] = t
			}
		case trace.EventRangeEnd:
			rg := e.Range()
			switch {
			case rg.Name == "GC concurrent mark phase":
				if markStart != 0 {
					gcMark = append(gcMark, seg{markStart, t, ""})
				}
			case strings.HasPrefix(rg.Name, "stop-the-world"):
				if s, ok := stwStart[rg.Name]; ok {
					stw = append(stw, seg{s, t, rg.Name})
				}
			case rg.Name == "GC mark assist":
				if s, ok := assistStart[e.Goroutine()]; ok {
					c := ""
					if g := gs[e.Goroutine()]; g != nil {
						c = g.class
					}
					assist[c] += time.Duration(t - s)
				}
			}
		case trace.EventLog:
			l := e.Log()
			if l.Category == "slowcommit" {
				d, _ := strconv.ParseInt(l.Message, 10, 64)
				slows = append(slows, slow{e.Goroutine(), t - trace.Time(d), t})
			}
		}
	}
	total := time.Duration(last - first)
	fmt.Printf("trace span %v, mean runnable goroutines %.1f\n", total, runnableArea/float64(last-first))
	var names []string
	for c := range lat {
		names = append(names, c)
	}
	sort.Strings(names)
	fmt.Println("scheduling latency (runnable -> running) by class:")
	for _, c := range names {
		d := lat[c]
		slices.Sort(d)
		var over1ms int
		for _, x := range d {
			if x > time.Millisecond {
				over1ms++
			}
		}
		fmt.Printf("  %-10s n=%7d p50=%8v p90=%8v p99=%8v max=%8v >1ms=%.2f%%\n", c, len(d), pct(d, .5), pct(d, .9), pct(d, .99), d[len(d)-1], 100*float64(over1ms)/float64(len(d)))
	}
	fmt.Println("running stretches by class:")
	for _, c := range names {
		d := runDur[c]
		slices.Sort(d)
		if len(d) == 0 {
			continue
		}
		var sum time.Duration
		for _, x := range d {
			sum += x
		}
		fmt.Printf("  %-10s n=%7d p50=%8v p99=%8v p99.9=%8v max=%8v total=%v\n", c, len(d), pct(d, .5), pct(d, .99), pct(d, .999), d[len(d)-1], sum)
	}
	var markTot time.Duration
	for _, s := range gcMark {
		markTot += time.Duration(s.to - s.from)
	}
	var stwTot, stwMax time.Duration
	for _, s := range stw {
		d := time.Duration(s.to - s.from)
		stwTot += d
		stwMax = max(stwMax, d)
	}
	fmt.Printf("GC: %d mark phases, %v in mark (%.1f%% of span); %d STW, total %v, max %v\n", len(gcMark), markTot, 100*float64(markTot)/float64(total), len(stw), stwTot, stwMax)
	fmt.Printf("mark assist by class: %v\n", assist)
	if len(slows) == 0 {
		return
	}
	// Breakdown of slow commits.
	inMark := 0
	agg := map[string]time.Duration{}
	var aggTot time.Duration
	for _, s := range slows {
		for _, m := range gcMark {
			if m.from < s.t1 && m.to > s.t0 {
				inMark++
				break
			}
		}
		for _, h := range gs[s.g].hist {
			lo, hi := max(h.from, s.t0), min(h.to, s.t1)
			if hi > lo {
				agg[h.st] += time.Duration(hi - lo)
			}
		}
		aggTot += time.Duration(s.t1 - s.t0)
	}
	fmt.Printf("slow commits: %d, %.0f%% overlap a GC mark phase; time of their proposers by state:\n", len(slows), 100*float64(inMark)/float64(len(slows)))
	for k, v := range agg {
		fmt.Printf("  %-12s %5.1f%%\n", k, 100*float64(v)/float64(aggTot))
	}
}
