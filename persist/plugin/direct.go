package plugin

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/persistwire"
)

// The direct Append channel.
//
// Append is the call a replica makes once per Raft batch, on its critical
// path, so it does not go through gRPC. Profiles of the gRPC Append (see
// docs/benchmarks.md, "The store path") put the boundary's cost in the transport,
// not in the store: per call a caller → loopy-writer → socket → reader →
// handler-goroutine chain on each side (four goroutine hand-offs, each a
// futex wake-up), HTTP/2 HEADERS, DATA (in 16 KiB frames) and
// WINDOW_UPDATE frames written with separate syscalls, HPACK, a protobuf
// message per entry, and fresh receive buffers. On a 2-core machine that was
// 120–280 µs for an empty call and 1.4–1.6 ms for a 64 KiB batch.
//
// Instead the host creates a Unix socket pair when it starts the plugin and
// passes one end to the child as an inherited descriptor (named by
// EnvAppendFD). No path, no listener: nobody else can connect. The host's
// goroutine writes one request frame and reads the answer on the same
// socket, and the plugin serves the frames in one goroutine that calls the
// store directly; the plugin says it does so in OpenResponse.direct_append.
// Everything else (Open, Load, SaveSnapshot, Close, and Append for plugins
// that do not offer the channel) stays on gRPC.
//
// Frames, little-endian:
//
//	request:  u32 n | u8 op (1 = Append) | n-1 bytes of body
//	  Append body: u64 term | i64 voted_for | u64 commit | u32 count |
//	               count × (u64 index | u64 term | u8 type | u32 len | len bytes)
//	response: u32 n | u8 status (0 ok, 1 error) | u64 log_size_bytes |
//	          u64 size_sequence, if both sides agreed on it at Open |
//	          on error: u8 r | r bytes of reason (a persist sentinel's name
//	          as in errors.go, or empty) | the message (the rest)
//
// n counts the bytes after the length field. Both sides refuse frames
// larger than maxMessageBytes (the host: responses larger than
// maxResponseBytes) and bodies that do not parse exactly.

// EnvAppendFD is the environment variable that gives a plugin the
// descriptor number of its end of the direct Append channel.
const EnvAppendFD = "RUAFT_PERSISTER_APPEND_FD"

const (
	opAppend byte = 1

	statusOK    byte = 0
	statusError byte = 1

	hardStateWire   = 24 // term, voted_for, commit
	entryHeaderWire = 21 // index, term, type, len
	responseHeader  = 9  // status, log_size_bytes
	sequenceWire    = 8  // size_sequence, after log_size_bytes if agreed
)

// endpoint is one end of the direct channel. Both ends are non-blocking
// sockets read and written with raw system calls on Linux, waiting in the
// netpoller (pollEnd, direct_unix.go, on package rawconn). The host's end used to block in read(2), which
// measured cheaper back to back while the plugin's end blocked too; against
// the plugin's pollEnd it is not (an empty call, BenchmarkAppend
// store=noop/batch=0/mode=plugin, three runs each: 38-52 µs blocking, 24-30
// µs polling), and under load it cost more: the thread blocked for the whole
// store Append (an fsync, milliseconds), so Go's sysmon took its processor,
// handed it to another thread, and kept polling every 20 µs. With 3 replicas
// on 2 cores, one client: 405-413 → 452-461 puts/s, p50 2.17-2.26 → 2.03-2.09
// ms, 3,618-3,699 → 3,153-3,220 ms of server CPU per 1000 puts; 64 clients:
// 4-7% fewer context switches and sleeps per put.
type endpoint interface {
	io.ReadWriteCloser
	// interrupt makes a read or write blocked on the endpoint, and every
	// later one, fail at once (shutdown(2)); safe to call concurrently with
	// them and after Close.
	interrupt()
}

// errFrame marks a malformed frame; the side that reads one closes the
// channel.
var errFrame = errors.New("persist/plugin: malformed direct frame")

