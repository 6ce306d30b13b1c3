package durio

import (
	"errors"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/twitchtv/twirp"

	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// A watch may also be a stream of server-sent events (the HTML standard's
// text/event-stream, what a browser's EventSource reads): one request that
// the replica answers with every matching change as it is applied, for as
// long as the client stays, instead of one long poll per batch of changes.
//
//	GET /kvstore/watch/{key...}?prefix=&index=&limit=&prev_kv=&wait=   Accept: text/event-stream (or ?stream=true)
//
//	retry: 1000
//	id: 7
//
//	id: 8
//	data: {"type":"put","kv":{"key":"k","value":"v","create_revision":3,"mod_revision":8,"version":2}}
//
//	id: 9
//	data: {"type":"delete","kv":{"key":"k","value":"","create_revision":0,"mod_revision":9,"version":0}}
//
//	id: 40
//
//	event: compacted
//	data: {"code":"out_of_range","meta":{"compact_revision":"50","reason":"compacted"},"msg":"..."}
//
// The first message names the revision the stream starts after (index, or
// the replica's revision without it). Each change is a message whose id is
// its revision and whose data is the change as the long poll's "events"
// show it. A message with only an id (sent when nothing matched for a
// heartbeat interval, min(15 s, --max-watch-wait, the request's wait but at
// least 1 s)) moves the resume point on and keeps proxies from closing an
// idle stream. When the client
// reconnects (EventSource does so by itself, after the retry interval) it
// sends the last id it received as Last-Event-ID, and the stream resumes
// after it, on this replica or on any other: no change is lost or repeated.
//
// The clients send stream=true with the Accept header (a proxy may drop the
// header) and a wait of 10 s: a replica from before streams ignores both
// and answers a long poll within that wait, which tells the client to go on
// with long polls.
//
// Errors found before the stream starts (bad parameters, compacted history,
// too many watchers) are ordinary answers with their HTTP status. A stream
// admitted while the replica is full of waiting watchers (a stream holds a
// watcher's place only while it waits) keeps trying every second instead
// of ending. A stream whose history has been compacted away meanwhile ends
// with a "compacted" event (the body of the long poll's 410); a reconnect
// then gets the 410 itself, which ends an EventSource for good. A stream
// ends when the client leaves, when it does not read what is sent to it
// within the request timeout (a stalled reader does not hold the replica's
// memory), or when the replica shuts down. Between messages it has no
// write deadline (over HTTP/2 one would reset an idle stream).

// streamHeartbeat is the longest a stream stays silent.
const streamHeartbeat = 15 * time.Second

// streamRetryMs is the reconnection delay a stream asks its client for.
const streamRetryMs = 1000

// eventStreamType is the media type of a stream of server-sent events.
const eventStreamType = "text/event-stream"

// eventStreamHeader is the Content-Type of a stream, one shared slice as for
// jsonContentType.
var eventStreamHeader = []string{eventStreamType}

// wantsStream reports whether a watch asks for a stream: ?stream=true, or
// an Accept header naming text/event-stream (what EventSource sends). A
// stream=false overrides the header.
func wantsStream(r *http.Request, p *queryParams) bool {
	if p.has("stream") {
		return p.bool("stream")
	}
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			t, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err == nil && t == eventStreamType {
				q, err := strconv.ParseFloat(params["q"], 64)
				return err != nil || q > 0 // q=0 means "not this"
			}
		}
	}
	return false
}

// compactedError is the answer to a watch of history the replica no longer
// keeps.
func compactedError(after, compactRev uint64) twirp.Error {
	return twirp.NewError(twirp.OutOfRange, "events after revision "+strconv.FormatUint(after, 10)+
		" were compacted away; read the current state and watch from its revision").
		WithMeta("reason", "compacted").WithMeta("compact_revision", strconv.FormatUint(compactRev, 10))
}

