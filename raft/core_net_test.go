package raft

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

// coreNet is a deterministic in-test network of cores: no goroutines, no
// clock. Each core's batches are stored in a persist.Memory right away;
// messages are delivered in FIFO order unless the link is cut.
type coreNet struct {
	t      testing.TB
	cfgs   []coreConfig
	cores  []*core
	stores []*persist.Memory
	// cut[from][to] drops messages from -> to (the sender sees a failure).
	cut [][]bool
	// applied[i] are the committed entries handed out by core i, in order.
	applied [][]Entry
	// snapshots[i] are the snapshots core i handed out for applying.
	snapshots [][]persist.Snapshot
	// reads[i] are the read states core i produced.
	reads [][]readState
	// trace records delivered messages when tracing is on.
	trace  *strings.Builder
	dropFn func(from int, m message) bool
	// observe, if set, is called after each batch processed and each
	// message delivered (the script driver reports state changes there).
	observe func()
	sent    int
	pending []envelope
	// forwarded maps a leader's read id, registered for a follower's
	// ReadIndex request, to that request (the node's HandleReadIndex).
	forwarded map[uint64]envelope
	fwdID     uint64
}

// forwardedIDBase keeps the read ids the network registers at a leader on a
// follower's behalf apart from the ids tests use.
const forwardedIDBase = 1 << 40

type envelope struct {
	from int
	m    message
}

func testCoreConfig(id, peers int) coreConfig {
	return coreConfig{
		id: id, bootstrap: Membership{Members: BootstrapMembers(peers)},
		electionTicks: 10, electionTicksMax: 20, heartbeatTicks: 2,
		preVote: true, checkQuorum: true,
		maxInflight: 4, maxInflightBytes: 1 << 20, maxEntries: 8, maxBytes: 1 << 20,
		chunkBytes: 1 << 20,
		seed:       1,
	}
}

func newCoreNet(t testing.TB, n int, tweak ...func(*coreConfig)) *coreNet {
	cn := &coreNet{t: t}
	for i := range n {
		cfg := testCoreConfig(i, n)
		for _, f := range tweak {
			f(&cfg)
		}
		cn.cfgs = append(cn.cfgs, cfg)
		cn.stores = append(cn.stores, persist.NewMemory())
		cn.cores = append(cn.cores, newCore(cfg, persist.State{HardState: persist.EmptyHardState}))
		cn.cut = append(cn.cut, make([]bool, n))
		cn.applied = append(cn.applied, nil)
		cn.snapshots = append(cn.snapshots, nil)
		cn.reads = append(cn.reads, nil)
	}
	return cn
}

// isolate cuts every link to and from i; heal restores all links.
func (cn *coreNet) isolate(i int) {
	for j := range cn.cut {
		cn.cut[i][j], cn.cut[j][i] = true, true
	}
}

func (cn *coreNet) heal() {
	for i := range cn.cut {
		for j := range cn.cut[i] {
			cn.cut[i][j] = false
		}
	}
}

// partition cuts the links between the groups.
func (cn *coreNet) partition(groups ...[]int) {
	group := make([]int, len(cn.cores))
	for g, ids := range groups {
		for _, id := range ids {
			group[id] = g
		}
	}
	for i := range cn.cut {
		for j := range cn.cut[i] {
			cn.cut[i][j] = group[i] != group[j]
		}
	}
}

// crash drops core i; restart rebuilds it from its store.
func (cn *coreNet) crash(i int) { cn.cores[i] = nil }

func (cn *coreNet) restart(i int) {
	st, err := cn.stores[i].Load(context.Background())
	if err != nil {
		cn.t.Fatal(err)
	}
	cn.cores[i] = newCore(cn.cfgs[i], st)
}

// load replaces core i with one started from st, stored in a fresh store.
func (cn *coreNet) load(i int, st persist.State) {
	cn.stores[i] = persist.NewMemory()
	if err := cn.stores[i].Append(context.Background(), st.HardState, st.Entries); err != nil {
		cn.t.Fatal(err)
	}
	cn.cores[i] = newCore(cn.cfgs[i], st)
}

