package kvtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twitchtv/twirp"
	"google.golang.org/protobuf/proto"

	"github.com/ruaft/ruaft/internal/simnet"
	"github.com/ruaft/ruaft/kvraft/kvwire"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// The replay fault: the network delivers a delayed copy of a write a clerk
// sent, after the clerk got its answer and moved on. Every clerk's
// endpoint (simKV) reports each write request it sent, as the bytes it put
// on the network, once the call that carried it returned; the replayer
// sends some of them again, byte for byte (the same WriteID), after a
// random delay, to a random server, over endpoints of its own, and drops
// the answers. A copy is a request the clerk really sent, so the servers
// must treat it as a retry: answer it from the session table, or refuse
// it as stale, and never apply it a second time or apply a write whose
// refusal the clerk already got.
//
// Besides the history porcupine checks, the replayer compares each copy's
// answer with the answer the original got: a copy of a write refused for
// a failed condition (a Put, Delete or Txn) must never succeed. Such a
// copy is counted as a contradiction (Cluster.ReplayContradictions).

// replayMethods are the KV RPCs that carry a WriteID.
var replayMethods = map[string]bool{"Put": true, "Delete": true, "Txn": true, "Append": true, "WriteBatch": true}

// Replay tuning: the share of writes replayed, the most copies of one,
// and the delays after the original's answer (most copies come soon,
// within the window before the clerk's next write acknowledges the
// first; the rest late).
const (
	replayPercent   = 100
	replayMaxCopies = 3
	replaySoon      = 10 * time.Millisecond
	replayLate      = 200 * time.Millisecond
)

// replayer sends delayed copies of the clerks' writes.
type replayer struct {
	ends []*simnet.End // one per server
	stop chan struct{} // closed at the cluster's cleanup
	wg   sync.WaitGroup

	mu      sync.Mutex // guards stopped, with wg.Add
	stopped bool

	// Counts: writes seen, copies sent, and the copies' answers;
	// contradictions are copies that succeeded where the original was
	// refused for a failed condition.
	seen, sent, ok, refused, failed, contradictions atomic.Int64
	codes                                           sync.Map // twirp code -> *atomic.Int64
	firstContradiction                              atomic.Pointer[string]
}

// newReplayer makes the replayer's endpoints, one to each of n servers,
// always enabled: a copy delayed in the network reaches a server whatever
// partitions came and went.
func newReplayer(net *simnet.Network, n int) *replayer {
	r := &replayer{stop: make(chan struct{})}
	for j := range n {
		name := fmt.Sprintf("replay-to-%d", j)
		r.ends = append(r.ends, net.MakeEnd(name))
		net.Connect(name, ServerName(j))
		net.Enable(name, true)
	}
	return r
}

// capture is a clerk endpoint's report of a request it sent as method
// (without the "kv." prefix) and of the reply it got (nil if none); it
// schedules copies of some writes. req must not change afterwards.
func (r *replayer) capture(method string, req, reply []byte) {
	if !replayMethods[method] {
		return
	}
	refused := conditionFailed(method, reply)
	r.seen.Add(1)
	if rand.IntN(100) >= replayPercent {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	for range 1 + rand.IntN(replayMaxCopies) {
		delay := time.Millisecond + rand.N(replaySoon)
		if rand.IntN(4) == 0 {
			delay = replaySoon + rand.N(replayLate-replaySoon)
		}
		to := r.ends[rand.IntN(len(r.ends))]
		r.wg.Go(func() { r.send(to, method, req, refused, delay) })
	}
}

// send sends one copy after delay and counts its answer; refused says
// whether the original was refused for a failed condition.
func (r *replayer) send(to *simnet.End, method string, req []byte, refused bool, delay time.Duration) {
	select {
	case <-time.After(delay):
	case <-r.stop:
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	go func() {
		select {
		case <-r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	r.sent.Add(1)
	reply, err := to.Call(ctx, "kv."+method, req)
	switch {
	case err != nil || len(reply) == 0:
		r.failed.Add(1) // lost in the network
	case reply[0] == statusOK:
		r.ok.Add(1)
		if refused && !conditionFailed(method, reply) {
			r.contradictions.Add(1)
			msg := fmt.Sprintf("a copy of a %s refused for a failed condition succeeded at %s", method, to.Name())
			r.firstContradiction.CompareAndSwap(nil, &msg)
		}
	default:
		r.refused.Add(1)
		code := "corrupt"
		var terr twirp.Error
		if err := decodeTwirp(reply[1:]); errors.As(err, &terr) {
			code = string(terr.Code())
			if reason := terr.Meta(kvwire.MetaReason); reason != "" {
				code += "/" + reason
			}
		}
		v, _ := r.codes.LoadOrStore(code, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
}

// conditionFailed reports whether reply answers a Put, Delete or Txn
// sent as method with a failed condition (as the state's verdict).
func conditionFailed(method string, reply []byte) bool {
	if len(reply) == 0 {
		return false
	}
	switch {
	case method == "Txn" && reply[0] == statusOK:
		var resp kvv1.TxnResponse
		return proto.Unmarshal(reply[1:], &resp) == nil && !resp.GetSucceeded()
	case (method == "Put" || method == "Delete") && reply[0] == statusError:
		var terr twirp.Error
		return errors.As(decodeTwirp(reply[1:]), &terr) && terr.Code() == twirp.FailedPrecondition &&
			terr.Meta(kvwire.MetaReason) == kvwire.ReasonConditionFailed
	}
	return false
}

// close stops sending copies and waits for those under way.
func (r *replayer) close() {
	r.mu.Lock()
	if !r.stopped {
		r.stopped = true
		close(r.stop)
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// String summarises what the replayer did.
func (r *replayer) String() string {
	s := fmt.Sprintf("%d writes seen, %d copies sent: %d answered (%d contradicting a refusal), %d refused, %d lost",
		r.seen.Load(), r.sent.Load(), r.ok.Load(), r.contradictions.Load(), r.refused.Load(), r.failed.Load())
	r.codes.Range(func(k, v any) bool {
		s += fmt.Sprintf("; %s %d", k, v.(*atomic.Int64).Load())
		return true
	})
	return s
}

// ReplayContradictions waits for the replay fault's copies under way and
// returns how many succeeded where the original had been refused for a
// failed condition, with a description of the first (see Options.Replay).
// It stops the replay fault.
func (c *Cluster) ReplayContradictions() (int64, string) {
	if c.replay == nil {
		return 0, ""
	}
	c.replay.close()
	first := ""
	if p := c.replay.firstContradiction.Load(); p != nil {
		first = *p
	}
	return c.replay.contradictions.Load(), first
}
