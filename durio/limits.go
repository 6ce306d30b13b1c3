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
		data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeError(w, errBodyTooLarge(max))
				return
			}
			writeError(w, errMalformedBody(err))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(data))
		r.ContentLength = int64(len(data))
		next.ServeHTTP(w, r)
	})
}
