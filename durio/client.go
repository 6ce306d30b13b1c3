package durio

import (
	"github.com/ruaft/ruaft/durio/client"
)

// ErrNotFound is returned by Client.Get for a missing key.
var ErrNotFound = client.ErrNotFound

// Client is the Go client; it lives in package durio/client, which imports
// nothing of the server.
type Client = client.Client

// ClientOptions configure a Client.
type ClientOptions = client.Options

// NewClient returns a client for the given client URLs; see client.New.
func NewClient(endpoints []string, opts ClientOptions) (*Client, error) {
	return client.New(endpoints, opts)
}
