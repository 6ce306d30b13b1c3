package durio

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twitchtv/twirp"

	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// DevEndpoints are the client URLs of the cluster `durio dev` starts.
var DevEndpoints = []string{"http://127.0.0.1:8001", "http://127.0.0.1:8002", "http://127.0.0.1:8003"}

// ErrNotFound is returned by Client.Get for a missing key.
var ErrNotFound = errors.New("durio: key not found")

// Client is a durio client over the Twirp protobuf API. It is safe for
// concurrent use; concurrent calls are not serialised. Writes carry a client
// id and a sequence number, so a write retried after a timeout or a lost
// connection is applied at most once.
type Client struct {
	endpoints []string
	kv        []kvv1.KVService
	cur       atomic.Int64 // index of the endpoint last known to work
	clientID  uint64       // random, fixed for the client's life
	writes    seqWindow
	// Backoff is the pause after every endpoint failed once.
	backoff time.Duration
}

// ClientOptions configure a Client.
type ClientOptions struct {
	// HTTPClient carries the calls; default: a pooled keep-alive client.
	HTTPClient *http.Client
	// JSON selects Twirp's JSON encoding instead of protobuf.
	JSON bool
}

// NewClient returns a client for the given client URLs (any replica will do;
// requests are forwarded to the leader).
func NewClient(endpoints []string, opts ClientOptions) (*Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("durio: no endpoints")
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = newPeerHTTPClient()
	}
	c := &Client{backoff: 50 * time.Millisecond}
	c.clientID = randomID()
	for _, e := range endpoints {
		if !strings.Contains(e, "://") {
			e = "http://" + e
		}
		e = strings.TrimRight(e, "/")
		c.endpoints = append(c.endpoints, e)
		if opts.JSON {
			c.kv = append(c.kv, kvv1.NewKVServiceJSONClient(e, hc))
		} else {
			c.kv = append(c.kv, kvv1.NewKVServiceProtobufClient(e, hc))
		}
	}
	return c, nil
}

// seqWindow hands out write sequence numbers and tracks which are still in
// flight, so each write can tell the cluster the lowest one still open (its
// ack): results below it may be forgotten.
type seqWindow struct {
	mu   sync.Mutex // guards last and open
	last uint64
	open map[uint64]struct{}
}

func (w *seqWindow) begin() (seq, ack uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.open == nil {
		w.open = make(map[uint64]struct{})
	}
	w.last++
	seq, ack = w.last, w.last
	w.open[seq] = struct{}{}
	for s := range w.open {
		ack = min(ack, s)
	}
	return seq, ack
}

func (w *seqWindow) end(seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.open, seq)
}

// write starts a write: its header, and a func to call once it has finished.
func (c *Client) write() (*kvv1.WriteHeader, func()) {
	seq, ack := c.writes.begin()
	return &kvv1.WriteHeader{ClientId: c.clientID, Sequence: seq, Ack: ack}, func() { c.writes.end(seq) }
}

// Get returns a key's value (linearizable), or ErrNotFound.
func (c *Client) Get(ctx context.Context, key string) (string, error) {
	resp, err := call(ctx, c, func(kv kvv1.KVService) (*kvv1.GetResponse, error) {
		return kv.Get(ctx, &kvv1.GetRequest{Key: key})
	})
	if err != nil {
		var terr twirp.Error
		if errors.As(err, &terr) && terr.Code() == twirp.NotFound {
			return "", ErrNotFound
		}
		return "", err
	}
	return resp.GetValue(), nil
}

// Put sets key to value.
func (c *Client) Put(ctx context.Context, key, value string) error {
	hdr, done := c.write()
	defer done()
	req := &kvv1.PutRequest{Key: key, Value: value, Write: hdr}
	_, err := call(ctx, c, func(kv kvv1.KVService) (*kvv1.PutResponse, error) { return kv.Put(ctx, req) })
	return err
}

// Append appends value to key's value.
func (c *Client) Append(ctx context.Context, key, value string) error {
	hdr, done := c.write()
	defer done()
	req := &kvv1.AppendRequest{Key: key, Value: value, Write: hdr}
	_, err := call(ctx, c, func(kv kvv1.KVService) (*kvv1.AppendResponse, error) { return kv.Append(ctx, req) })
	return err
}

// Delete removes key and reports whether it existed.
func (c *Client) Delete(ctx context.Context, key string) (bool, error) {
	hdr, done := c.write()
	defer done()
	req := &kvv1.DeleteRequest{Key: key, Write: hdr}
	resp, err := call(ctx, c, func(kv kvv1.KVService) (*kvv1.DeleteResponse, error) { return kv.Delete(ctx, req) })
	return resp.GetExisted(), err
}

// Endpoints returns the client URLs the client was made with.
func (c *Client) Endpoints() []string { return c.endpoints }

// StatusOf asks one endpoint (by position) for its status, without failover.
func (c *Client) StatusOf(ctx context.Context, i int) (*kvv1.StatusResponse, error) {
	return c.kv[i].Status(ctx, &kvv1.StatusRequest{})
}

// retryable reports whether another endpoint, or the same one later, may
// succeed where this call failed: connection errors, unavailable (no leader
// reachable) and deadline_exceeded (outcome unknown; writes carry a sequence
// number, so a retry applies at most once).
func retryable(err error) bool {
	if permanentTLSError(err) {
		return false // an untrusted certificate stays untrusted
	}
	if noAnswer(err) {
		return true // the endpoint is down, unreachable or too slow
	}
	var terr twirp.Error
	return errors.As(err, &terr) && (terr.Code() == twirp.Unavailable || terr.Code() == twirp.DeadlineExceeded)
}

// noAnswer reports whether err means the server never answered: Twirp
// clients report transport failures as "internal" errors that wrap the
// *url.Error from net/http, while errors a server sent wrap nothing.
func noAnswer(err error) bool {
	var terr twirp.Error
	if !errors.As(err, &terr) {
		return true
	}
	var uerr *url.Error
	return terr.Code() == twirp.Internal &&
		(errors.As(err, &uerr) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled))
}

// call runs op against the current endpoint, moving to the leader named in an
// unavailable error's meta, or to the next endpoint, until it succeeds, fails
// for good, or ctx ends.
func call[Resp any](ctx context.Context, c *Client, op func(kvv1.KVService) (Resp, error)) (Resp, error) {
	n := int64(len(c.kv))
	var zero Resp
	var last error
	for attempt := int64(0); ; attempt++ {
		if attempt > 0 && attempt%n == 0 {
			select {
			case <-ctx.Done():
				return zero, fmt.Errorf("%w (last error: %w)", ctx.Err(), last)
			case <-time.After(c.backoff):
			}
		}
		i := c.cur.Load()
		resp, err := op(c.kv[i%n])
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			if last == nil || noAnswer(last) {
				last = err // keep an earlier answer from a server over our own cut-off
			}
			return zero, fmt.Errorf("%w (last error: %w)", ctx.Err(), last)
		}
		if !retryable(err) {
			return zero, err
		}
		last = err
		next := (i + 1) % n
		var terr twirp.Error
		if errors.As(err, &terr) {
			if id, perr := strconv.Atoi(terr.Meta("leader_id")); perr == nil && id >= 0 && int64(id) < n && int64(id) != i%n {
				next = int64(id)
			}
		}
		c.cur.CompareAndSwap(i, next)
	}
}

// randomID returns a random client id; never 0, which means unset.
func randomID() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) | 1
}
