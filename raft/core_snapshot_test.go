package raft

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

// snapSender plays a leader sending one snapshot chunk by chunk, as
// sendChunk does: it resumes from the NextOffset of each answer.
type snapSender struct {
	term     uint64
	leader   int
	index    uint64
	snapTerm uint64
	data     []byte
	chunk    int
	offset   uint64
}

func (s *snapSender) request(off uint64) *InstallSnapshotRequest {
	total := uint64(len(s.data))
	off = min(off, total)
	end := min(off+uint64(s.chunk), total)
	return &InstallSnapshotRequest{
		Term: s.term, LeaderID: s.leader, LastIncludedIndex: s.index, LastIncludedTerm: s.snapTerm,
		Offset: off, Data: s.data[off:end:end], Done: end == total, TotalSize: total,
		Checksum: crc32.Checksum(s.data, castagnoli),
	}
}

// send sends up to n chunks to c (following its answers) and reports
// whether c installed the snapshot.
func (s *snapSender) send(c *core, n int) bool {
	for range n {
		resp := c.handleInstallSnapshot(s.request(s.offset))
		if resp.Installed {
			return true
		}
		s.offset = resp.NextOffset
	}
	return false
}

func filled(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

func emptyFollower(id int) *core {
	return newCore(testCoreConfig(id, 3), persist.State{HardState: persist.HardState{Term: 5, VotedFor: persist.NoVote}})
}

// TestCoreSnapshotNotSplicedAcrossLeaders is the review's scenario: leader A
// sends the first chunks of its snapshot at index i, then B (a new leader,
// or A itself in a new term) sends its own snapshot at the same index, term
// and size but with other bytes, from offset 0. The follower must install
// exactly B's bytes, never A's head with B's tail.
func TestCoreSnapshotNotSplicedAcrossLeaders(t *testing.T) {
	a, b := filled('A', 40), filled('B', 40)
	for _, tc := range []struct {
		name            string
		bTerm, bLeader  int
		aChunksReceived int
	}{
		{name: "new leader, new term", bTerm: 6, bLeader: 1, aChunksReceived: 2},
		{name: "same leader, new term", bTerm: 6, bLeader: 0, aChunksReceived: 3},
		{name: "new leader, one chunk", bTerm: 7, bLeader: 1, aChunksReceived: 1},
		{name: "new leader, all but the last chunk", bTerm: 6, bLeader: 1, aChunksReceived: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := emptyFollower(2)
			sa := &snapSender{term: 5, leader: 0, index: 10, snapTerm: 4, data: a, chunk: 8}
			if sa.send(c, tc.aChunksReceived) {
				t.Fatal("installed after a partial transfer")
			}
			sb := &snapSender{term: uint64(tc.bTerm), leader: tc.bLeader, index: 10, snapTerm: 4, data: b, chunk: 8}
			if !sb.send(c, 20) {
				t.Fatal("B's snapshot never installed")
			}
			if got := c.log.snap.Data; !bytes.Equal(got, b) {
				t.Fatalf("installed %q, want B's %q", got, b)
			}
			// A's late chunks (older term) change nothing.
			if resp := c.handleInstallSnapshot(sa.request(32)); resp.Installed || resp.Term != uint64(tc.bTerm) {
				t.Fatalf("late chunk of the old leader answered %+v", resp)
			}
			if !bytes.Equal(c.log.snap.Data, b) {
				t.Fatal("a late chunk changed the installed snapshot")
			}
		})
	}
}

