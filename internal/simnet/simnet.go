// Package simnet is an in-process network for tests, after the MIT 6.5840
// lab's labrpc: named client endpoints connect to named servers, messages
// are byte slices (so sizes are real and nothing is shared between the two
// sides), and the network injects the lab's faults.
//
// Fault model (numbers from the lab):
//   - unreliable mode: each request is delayed 0–27 ms; 10% of requests are
//     dropped (the caller gets ErrDropped, the server never sees it); 10% of
//     replies are dropped after the server executed the request;
//   - a disabled endpoint or a missing server: the caller gets
//     ErrUnreachable after 0–7 s with long delays on, 0–100 ms otherwise;
//   - long reordering: with probability 2/3 a reply is held for 200–2200 ms;
//   - a server removed (crashed) or replaced, or an endpoint disabled, while a
//     call is in flight: the call fails with ErrCut, and a reply that comes
//     back after the cut is discarded;
//   - interception: a test can hold any call matching a filter, then release
//     it, fail it, or execute it and hold its reply (see Network.Intercept).
//
// Every wait honours the caller's context. Handlers run on goroutines the
// network owns; Cleanup stops the network and waits for them.
package simnet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Errors a call returns, wrapped with the method name. A caller cannot tell
// whether the server executed the request, except for ErrUnreachable and
// ErrFailed, where it did not.
var (
	// ErrUnreachable: the endpoint is disabled or not connected, or its
	// server does not exist.
	ErrUnreachable = errors.New("simnet: server unreachable")
	// ErrDropped: the unreliable network lost the request or the reply.
	ErrDropped = errors.New("simnet: message dropped")
	// ErrCut: the server crashed or the endpoint was disabled while the call
	// was in flight.
	ErrCut = errors.New("simnet: connection cut during the call")
	// ErrFailed: the interceptor failed the call.
	ErrFailed = errors.New("simnet: call failed by the interceptor")
	// ErrClosed: the network was cleaned up.
	ErrClosed = errors.New("simnet: network closed")
	// ErrHandler wraps an error the server's handler returned.
	ErrHandler = errors.New("simnet: handler error")
)

// Handler serves one server's calls. It runs on a goroutine of the network;
// ctx is cancelled when the server is deleted or replaced or the network is
// cleaned up. The returned slice belongs to the network.
type Handler func(ctx context.Context, method string, req []byte) ([]byte, error)

// Stats counts calls and bytes.
type Stats struct {
	// Calls is the number of calls: for the network, every call made; for a
	// server, every call its handler executed.
	Calls int64
	// Bytes is request plus reply bytes: for the network, requests when sent
	// and replies when delivered; for a server, requests it received and
	// replies it produced.
	Bytes int64
}

// Network is the simulated network. It is safe for concurrent use. The zero
// value is not usable; call New.
type Network struct {
	done    chan struct{} // closed by Cleanup
	baseCtx context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup // handler goroutines

	calls atomic.Int64
	bytes atomic.Int64

	mu             sync.Mutex // guards every field below
	rng            *rand.Rand
	reliable       bool
	longDelays     bool
	longReordering bool
	ends           map[string]*endState
	servers        map[string]*server
	stats          map[string]*Stats // per server name, across restarts
	intercept      func(CallInfo) bool
	held           []*Held
	heldSig        chan struct{} // closed and replaced when held grows
	closed         bool
}

type endState struct {
	server  string
	enabled bool
	cut     chan struct{} // closed when the end is disabled or reconnected
}

type server struct {
	name    string
	handler Handler
	ctx     context.Context // cancelled when the server is deleted or replaced
	cancel  context.CancelFunc
}

// New returns a reliable network without long delays or reordering whose
// random choices come from seed.
func New(seed uint64) *Network {
	ctx, cancel := context.WithCancel(context.Background())
	return &Network{
		done:     make(chan struct{}),
		baseCtx:  ctx,
		cancel:   cancel,
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		reliable: true,
		ends:     make(map[string]*endState),
		servers:  make(map[string]*server),
		stats:    make(map[string]*Stats),
		heldSig:  make(chan struct{}),
	}
}

