package rsm_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/raft"
	"github.com/ruaft/ruaft/rsm"
)

// counter is a deterministic state machine: each command adds a number.
type counter struct {
	mu  sync.Mutex // guards sum: Apply runs on raft's goroutine, reads on others
	sum int64
}

func (c *counter) Apply(_ uint64, cmd []byte) any {
	n, _ := strconv.ParseInt(string(cmd), 10, 64)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sum += n
	return c.sum
}

func (c *counter) Snapshot() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return binary.AppendVarint(nil, c.sum)
}

func (c *counter) Restore(data []byte) error {
	sum, _ := binary.Varint(data)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sum = sum
	return nil
}

func (c *counter) value() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sum
}

// inProcess is a raft.Transport between nodes of one process: each RPC calls
// the peer node's handler directly.
type inProcess struct{ nodes []*raft.Node }

func (t *inProcess) AppendEntries(ctx context.Context, peer int, req *raft.AppendEntriesRequest) (*raft.AppendEntriesResponse, error) {
	return t.nodes[peer].HandleAppendEntries(ctx, req)
}

func (t *inProcess) RequestVote(ctx context.Context, peer int, req *raft.RequestVoteRequest) (*raft.RequestVoteResponse, error) {
	return t.nodes[peer].HandleRequestVote(ctx, req)
}

func (t *inProcess) InstallSnapshot(ctx context.Context, peer int, req *raft.InstallSnapshotRequest) (*raft.InstallSnapshotResponse, error) {
	return t.nodes[peer].HandleInstallSnapshot(ctx, req)
}

func (t *inProcess) TimeoutNow(ctx context.Context, peer int, req *raft.TimeoutNowRequest) (*raft.TimeoutNowResponse, error) {
	return t.nodes[peer].HandleTimeoutNow(ctx, req)
}

func (t *inProcess) ReadIndex(ctx context.Context, peer int, req *raft.ReadIndexRequest) (*raft.ReadIndexResponse, error) {
	return t.nodes[peer].HandleReadIndex(ctx, req)
}

// A three-node replicated counter in one process: commands go to whichever
// node leads, and every node applies them in the same order.
func Example_threeNodeCluster() {
	const n = 3
	tr := &inProcess{nodes: make([]*raft.Node, n)}
	rsms := make([]*rsm.RSM, n)
	counters := make([]*counter, n)
	for i := range n {
		counters[i] = &counter{}
		r, err := rsm.New(rsm.DefaultConfig(), counters[i])
		if err != nil {
			panic(err)
		}
		cfg := raft.DefaultConfig()
		cfg.ID, cfg.Peers = i, n
		node, err := raft.New(cfg, tr, persist.NewMemory(), r)
		if err != nil {
			panic(err)
		}
		tr.nodes[i] = node
		r.Attach(node)
		rsms[i] = r
	}
	defer func() {
		for _, r := range rsms {
			_ = r.Kill()
		}
	}()

	// Submit to every node until the leader takes it; followers answer
	// ErrNotLeader at once, and nothing is proposed twice.
	submit := func(cmd string) any {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for ctx.Err() == nil {
			for _, r := range rsms {
				result, err := r.Submit(ctx, []byte(cmd))
				if err == nil {
					return result
				}
				if !errors.Is(err, rsm.ErrNotLeader) {
					panic(err)
				}
			}
			time.Sleep(20 * time.Millisecond) // an election is under way
		}
		panic(ctx.Err())
	}
	fmt.Println("after +5:", submit("5"))
	fmt.Println("after +37:", submit("37"))

	// Followers apply the same commands shortly after the leader.
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range counters {
		for c.value() != 42 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	for i, c := range counters {
		fmt.Printf("node %d: %d\n", i, c.value())
	}
	// Output:
	// after +5: 5
	// after +37: 42
	// node 0: 42
	// node 1: 42
	// node 2: 42
}
