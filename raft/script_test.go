package raft

// This file is above ~500 lines because it is the whole command set of the
// scripts in one place (one case per command), which reads better than split.
//
// The scripted core tests: each testdata/*.txt file is a scenario written as
// commands and the trace they produce (datadriven_test.go has the format).
// The driver runs the deterministic cores of a coreNet through their
// step/tick/ready API: no goroutines, no clock. Replica ids are the cores'
// ids, from 0.
//
// Commands (ids: a replica id; "all"; or a comma-separated list):
//
//	add-nodes N [prevote=B] [checkquorum=B] [election=T] [election-max=T]
//	          [heartbeat=T] [max-entries=N] [chunk=BYTES] [voters=0,1,2] [promote-lag=N]
//	    a fresh network of N replicas (voters: the bootstrap voters; the
//	    others start with no configuration, waiting to be added)
//	load ID term=T [log=1,1,2] [commit=C]  restart ID from a stored state
//	campaign ID           ID's election timeout fires now
//	tick IDS [K] [quiet=true]
//	                      K ticks of the replicas, the network stabilizing
//	                      after each; quiet leaves out the messages
//	stabilize [quiet=true]  process batches and deliver until nothing is left
//	deliver-msgs          process one batch of every replica, deliver what was
//	                      sent then (answers are stepped at once: RPCs)
//	propose ID DATA...    commands at ID, one per DATA
//	read-index ID RID     a read with request id RID at ID
//	compact ID INDEX [data=S]  ID snapshots its state machine at INDEX
//	transfer ID -> TO     leadership transfer from ID to TO
//	add-learner ID M / promote ID M / remove ID M   a configuration change at ID
//	partition A B | C     cut every link between the groups (a replica in
//	                      no group is alone)
//	isolate ID / heal     cut every link of ID / restore every link
//	drop KIND [N]         lose the next N (1) messages of KIND (AppendEntries...)
//	crash ID / restart ID stop ID / start it again from its store
//	status IDS / log IDS / applied IDS   print state, log, applied commands
//
// Every command prints, in order: the messages delivered ("from->to request:
// answer"), the notes the cores explain their role changes with ("~ ID
// why"), changes of role, term, leader and commit ("> ID role ..."), reads
// answered and snapshots installed.

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

func TestScripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scripts in testdata/")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			d := &scriptDriver{t: t}
			runDD(t, f, d.run)
			if d.cn != nil {
				d.cn.checkNoViolations()
			}
		})
	}
}

// nodeView is what the driver reports changes of.
type nodeView struct {
	up     bool
	role   Role
	term   uint64
	lead   int
	commit uint64
}

type scriptDriver struct {
	t   *testing.T
	cn  *coreNet
	out strings.Builder
	cmd *ddCmd
	// seen are the views last reported; reads and snaps count the read
	// states and received snapshots reported per replica.
	seen  []nodeView
	reads []int
	snaps []int
}

func (d *scriptDriver) fatalf(format string, args ...any) {
	d.t.Helper()
	d.t.Fatalf("line %d: %s: %s", d.cmd.line, d.cmd.text, fmt.Sprintf(format, args...))
}

func (d *scriptDriver) printf(format string, args ...any) {
	fmt.Fprintf(&d.out, format+"\n", args...)
}

