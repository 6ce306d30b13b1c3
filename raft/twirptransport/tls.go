package twirptransport

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// ErrTLSConfig is wrapped by MutualTLS's errors.
var ErrTLSConfig = errors.New("twirptransport: TLS configuration")

// MutualTLS builds the two sides of mutual TLS between peers from PEM files:
// this node's certificate and key (presented both as a server and as a
// client, so it needs both the serverAuth and clientAuth extended key
// usages, as `durio certs` issues them) and the CA that signed every peer's
// certificate. The server side requires and verifies a client certificate
// signed by that CA; the client side trusts only that CA. Use a CA dedicated
// to the cluster: any certificate it signed is a peer. TLS 1.3 only. The
// certificate is given through GetCertificate and GetClientCertificate
// (see MutualTLSWith), not Certificates: serve the server side with
// tls.NewListener or http.Server.ServeTLS(ln, "", ""), not with a server
// that fills in Certificates of its own (httptest's StartTLS), which a
// handshake without a server name would present instead.
func MutualTLS(certFile, keyFile, caFile string) (server, client *tls.Config, err error) {
	kp, err := LoadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, err
	}
	return MutualTLSWith(kp, caFile)
}

// MutualTLSWith is MutualTLS presenting kp, so that kp.Reload changes the
// certificate that later handshakes present, on both sides, without new
// configs. The CA is read once.
func MutualTLSWith(kp *KeyPair, caFile string) (server, client *tls.Config, err error) {
	pemCA, err := os.ReadFile(caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrTLSConfig, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCA) {
		return nil, nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrTLSConfig, caFile)
	}
	// This node's certificate must be one the peers accept: from their CA
	// (not another's, after `durio certs` in a new folder, say), for both
	// sides. Checked now, and by every Reload.
	if err := signedBy(kp.cur.Load(), pool); err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrTLSConfig, kp.certFile, err)
	}
	kp.roots.Store(pool)
	server = &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: kp.GetCertificate,
		ClientCAs:      pool,
		ClientAuth:     tls.RequireAndVerifyClientCert,
	}
	client = &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: kp.GetClientCertificate,
		RootCAs:              pool,
	}
	return server, client, nil
}

// KeyPair is a certificate with its private key, read from PEM files, that
// can be read again while in use (Reload: a renewed certificate, without a
// restart). Connections already open keep the certificate they were made
// with.
type KeyPair struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
	// roots, once MutualTLSWith set it, is the CA every certificate a
	// Reload swaps in must chain to.
	roots atomic.Pointer[x509.CertPool]
}

// LoadKeyPair reads a certificate and its key.
func LoadKeyPair(certFile, keyFile string) (*KeyPair, error) {
	kp := &KeyPair{certFile: certFile, keyFile: keyFile}
	if err := kp.Reload(); err != nil {
		return nil, err
	}
	return kp, nil
}

// Reload reads the files again. If they do not hold a certificate and the
// private key that goes with it, the certificate has expired, or (once
// MutualTLSWith uses the pair) it is not signed by the peers' CA for both
// server and client use, it returns the error and the certificate in use
// stays.
func (k *KeyPair) Reload() error {
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return fmt.Errorf("%w: %s, %s: %v", ErrTLSConfig, k.certFile, k.keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrTLSConfig, k.certFile, err)
		}
	}
	if old := k.cur.Load(); old != nil && time.Now().After(cert.Leaf.NotAfter) {
		return fmt.Errorf("%w: %s expired on %s", ErrTLSConfig, k.certFile, cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if roots := k.roots.Load(); roots != nil {
		if err := signedBy(&cert, roots); err != nil {
			return fmt.Errorf("%w: %s (the CA is read only at start): %v", ErrTLSConfig, k.certFile, err)
		}
	}
	k.cur.Store(&cert)
	return nil
}

// signedBy reports why the peers, trusting roots, would refuse cert (with
// its Leaf set) as a server or as a client certificate; nil if they would
// not. Its dates are left out (the chain is checked at a moment the leaf is
// valid): Reload judges expiry itself, and a replica may start with an
// expired certificate.
func signedBy(cert *tls.Certificate, roots *x509.CertPool) error {
	leaf := cert.Leaf
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	at := time.Now()
	if at.Before(leaf.NotBefore) {
		at = leaf.NotBefore
	}
	if at.After(leaf.NotAfter) {
		at = leaf.NotAfter
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{usage}}
		if _, err := leaf.Verify(opts); err != nil {
			return fmt.Errorf("the peers would refuse it: %v", err)
		}
	}
	return nil
}

// Leaf is the certificate in use, parsed.
func (k *KeyPair) Leaf() *x509.Certificate { return k.cur.Load().Leaf }

// GetCertificate is for tls.Config.GetCertificate: the certificate in use.
func (k *KeyPair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return k.cur.Load(), nil
}

// GetClientCertificate is for tls.Config.GetClientCertificate.
func (k *KeyPair) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return k.cur.Load(), nil
}

func constantTimeEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
