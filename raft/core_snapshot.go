package raft

// The core's snapshots: sending one in chunks, receiving and checking it, compaction.

import (
	"bytes"
	"hash/crc32"
	"math"

	"github.com/ruaft/ruaft/persist"
)

// snapshotBuffer collects the chunks of one snapshot sent by one leader in
// one term. A chunk continues it only if it carries the same leader, term,
// snapshot index and term, size and checksum: two leaders' snapshots at the
// same index may differ byte for byte, so a transfer is never resumed
// across a change of leader or term, only restarted.
type snapshotBuffer struct {
	term     uint64 // the sending leader's term
	leader   int
	index    uint64 // the snapshot's last included index and term
	snapTerm uint64
	total    uint64
	checksum uint32
	// config is the configuration sent with the snapshot (raft-encoded).
	config []byte
	data   []byte
	// crc is the CRC-32C of data so far.
	crc uint32
	// checking: data is complete and matched the checksum, and the node is
	// having the application validate it (finishSnapshot ends that).
	checking bool
}

// castagnoli is the CRC-32C table used for snapshot checksums.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// matches reports whether req is a chunk of the snapshot b collects.
func (b *snapshotBuffer) matches(req *InstallSnapshotRequest) bool {
	return b.term == req.Term && b.leader == req.LeaderID && b.index == req.LastIncludedIndex &&
		b.snapTerm == req.LastIncludedTerm && b.total == req.TotalSize && b.checksum == req.Checksum &&
		bytes.Equal(b.config, req.Config)
}

func (c *core) sendChunk(p int) {
	pr := c.prs[p]
	snap := c.log.snap
	if pr.snapIndex != snap.Index {
		pr.snapIndex = snap.Index
		pr.snapOffset = 0
	}
	total := c.log.snapBytes()
	off := min(pr.snapOffset, total)
	end := min(off+uint64(c.cfg.chunkBytes), total)
	req := &InstallSnapshotRequest{
		Term:              c.term,
		LeaderID:          c.id,
		LastIncludedIndex: snap.Index,
		LastIncludedTerm:  snap.Term,
		Offset:            off,
		Done:              end == total,
		TotalSize:         total,
		Checksum:          c.log.snapChecksum(),
		Config:            c.snapConfig(),
	}
	if !c.log.snapStored {
		req.Data = snap.Data[off:end:end]
	}
	// A stored snapshot's chunk is read by the sender (Node.readChunk).
	c.send(message{to: p, is: req, fromStore: c.log.snapStored})
	pr.paused = true
}

func (c *core) handleInstallSnapshot(req *InstallSnapshotRequest) *InstallSnapshotResponse {
	if !c.observeLeader(req.Term, req.LeaderID) {
		return &InstallSnapshotResponse{Term: c.term}
	}
	idx, st := req.LastIncludedIndex, req.LastIncludedTerm
	// A snapshot never rolls back what is committed or already covered.
	if idx <= c.log.commit || idx <= c.log.snap.Index {
		if b := c.recv; b != nil && (b.index <= c.log.commit || b.index <= c.log.snap.Index) {
			// The partial snapshot being received is covered too: free its
			// buffer (up to its whole size) rather than keep it until the
			// next snapshot or term.
			c.recv = nil
		}
		return &InstallSnapshotResponse{Term: c.term, NextOffset: req.TotalSize, Installed: true}
	}
	// The log already holds the snapshot's last entry: by log matching it
	// holds everything the snapshot covers, so keep the log and its suffix.
	if c.log.matchTerm(idx, st) {
		c.recv = nil
		c.commitTo(idx)
		return &InstallSnapshotResponse{Term: c.term, NextOffset: req.TotalSize, Installed: true}
	}
	b := c.recv
	if b != nil && b.term == req.Term && b.leader == req.LeaderID && idx < b.index {
		// A delayed chunk of a snapshot the same leader has since replaced
		// with a newer one: it must not discard the newer transfer.
		return &InstallSnapshotResponse{Term: c.term}
	}
	if b == nil || !b.matches(req) {
		// Another snapshot, leader or term: what was received so far is
		// never continued, only restarted from offset 0.
		c.recv = nil
		if req.Offset != 0 || req.TotalSize > math.MaxInt {
			return &InstallSnapshotResponse{Term: c.term}
		}
		b = &snapshotBuffer{term: req.Term, leader: req.LeaderID, index: idx, snapTerm: st,
			total: req.TotalSize, checksum: req.Checksum, config: bytes.Clone(req.Config),
			data: make([]byte, 0, min(req.TotalSize, 64<<20))}
		c.recv = b
	}
	next := &InstallSnapshotResponse{Term: c.term, NextOffset: uint64(len(b.data))}
	end := req.Offset + uint64(len(req.Data))
	if b.checking || req.Offset != uint64(len(b.data)) || end < req.Offset || end > b.total ||
		req.Done != (end == b.total) {
		// A duplicate, a reordered or malformed chunk, or a retry while the
		// application validates: say where the transfer stands.
		return next
	}
	b.data = append(b.data, req.Data...)
	b.crc = crc32.Update(b.crc, castagnoli, req.Data)
	next.NextOffset = end
	if !req.Done {
		return next
	}
	if b.crc != b.checksum {
		c.recv = nil
		c.note("snapshot %d/%d from leader %d in term %d: checksum %08x, want %08x; discarded",
			idx, st, req.LeaderID, req.Term, b.crc, b.checksum)
		return &InstallSnapshotResponse{Term: c.term}
	}
	if c.cfg.checkSnapshots {
		b.checking = true
		c.toCheck = b
		return next
	}
	return c.installReceived(b)
}

