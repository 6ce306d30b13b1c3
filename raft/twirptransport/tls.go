package twirptransport

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// ErrTLSConfig is wrapped by MutualTLS's errors.
var ErrTLSConfig = errors.New("twirptransport: TLS configuration")

// MutualTLS builds the two sides of mutual TLS between peers from PEM files:
// this node's certificate and key (presented both as a server and as a
// client, so it needs both the serverAuth and clientAuth extended key
// usages, as `durio certs` issues them) and the CA that signed every peer's
// certificate. The server side requires and verifies a client certificate
// signed by that CA; the client side trusts only that CA. Use a CA dedicated
// to the cluster: any certificate it signed is a peer. TLS 1.3 only.
func MutualTLS(certFile, keyFile, caFile string) (server, client *tls.Config, err error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrTLSConfig, err)
	}
	pemCA, err := os.ReadFile(caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrTLSConfig, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCA) {
		return nil, nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrTLSConfig, caFile)
	}
	server = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	client = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
	}
	return server, client, nil
}

func constantTimeEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
