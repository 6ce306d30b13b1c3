package simnet

import (
	"context"
	"sync"
)

// CallInfo describes a call to the interceptor's filter.
type CallInfo struct {
	// End is the calling endpoint's name.
	End string
	// Server is the server the endpoint is connected to when the call is
	// made ("" if none).
	Server string
	// Method is the method name passed to Call.
	Method string
	// Request is a copy of the request bytes; the filter and the test may
	// read it but must not modify it.
	Request []byte
}

// Intercept holds every call for which filter returns true, before it goes
// through the fault model, until the test decides what to do with it (see
// Held). A nil filter stops intercepting new calls; calls already held stay
// held. Held calls are queued in order and taken with NextHeld.
func (n *Network) Intercept(filter func(CallInfo) bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.intercept = filter
}

// NextHeld returns the oldest held call not yet taken, waiting for one until
// ctx is done.
func (n *Network) NextHeld(ctx context.Context) (*Held, error) {
	for {
		n.mu.Lock()
		if len(n.held) > 0 {
			h := n.held[0]
			n.held = n.held[1:]
			n.mu.Unlock()
			return h, nil
		}
		sig := n.heldSig
		n.mu.Unlock()
		select {
		case <-sig:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-n.done:
			return nil, ErrClosed
		}
	}
}

func (n *Network) maybeHold(end, method string, req []byte) *Held {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.intercept == nil {
		return nil
	}
	info := CallInfo{End: end, Method: method, Request: req}
	if es := n.ends[end]; es != nil {
		info.Server = es.server
	}
	if !n.intercept(info) {
		return nil
	}
	h := &Held{CallInfo: info, decide: make(chan decision, 2), reply: make(chan heldReply, 1)}
	n.held = append(n.held, h)
	close(n.heldSig)
	n.heldSig = make(chan struct{})
	return h
}

type decision int

const (
	decideRelease decision = iota + 1
	decideFail
	decideExecute
)

type heldReply struct {
	reply []byte
	err   error
}

// Held is a call held by the interceptor. The test calls exactly one of
// Release, Fail or Execute; after Execute, it calls Release or Fail to decide
// the fate of the reply. If the caller gives up first (its context ends), the
// decisions have no effect.
type Held struct {
	CallInfo
	decide chan decision  // buffered: decisions never block
	reply  chan heldReply // the outcome of Execute

	mu      sync.Mutex // guards decided
	decided int        // decisions made
}

func (h *Held) send(d decision) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.decided < 2 {
		h.decided++
		h.decide <- d
	}
}

// Release lets the call go on through the network as if it had never been
// held (or, after Execute, delivers the held reply to the caller).
func (h *Held) Release() { h.send(decideRelease) }

// Fail makes the call fail with ErrFailed: before Execute the server never
// sees it; after Execute the server executed it but the reply is lost.
func (h *Held) Fail() { h.send(decideFail) }

// Execute delivers the call to the server now, through the fault model, and
// returns the reply (or the error the caller would have got) while the
// caller keeps waiting; the test then calls Release or Fail. If the call
// failed, the caller has already been given the error. Execute returns
// ctx's error if ctx ends first (for example because the caller gave up and
// no reply will come).
func (h *Held) Execute(ctx context.Context) ([]byte, error) {
	h.send(decideExecute)
	select {
	case r := <-h.reply:
		return r.reply, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
