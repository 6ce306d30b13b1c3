package kvraft

import (
	"context"
	"errors"
	"testing"

	"github.com/ruaft/ruaft/raft"
)

// A server assembled in three steps (state machine, node, server) serves
// the state its node restored into the state machine before the server
// started, and a state machine takes exactly one server and a real node.
func TestStartServerExplicitAssembly(t *testing.T) {
	ctx := context.Background()
	src, _, err := newFakeServer()
	if err != nil {
		t.Fatal(err)
	}
	openSessionID(t, src, 1)
	if _, err := src.Put(ctx, &PutRequest{Key: "k", Value: "v", Write: WriteID{ClientID: 1, Seq: 1}}); err != nil {
		t.Fatal(err)
	}
	index, term, data := src.rsm.Snapshot()
	if err := src.Kill(); err != nil {
		t.Fatal(err)
	}

	sm, err := NewStateMachine(DefaultConfig(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := sm.ValidateSnapshot(index, data); err != nil {
		t.Fatalf("the state machine refuses a snapshot it can restore: %v", err)
	}
	if err := sm.ValidateSnapshot(index, []byte("not a snapshot")); err == nil {
		t.Fatal("the state machine accepts a snapshot it cannot restore")
	}
	// What a restarting node does with its stored snapshot before the
	// server exists.
	sm.Apply(raft.ApplyMsg{Index: index, Term: term, Snapshot: data, IsSnapshot: true})
	node := newFakeRaft(sm)
	s, err := StartServer(sm, node)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Kill()
	got, err := s.Get(ctx, &GetRequest{Key: "k", Consistency: Stale})
	if err != nil || got.Value != "v" {
		t.Fatalf("get k after restore: %+v %v", got, err)
	}
	if _, err := StartServer(sm, node); !errors.Is(err, errServed) {
		t.Fatalf("a second server on the same state machine: %v, want %v", err, errServed)
	}
	other, err := NewStateMachine(DefaultConfig(2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := StartServer(other, nil); err == nil {
		t.Fatal("a server without a raft node started")
	}
	if _, err := NewStateMachine(Config{}); err == nil {
		t.Fatal("an invalid configuration was accepted")
	}
}