// watchStream serves a watch as a stream of server-sent events (see the
// top of this file). req holds the watch's key, prefix, limit, prev_kv and
// index.
func (h restHandler) watchStream(w http.ResponseWriter, r *http.Request, p *queryParams, req *kvv1.WatchRequest) {
	// wait, for a stream, is the longest silence the client wants: a
	// heartbeat at least that often (not under a second). A client sends it
	// so that a replica from before streams, which answers a long poll,
	// answers within it.
	heartbeat := min(streamHeartbeat, h.polls.maxWait)
	if p.has("wait") {
		heartbeat = min(heartbeat, max(p.wait("wait", 0), time.Second))
	}
	resume, resuming := uint64(0), false
	if ids := r.Header.Values("Last-Event-ID"); len(ids) > 0 {
		n, err := strconv.ParseUint(strings.TrimSpace(ids[0]), 10, 64)
		if err != nil || len(ids) > 1 {
			p.fail("Last-Event-ID", "must be one revision: the id of the last event received")
		}
		resume, resuming = n, true
	}
	if p.err != nil {
		writeError(w, p.err)
		return
	}
	ctx, cancel := h.polls.begin(w, r, 0)
	defer cancel()
	switch {
	case resuming:
		// A reconnect repeats the first request's index; the id is newer.
		req.AfterRevision = max(req.AfterRevision, resume)
	case !p.has("index"):
		st, err := h.svc.Status(ctx, &kvv1.StatusRequest{})
		if err != nil {
			writeError(w, err)
			return
		}
		req.AfterRevision = st.GetRevision()
	}
	// The first look does not wait: what it finds (compacted history, too
	// many watchers) is still an ordinary answer with its status.
	req.WaitMs = 0
	resp, err := h.svc.Watch(ctx, req)
	if err == nil && resp.GetCompacted() {
		err = compactedError(req.GetAfterRevision(), resp.GetCompactRevision())
	}
	if err != nil {
		if ctx.Err() == nil {
			writeError(w, err)
		}
		return
	}
	if n := h.polls.streams; n != nil {
		n.Add(1)
		defer n.Add(-1)
	}
	s := eventStream{w: w, rc: http.NewResponseController(w), timeout: h.polls.slack, lastID: req.GetAfterRevision()}
	hdr := w.Header()
	hdr["Content-Type"] = eventStreamHeader
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no") // nginx: pass each message on at once
	setRevision(w, resp.GetHeader().GetRevision())
	w.WriteHeader(http.StatusOK)
	// The first message names where the stream starts, so that a client
	// that loses the connection before any change resumes from there.
	s.buf = append(s.buf, "retry: "...)
	s.buf = strconv.AppendInt(s.buf, streamRetryMs, 10)
	s.buf = append(s.buf, "\nid: "...)
	s.buf = strconv.AppendUint(s.buf, s.lastID, 10)
	s.buf = append(s.buf, "\n\n"...)
	heartbeatMs := max(uint64(heartbeat/time.Millisecond), 1)
	for {
		if !stillAuthorized(ctx) {
			// Its token was revoked (Replica.ReloadClientAuth): end the
			// stream; the client's reconnect meets the 401.
			return
		}
		req.AfterRevision = max(req.GetAfterRevision(), resp.GetNextAfterRevision())
		s.events(resp.GetEvents())
		if len(resp.GetEvents()) == 0 && req.GetWaitMs() > 0 {
			// A heartbeat: nothing matched up to the replica's revision.
			s.progress(req.GetAfterRevision())
		}
		if !s.flush() {
			return
		}
		req.WaitMs = heartbeatMs
		resp, err = h.svc.Watch(ctx, req)
		var terr twirp.Error
		switch {
		case ctx.Err() != nil:
			return // the client left, or the replica is shutting down
		case errors.As(err, &terr) && terr.Code() == twirp.ResourceExhausted:
			// Too many watchers wait at this moment (a stream holds a
			// watcher's place only while it waits): this stream was
			// admitted, so it keeps its connection and tries again, rather
			// than end and meet a 429 that would close an EventSource for
			// good.
			t := time.NewTimer(time.Duration(streamRetryMs) * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			resp = &kvv1.WatchResponse{NextAfterRevision: req.GetAfterRevision()}
			continue
		case err != nil:
			// The client reconnects (after the retry interval, perhaps
			// elsewhere) from its last id.
			return
		case resp.GetCompacted():
			// A reader slower than the history's turnover (or a follower
			// that installed a snapshot): say why, then end.
			s.buf = append(s.buf, "event: compacted\ndata: "...)
			s.buf = appendErrorJSON(s.buf, compactedError(req.GetAfterRevision(), resp.GetCompactRevision()))
			s.buf = append(s.buf, '\n')
			s.flush()
			return
		}
	}
}

// eventStream writes the messages of one stream.
type eventStream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     []byte
	// lastID is the resume point the client holds: the last id sent, or the
	// revision the stream started after.
	lastID uint64
	// err is the first write's failure: the stream is over.
	err error
	// sending is set from the first write of a batch of messages to its
	// flush: the batch has one deadline, however many pieces it is
	// written in.
	sending bool
}