// TestCoreSnapshotBufferKey: a chunk continues the buffer only with the
// same leader, term, snapshot index and term, size and checksum; any other
// chunk at a non-zero offset is told to restart from 0.
func TestCoreSnapshotBufferKey(t *testing.T) {
	data := filled('x', 24)
	for _, tc := range []struct {
		name string
		mod  func(r *InstallSnapshotRequest)
	}{
		{"other leader", func(r *InstallSnapshotRequest) { r.LeaderID = 1 }},
		{"other term", func(r *InstallSnapshotRequest) { r.Term = 6 }},
		{"other index", func(r *InstallSnapshotRequest) { r.LastIncludedIndex = 11 }},
		{"other snapshot term", func(r *InstallSnapshotRequest) { r.LastIncludedTerm = 3 }},
		{"other size", func(r *InstallSnapshotRequest) { r.TotalSize = 32 }},
		{"other checksum", func(r *InstallSnapshotRequest) { r.Checksum++ }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := emptyFollower(2)
			s := &snapSender{term: 5, leader: 0, index: 10, snapTerm: 4, data: data, chunk: 8}
			s.send(c, 1)
			req := s.request(8)
			tc.mod(req)
			resp := c.handleInstallSnapshot(req)
			if resp.Installed || resp.NextOffset != 0 {
				t.Fatalf("a foreign chunk at offset 8 answered %+v, want a restart from 0", resp)
			}
			if c.recv != nil {
				t.Fatal("the old buffer was kept")
			}
		})
	}
}

// TestCoreSnapshotChecksum: a snapshot whose bytes do not match the
// checksum is discarded and restarted; a malformed chunk changes nothing.
func TestCoreSnapshotChecksum(t *testing.T) {
	data := filled('x', 20)
	c := emptyFollower(2)
	s := &snapSender{term: 5, leader: 0, index: 10, snapTerm: 4, data: data, chunk: 8}
	s.send(c, 2)
	last := s.request(16)
	last.Data = []byte("xxyx") // flipped in transit
	resp := c.handleInstallSnapshot(last)
	if resp.Installed || resp.NextOffset != 0 || c.recv != nil || c.log.snap.Index != 0 {
		t.Fatalf("corrupt snapshot: answer %+v, buffer %v, snapshot %d", resp, c.recv != nil, c.log.snap.Index)
	}
	// Malformed chunks: past the size, Done before the end, a huge size.
	s = &snapSender{term: 5, leader: 0, index: 10, snapTerm: 4, data: data, chunk: 8}
	s.send(c, 1)
	for _, bad := range []*InstallSnapshotRequest{
		func() *InstallSnapshotRequest { r := s.request(8); r.Data = filled('x', 13); return r }(),
		func() *InstallSnapshotRequest { r := s.request(8); r.Done = true; return r }(),
		func() *InstallSnapshotRequest { r := s.request(16); r.Done = false; return r }(),
	} {
		if resp := c.handleInstallSnapshot(bad); resp.Installed || resp.NextOffset != 8 {
			t.Fatalf("malformed chunk %+v answered %+v, want NextOffset 8", bad, resp)
		}
	}
	huge := &InstallSnapshotRequest{Term: 5, LeaderID: 0, LastIncludedIndex: 12, LastIncludedTerm: 4, TotalSize: 1 << 63}
	if resp := c.handleInstallSnapshot(huge); resp.Installed || resp.NextOffset != 0 {
		t.Fatalf("snapshot of 2^63 bytes answered %+v", resp)
	}
	if !s.send(c, 10) || !bytes.Equal(c.log.snap.Data, data) {
		t.Fatalf("retransfer: snapshot %q", c.log.snap.Data)
	}
}

