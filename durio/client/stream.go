package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	"github.com/ruaft/ruaft/kvraft/kvwire"
)

// DefaultStreamIdleTimeout is Options.StreamIdleTimeout's default: how
// long FollowStream waits for any message on a stream (a replica sends a
// heartbeat at least every 15 s) before it takes the replica for gone and
// resumes at another.
const DefaultStreamIdleTimeout = 40 * time.Second

// streamWait is the heartbeat interval FollowStream asks for (at most half
// the idle timeout).
const streamWait = 10 * time.Second

// maxStreamLine bounds one line of a stream: an event carries a key and a
// value (and perhaps the previous one), JSON-escaped.
const maxStreamLine = 64 << 20

// FollowStream is Follow over a replica's watch stream (server-sent events,
// GET /kvstore/watch/... with Accept: text/event-stream): one long-lived
// request per replica instead of one long poll per batch of changes, which
// costs a replica far less with many watchers. Its contract is Follow's: fn
// sees every change of key (or under it, if prefix) after revision after,
// once and in revision order, until ctx ends (then it returns ctx's error)
// or fn fails (then fn's error). When a stream breaks, or a replica sends
// nothing for Options.StreamIdleTimeout, FollowStream resumes at the next
// replica from the last revision it delivered.
//
// If the cluster no longer keeps the history after that revision, it
// returns an error wrapping ErrCompacted; a request the replicas refuse as
// invalid, ErrInvalid; another refusal every replica would repeat (a 4xx
// other than 408 and 429, such as 403 for a forbidden origin), that
// refusal; a certificate the client does not trust, that error. A replica
// from before watch streams answers with a long poll: FollowStream then goes
// on as Follow. An Options.HTTPClient with a Timeout ends every stream after
// it (FollowStream then resumes elsewhere): leave it unset for streams.
func (c *Client) FollowStream(ctx context.Context, key string, prefix bool, after uint64, fn func(Event) error) error {
	failed := 0 // streams that broke in a row without delivering anything
	for next := 0; ; next++ {
		eps := c.set.list()
		ep := eps[next%len(eps)]
		progressed, err := c.followOne(ctx, ep.url, key, prefix, &after, fn)
		var ferr fnError
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &ferr):
			return ferr.err
		case errors.Is(err, ErrCompacted), errors.Is(err, kvclient.ErrInvalid):
			return err
		case kvwire.TLSRejected(err):
			return err // a certificate error is not cured by retrying
		case errors.As(err, new(refusedError)):
			return err
		case errors.Is(err, errNoStreams):
			// A replica from before streams answered with a long poll:
			// go on with long polls from where the stream left off.
			return c.Follow(ctx, key, prefix, after, fn)
		}
		if progressed {
			failed = 0
		}
		if failed++; failed >= len(eps) {
			// Every replica failed in turn: pause before the next round.
			if perr := pause(ctx, time.Second); perr != nil {
				return perr
			}
			failed = 0
		}
	}
}

// errNoStreams reports a replica that answered a stream request with a long
// poll's JSON: a version from before watch streams.
var errNoStreams = errors.New("durio client: the replica does not serve watch streams")

// refusedError is a replica's refusal that another replica would repeat (a
// 4xx other than 408 and 429).
type refusedError struct{ error }

func (e refusedError) Unwrap() error { return e.error }

// fnError carries the error of FollowStream's fn out of followOne.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// streamEvent is an event as a stream's data carries it.
type streamEvent struct {
	Type   string          `json:"type"`
	KV     streamKeyValue  `json:"kv"`
	PrevKV *streamKeyValue `json:"prev_kv"`
}

type streamKeyValue struct {
	Key            string `json:"key"`
	Value          string `json:"value"`
	CreateRevision uint64 `json:"create_revision"`
	ModRevision    uint64 `json:"mod_revision"`
	Version        uint64 `json:"version"`
	Lease          uint64 `json:"lease"`
}

func (kv *streamKeyValue) keyValue() KeyValue {
	return KeyValue{Key: kv.Key, Value: kv.Value, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision,
		Version: kv.Version, Lease: kv.Lease}
}

