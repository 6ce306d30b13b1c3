//go:build !unix

package plugin

import "os"

// directPair returns no channel where Unix socket pairs are not available:
// Append then goes over gRPC.
func directPair() (endpoint, *os.File, error) { return nil, nil, nil }

// directFromEnv returns no channel (see directPair).
func directFromEnv() (endpoint, error) { return nil, nil }
