package kvwire

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"

	"github.com/twitchtv/twirp"
)

// A request id names one client request in the logs of every replica it
// passes through: the replica that receives it takes the client's id (or
// makes one up) and a Forwarder sends it on to the leader, in
// RequestIDHeader for a call over KVService and in WriteOp.request_id for a
// write in a batch.

// RequestIDHeader is the HTTP header that carries a request's id.
const RequestIDHeader = "X-Request-Id"

// MaxRequestIDLen is the longest request id accepted, in bytes.
const MaxRequestIDLen = 128

// ValidRequestID reports whether id is 1 to MaxRequestIDLen characters of
// A-Z, a-z, 0-9 and "-_.:". An id from a client or a peer is used only if
// it is, so that nobody can put control characters, quotes or a flood of
// bytes into a replica's log.
func ValidRequestID(id string) bool {
	if id == "" || len(id) > MaxRequestIDLen {
		return false
	}
	for i := range len(id) {
		switch c := id[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

// NewRequestID returns a fresh request id: 24 random hex digits.
func NewRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// withRequestID returns ctx carrying id as the RequestIDHeader of the
// Twirp calls made under it (ctx itself if id is empty).
func withRequestID(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	tagged, err := twirp.WithHTTPRequestHeaders(ctx, http.Header{RequestIDHeader: {id}})
	if err != nil {
		// Only Twirp's own headers are refused, and this is none of them.
		panic("kvwire: " + err.Error())
	}
	return tagged
}