// Cleanup closes the network: pending and future calls fail with ErrClosed,
// handlers' contexts are cancelled, and Cleanup waits for every handler
// goroutine to return. It is idempotent.
func (n *Network) Cleanup() {
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		close(n.done)
		n.cancel()
	}
	n.mu.Unlock()
	n.wg.Wait()
}

// SetReliable turns unreliable mode off (true) or on (false).
func (n *Network) SetReliable(reliable bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.reliable = reliable
}

// SetLongDelays sets how long a call to an unreachable server takes to fail:
// 0–7 s if on, 0–100 ms if off.
func (n *Network) SetLongDelays(on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.longDelays = on
}

// SetLongReordering turns on or off holding 2/3 of replies for 200–2200 ms.
func (n *Network) SetLongReordering(on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.longReordering = on
}

// AddServer adds (or replaces) the server called name. A replaced server's
// in-flight calls fail with ErrCut.
func (n *Network) AddServer(name string, h Handler) {
	ctx, cancel := context.WithCancel(n.baseCtx)
	n.mu.Lock()
	defer n.mu.Unlock()
	if old := n.servers[name]; old != nil {
		old.cancel()
	}
	n.servers[name] = &server{name: name, handler: h, ctx: ctx, cancel: cancel}
	if n.stats[name] == nil {
		n.stats[name] = &Stats{}
	}
}

// DeleteServer removes the server called name, as a crash: its in-flight
// calls fail with ErrCut and its handlers' contexts are cancelled.
func (n *Network) DeleteServer(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if old := n.servers[name]; old != nil {
		old.cancel()
		delete(n.servers, name)
	}
}

// End is a client endpoint: the sending side of one link.
type End struct {
	net  *Network
	name string
}

// MakeEnd returns the endpoint called name, creating it disabled and
// unconnected if it does not exist.
func (n *Network) MakeEnd(name string) *End {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ends[name] == nil {
		n.ends[name] = &endState{cut: make(chan struct{})}
	}
	return &End{net: n, name: name}
}

// Name is the endpoint's name.
func (e *End) Name() string { return e.name }

// Connect points the endpoint end at the server called server (which need
// not exist yet). Calls in flight on end fail with ErrCut.
func (n *Network) Connect(end, server string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	es := n.endLocked(end)
	if es.server != server {
		close(es.cut)
		es.cut = make(chan struct{})
		es.server = server
	}
}

// Enable enables or disables the endpoint end. Disabling it fails its calls
// in flight with ErrCut and discards their replies.
func (n *Network) Enable(end string, enabled bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	es := n.endLocked(end)
	if es.enabled && !enabled {
		close(es.cut)
		es.cut = make(chan struct{})
	}
	es.enabled = enabled
}

func (n *Network) endLocked(name string) *endState {
	es := n.ends[name]
	if es == nil {
		es = &endState{cut: make(chan struct{})}
		n.ends[name] = es
	}
	return es
}

// Total returns the network-wide counts.
func (n *Network) Total() Stats {
	return Stats{Calls: n.calls.Load(), Bytes: n.bytes.Load()}
}

// ServerStats returns the counts of the server called name, summed over every
// server added under that name.
func (n *Network) ServerStats(name string) Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s := n.stats[name]; s != nil {
		return *s
	}
	return Stats{}
}

func (n *Network) randIntN(k int) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rng.IntN(k)
}

// sleep waits d, or returns early with the context's error or ErrClosed.
func (n *Network) sleep(ctx context.Context, d time.Duration) error {
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
		case <-n.done:
			return ErrClosed
		}
	}
	select {
	case <-n.done:
		return ErrClosed
	default:
	}
	return ctx.Err()
}

// link is what a call sees of its endpoint when it is delivered.
type link struct {
	ok               bool // enabled, connected, and the server exists
	server           *server
	cut              chan struct{}
	reliable         bool
	reorder          bool
	unreachableDelay time.Duration
}

func (n *Network) lookup(end string) link {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := link{reliable: n.reliable, reorder: n.longReordering}
	es := n.ends[end]
	if es != nil && es.enabled {
		if srv := n.servers[es.server]; srv != nil {
			l.ok, l.server, l.cut = true, srv, es.cut
		}
	}
	if !l.ok {
		if n.longDelays {
			l.unreachableDelay = time.Duration(n.rng.IntN(7000)) * time.Millisecond
		} else {
			l.unreachableDelay = time.Duration(n.rng.IntN(100)) * time.Millisecond
		}
	}
	return l
}

