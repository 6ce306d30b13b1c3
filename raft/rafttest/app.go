package rafttest

// The application each server runs: it checks every applied command
// against the other servers', and, with Options.Snapshots, snapshots its
// state every SnapshotInterval indexes with a small codec of its own.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/ruaft/ruaft/raft"
)

// app is one incarnation of a server's application.
type app struct {
	c        *Cluster
	id       int
	dead     atomic.Bool
	nodeMu   sync.Mutex // guards node
	node     *raft.Node
	lastSnap uint64 // used only from the node's apply goroutine
}

var (
	_ raft.Application       = (*app)(nil)
	_ raft.SnapshotValidator = (*app)(nil)
)

func (a *app) setNode(nd *raft.Node) {
	a.nodeMu.Lock()
	defer a.nodeMu.Unlock()
	a.node = nd
}

func (a *app) getNode() *raft.Node {
	a.nodeMu.Lock()
	defer a.nodeMu.Unlock()
	return a.node
}

// Apply implements raft.Application: it checks msg against what the other
// servers applied and records it.
func (a *app) Apply(msg raft.ApplyMsg) {
	c := a.c
	if a.dead.Load() {
		c.applyError(fmt.Sprintf("server %d: Apply(index %d) called after Kill returned", a.id, msg.Index))
		return
	}
	c.mu.Lock()
	if msg.IsSnapshot {
		var err error
		if !c.opts.Snapshots {
			err = errors.New("snapshot delivered to an application that never took one")
		} else {
			err = c.ingestSnapLocked(a.id, msg.Snapshot, msg.Index)
		}
		c.mu.Unlock()
		if err != nil {
			c.applyError(fmt.Sprintf("server %d: snapshot at %d: %v", a.id, msg.Index, err))
		}
		a.lastSnap = msg.Index
		return
	}
	errMsg := c.checkApplyLocked(a.id, msg.Index, msg.Command)
	var data []byte
	if errMsg == "" && c.opts.Snapshots && msg.Index/SnapshotInterval > a.lastSnap/SnapshotInterval {
		data = c.encodeSnapLocked(a.id, msg.Index)
	}
	c.mu.Unlock()
	if errMsg != "" {
		c.applyError(errMsg)
		return
	}
	if data != nil {
		a.saveSnapshot(msg.Index, data)
	}
}

// SnapshotNeeded implements raft.Application: the snapshotting application
// answers at once with a snapshot at lastApplied.
func (a *app) SnapshotNeeded(lastApplied uint64) {
	c := a.c
	if !c.opts.Snapshots || lastApplied <= a.lastSnap {
		return
	}
	c.mu.Lock()
	if c.lastApplied[a.id] < lastApplied {
		c.mu.Unlock()
		c.applyError(fmt.Sprintf("server %d: SnapshotNeeded(%d) but the application applied only up to %d", a.id, lastApplied, c.lastApplied[a.id]))
		return
	}
	data := c.encodeSnapLocked(a.id, lastApplied)
	c.mu.Unlock()
	a.saveSnapshot(lastApplied, data)
}

// ValidateSnapshot implements raft.SnapshotValidator, so that the tests run
// the node's validation of received and stored snapshots: a snapshot must
// parse and have been taken at index (ingestSnapLocked checks its content
// against every server when it is applied).
func (a *app) ValidateSnapshot(index uint64, data []byte) error {
	r := bytes.NewReader(data)
	got, err := binary.ReadUvarint(r)
	if err != nil {
		return fmt.Errorf("%w: %v", errBadSnapshot, err)
	}
	if got != index {
		return fmt.Errorf("%w: taken at index %d, offered as %d", errBadSnapshot, got, index)
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return fmt.Errorf("%w: %v", errBadSnapshot, err)
	}
	for range n {
		_, err1 := binary.ReadUvarint(r)
		l, err2 := binary.ReadUvarint(r)
		if err := errors.Join(err1, err2); err != nil || l > uint64(r.Len()) {
			return fmt.Errorf("%w: entry: %v", errBadSnapshot, err)
		}
		if _, err := r.Seek(int64(l), io.SeekCurrent); err != nil {
			return fmt.Errorf("%w: %v", errBadSnapshot, err)
		}
	}
	return nil
}

func (a *app) saveSnapshot(index uint64, data []byte) {
	nd := a.getNode()
	if nd == nil {
		return
	}
	if err := nd.SaveSnapshot(index, data); err != nil {
		a.c.log.printf("server %d: SaveSnapshot(%d): %v", a.id, index, err)
		return
	}
	a.lastSnap = index
}