func (d *scriptDriver) run(c *ddCmd) string {
	d.cmd = c
	d.out.Reset()
	if c.name != "add-nodes" && d.cn == nil {
		d.fatalf("add-nodes must come first")
	}
	quiet := d.boolArg("quiet", false)
	if d.cn != nil {
		d.cn.trace = &d.out
		if quiet {
			d.cn.trace = nil
		}
	}
	switch c.name {
	case "add-nodes":
		d.addNodes()
	case "load":
		d.load()
	case "campaign":
		d.live(0).campaign()
	case "tick":
		ids := d.ids(0)
		for range d.intArg(1, 1) {
			for _, i := range ids {
				if c := d.cn.cores[i]; c != nil {
					c.tick()
				}
			}
			d.observe()
			d.cn.stabilize()
		}
	case "stabilize":
		d.cn.stabilize()
	case "deliver-msgs":
		for i := range d.cn.cores {
			d.cn.processReady(i)
		}
		q := d.cn.pending
		d.cn.pending = nil
		for _, e := range q {
			d.cn.deliver(e)
		}
	case "propose":
		c := d.live(0)
		d.arg(1)
		for _, data := range d.cmd.args[1:] {
			idx, term, ok := c.propose([]byte(data))
			if !ok {
				d.printf("%s: refused (%v)", data, c.role)
			} else {
				d.printf("%s: index=%d term=%d", data, idx, term)
			}
		}
	case "read-index":
		d.live(0).readIndex(uint64(d.intArg(1, -1)))
	case "compact":
		d.compact()
	case "transfer":
		args := slices.DeleteFunc(slices.Clone(c.args), func(s string) bool { return s == "->" })
		if len(args) != 2 {
			d.fatalf("want: transfer FROM -> TO")
		}
		to, err := strconv.Atoi(args[1])
		if err != nil {
			d.fatalf("bad id %q", args[1])
		}
		if err := d.live(0).transferLeadership(to); err != nil {
			d.printf("error: %v", err)
		}
	case "add-learner", "promote", "remove":
		d.confChange()
	case "partition":
		var groups [][]int
		var g []int
		for _, a := range c.args {
			if a == "|" {
				groups, g = append(groups, g), nil
				continue
			}
			g = append(g, d.parseID(a))
		}
		groups = append(groups, g)
		// As in rafttest's fault API, a replica in no group is alone.
		for i := range d.cn.cores {
			if !slices.ContainsFunc(groups, func(g []int) bool { return slices.Contains(g, i) }) {
				groups = append(groups, []int{i})
			}
		}
		d.cn.partition(groups...)
	case "drop":
		// The next N messages whose trace starts with KIND are lost.
		kind, n := d.arg(0), d.intArg(1, 1)
		d.cn.dropFn = func(_ int, m message) bool {
			if n == 0 || !strings.HasPrefix(describe(m), kind+" ") {
				return false
			}
			n--
			return true
		}
	case "isolate":
		d.cn.isolate(d.id(0))
	case "heal":
		d.cn.heal()
	case "crash":
		d.cn.crash(d.id(0))
	case "restart":
		i := d.id(0)
		if d.cn.cores[i] != nil {
			d.fatalf("replica %d is running", i)
		}
		d.cn.restart(i)
		d.reads[i], d.snaps[i] = 0, 0
		d.cn.reads[i], d.cn.snapshots[i], d.cn.applied[i] = nil, nil, nil
	case "status":
		for _, i := range d.ids(0) {
			d.status(i)
		}
	case "log":
		for _, i := range d.ids(0) {
			d.printLog(i)
		}
	case "applied":
		for _, i := range d.ids(0) {
			d.printf("%d: %s", i, strings.Join(d.cn.appliedCommands(i), " "))
		}
	default:
		d.fatalf("unknown command %q", c.name)
	}
	d.observe()
	return collapseRepeats(d.out.String())
}

// collapseRepeats writes a run of identical lines once, with its count.
func collapseRepeats(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	var out []string
	for i := 0; i < len(lines); {
		j := i
		for j < len(lines) && lines[j] == lines[i] {
			j++
		}
		if j-i > 1 {
			out = append(out, fmt.Sprintf("%s (x%d)", lines[i], j-i))
		} else {
			out = append(out, lines[i])
		}
		i = j
	}
	return strings.Join(out, "\n")
}

func (d *scriptDriver) addNodes() {
	if d.cn != nil {
		d.cn.checkNoViolations()
	}
	n := d.intArg(0, -1)
	var voters []int
	if v, ok := d.cmd.kv["voters"]; ok {
		for _, s := range strings.Split(v, ",") {
			voters = append(voters, d.parseIDIn(s, n))
		}
	}
	tweak := func(c *coreConfig) {
		c.preVote = d.boolArg("prevote", c.preVote)
		c.checkQuorum = d.boolArg("checkquorum", c.checkQuorum)
		c.electionTicks = d.kvInt("election", c.electionTicks)
		c.electionTicksMax = d.kvInt("election-max", max(c.electionTicksMax, c.electionTicks+1))
		c.heartbeatTicks = d.kvInt("heartbeat", c.heartbeatTicks)
		c.maxEntries = d.kvInt("max-entries", c.maxEntries)
		c.chunkBytes = d.kvInt("chunk", c.chunkBytes)
		c.maxPromoteLag = uint64(d.kvInt("promote-lag", 5))
		if voters != nil {
			boot := Membership{}
			for _, v := range voters {
				boot.Members = append(boot.Members, Member{ID: v, Addr: fmt.Sprintf("addr-%d", v)})
			}
			if slices.Contains(voters, c.id) {
				c.bootstrap = boot
			} else {
				c.bootstrap = Membership{}
			}
		}
	}
	d.cn = newCoreNet(d.t, n, tweak)
	d.cn.observe = d.observe
	d.seen = make([]nodeView, n)
	d.reads = make([]int, n)
	d.snaps = make([]int, n)
	for i := range n {
		d.seen[i] = d.view(i)
		// The notes of loading the bootstrap configuration say nothing
		// the command does not.
		d.cn.cores[i].events = nil
	}
}