// appendFrame encodes an Append request into buf (reused) and returns it.
func appendFrame(buf []byte, hs persist.HardState, entries []persist.Entry) []byte {
	buf = append(buf[:0], 0, 0, 0, 0, opAppend)
	buf = binary.LittleEndian.AppendUint64(buf, hs.Term)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(int64(hs.VotedFor)))
	buf = binary.LittleEndian.AppendUint64(buf, hs.Commit)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(entries)))
	for _, e := range entries {
		buf = binary.LittleEndian.AppendUint64(buf, e.Index)
		buf = binary.LittleEndian.AppendUint64(buf, e.Term)
		buf = append(buf, byte(e.Type))
		buf = binary.LittleEndian.AppendUint32(buf, uint32(len(e.Data)))
		buf = append(buf, e.Data...)
	}
	binary.LittleEndian.PutUint32(buf, uint32(len(buf)-4))
	return buf
}

// appendFrameSize is the encoded size of an Append request, length field
// included.
func appendFrameSize(entries []persist.Entry) int {
	n := 4 + 1 + hardStateWire + 4
	for _, e := range entries {
		n += entryHeaderWire + len(e.Data)
	}
	return n
}

// parseAppend decodes an Append body (after the op byte) and checks its
// hard state and entries with persistwire, as the Append RPC does. The entries'
// Data alias body, and es is reused: both are valid until the next frame,
// which is enough because a store copies what it is given.
func parseAppend(body []byte, es []persist.Entry) (persist.HardState, []persist.Entry, error) {
	if len(body) < hardStateWire+4 {
		return persist.HardState{}, nil, fmt.Errorf("%w: Append body of %d bytes", errFrame, len(body))
	}
	voted := int64(binary.LittleEndian.Uint64(body[8:]))
	if voted < math.MinInt32 || voted > math.MaxInt32 {
		return persist.HardState{}, nil, fmt.Errorf("%w: voted_for %d", errFrame, voted)
	}
	hs := persist.HardState{Term: binary.LittleEndian.Uint64(body), VotedFor: int(voted),
		Commit: binary.LittleEndian.Uint64(body[16:])}
	if err := persistwire.CheckHardState(hs); err != nil {
		return persist.HardState{}, nil, fmt.Errorf("%w: %w", errFrame, err)
	}
	count := binary.LittleEndian.Uint32(body[24:])
	rest := body[hardStateWire+4:]
	// Each entry takes at least its header: refuse a count the body cannot
	// hold before allocating for it.
	if uint64(count)*entryHeaderWire > uint64(len(rest)) {
		return persist.HardState{}, nil, fmt.Errorf("%w: %d entries in %d bytes", errFrame, count, len(rest))
	}
	es = es[:0]
	for range count {
		if len(rest) < entryHeaderWire {
			return persist.HardState{}, nil, fmt.Errorf("%w: entry header cut short", errFrame)
		}
		n := binary.LittleEndian.Uint32(rest[17:])
		if uint64(n) > uint64(len(rest)-entryHeaderWire) {
			return persist.HardState{}, nil, fmt.Errorf("%w: entry of %d bytes with %d left", errFrame, n, len(rest)-entryHeaderWire)
		}
		end := entryHeaderWire + int(n)
		e := persist.Entry{
			Index: binary.LittleEndian.Uint64(rest),
			Term:  binary.LittleEndian.Uint64(rest[8:]),
			Type:  persist.EntryType(rest[16]),
			Data:  rest[entryHeaderWire:end:end],
		}
		if err := persistwire.CheckEntry(e); err != nil {
			return persist.HardState{}, nil, fmt.Errorf("%w: %w", errFrame, err)
		}
		es = append(es, e)
		rest = rest[end:]
	}
	if len(rest) != 0 {
		return persist.HardState{}, nil, fmt.Errorf("%w: %d bytes after the last entry", errFrame, len(rest))
	}
	return hs, es, nil
}

// readFrame reads one length-prefixed frame into buf (reused) and returns
// its content (after the length field).
func readFrame(r io.Reader, buf []byte) ([]byte, error) {
	return readFrameMax(r, buf, maxMessageBytes)
}

