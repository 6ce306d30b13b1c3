package twirptransport

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twitchtv/twirp"
	"google.golang.org/protobuf/proto"
)

// The peer stream: one long-lived connection per pair of peers that carries
// many calls at once as length-prefixed frames, instead of one HTTP/1.1
// exchange per call. The connection starts as an ordinary HTTP request to
// StreamPath on the peer listener, so it passes the same authentication
// (bearer token, mutual TLS) and limits as every other peer request; the
// server answers 101 Switching Protocols and from then on both sides speak
// frames:
//
//	frame    = length:uint32 body            (big endian; length = len(body))
//	request  = 0x01 id:uint64 timeout_ms:uint32 method_len:uint8 method payload
//	response = 0x02 id:uint64 payload        (payload: protobuf reply)
//	error    = 0x03 id:uint64 json           ({"code","msg","meta"}: a Twirp error)
//
// payload is the protobuf encoding of the method's request or reply message
// (the same messages as the Twirp routes: raft.v1, kv.v1). timeout_ms is
// what remains of the caller's deadline when it sent the call (0: none); the
// server runs the handler under it. Ids are chosen by the client, unique per
// connection; replies come in any order. A frame type this version does not
// know closes the connection: new frame types come with a new StreamProtocol.

const (
	// StreamPath is the URL path of the peer stream's upgrade request
	// (GET, with "Upgrade: ruaft-peer-stream/1"); mount a StreamServer there.
	StreamPath = "/ruaft.peerstream.v1/connect"
	// StreamProtocol is the Upgrade token of this version of the stream.
	StreamProtocol = "ruaft-peer-stream/1"

	frameRequest  byte = 1
	frameResponse byte = 2
	frameError    byte = 3

	// frameFixed is a request body without method and payload:
	// type, id, timeout_ms, method_len.
	frameFixed = 1 + 8 + 4 + 1
	// frameSlack is what a frame may hold beyond its payload limit.
	frameSlack = frameFixed + 255
)

// Errors of the peer stream. Every error a call gets from the stream's side
// (not from the peer's handler) wraps ErrStream, is not a twirp.Error, and
// so reads as "no answer" to callers that tell the two apart.
var (
	ErrStream = errors.New("twirptransport: peer stream")
	// ErrStreamClosed is wrapped by the error of a call whose connection
	// broke (or was closed) before its reply arrived.
	ErrStreamClosed = fmt.Errorf("%w: connection closed", ErrStream)
	// ErrNoStream means the peer refused the upgrade (an older version,
	// or a listener without the stream): use the per-request Twirp path.
	ErrNoStream = fmt.Errorf("%w: peer does not offer the stream", ErrStream)
	// ErrFrameTooLarge closes a connection that sent a frame over the
	// limit, and fails a call whose request would be one.
	ErrFrameTooLarge = fmt.Errorf("%w: frame over the size limit", ErrStream)
	// ErrBadFrame closes a connection that sent a frame that does not
	// parse.
	ErrBadFrame = fmt.Errorf("%w: malformed frame", ErrStream)
	// ErrTooManyCalls fails a call when its connection already has the
	// most calls in flight allowed.
	ErrTooManyCalls = fmt.Errorf("%w: too many calls in flight", ErrStream)
)

// bufPool recycles frame buffers up to 64 KiB: most frames (heartbeats,
// replies, small batches) are much smaller.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

const maxPooledBuf = 64 << 10

// boxPool holds the empty *[]byte that carry buffers in bufPool: putting
// a buffer in a box of its own would allocate the box every time.
var boxPool = sync.Pool{New: func() any { return new([]byte) }}

func getBuf() []byte {
	box := bufPool.Get().(*[]byte)
	b := (*box)[:0]
	*box = nil
	boxPool.Put(box)
	return b
}

// getBufLen returns a buffer of length n, from the pool when it fits.
func getBufLen(n int) []byte {
	if n > maxPooledBuf {
		return make([]byte, n)
	}
	b := getBuf()
	if cap(b) < n {
		putBuf(b)
		return make([]byte, n)
	}
	return b[:n]
}

func putBuf(b []byte) {
	if cap(b) <= maxPooledBuf {
		box := boxPool.Get().(*[]byte)
		*box = b[:0]
		bufPool.Put(box)
	}
}

// appendRequest appends a request frame (id left 0, see setFrameID).
func appendRequest(b []byte, method string, timeoutMs uint32, msg proto.Message) ([]byte, error) {
	b = append(b, 0, 0, 0, 0, frameRequest, 0, 0, 0, 0, 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, timeoutMs)
	b = append(b, byte(len(method)))
	b = append(b, method...)
	return finishFrame(proto.MarshalOptions{}.MarshalAppend(b, msg))
}

