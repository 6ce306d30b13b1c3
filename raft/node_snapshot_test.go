package raft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
)

// checkedApp is a testApp that validates snapshots (its encoding ends
// every command with a newline) and, with scribble, overwrites every
// snapshot it is handed, as an application decompressing in place would.
type checkedApp struct {
	*testApp
	scribble bool
}

func (a *checkedApp) ValidateSnapshot(index uint64, data []byte) error {
	if len(data) > 0 && data[len(data)-1] != '\n' {
		return fmt.Errorf("snapshot at %d does not end with a newline", index)
	}
	return nil
}

func (a *checkedApp) Apply(msg ApplyMsg) {
	a.testApp.Apply(msg)
	if a.scribble && msg.IsSnapshot {
		for i := range msg.Snapshot {
			msg.Snapshot[i] = 'X'
		}
	}
}

func snapshotChunk(term uint64, leader int, index uint64, data []byte) *InstallSnapshotRequest {
	return &InstallSnapshotRequest{Term: term, LeaderID: leader, LastIncludedIndex: index, LastIncludedTerm: term,
		Data: data, Done: true, TotalSize: uint64(len(data)), Checksum: crc32.Checksum(data, castagnoli)}
}

// startAlone starts node 0 of a 3-node cluster whose peers never answer.
func startAlone(t *testing.T, store persist.Store, app Application) *Node {
	t.Helper()
	cfg := testConfig(0, 3)
	// Long timeouts: the node stays a follower for the whole test.
	cfg.ElectionTimeoutMin, cfg.ElectionTimeoutMax = time.Minute, 2*time.Minute
	n, err := New(cfg, &inprocTransport{net: newInprocNet(3), from: 0}, store, app)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Kill(); err != nil {
			t.Errorf("Kill: %v", err)
		}
	})
	return n
}

// TestNodeRefusesSnapshotAppCannotRestore: a snapshot the application's
// validator refuses (here 8 garbage bytes with a valid term and checksum)
// is neither stored nor applied; a good one afterwards is.
func TestNodeRefusesSnapshotAppCannotRestore(t *testing.T) {
	store := persist.NewMemory()
	app := &checkedApp{testApp: newTestApp()}
	n := startAlone(t, store, app)
	ctx := context.Background()
	resp, err := n.HandleInstallSnapshot(ctx, snapshotChunk(3, 1, 5, []byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4}))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Installed || resp.NextOffset != 0 {
		t.Fatalf("garbage snapshot answered %+v, want refused and restarted", resp)
	}
	st, err := store.Clone().Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Snapshot.Index != 0 {
		t.Fatalf("garbage snapshot stored at index %d", st.Snapshot.Index)
	}
	if s := n.Status(); s.SnapshotIndex != 0 || s.Err != nil {
		t.Fatalf("status after a refused snapshot: %+v", s)
	}

	good := []byte("a\nb\n")
	resp, err = n.HandleInstallSnapshot(ctx, snapshotChunk(3, 1, 5, good))
	if err != nil || !resp.Installed {
		t.Fatalf("good snapshot: %+v, %v", resp, err)
	}
	select {
	case <-app.wait(5):
	case <-time.After(5 * time.Second):
		t.Fatal("good snapshot not applied")
	}
	if got := app.commands(); len(got) != 2 || got[0] != "a" {
		t.Fatalf("applied %v", got)
	}
	st, err = store.Clone().Load(ctx)
	if err != nil || st.Snapshot.Index != 5 || !bytes.Equal(st.Snapshot.Data, good) {
		t.Fatalf("stored snapshot %d %q (%v)", st.Snapshot.Index, st.Snapshot.Data, err)
	}
}

// TestNodeRefusesToStartFromBadSnapshot: a stored snapshot the application
// cannot restore stops New with ErrSnapshotRejected, instead of a node that
// fails in its applier (and again after every restart).
func TestNodeRefusesToStartFromBadSnapshot(t *testing.T) {
	store := persist.NewMemory()
	ctx := context.Background()
	if err := store.Append(ctx, persist.HardState{Term: 2, VotedFor: persist.NoVote}, nil); err != nil {
		t.Fatal(err)
	}
	if err := store.SaveSnapshot(ctx, persist.Snapshot{Index: 7, Term: 2, Data: []byte("garbage")}); err != nil {
		t.Fatal(err)
	}
	app := &checkedApp{testApp: newTestApp()}
	n, err := New(testConfig(0, 3), &inprocTransport{net: newInprocNet(3)}, store, app)
	if !errors.Is(err, ErrSnapshotRejected) {
		if n != nil {
			n.Kill()
		}
		t.Fatalf("New = %v, want ErrSnapshotRejected", err)
	}
	if app.last != 0 {
		t.Fatal("the rejected snapshot was applied")
	}
}

// TestNodeSnapshotNotAliased: the application may overwrite the snapshot
// slice it is handed (ApplyMsg.Snapshot) without changing what the node
// keeps to send to followers, both at start-up and after an install (with a
// store that cannot read its snapshot back, so the node keeps it).
func TestNodeSnapshotNotAliased(t *testing.T) {
	ctx := context.Background()
	data := []byte("a\nb\n")
	store := keepingStore{persist.NewMemory()}
	if err := store.Append(ctx, persist.HardState{Term: 2, VotedFor: persist.NoVote}, nil); err != nil {
		t.Fatal(err)
	}
	if err := store.SaveSnapshot(ctx, persist.Snapshot{Index: 4, Term: 2, Data: bytes.Clone(data)}); err != nil {
		t.Fatal(err)
	}
	app := &checkedApp{testApp: newTestApp(), scribble: true}
	n := startAlone(t, store, app)
	<-app.wait(4)
	kept := func() []byte {
		n.mu.Lock()
		defer n.mu.Unlock()
		return bytes.Clone(n.core.log.snap.Data)
	}
	if got := kept(); !bytes.Equal(got, data) {
		t.Fatalf("after start-up the node keeps %q, want %q", got, data)
	}
	next := []byte("c\nd\ne\n")
	if resp, err := n.HandleInstallSnapshot(ctx, snapshotChunk(3, 1, 9, next)); err != nil || !resp.Installed {
		t.Fatalf("install: %+v, %v", resp, err)
	}
	select {
	case <-app.wait(9):
	case <-time.After(5 * time.Second):
		t.Fatal("snapshot not applied")
	}
	if got := kept(); !bytes.Equal(got, next) {
		t.Fatalf("after an install the node keeps %q, want %q", got, next)
	}
}