// maxResponseBytes bounds a response frame (after its length field): the
// header, the number, a reason of at most 255 bytes and a message cut to
// 64 KiB (responseFrame). The host refuses a longer one before it
// allocates for it.
const maxResponseBytes = responseHeader + sequenceWire + 1 + 255 + 64<<10

// readFrameMax is readFrame for frames of at most limit bytes.
func readFrameMax(r io.Reader, buf []byte, limit uint32) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return buf, err
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	if n == 0 || n > limit {
		return buf, fmt.Errorf("%w: frame of %d bytes", errFrame, n)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return buf, err
	}
	return buf, nil
}

// reasonOf names the persist sentinel err matches, or "".
func reasonOf(err error) string {
	for reason, s := range sentinels {
		if errors.Is(err, s) {
			return reason
		}
	}
	return ""
}

// responseFrame encodes a response into buf (reused); sequenced says
// whether it carries the figure's number.
func responseFrame(buf []byte, fig figure, sequenced bool, err error) []byte {
	buf = append(buf[:0], 0, 0, 0, 0, statusOK)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(fig.size))
	if sequenced {
		buf = binary.LittleEndian.AppendUint64(buf, fig.seq)
	}
	if err != nil {
		buf[4] = statusError
		reason := reasonOf(err)
		buf = append(buf, byte(len(reason)))
		buf = append(buf, reason...)
		msg := err.Error()
		if len(msg) > 64<<10 {
			msg = msg[:64<<10]
		}
		buf = append(buf, msg...)
	}
	binary.LittleEndian.PutUint32(buf, uint32(len(buf)-4))
	return buf
}

// parseResponse decodes a response, numbered if sequenced; err is the
// store's error, carried over the channel, and bad reports a frame that
// does not parse.
func parseResponse(b []byte, sequenced bool) (fig figure, err error, bad error) {
	header := responseHeader
	if sequenced {
		header += sequenceWire
	}
	if len(b) < header {
		return figure{}, nil, fmt.Errorf("%w: response of %d bytes", errFrame, len(b))
	}
	fig.size = int64(binary.LittleEndian.Uint64(b[1:]))
	if sequenced {
		fig.seq = binary.LittleEndian.Uint64(b[responseHeader:])
	}
	switch b[0] {
	case statusOK:
		if len(b) != header {
			return figure{}, nil, fmt.Errorf("%w: ok response of %d bytes", errFrame, len(b))
		}
		return fig, nil, nil
	case statusError:
		rest := b[header:]
		if len(rest) < 1 || int(rest[0]) > len(rest)-1 {
			return figure{}, nil, fmt.Errorf("%w: error response cut short", errFrame)
		}
		reason, msg := string(rest[1:1+rest[0]]), string(rest[1+rest[0]:])
		if s, ok := sentinels[reason]; ok {
			return fig, &remoteError{msg: msg, sentinel: s}, nil
		}
		return fig, fmt.Errorf("persist/plugin: append: %s", msg), nil
	default:
		return figure{}, nil, fmt.Errorf("%w: response status %d", errFrame, b[0])
	}
}

// directClient is the host's end of the direct Append channel.
type directClient struct {
	// mu serializes calls (the Store contract has none concurrent, but a
	// frame must never interleave with another) and guards the fields
	// below. It is held across the round trip to the plugin: the channel
	// carries one call at a time by design.
	mu     sync.Mutex
	conn   endpoint
	r      *bufio.Reader
	buf    []byte // reused request buffer
	resp   []byte // reused response buffer
	broken error  // why the channel can no longer be used, or nil
	// sequenced: the plugin's answers carry their figure's number.
	sequenced bool
}

func newDirectClient(conn endpoint, sequenced bool) *directClient {
	return &directClient{conn: conn, r: bufio.NewReaderSize(conn, 4<<10), sequenced: sequenced}
}