// appendResponse appends a response frame for call id.
func appendResponse(b []byte, id uint64, msg proto.Message) ([]byte, error) {
	b = append(b, 0, 0, 0, 0, frameResponse)
	b = binary.BigEndian.AppendUint64(b, id)
	return finishFrame(proto.MarshalOptions{}.MarshalAppend(b, msg))
}

// wireError is a Twirp error as an error frame carries it.
type wireError struct {
	Code string            `json:"code"`
	Msg  string            `json:"msg"`
	Meta map[string]string `json:"meta,omitempty"`
}

// appendError appends an error frame for call id. A handler error that is
// not a twirp.Error becomes an internal one, as a Twirp server does.
func appendError(b []byte, id uint64, err error) []byte {
	var terr twirp.Error
	if !errors.As(err, &terr) {
		terr = twirp.InternalErrorWith(err)
	}
	b = append(b, 0, 0, 0, 0, frameError)
	b = binary.BigEndian.AppendUint64(b, id)
	body, _ := json.Marshal(wireError{Code: string(terr.Code()), Msg: terr.Msg(), Meta: terr.MetaMap()})
	b, _ = finishFrame(append(b, body...), nil)
	return b
}

// decodeError turns an error frame's body back into the twirp.Error the
// peer's handler returned.
func decodeError(body []byte) error {
	var w wireError
	if err := json.Unmarshal(body, &w); err != nil || !twirp.IsValidErrorCode(twirp.ErrorCode(w.Code)) {
		return twirp.NewError(twirp.Internal, "peer stream: unreadable error reply")
	}
	terr := twirp.NewError(twirp.ErrorCode(w.Code), w.Msg)
	for k, v := range w.Meta {
		terr = terr.WithMeta(k, v)
	}
	return terr
}