// load restarts a replica from a stored state: a hard state and a log of
// command entries with the terms given.
func (d *scriptDriver) load() {
	id := d.id(0)
	hs := persist.HardState{Term: uint64(d.kvInt("term", 0)), VotedFor: persist.NoVote, Commit: uint64(d.kvInt("commit", 0))}
	var es []Entry
	if l := d.cmd.kv["log"]; l != "" {
		for k, s := range strings.Split(l, ",") {
			tm, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				d.fatalf("bad term %q", s)
			}
			es = append(es, Entry{Index: uint64(k + 1), Term: tm, Type: persist.EntryCommand, Data: []byte(fmt.Sprintf("e%d", k+1))})
		}
	}
	d.cn.load(id, persist.State{HardState: hs, Entries: es})
	d.seen[id] = d.view(id)
	d.cn.cores[id].events = nil
}

// compact has replica i take a snapshot of its state machine at index, as
// the node does when the application calls Snapshot: store it, then let the
// core drop the log up to it.
func (d *scriptDriver) compact() {
	i, index := d.id(0), uint64(d.intArg(1, -1))
	c := d.live(0)
	if index > c.log.applied {
		d.fatalf("index %d not applied (applied %d)", index, c.log.applied)
	}
	tm, ok := c.log.term(index)
	if !ok {
		d.fatalf("index %d not in the log", index)
	}
	data := d.cmd.kv["data"]
	if data == "" {
		data = strings.Join(d.cn.appliedCommands(i), ",")
	}
	snap := persist.Snapshot{Index: index, Term: tm, Data: []byte(data), Config: c.snapshotConfig(index)}
	if err := d.cn.stores[i].SaveSnapshot(context.Background(), snap); err != nil {
		d.fatalf("save snapshot: %v", err)
	}
	if err := c.compact(snap); err != nil {
		d.printf("error: %v", err)
		return
	}
	d.printf("snapshot %d/%d (%d bytes), log from %d", index, tm, len(data), c.log.firstIndex())
}

func (d *scriptDriver) confChange() {
	m := d.id(1)
	var ch confChange
	switch d.cmd.name {
	case "add-learner":
		ch = confChange{op: opAddLearner, member: Member{ID: m, Addr: fmt.Sprintf("addr-%d", m)}}
	case "promote":
		ch = confChange{op: opPromote, member: Member{ID: m}}
	default:
		ch = confChange{op: opRemove, member: Member{ID: m}}
	}
	c := d.live(0)
	idx, term, err := c.proposeConfChange(ch, c.cfg.maxPromoteLag)
	if err != nil {
		d.printf("error: %v", err)
		return
	}
	d.printf("index=%d term=%d", idx, term)
}

// view returns what the driver reports of replica i.
func (d *scriptDriver) view(i int) nodeView {
	c := d.cn.cores[i]
	if c == nil {
		return nodeView{}
	}
	return nodeView{up: true, role: c.role, term: c.term, lead: c.lead, commit: c.log.commit}
}

// observe prints the notes, state changes, reads and snapshots of every
// replica since the last call.
func (d *scriptDriver) observe() {
	for i, c := range d.cn.cores {
		if c != nil {
			for _, e := range c.events {
				d.printf("~ %d %s", i, e)
			}
			c.events = c.events[:0]
		}
		v, was := d.view(i), d.seen[i]
		switch {
		case !v.up && was.up:
			d.printf("> %d down", i)
		case v.up && (v.role != was.role || v.term != was.term || v.lead != was.lead || !was.up):
			d.printf("> %d %v term=%d lead=%s commit=%d", i, v.role, v.term, leadName(v.lead), v.commit)
		case v.up && v.commit != was.commit:
			d.printf("> %d commit=%d", i, v.commit)
		}
		d.seen[i] = v
		for _, rs := range d.cn.reads[i][d.reads[i]:] {
			if rs.err != nil {
				d.printf("> %d read %d failed: %v", i, rs.id, rs.err)
			} else {
				d.printf("> %d read %d at index=%d term=%d", i, rs.id, rs.index, rs.term)
			}
		}
		d.reads[i] = len(d.cn.reads[i])
		for _, s := range d.cn.snapshots[i][d.snaps[i]:] {
			d.printf("> %d installed snapshot %d/%d %q", i, s.Index, s.Term, s.Data)
		}
		d.snaps[i] = len(d.cn.snapshots[i])
	}
}