// Write sends p within the timeout: events sends a large value's message
// through it in pieces as it appends it (see appendJSONStringTo), flush
// sends the rest.
func (s *eventStream) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if !s.sending {
		// An error means the writer cannot move its deadline (a test's
		// recorder); the write then has the server's own.
		_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
		s.sending = true
	}
	_, s.err = s.w.Write(p)
	return len(p), s.err
}

// events appends a message per event.
func (s *eventStream) events(evs []*kvv1.Event) {
	for _, ev := range evs {
		kv := toRESTKV(ev.GetKv())
		if kv == nil {
			kv = &restKV{}
		}
		typ := `{"type":"put","kv":`
		if ev.GetType() == kvv1.EventType_EVENT_TYPE_DELETE {
			typ = `{"type":"delete","kv":`
		}
		s.buf = append(s.buf, "id: "...)
		s.buf = strconv.AppendUint(s.buf, kv.ModRevision, 10)
		s.buf = append(s.buf, "\ndata: "...)
		s.buf = append(s.buf, typ...)
		s.buf = kv.appendJSON(s, s.buf)
		if prev := toRESTKV(ev.GetPrevKv()); prev != nil {
			s.buf = append(s.buf, `,"prev_kv":`...)
			s.buf = prev.appendJSON(s, s.buf)
		}
		s.buf = flushJSON(s, append(s.buf, "}\n\n"...))
		s.lastID = max(s.lastID, kv.ModRevision)
	}
}

// progress appends a message with only an id when rev moves the client's
// resume point on, and a comment otherwise: either keeps the connection
// from looking idle.
func (s *eventStream) progress(rev uint64) {
	if rev > s.lastID {
		s.buf = append(s.buf, "id: "...)
		s.buf = strconv.AppendUint(s.buf, rev, 10)
		s.buf = append(s.buf, "\n\n"...)
		s.lastID = rev
		return
	}
	s.buf = append(s.buf, ":\n\n"...)
}

// flush sends what was appended, reporting whether the client took it
// within the timeout.
func (s *eventStream) flush() bool {
	if len(s.buf) == 0 && !s.sending {
		return s.err == nil
	}
	_, err := s.Write(s.buf)
	if err == nil {
		err = s.rc.Flush()
	}
	if err == nil {
		// No deadline while the stream waits for the next change: over
		// HTTP/2 a deadline resets the stream when it passes, written to
		// or not.
		err = s.rc.SetWriteDeadline(time.Time{})
		s.sending = false
		if errors.Is(err, http.ErrNotSupported) {
			err = nil
		}
	}
	s.buf = s.buf[:0]
	if cap(s.buf) > maxPooledJSON {
		s.buf = nil // a batch of large changes: do not keep its buffer
	}
	return err == nil
}