// current reports whether srv is still the server behind end and the link
// was not cut since l was looked up.
func (n *Network) current(end string, l link) bool {
	select {
	case <-l.cut:
		return false
	default:
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	es := n.ends[end]
	return es != nil && es.enabled && n.servers[es.server] == l.server
}

// Call sends req to the endpoint's server and returns its reply, subject to
// the fault model. The reply belongs to the caller.
func (e *End) Call(ctx context.Context, method string, req []byte) ([]byte, error) {
	reply, err := e.net.call(ctx, e.name, method, req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", e.name, method, err)
	}
	return reply, nil
}

func (n *Network) call(ctx context.Context, end, method string, req []byte) ([]byte, error) {
	req = append([]byte(nil), req...) // the caller may reuse its buffer
	n.calls.Add(1)
	n.bytes.Add(int64(len(req)))
	select {
	case <-n.done:
		return nil, ErrClosed
	default:
	}

	var h *Held
	if h = n.maybeHold(end, method, req); h != nil {
		var d decision
		select {
		case d = <-h.decide:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-n.done:
			return nil, ErrClosed
		}
		switch d {
		case decideFail:
			return nil, ErrFailed
		case decideRelease:
			h = nil // no reply hold
		}
	}

	l := n.lookup(end)
	if !l.ok {
		if err := n.sleep(ctx, l.unreachableDelay); err != nil {
			return nil, err
		}
		if h != nil {
			h.reply <- heldReply{err: ErrUnreachable}
		}
		return nil, ErrUnreachable
	}
	if !l.reliable {
		if err := n.sleep(ctx, time.Duration(n.randIntN(27))*time.Millisecond); err != nil {
			return nil, err
		}
		if n.randIntN(1000) < 100 {
			if h != nil {
				h.reply <- heldReply{err: ErrDropped}
			}
			return nil, ErrDropped
		}
	}

	reply, err := n.execute(ctx, end, l, method, req)
	if err != nil {
		if h != nil {
			h.reply <- heldReply{err: err}
		}
		return nil, err
	}
	if h != nil {
		h.reply <- heldReply{reply: append([]byte(nil), reply...)}
		select {
		case d := <-h.decide:
			if d == decideFail {
				return nil, ErrFailed
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-n.done:
			return nil, ErrClosed
		}
	}
	if !l.reliable && n.randIntN(1000) < 100 {
		return nil, ErrDropped
	}
	if l.reorder && n.randIntN(900) < 600 {
		ms := 200 + n.randIntN(1+n.randIntN(2000))
		if err := n.sleep(ctx, time.Duration(ms)*time.Millisecond); err != nil {
			return nil, err
		}
	}
	if !n.current(end, l) {
		return nil, ErrCut
	}
	n.bytes.Add(int64(len(reply)))
	return reply, nil
}

// execute runs the handler on a goroutine of the network and waits for it,
// for a cut, or for the caller to give up.
func (n *Network) execute(ctx context.Context, end string, l link, method string, req []byte) ([]byte, error) {
	type result struct {
		reply []byte
		err   error
	}
	ch := make(chan result, 1)
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, ErrClosed
	}
	n.wg.Add(1)
	stats := n.stats[l.server.name]
	stats.Calls++
	stats.Bytes += int64(len(req))
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		reply, err := l.server.handler(l.server.ctx, method, req)
		reply = append([]byte(nil), reply...) // the handler may reuse its buffer
		n.mu.Lock()
		stats.Bytes += int64(len(reply))
		n.mu.Unlock()
		ch <- result{reply, err}
	}()
	select {
	case r := <-ch:
		if !n.current(end, l) {
			return nil, ErrCut
		}
		if r.err != nil {
			return nil, fmt.Errorf("%w: %w", ErrHandler, r.err)
		}
		return r.reply, nil
	case <-l.cut:
		return nil, ErrCut
	case <-l.server.ctx.Done():
		select {
		case <-n.done:
			return nil, ErrClosed
		default:
			return nil, ErrCut
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