func finishFrame(b []byte, err error) ([]byte, error) {
	if err != nil {
		return b, err
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b, nil
}

func setFrameID(b []byte, id uint64) { binary.BigEndian.PutUint64(b[5:], id) }

// readFrame reads one frame: its type, call id and the rest of its body (a
// buffer the caller owns, and gives back with putBuf once nothing refers
// to it: a reply or request is decoded, with its bytes copied, and then
// the buffer serves the next frame). A frame whose body is longer than max
// is refused before it is read.
func readFrame(r *bufio.Reader, max int) (typ byte, id uint64, rest []byte, err error) {
	hdr, err := peekFull(r, 0, 4)
	if err != nil {
		return 0, 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr)
	if n < 9 {
		return 0, 0, nil, fmt.Errorf("%w: length %d", ErrBadFrame, n)
	}
	if uint64(n) > uint64(max) {
		return 0, 0, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	if hdr, err = peekFull(r, 4, 13); err != nil {
		return 0, 0, nil, err
	}
	typ, id = hdr[4], binary.BigEndian.Uint64(hdr[5:])
	_, _ = r.Discard(13) // buffered: cannot fail
	rest = getBufLen(int(n - 9))
	if _, err = io.ReadFull(r, rest); err != nil {
		return 0, 0, nil, err
	}
	return typ, id, rest, nil
}

// peekFull returns the next n bytes of r without consuming them: a frame
// header read with io.ReadFull into an array escaped to the heap, one
// allocation per frame. The slice is r's buffer, valid until r's next
// read; n is at most r's size. from is how many of the n bytes an earlier
// call returned: a stream that ends with none past them is io.EOF, with
// some io.ErrUnexpectedEOF, as io.ReadFull reports for bytes [from, n).
func peekFull(r *bufio.Reader, from, n int) ([]byte, error) {
	b, err := r.Peek(n)
	if err == io.EOF && len(b) > from {
		err = io.ErrUnexpectedEOF // as io.ReadFull has it
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

// parseRequest splits a request frame's rest into its parts, which alias
// rest (the method is looked up without a copy).
func parseRequest(rest []byte) (timeoutMs uint32, method, payload []byte, err error) {
	if len(rest) < frameFixed-9 {
		return 0, nil, nil, fmt.Errorf("%w: short request", ErrBadFrame)
	}
	timeoutMs = binary.BigEndian.Uint32(rest)
	ml := int(rest[4])
	if ml == 0 || len(rest) < 5+ml {
		return 0, nil, nil, fmt.Errorf("%w: bad method length", ErrBadFrame)
	}
	return timeoutMs, rest[5 : 5+ml], rest[5+ml:], nil
}

// link is one established stream connection, either side: a net.Conn, a
// reader over it, and the queue of frames its writer goroutine sends.
type link struct {
	conn net.Conn
	br   *bufio.Reader
	wake chan struct{} // capacity 1: frames were queued
	done chan struct{} // closed by fail

	writeTimeout time.Duration
	// maxQueued (server side) bounds the frames waiting for the writer:
	// a call's slot is freed when its reply is queued, so a client that
	// sends and never reads would otherwise grow the queue without end.
	maxQueued int

	mu sync.Mutex // guards out, closed, err, pending, nextID
	// out holds encoded frames not yet handed to the writer.
	out    [][]byte
	closed bool
	err    error // why the link closed
	// pending (client side only) maps each call in flight to the channel
	// its reply goes to (capacity 1, so the reader never blocks).
	pending map[uint64]chan reply
	nextID  uint64

	lastRead atomic.Int64 // monoNanos when bytes last came in from the peer (client side, see handshakeReader)
	lastUse  atomic.Int64 // monoNanos of the last call sent (client side)
}

// reply is what a caller waiting on a call receives.
type reply struct {
	typ  byte
	body []byte
	err  error // the link broke
}

// clockBase anchors the links' timestamps, which are kept as nanoseconds since
// it on the monotonic clock (monoNanos): a step of the wall clock (NTP, a Pi's
// first time sync after boot) must not make a quiet peer look silent, and
// close its connection as stuck, or a connection in use look idle.
var clockBase = time.Now()

// monoNanos returns t as nanoseconds since clockBase, from the monotonic
// readings of both (t must come from time.Now).
func monoNanos(t time.Time) int64 { return int64(t.Sub(clockBase)) }

func newLink(conn net.Conn, br *bufio.Reader, writeTimeout time.Duration) *link {
	l := &link{conn: conn, br: br, wake: make(chan struct{}, 1), done: make(chan struct{}),
		writeTimeout: writeTimeout, pending: map[uint64]chan reply{}}
	now := monoNanos(time.Now())
	l.lastRead.Store(now)
	l.lastUse.Store(now)
	return l
}

// send queues frame b for the writer, which owns it from then on.
func (l *link) send(b []byte) error {
	l.mu.Lock()
	if l.closed {
		err := l.err
		l.mu.Unlock()
		putBuf(b)
		return err
	}
	if l.maxQueued > 0 && len(l.out) >= l.maxQueued {
		l.mu.Unlock()
		putBuf(b)
		err := fmt.Errorf("%w: %d replies queued: the peer does not read", ErrStreamClosed, l.maxQueued)
		l.fail(err)
		return err
	}
	l.out = append(l.out, b)
	l.mu.Unlock()
	l.poke()
	return nil
}

// dropRequestLocked removes call id's request frame from the out-queue if
// the writer has not taken it yet (its caller gave up: a peer that does
// not read must not make the queue keep the frames of abandoned calls).
// Frames are matched by id, not by buffer: a written frame's buffer is
// recycled for other calls. l.mu is held.
func (l *link) dropRequestLocked(id uint64) {
	for i, b := range l.out {
		if len(b) >= 13 && b[4] == frameRequest && binary.BigEndian.Uint64(b[5:]) == id {
			l.out = append(l.out[:i], l.out[i+1:]...)
			putBuf(b)
			return
		}
	}
}

func (l *link) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// isClosed reports whether the link failed or was closed.
func (l *link) isClosed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// fail closes the link for err (the first error wins): the connection is
// closed, queued frames are dropped, and every call in flight gets err at
// once. It reports whether this call closed the link.
func (l *link) fail(err error) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	l.closed, l.err = true, err
	pending, out := l.pending, l.out
	l.pending, l.out = nil, nil
	l.mu.Unlock()
	close(l.done)
	_ = l.conn.Close()
	for _, ch := range pending {
		ch <- reply{err: err}
	}
	for _, b := range out {
		putBuf(b)
	}
	return true
}

// writeLoop sends queued frames, coalescing them in one buffer that is
// flushed when the queue is empty, until the link fails.
func (l *link) writeLoop() {
	bw := bufio.NewWriterSize(l.conn, 32<<10)
	var batch [][]byte
	for {
		select {
		case <-l.wake:
		case <-l.done:
			return
		}
		yielded := false
		for {
			l.mu.Lock()
			batch, l.out = l.out, batch[:0]
			l.mu.Unlock()
			if len(batch) == 0 {
				if yielded {
					break
				}
				// Let the goroutines that are about to queue a frame
				// (callers, handlers finishing) do so: one flush, one
				// write syscall, for all of them.
				yielded = true
				runtime.Gosched()
				continue
			}
			_ = l.conn.SetWriteDeadline(time.Now().Add(l.writeTimeout))
			for i, b := range batch {
				_, err := bw.Write(b)
				putBuf(b)
				batch[i] = nil
				if err != nil {
					l.fail(fmt.Errorf("%w: write: %w", ErrStreamClosed, err))
					return
				}
			}
		}
		if err := bw.Flush(); err != nil {
			l.fail(fmt.Errorf("%w: write: %w", ErrStreamClosed, err))
			return
		}
	}
}
