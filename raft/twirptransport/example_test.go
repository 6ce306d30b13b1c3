package twirptransport_test

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/raft"
	"github.com/ruaft/ruaft/raft/twirptransport"
)

// logApp is a tiny replicated state machine: the commands it applied.
type logApp struct {
	mu      sync.Mutex // guards applied
	applied []string
}

func (a *logApp) Apply(msg raft.ApplyMsg) {
	if !msg.IsSnapshot {
		a.mu.Lock()
		a.applied = append(a.applied, string(msg.Command))
		a.mu.Unlock()
	}
}

func (a *logApp) SnapshotNeeded(uint64) {}

func (a *logApp) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.applied) == 0 {
		return ""
	}
	return a.applied[len(a.applied)-1]
}

// Three raft nodes, each with its own HTTP listener on 127.0.0.1, talking
// over one peer stream per pair of nodes (Twirp routes for peers without
// it) with a shared bearer token. In separate processes each node would run
// the same code with its own id; for mutual TLS, build the tls.Configs with
// MutualTLS, serve with tls.NewListener, pass Options.TLS and use https URLs.
func Example() {
	const n, token = 3, "a-long-random-shared-secret"
	lns := make([]net.Listener, n)
	urls := make([]string, n)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		lns[i], urls[i] = ln, "http://"+ln.Addr().String()
	}
	nodes := make([]*raft.Node, n)
	apps := make([]*logApp, n)
	servers := make([]*http.Server, n)
	streams := make([]*twirptransport.StreamServer, n)
	transports := make([]*twirptransport.Transport, n)
	for i := range n {
		cfg := raft.DefaultConfig()
		cfg.ID, cfg.Peers = i, n
		apps[i] = &logApp{}
		transports[i] = twirptransport.New(i, urls, twirptransport.Options{Token: token})
		node, err := raft.New(cfg, transports[i], persist.NewMemory(), apps[i])
		if err != nil {
			panic(err)
		}
		nodes[i] = node
		mux := http.NewServeMux()
		mux.Handle("POST "+twirptransport.PathPrefix, twirptransport.NewHandler(node))
		// The stream is served behind the same RequireToken and LimitBody.
		streams[i] = twirptransport.NewStreamServer(twirptransport.StreamServerOptions{MaxFrameBytes: 8 << 20})
		streams[i].HandleRaft(node)
		mux.Handle("GET "+twirptransport.StreamPath, streams[i])
		servers[i] = &http.Server{
			Handler:           twirptransport.RequireToken(token, twirptransport.LimitBody(8<<20, mux)),
			ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second,
		}
		go servers[i].Serve(lns[i])
	}
	defer func() {
		for i := range n {
			nodes[i].Kill()
			transports[i].Close()
			servers[i].Close()
			streams[i].Close() // upgraded connections are no longer the server's
		}
	}()

	// Propose on whichever node leads, retrying through elections.
	deadline := time.Now().Add(10 * time.Second)
	proposed := false
	for !proposed && time.Now().Before(deadline) {
		for _, node := range nodes {
			if _, _, isLeader := node.Start([]byte("hello")); isLeader {
				proposed = true
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i, app := range apps {
		for app.last() != "hello" && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		fmt.Printf("node %d applied %q\n", i, app.last())
	}
	// Output:
	// node 0 applied "hello"
	// node 1 applied "hello"
	// node 2 applied "hello"
}
