package durio

import (
	"net/http"

	"github.com/ruaft/ruaft/raft/twirptransport"
)

// newPeerHTTPClient is a pooled keep-alive HTTP client for plain-http
// replicas (see twirptransport.NewHTTPClient).
func newPeerHTTPClient() *http.Client { return twirptransport.NewHTTPClient(nil) }