// TestCoreSnapshotChunksReordered: chunks duplicated, delivered out of
// order and answered out of order, and stale chunks of an older leader
// mixed in, still assemble exactly the current leader's snapshot.
func TestCoreSnapshotChunksReordered(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		c := emptyFollower(2)
		old := &snapSender{term: 5, leader: 0, index: 10, snapTerm: 4, data: filled('A', 50), chunk: 7}
		old.send(c, 1+rng.IntN(7))
		cur := &snapSender{term: 6, leader: 1, index: 10, snapTerm: 4, data: make([]byte, 50), chunk: 7}
		for i := range cur.data {
			cur.data[i] = byte(rng.IntN(256))
		}
		var sent []*InstallSnapshotRequest
		var answers []*InstallSnapshotResponse
		installed := false
		for step := 0; step < 500 && !installed; step++ {
			var resp *InstallSnapshotResponse
			switch r := rng.IntN(10); {
			case r < 2 && len(sent) > 0: // a duplicate or delayed chunk
				resp = c.handleInstallSnapshot(sent[rng.IntN(len(sent))])
			case r < 3 && len(sent) > 0: // a stale chunk of the old leader
				resp = c.handleInstallSnapshot(old.request(uint64(rng.IntN(50))))
				if resp.Term != 6 || resp.Installed {
					t.Fatalf("seed %d: old leader's chunk answered in term %d", seed, resp.Term)
				}
				continue
			default:
				req := cur.request(cur.offset)
				sent = append(sent, req)
				resp = c.handleInstallSnapshot(req)
			}
			answers = append(answers, resp)
			// The leader handles a random earlier answer (answers may be
			// reordered), as handleSnapshotResponse does.
			a := answers[rng.IntN(len(answers))]
			if a.Installed {
				installed = true
			}
			cur.offset = a.NextOffset
		}
		if !installed {
			// The leader would keep going; the answers so far must say
			// so without ever having installed anything else.
			if !cur.send(c, 20) {
				t.Fatalf("seed %d: never installed", seed)
			}
		}
		if !bytes.Equal(c.log.snap.Data, cur.data) {
			t.Fatalf("seed %d: installed %x, want %x", seed, c.log.snap.Data, cur.data)
		}
		if len(c.violations) > 0 {
			t.Fatalf("seed %d: %v", seed, c.violations)
		}
	}
}

