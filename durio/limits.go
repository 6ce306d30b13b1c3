package durio

import (
	"bytes"
	"errors"
	"io"
	"net/http"
)

// limitBody answers 413 with a Twirp error body when a request body is larger
// than max bytes, before next sees it. The body is read up front (bodies are
// small), so both a declared Content-Length and a chunked body that runs over
// are refused the same way.
func limitBody(max int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > max {
			writeError(w, errBodyTooLarge(max))
			return
		}
		body := r.Body
		if r.ContentLength < 0 {
			// Chunked: a MaxBytesReader stops it at the limit (and
			// closes the connection). A declared length, at most max
			// here, is all net/http lets a handler read; readBody still
			// refuses more than max.
			body = http.MaxBytesReader(w, body, max)
		}
		data, err := readBody(body, r.ContentLength, max)
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeError(w, errBodyTooLarge(max))
				return
			}
			writeError(w, errMalformedBody(err))
			return
		}
		rb := &readBodyCloser{data: data}
		rb.Reset(data)
		r.Body = rb
		r.ContentLength = int64(len(data))
		next.ServeHTTP(w, r)
	})
}

// readBody reads a whole body, into one buffer of the declared length when
// there is one of at most readBodyFirst bytes (io.ReadAll would start at
// 512 bytes and grow). A longer one grows as its bytes arrive: the body is
// read before the request takes an in-flight slot, so a client that
// declares a large body and sends it slowly, or never, must not hold
// the declared bytes of the replica's memory. A body longer than max is an
// *http.MaxBytesError.
func readBody(body io.Reader, declared, max int64) ([]byte, error) {
	if declared < 0 {
		return io.ReadAll(body)
	}
	// One byte more, so that a body longer than declared is read to its
	// end (and refused by the MaxBytesReader) rather than cut short.
	buf := make([]byte, 0, min(declared+1, readBodyFirst))
	for {
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		// Before looking at err: a reader may hand over its last bytes
		// together with io.EOF.
		if int64(len(buf)) > max {
			return nil, &http.MaxBytesError{Limit: max}
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // grow
		}
	}
}

// readBodyFirst is the most readBody allocates for a body before its bytes
// arrive.
const readBodyFirst = 64 << 10

// readBodyCloser is a body limitBody has read; handlers that need the
// bytes take them (bodyBytes) instead of reading a second copy.
type readBodyCloser struct {
	bytes.Reader
	data []byte
}

func (*readBodyCloser) Close() error { return nil }

// bodyBytes returns the request body: the bytes limitBody read, or all
// that is left of it.
func bodyBytes(r *http.Request) ([]byte, error) {
	if b, ok := r.Body.(*readBodyCloser); ok && b.Len() == len(b.data) {
		return b.data, nil
	}
	return io.ReadAll(r.Body)
}