// followOne follows one replica's stream from *after, moving *after on
// with every event delivered and every heartbeat, until the stream ends or
// fails. progressed reports whether the stream moved *after on (a replica
// that opens streams only to end them counts as failed).
func (c *Client) followOne(ctx context.Context, base, key string, prefix bool, after *uint64, fn func(Event) error) (progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// stream=true: a proxy may drop Accept. wait: the longest silence we
	// want, so that a replica from before streams answers its long poll
	// well before the idle timeout.
	q := url.Values{"index": {strconv.FormatUint(*after, 10)}, "stream": {"true"},
		"wait": {min(streamWait, c.streamIdle/2).String()}}
	if prefix {
		q.Set("prefix", "true")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/kvstore/watch/"+escapeKey(key)+"?"+q.Encode(), nil)
	if err != nil {
		return false, fmt.Errorf("%w: %v", kvclient.ErrInvalid, err)
	}
	req.Header.Set("Accept", "text/event-stream")
	// A replica that stops sending (stopped, or cut off from us) is left
	// after StreamIdleTimeout.
	idle := time.AfterFunc(c.streamIdle, cancel)
	defer idle.Stop()
	resp, err := c.hc.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		return false, errNoStreams
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return false, streamRefusal(resp, *after)
	}
	r := bufio.NewReaderSize(resp.Body, 4096)
	var id, event string
	var data []byte
	hasID := false
	for {
		line, err := readLine(r)
		if err != nil {
			return progressed, err
		}
		idle.Reset(c.streamIdle)
		if len(line) > 0 {
			field, value, _ := strings.Cut(string(line), ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				id, hasID = value, true
			case "event":
				event = value
			case "data":
				if len(data) > 0 {
					data = append(data, '\n')
				}
				if data = append(data, value...); len(data) > maxStreamLine {
					return progressed, errors.New("durio client: a watch stream message is too long")
				}
			}
			continue
		}
		// A blank line ends a message.
		if event == "compacted" {
			return progressed, fmt.Errorf("%w: events after revision %d are gone (%s)", ErrCompacted, *after, data)
		}
		rev, perr := strconv.ParseUint(id, 10, 64)
		switch {
		case !hasID:
		case perr != nil:
			return progressed, fmt.Errorf("durio client: a watch stream sent id %q", id)
		case len(data) == 0:
			// The stream's start, or a heartbeat: nothing matched up to rev.
			progressed = progressed || rev > *after
			*after = max(*after, rev)
		case rev > *after:
			progressed = true
			ev, err := decodeStreamEvent(data)
			if err != nil {
				return progressed, err
			}
			// The idle clock measures the replica's silence, not fn's work.
			idle.Stop()
			err = fn(ev)
			idle.Reset(c.streamIdle)
			if err != nil {
				return progressed, fnError{err}
			}
			*after = rev
		}
		id, event, data, hasID = "", "", data[:0], false
		if cap(data) > 64<<10 {
			data = nil // a large message: do not keep its buffer
		}
	}
}

// readLine reads one line of a stream, without its line ending (LF or
// CRLF; a replica sends LF).
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		part, err := r.ReadSlice('\n')
		line = append(line, part...)
		if len(line) > maxStreamLine {
			return nil, errors.New("durio client: a watch stream line is too long")
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(line) == 0 {
				return nil, io.ErrUnexpectedEOF // a stream ends only by breaking
			}
			return nil, err
		}
		return bytes.TrimRight(line, "\r\n"), nil
	}
}

func decodeStreamEvent(data []byte) (Event, error) {
	var se streamEvent
	if err := json.Unmarshal(data, &se); err != nil {
		return Event{}, fmt.Errorf("durio client: a watch stream sent %q: %w", data, err)
	}
	ev := Event{Type: EventPut, KV: se.KV.keyValue()}
	if se.Type == "delete" {
		ev.Type = EventDelete
	}
	if se.PrevKV != nil {
		prev := se.PrevKV.keyValue()
		ev.PrevKV = &prev
	}
	return ev, nil
}

// escapeKey makes key the last segment of a path that the replica
// percent-decodes back into key: slashes and the rest escaped, and the dots
// of a key that is exactly "." or "..", which would otherwise be a path
// step.
func escapeKey(key string) string {
	if key == "." || key == ".." {
		return strings.ReplaceAll(key, ".", "%2E")
	}
	return url.PathEscape(key)
}

// streamRefusal turns an answer other than a stream into an error: 410 is
// ErrCompacted, 400 ErrInvalid, another 4xx (but 408 and 429) a
// refusedError, anything else worth trying elsewhere.
func streamRefusal(resp *http.Response, after uint64) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var terr struct {
		Code string `json:"code"`
		Msg  string `json:"msg"`
	}
	_ = json.Unmarshal(body, &terr)
	switch resp.StatusCode {
	case http.StatusGone:
		return fmt.Errorf("%w: events after revision %d are gone (%s)", ErrCompacted, after, terr.Msg)
	case http.StatusBadRequest:
		return fmt.Errorf("%w: %s", kvclient.ErrInvalid, terr.Msg)
	case http.StatusRequestTimeout, http.StatusTooManyRequests:
	case http.StatusUnauthorized, http.StatusForbidden:
		return refusedError{fmt.Errorf("%w: watch stream refused: %s %s", ErrRejected, resp.Status, terr.Msg)}
	default:
		if resp.StatusCode >= 400 && resp.StatusCode < 500 {
			return refusedError{fmt.Errorf("durio client: watch stream refused: %s %s", resp.Status, terr.Msg)}
		}
	}
	return fmt.Errorf("durio client: watch stream: %s %s", resp.Status, terr.Msg)
}