// TestCoreSnapshotTransferRestartsOnLeaderChange runs the review's scenario
// through the cores' own replication: leader 0 sends follower 2 part of its
// snapshot and crashes; leader 1, with a snapshot of the same index, term
// and size but other bytes, catches 2 up. Follower 2 must end with 1's
// snapshot, byte for byte.
func TestCoreSnapshotTransferRestartsOnLeaderChange(t *testing.T) {
	cn := newCoreNet(t, 3, func(c *coreConfig) { c.chunkBytes = 4 })
	cn.campaign(0)
	cn.isolate(2)
	for i := range 10 {
		cn.propose(0, fmt.Sprint(i))
	}
	term := cn.cores[0].term
	a, b := filled('A', 40), filled('B', 40)
	for i, data := range [][]byte{a, b} {
		if err := cn.cores[i].compact(persist.Snapshot{Index: 8, Term: term, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	var chunks int
	cn.dropFn = func(from int, m message) bool {
		if m.is != nil && from == 0 {
			chunks++
			return chunks > 3
		}
		return false
	}
	cn.heal()
	cn.tick(cn.cfgs[0].heartbeatTicks)
	if chunks <= 3 {
		t.Fatalf("leader 0 sent %d chunks", chunks)
	}
	if r := cn.cores[2].recv; r == nil || len(r.data) != 12 {
		t.Fatalf("follower 2 should hold 3 chunks of leader 0's snapshot, has %+v", r)
	}
	cn.crash(0)
	cn.dropFn = nil
	cn.tick(3 * cn.cfgs[1].electionTicksMax)
	if ls := cn.leaders(); len(ls) != 1 || ls[0] != 1 {
		t.Fatalf("leaders %v, want [1]", ls)
	}
	f := cn.cores[2]
	if f.log.snap.Index != 8 || !bytes.Equal(f.log.snap.Data, b) {
		t.Fatalf("follower 2 installed %d %q, want leader 1's %q", f.log.snap.Index, f.log.snap.Data, b)
	}
	got := cn.snapshots[2]
	if len(got) != 1 || !bytes.Equal(got[0].Data, b) {
		t.Fatalf("follower 2 handed out snapshots %+v", got)
	}
	if f.log.lastIndex() != cn.cores[1].log.lastIndex() {
		t.Fatalf("follower last %d, leader %d", f.log.lastIndex(), cn.cores[1].log.lastIndex())
	}
	cn.checkNoViolations()
}

// TestCoreSnapshotValidation: with checkSnapshots the core hands a complete
// snapshot out for validation instead of installing it; a refusal drops
// it (the leader starts over), retries meanwhile are told to wait, and a
// snapshot superseded during validation is not installed.
func TestCoreSnapshotValidation(t *testing.T) {
	check := func(c *coreConfig) { c.checkSnapshots = true }
	newFollower := func() *core {
		cfg := testCoreConfig(2, 3)
		check(&cfg)
		return newCore(cfg, persist.State{HardState: persist.HardState{Term: 5, VotedFor: persist.NoVote}})
	}
	data := filled('v', 20)
	s := &snapSender{term: 5, leader: 0, index: 10, snapTerm: 4, data: data, chunk: 8}

	c := newFollower()
	if s.send(c, 3) {
		t.Fatal("installed without validation")
	}
	b := c.toCheck
	if b == nil || !bytes.Equal(b.data, data) {
		t.Fatalf("toCheck %+v", b)
	}
	c.toCheck = nil
	// A retry of the last chunk while the application validates.
	if resp := c.handleInstallSnapshot(s.request(16)); resp.Installed || resp.NextOffset != 20 || c.toCheck != nil {
		t.Fatalf("retry during validation answered %+v (toCheck %v)", resp, c.toCheck != nil)
	}
	resp := c.finishSnapshot(b, errors.New("cannot decode"))
	if resp.Installed || resp.NextOffset != 0 || c.recv != nil || c.log.snap.Index != 0 || c.log.snapUnstable {
		t.Fatalf("refused snapshot: answer %+v, snapshot %d", resp, c.log.snap.Index)
	}
	s.offset = 0
	s.send(c, 3)
	b, c.toCheck = c.toCheck, nil
	if resp := c.finishSnapshot(b, nil); !resp.Installed || !bytes.Equal(c.log.snap.Data, data) {
		t.Fatalf("accepted snapshot: answer %+v, data %q", resp, c.log.snap.Data)
	}

	// A new leader's snapshot replaces the buffer during validation.
	c = newFollower()
	s.offset = 0
	s.send(c, 3)
	b, c.toCheck = c.toCheck, nil
	s2 := &snapSender{term: 6, leader: 1, index: 10, snapTerm: 4, data: filled('w', 20), chunk: 8}
	s2.send(c, 1)
	if resp := c.finishSnapshot(b, nil); resp.Installed || c.log.snap.Index != 0 {
		t.Fatalf("superseded snapshot installed: %+v", resp)
	}
	s2.send(c, 3)
	b, c.toCheck = c.toCheck, nil
	if resp := c.finishSnapshot(b, nil); !resp.Installed || !bytes.Equal(c.log.snap.Data, s2.data) {
		t.Fatalf("new leader's snapshot: answer %+v, data %q", resp, c.log.snap.Data)
	}
}

// TestCoreSnapshotDelayedChunkOfReplacedSnapshot: a leader that took a
// newer snapshot restarts the transfer with it; a delayed chunk of the
// older one (same leader and term) neither discards nor joins the newer
// transfer.
func TestCoreSnapshotDelayedChunkOfReplacedSnapshot(t *testing.T) {
	c := emptyFollower(2)
	older := &snapSender{term: 5, leader: 0, index: 10, snapTerm: 4, data: filled('o', 24), chunk: 8}
	newer := &snapSender{term: 5, leader: 0, index: 12, snapTerm: 4, data: filled('n', 24), chunk: 8}
	older.send(c, 1)
	newer.send(c, 1)
	for _, off := range []uint64{0, 8, 16} {
		if resp := c.handleInstallSnapshot(older.request(off)); resp.Installed {
			t.Fatalf("older snapshot's chunk at %d installed", off)
		}
	}
	if c.recv == nil || c.recv.index != 12 || len(c.recv.data) != 8 {
		t.Fatalf("the newer transfer was disturbed: %+v", c.recv)
	}
	if !newer.send(c, 5) || !bytes.Equal(c.log.snap.Data, newer.data) || c.log.snap.Index != 12 {
		t.Fatalf("installed %d %q", c.log.snap.Index, c.log.snap.Data)
	}
}
