package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/durio/client"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// Example writes and reads a key through any replica of a cluster.
func Example() {
	endpoint := startReplica() // e.g. "http://pi1.local:8001"
	c, err := client.New([]string{endpoint}, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Put(ctx, "greeting", "hello"); err != nil {
		log.Fatal(err)
	}
	if err := c.Append(ctx, "greeting", ", world"); err != nil {
		log.Fatal(err)
	}
	v, err := c.Get(ctx, "greeting")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v)
	// Output: hello, world
}

// ExampleClient_Get tells a missing key from a failure.
func ExampleClient_Get() {
	c, err := client.New([]string{startReplica()}, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	_, err = c.Get(context.Background(), "no-such-key")
	switch {
	case errors.Is(err, client.ErrNotFound):
		fmt.Println("not found")
	case err != nil:
		log.Fatal(err)
	}
	// Output: not found
}

// ExampleClient_Put shows what a failed write means: ErrUnknownOutcome may
// have been applied, ErrUnavailable was not.
func ExampleClient_Put() {
	c, err := client.New([]string{startReplica()}, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	switch err := c.Put(ctx, "config/db/host", "10.0.0.7"); {
	case errors.Is(err, client.ErrUnknownOutcome):
		fmt.Println("timed out; the write may or may not have been applied")
	case errors.Is(err, client.ErrUnavailable):
		fmt.Println("no leader; the write was not applied")
	case err != nil:
		fmt.Println("refused:", err)
	default:
		fmt.Println("stored")
	}
	// Output: stored
}

// ExampleClient_Delete reports whether the key existed.
func ExampleClient_Delete() {
	c, err := client.New([]string{startReplica()}, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Put(ctx, "k", "v"); err != nil {
		log.Fatal(err)
	}
	existed, err := c.Delete(ctx, "k")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(existed)
	// Output: true
}

// startReplica stands in for a durio replica in the examples: an in-memory
// kv.v1 server. It is left running for the rest of the test binary.
func startReplica() string {
	kv := &memKV{m: map[string]string{}}
	return httptest.NewServer(kvv1.NewKVServiceServer(kv)).URL
}

// memKV is an in-memory KVService without exactly-once bookkeeping.
type memKV struct {
	mu sync.Mutex // guards m
	m  map[string]string
	// KVService (nil) stands in for the methods this fake does not
	// serve; calling one panics.
	kvv1.KVService
}

func (s *memKV) Get(_ context.Context, req *kvv1.GetRequest) (*kvv1.GetResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[req.GetKey()]
	if !ok {
		return nil, twirp.NotFoundError("no such key")
	}
	return &kvv1.GetResponse{Key: req.GetKey(), Value: v}, nil
}

func (s *memKV) Put(_ context.Context, req *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[req.GetKey()] = req.GetValue()
	return &kvv1.PutResponse{}, nil
}

func (s *memKV) Append(_ context.Context, req *kvv1.AppendRequest) (*kvv1.AppendResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[req.GetKey()] += req.GetValue()
	return &kvv1.AppendResponse{}, nil
}

func (s *memKV) Delete(_ context.Context, req *kvv1.DeleteRequest) (*kvv1.DeleteResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[req.GetKey()]
	delete(s.m, req.GetKey())
	return &kvv1.DeleteResponse{Existed: ok}, nil
}

func (s *memKV) Status(context.Context, *kvv1.StatusRequest) (*kvv1.StatusResponse, error) {
	return &kvv1.StatusResponse{Role: kvv1.Role_ROLE_LEADER, LeaderKnown: true}, nil
}

func (s *memKV) OpenSession(context.Context, *kvv1.OpenSessionRequest) (*kvv1.OpenSessionResponse, error) {
	return &kvv1.OpenSessionResponse{ClientId: 1, IdleTimeoutSeconds: 600}, nil
}