func (c *Cluster) applyError(msg string) {
	c.mu.Lock()
	c.applyErrs = append(c.applyErrs, msg)
	c.mu.Unlock()
	c.t.Errorf("apply error: %s", msg)
}

// checkApplyLocked checks that server i may apply cmd at index and records
// it. It returns an error message, or "".
func (c *Cluster) checkApplyLocked(i int, index uint64, cmd []byte) string {
	last := c.lastApplied[i]
	if index <= last {
		return fmt.Sprintf("server %d applied index %d after %d: out of order", i, index, last)
	}
	// Indexes skipped over must hold no command anywhere.
	for g := last + 1; g < index; g++ {
		for j := range c.n {
			if v, ok := c.logs[j][g]; ok {
				return fmt.Sprintf("server %d applied %d after %d, skipping index %d where server %d applied %q", i, index, last, g, j, v)
			}
		}
		c.skipped[g] = i
	}
	if j, ok := c.skipped[index]; ok {
		return fmt.Sprintf("server %d applied %q at index %d, which server %d skipped as holding no command", i, cmd, index, j)
	}
	for j := range c.n {
		if old, ok := c.logs[j][index]; ok && !bytes.Equal(old, cmd) {
			return fmt.Sprintf("commit index=%d server=%d %q != server=%d %q", index, i, cmd, j, old)
		}
	}
	c.logs[i][index] = slices.Clone(cmd)
	c.lastApplied[i] = index
	c.maxIndex = max(c.maxIndex, index)
	return ""
}

// encodeSnapLocked encodes server i's application state at index: the index
// and every command it applied up to it.
func (c *Cluster) encodeSnapLocked(i int, index uint64) []byte {
	b := binary.AppendUvarint(nil, index)
	idxs := make([]uint64, 0, len(c.logs[i]))
	for k := range c.logs[i] {
		if k <= index {
			idxs = append(idxs, k)
		}
	}
	slices.Sort(idxs)
	b = binary.AppendUvarint(b, uint64(len(idxs)))
	for _, k := range idxs {
		b = binary.AppendUvarint(b, k)
		b = binary.AppendUvarint(b, uint64(len(c.logs[i][k])))
		b = append(b, c.logs[i][k]...)
	}
	return append(b, make([]byte, c.opts.SnapshotPadBytes)...)
}

var errBadSnapshot = errors.New("rafttest: malformed snapshot")

// ingestSnapLocked restores server i's application from a snapshot taken at
// index, checking it against what every server applied.
func (c *Cluster) ingestSnapLocked(i int, data []byte, index uint64) error {
	r := bytes.NewReader(data)
	got, err := binary.ReadUvarint(r)
	if err != nil {
		return fmt.Errorf("%w: %v", errBadSnapshot, err)
	}
	if got != index {
		return fmt.Errorf("snapshot taken at index %d delivered as index %d", got, index)
	}
	if index < c.lastApplied[i] {
		return fmt.Errorf("snapshot at %d would roll back the application from %d", index, c.lastApplied[i])
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return fmt.Errorf("%w: %v", errBadSnapshot, err)
	}
	restored := make(map[uint64][]byte, n)
	for range n {
		k, err1 := binary.ReadUvarint(r)
		l, err2 := binary.ReadUvarint(r)
		if err := errors.Join(err1, err2); err != nil || l > uint64(r.Len()) {
			return fmt.Errorf("%w: entry: %v", errBadSnapshot, err)
		}
		v := make([]byte, l)
		if _, err := io.ReadFull(r, v); err != nil {
			return fmt.Errorf("%w: %v", errBadSnapshot, err)
		}
		for j := range c.n {
			if old, ok := c.logs[j][k]; ok && !bytes.Equal(old, v) {
				return fmt.Errorf("snapshot holds %q at index %d, server %d applied %q", v, k, j, old)
			}
		}
		restored[k] = v
	}
	if r.Len() != c.opts.SnapshotPadBytes {
		return fmt.Errorf("%w: %d trailing bytes, want %d", errBadSnapshot, r.Len(), c.opts.SnapshotPadBytes)
	}
	for k, v := range restored {
		c.logs[i][k] = v
	}
	c.lastApplied[i] = index
	c.maxIndex = max(c.maxIndex, index)
	return nil
}