// processReady stores, collects and queues one batch of core i.
func (cn *coreNet) processReady(i int) bool {
	c := cn.cores[i]
	if c == nil {
		return false
	}
	rd := c.ready()
	if rd.empty() {
		return false
	}
	ctx := context.Background()
	if rd.snapshot != nil {
		if err := cn.stores[i].SaveSnapshot(ctx, *rd.snapshot); err != nil {
			cn.t.Fatalf("core %d: save snapshot: %v", i, err)
		}
		cn.snapshots[i] = append(cn.snapshots[i], *rd.snapshot)
	}
	if rd.save {
		if err := cn.stores[i].Append(ctx, rd.hardState, rd.entries); err != nil {
			cn.t.Fatalf("core %d: append: %v", i, err)
		}
	}
	cn.applied[i] = append(cn.applied[i], rd.committed...)
	for _, rs := range rd.reads {
		if e, ok := cn.forwarded[rs.id]; ok {
			// The leader answered a follower's request.
			delete(cn.forwarded, rs.id)
			resp := &ReadIndexResponse{Term: c.term}
			if rs.err == nil {
				resp = &ReadIndexResponse{Term: rs.term, OK: true, ReadIndex: rs.index}
			}
			cn.tracef("%d->%d %s: %s", e.from, e.m.to, describe(e.m), describeResp(resp))
			if f := cn.cores[e.from]; f != nil {
				f.handleReadIndexResponse(e.m, resp)
			}
			cn.observed()
			continue
		}
		cn.reads[i] = append(cn.reads[i], rs)
	}
	for _, m := range rd.messages {
		cn.pending = append(cn.pending, envelope{from: i, m: m})
	}
	c.advance(rd)
	cn.observed()
	return true
}

func (cn *coreNet) observed() {
	if cn.observe != nil {
		cn.observe()
	}
}

// deliver delivers one message and steps its answer into the sender.
func (cn *coreNet) deliver(e envelope) {
	defer cn.observed()
	from, m := e.from, e.m
	sender, target := cn.cores[from], cn.cores[m.to]
	if sender == nil {
		return
	}
	cn.sent++
	if target == nil || cn.cut[from][m.to] || cn.cut[m.to][from] || (cn.dropFn != nil && cn.dropFn(from, m)) {
		cn.tracef("%d->%d %s: dropped", from, m.to, describe(m))
		sender.handleFailure(m)
		return
	}
	switch {
	case m.ae != nil:
		resp := target.handleAppendEntries(m.ae)
		cn.tracef("%d->%d %s: %s", from, m.to, describe(m), describeResp(resp))
		sender.handleAppendResponse(m, resp)
	case m.rv != nil:
		resp := target.handleRequestVote(m.rv)
		cn.tracef("%d->%d %s: %s", from, m.to, describe(m), describeResp(resp))
		sender.handleVoteResponse(m, resp)
	case m.is != nil:
		resp := target.handleInstallSnapshot(m.is)
		cn.tracef("%d->%d %s: %s", from, m.to, describe(m), describeResp(resp))
		sender.handleSnapshotResponse(m, resp)
	case m.tn != nil:
		resp := target.handleTimeoutNow(m.tn)
		cn.tracef("%d->%d %s: %s", from, m.to, describe(m), describeResp(resp))
		sender.handleTimeoutNowResponse(m, resp)
	case m.ri != nil:
		cn.fwdID++
		id := forwardedIDBase + cn.fwdID
		if !target.handleReadIndex(id, m.ri) {
			resp := &ReadIndexResponse{Term: target.term}
			cn.tracef("%d->%d %s: %s", from, m.to, describe(m), describeResp(resp))
			sender.handleReadIndexResponse(m, resp)
			return
		}
		// Answered when the leader's ready hands out read id.
		if cn.forwarded == nil {
			cn.forwarded = make(map[uint64]envelope)
		}
		cn.forwarded[id] = e
	}
}

// describe formats a request for traces: its kind and the fields that
// matter to the reader (indexes as index/term).
func describe(m message) string {
	switch {
	case m.ae != nil:
		r := m.ae
		return fmt.Sprintf("AppendEntries term=%d prev=%d/%d entries=%s commit=%d", r.Term, r.PrevLogIndex, r.PrevLogTerm, describeEntries(r.Entries), r.LeaderCommit)
	case m.rv != nil:
		r := m.rv
		kind := "RequestVote"
		if r.PreVote {
			kind = "PreVote"
		}
		s := fmt.Sprintf("%s term=%d last=%d/%d", kind, r.Term, r.LastLogIndex, r.LastLogTerm)
		if r.LeadershipTransfer {
			s += " transfer"
		}
		return s
	case m.is != nil:
		r := m.is
		return fmt.Sprintf("InstallSnapshot term=%d snap=%d/%d bytes=%d-%d/%d done=%v", r.Term, r.LastIncludedIndex, r.LastIncludedTerm, r.Offset, r.Offset+uint64(len(r.Data)), r.TotalSize, r.Done)
	case m.ri != nil:
		return fmt.Sprintf("ReadIndex term=%d batch=%d", m.ri.Term, m.batch)
	default:
		return fmt.Sprintf("TimeoutNow term=%d", m.tn.Term)
	}
}