// append sends one Append and returns the plugin's size figure after it;
// answered says whether the plugin answered (with a figure), whether or not
// its store failed.
func (d *directClient) append(ctx context.Context, hs persist.HardState, entries []persist.Entry) (fig figure, answered bool, err error) {
	if n := appendFrameSize(entries); n-4 > maxMessageBytes {
		// Nothing was sent: the store is untouched.
		return figure{}, false, fmt.Errorf("persist/plugin: append: a batch of %d bytes is above the %d-byte limit", n, maxMessageBytes)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.broken != nil {
		return figure{}, false, fmt.Errorf("persist/plugin: append: %w: %w", persist.ErrUnavailable, d.broken)
	}
	// A cancelled ctx interrupts the round trip by shutting the socket
	// down; the channel is then out of step and is not used again.
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, d.conn.interrupt)
		defer stop()
	}
	d.buf = appendFrame(d.buf, hs, entries)
	_, err = d.conn.Write(d.buf)
	if cap(d.buf) > 1<<20 {
		d.buf = nil // don't pin a large batch's buffer
	}
	if err == nil {
		d.resp, err = readFrameMax(d.r, d.resp, maxResponseBytes)
	}
	if err == nil {
		fig, storeErr, bad := parseResponse(d.resp, d.sequenced)
		if bad == nil {
			return fig, true, storeErr
		}
		err = bad
	}
	d.broken = err
	if ctxErr := ctx.Err(); ctxErr != nil {
		return figure{}, false, fmt.Errorf("persist/plugin: append: %w: %w", persist.ErrUnavailable, ctxErr)
	}
	return figure{}, false, fmt.Errorf("persist/plugin: append: %w: direct channel: %w", persist.ErrUnavailable, err)
}

// close closes the host's end; the plugin's serving goroutine sees EOF.
func (d *directClient) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.broken == nil {
		d.broken = errors.New("closed")
	}
	return d.conn.Close()
}

// directServer is the plugin's end of the channel: it serves Append frames
// on conn, one at a time, against the server's store.
type directServer struct {
	conn endpoint
	srv  *server
	// sequenced: the host asked for numbered figures (OpenRequest).
	sequenced bool
	done      chan struct{} // closed when the serving goroutine has returned
}

// serveDirect starts serving the channel; s.store() must succeed for the
// calls to reach a store. stop ends it.
func serveDirect(conn endpoint, srv *server, sequenced bool) *directServer {
	d := &directServer{conn: conn, srv: srv, sequenced: sequenced, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		d.loop()
		// Whatever ended the loop, the channel is out of step or gone:
		// closing it tells the host at once (EOF) instead of leaving it
		// waiting for an answer.
		_ = d.conn.Close()
	}()
	return d
}

func (d *directServer) loop() {
	r := bufio.NewReaderSize(d.conn, 64<<10)
	var (
		body, out []byte
		es        []persist.Entry
	)
	for {
		var err error
		body, err = readFrame(r, body)
		if err != nil {
			// EOF: the host closed its end or died. Anything else is a
			// broken host; either way, the channel is done.
			return
		}
		var fig figure
		var callErr error
		switch body[0] {
		case opAppend:
			var hs persist.HardState
			hs, es, callErr = parseAppend(body[1:], es)
			if callErr != nil {
				return // out of step with the host: drop the channel
			}
			fig, callErr = d.append(hs, es)
		default:
			return
		}
		out = responseFrame(out, fig, d.sequenced, callErr)
		if _, err := d.conn.Write(out); err != nil {
			return
		}
		clear(es) // drop references into body
		if cap(body) > 4<<20 {
			body = nil // don't pin a large batch's buffer
		}
	}
}

func (d *directServer) append(hs persist.HardState, es []persist.Entry) (figure, error) {
	st, err := d.srv.store()
	if err != nil {
		return figure{}, err
	}
	d.srv.writes.Add(1)
	err = st.Append(context.Background(), hs, es)
	return d.srv.figure(st), err
}

// stop closes the channel and waits for the serving goroutine.
func (d *directServer) stop() {
	d.conn.interrupt() // a blocked read holds the descriptor open
	_ = d.conn.Close()
	<-d.done
}