// finishSnapshot installs b, a complete snapshot that handleInstallSnapshot
// handed out in toCheck, if the application accepted it (err is nil) and it
// is still the snapshot being received; otherwise it drops it, and the
// leader sends it again from offset 0.
func (c *core) finishSnapshot(b *snapshotBuffer, err error) *InstallSnapshotResponse {
	if c.recv != b || b.term != c.term {
		return &InstallSnapshotResponse{Term: c.term}
	}
	c.recv = nil
	if err != nil {
		c.note("snapshot %d/%d from leader %d in term %d refused by the application: %v",
			b.index, b.snapTerm, b.leader, b.term, err)
		return &InstallSnapshotResponse{Term: c.term}
	}
	return c.installReceived(b)
}

// installReceived installs the complete, verified snapshot b, unless the
// log or commit index has come to cover it meanwhile.
func (c *core) installReceived(b *snapshotBuffer) *InstallSnapshotResponse {
	c.recv = nil
	done := &InstallSnapshotResponse{Term: c.term, NextOffset: b.total, Installed: true}
	switch {
	case b.index <= c.log.commit || b.index <= c.log.snap.Index:
	case c.log.matchTerm(b.index, b.snapTerm):
		c.commitTo(b.index)
	default:
		conf := c.cfg.bootstrap // a leader's snapshot stored before configurations were
		if len(b.config) > 0 {
			m, err := decodeMembership(b.config)
			if err != nil {
				c.note("snapshot %d/%d from leader %d: %v; discarded", b.index, b.snapTerm, b.leader, err)
				return &InstallSnapshotResponse{Term: c.term}
			}
			conf = m
		}
		c.log.restore(persist.Snapshot{Index: b.index, Term: b.snapTerm, Data: b.data, Config: encodeMembership(conf)}, b.checksum)
		c.restoreConf(b.index, conf)
	}
	return done
}

func (c *core) handleSnapshotResponse(m message, resp *InstallSnapshotResponse) {
	if !c.leaderAck(m, m.is.Term, resp.Term) {
		return
	}
	pr := c.prs[m.to]
	if resp.Installed {
		if pr.maybeUpdate(m.is.LastIncludedIndex) {
			c.maybeCommit()
		}
		if pr.state == stateSnapshot {
			pr.becomeProbe()
		}
		return
	}
	if pr.state == stateSnapshot && m.is.LastIncludedIndex == pr.snapIndex {
		pr.snapOffset = resp.NextOffset
		pr.paused = false
		// No progress past this chunk (a restart, or the follower still
		// validating): send again at the next heartbeat, not at once.
		pr.backoff = resp.NextOffset <= m.is.Offset
	}
}

// compact drops the log up to snap, which the node has stored (with the
// configuration in force at snap.Index, snapshotConfig).
func (c *core) compact(snap persist.Snapshot) error {
	if err := c.log.compact(snap); err != nil {
		return err
	}
	c.compactConfs(snap.Index)
	return nil
}

// sendingSnapshot reports whether the node, as leader, is sending the
// snapshot at index to some follower.
func (c *core) sendingSnapshot(index uint64) bool {
	if c.role != Leader {
		return false
	}
	for _, pr := range c.prs {
		if pr.state == stateSnapshot && pr.snapIndex == index {
			return true
		}
	}
	return false
}

// dropSnapshotData forgets the data of the snapshot at index (checksum crc)
// once the store holds it and the application has been handed it: a
// leader's senders read it from the store to send it. The node calls it
// only with a store that can read its snapshot back.
func (c *core) dropSnapshotData(index uint64, crc uint32) { c.log.dropSnapData(index, crc) }

// restoreSnapshotData gives the core back data for its snapshot at index,
// whose data it dropped for a store that turned out unable to read it back:
// the application's state at index, maybe other bytes than the stored
// ones, so its checksum is taken anew (a transfer is restarted, never
// resumed across the two).
func (c *core) restoreSnapshotData(index uint64, data []byte) { c.log.restoreSnapData(index, data) }

// snapshotConfig returns the encoded configuration in force at index, to
// store with a snapshot the application took there.
func (c *core) snapshotConfig(index uint64) []byte { return encodeMembership(c.confAtIndex(index)) }