func leadName(l int) string {
	if l == NoLeader {
		return "none"
	}
	return strconv.Itoa(l)
}

func (d *scriptDriver) status(i int) {
	c := d.cn.cores[i]
	if c == nil {
		d.printf("%d: down", i)
		return
	}
	vote := "none"
	if c.vote != persist.NoVote {
		vote = strconv.Itoa(c.vote)
	}
	d.printf("%d: %v term=%d vote=%s lead=%s commit=%d applied=%d last=%d/%d snap=%d/%d",
		i, c.role, c.term, vote, leadName(c.lead), c.log.commit, c.log.applied, c.log.lastIndex(), c.log.lastTerm(), c.log.snap.Index, c.log.snap.Term)
	conf := c.conf()
	d.printf("   voters=%v learners=%v", conf.Voters(), conf.Learners())
	if c.role == Leader {
		for _, p := range c.peerIDs {
			pr := c.prs[p]
			d.printf("   %d: %v match=%d next=%d", p, pr.state, pr.match, pr.next)
		}
	}
}

func (d *scriptDriver) printLog(i int) {
	c := d.cn.cores[i]
	if c == nil {
		d.printf("%d: down", i)
		return
	}
	var parts []string
	if c.log.snap.Index > 0 {
		parts = append(parts, fmt.Sprintf("snap=%d/%d", c.log.snap.Index, c.log.snap.Term))
	}
	for idx := c.log.firstIndex(); idx <= c.log.lastIndex(); idx++ {
		e := c.log.entry(idx)
		switch e.Type {
		case persist.EntryNoop:
			parts = append(parts, fmt.Sprintf("%d/%d:noop", e.Index, e.Term))
		case persist.EntryConfig:
			m, err := decodeMembership(e.Data)
			if err != nil {
				d.fatalf("entry %d: %v", idx, err)
			}
			parts = append(parts, fmt.Sprintf("%d/%d:conf%v/%v", e.Index, e.Term, m.Voters(), m.Learners()))
		default:
			parts = append(parts, fmt.Sprintf("%d/%d:%s", e.Index, e.Term, e.Data))
		}
	}
	if len(parts) == 0 {
		parts = []string{"empty"}
	}
	d.printf("%d: %s", i, strings.Join(parts, " "))
}

func (d *scriptDriver) arg(k int) string {
	if k >= len(d.cmd.args) {
		d.fatalf("missing argument %d", k+1)
	}
	return d.cmd.args[k]
}

// intArg returns positional argument k as an int, or def if absent and def
// is not negative.
func (d *scriptDriver) intArg(k, def int) int {
	if k >= len(d.cmd.args) && def >= 0 {
		return def
	}
	n, err := strconv.Atoi(d.arg(k))
	if err != nil || n < 0 {
		d.fatalf("bad number %q", d.arg(k))
	}
	return n
}

func (d *scriptDriver) kvInt(key string, def int) int {
	s, ok := d.cmd.kv[key]
	if !ok {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		d.fatalf("bad %s=%q", key, s)
	}
	return n
}

func (d *scriptDriver) boolArg(key string, def bool) bool {
	s, ok := d.cmd.kv[key]
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		d.fatalf("bad %s=%q", key, s)
	}
	return b
}

func (d *scriptDriver) parseIDIn(s string, n int) int {
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 || i >= n {
		d.fatalf("bad replica id %q", s)
	}
	return i
}

func (d *scriptDriver) parseID(s string) int { return d.parseIDIn(s, len(d.cn.cores)) }

func (d *scriptDriver) id(k int) int { return d.parseID(d.arg(k)) }

// live returns the running core whose id is argument k.
func (d *scriptDriver) live(k int) *core {
	i := d.id(k)
	if d.cn.cores[i] == nil {
		d.fatalf("replica %d is down", i)
	}
	return d.cn.cores[i]
}

// ids parses argument k as "all" or a comma-separated list of ids.
func (d *scriptDriver) ids(k int) []int {
	a := d.arg(k)
	if a == "all" {
		var out []int
		for i := range d.cn.cores {
			out = append(out, i)
		}
		return out
	}
	var out []int
	for _, s := range strings.Split(a, ",") {
		out = append(out, d.parseID(s))
	}
	return out
}