// describeEntries lists entries as index/term, eliding the middle of long
// runs.
func describeEntries(es []Entry) string {
	var parts []string
	for i, e := range es {
		if len(es) > 4 && i == 2 {
			parts = append(parts, fmt.Sprintf("...(%d more)", len(es)-3))
		}
		if len(es) > 4 && i >= 2 && i < len(es)-1 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%d/%d", e.Index, e.Term))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// describeResp formats an answer for traces.
func describeResp(resp any) string {
	switch r := resp.(type) {
	case *AppendEntriesResponse:
		if r.Success {
			return fmt.Sprintf("ok term=%d match=%d", r.Term, r.MatchIndex)
		}
		return fmt.Sprintf("reject term=%d conflict-term=%d conflict-index=%d last=%d", r.Term, r.ConflictTerm, r.ConflictIndex, r.LastLogIndex)
	case *RequestVoteResponse:
		return fmt.Sprintf("%s term=%d", yesNo(r.VoteGranted, "granted", "denied"), r.Term)
	case *InstallSnapshotResponse:
		return fmt.Sprintf("%s term=%d next=%d", yesNo(r.Installed, "installed", "continue"), r.Term, r.NextOffset)
	case *TimeoutNowResponse:
		return fmt.Sprintf("%s term=%d", yesNo(r.Accepted, "accepted", "refused"), r.Term)
	case *ReadIndexResponse:
		if r.OK {
			return fmt.Sprintf("ok term=%d index=%d", r.Term, r.ReadIndex)
		}
		return fmt.Sprintf("refused term=%d", r.Term)
	default:
		return fmt.Sprintf("%+v", resp)
	}
}

func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

func (cn *coreNet) tracef(format string, args ...any) {
	if cn.trace != nil {
		fmt.Fprintf(cn.trace, format+"\n", args...)
	}
}

// stabilize processes batches and delivers messages until nothing is left.
func (cn *coreNet) stabilize() {
	for range 100000 {
		progress := false
		for i := range cn.cores {
			if cn.processReady(i) {
				progress = true
			}
		}
		if len(cn.pending) > 0 {
			progress = true
			q := cn.pending
			cn.pending = nil
			for _, e := range q {
				cn.deliver(e)
			}
		}
		if !progress {
			return
		}
	}
	cn.trace = &strings.Builder{}
	for range 3 {
		for i := range cn.cores {
			cn.processReady(i)
		}
		q := cn.pending
		cn.pending = nil
		for _, e := range q {
			cn.deliver(e)
		}
	}
	cn.t.Fatalf("network did not stabilize; last rounds:\n%s", cn.trace.String())
}

// tick ticks every live core k times, stabilizing after each tick.
func (cn *coreNet) tick(k int) {
	for range k {
		for _, c := range cn.cores {
			if c != nil {
				c.tick()
			}
		}
		cn.stabilize()
	}
}

// campaign makes core i time out now.
func (cn *coreNet) campaign(i int) {
	cn.cores[i].campaign()
	cn.stabilize()
}

// propose proposes data at core i, which must be the leader.
func (cn *coreNet) propose(i int, data string) uint64 {
	cn.t.Helper()
	idx, _, ok := cn.cores[i].propose([]byte(data))
	if !ok {
		cn.t.Fatalf("core %d refused a proposal (role %v)", i, cn.cores[i].role)
	}
	cn.stabilize()
	return idx
}

func (cn *coreNet) leaders() []int {
	var ls []int
	for i, c := range cn.cores {
		if c != nil && c.role == Leader {
			ls = append(ls, i)
		}
	}
	return ls
}

// appliedCommands lists the command data core i applied.
func (cn *coreNet) appliedCommands(i int) []string {
	var out []string
	for _, e := range cn.applied[i] {
		if e.Type == persist.EntryCommand {
			out = append(out, string(e.Data))
		}
	}
	return out
}

// checkNoViolations fails the test if any core recorded one.
func (cn *coreNet) checkNoViolations() {
	cn.t.Helper()
	for i, c := range cn.cores {
		if c != nil && len(c.violations) > 0 {
			cn.t.Errorf("core %d violations: %v", i, c.violations)
		}
	}
}
