package durio

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CertsOptions describe the certificates `durio certs` writes.
type CertsOptions struct {
	// Dir is the folder the files are written to (created if missing).
	Dir string
	// Hosts has one entry per replica, in id order: the IP address or DNS
	// name its peer URL uses. Replica i's certificate is valid for Hosts[i]
	// and for every ExtraHosts entry.
	Hosts []string
	// ExtraHosts are added to every replica's certificate (say localhost).
	ExtraHosts []string
	// Validity is how long the certificates are valid.
	Validity time.Duration
	// Force overwrites existing replica files; the CA is never overwritten.
	Force bool
}

// WriteCerts creates (or reuses) a certificate authority in opts.Dir and
// issues one certificate per replica signed by it, for mutual TLS on the peer
// listeners (`--peer-ca ca.crt --peer-cert replica-N.crt --peer-key
// replica-N.key`). Keys are ECDSA P-256; private keys are written 0600. If
// Dir already holds ca.crt and ca.key, that CA signs the new certificates,
// so a replica can be added or re-keyed without touching the others. It
// returns the paths it wrote.
func WriteCerts(opts CertsOptions) ([]string, error) {
	if len(opts.Hosts) == 0 {
		return nil, fmt.Errorf("%w: hosts: one host per replica is required", ErrUsage)
	}
	if opts.Validity <= 0 {
		return nil, fmt.Errorf("%w: days must be positive", ErrUsage)
	}
	for _, h := range append(append([]string{}, opts.Hosts...), opts.ExtraHosts...) {
		if h == "" || strings.ContainsAny(h, " /:") && net.ParseIP(h) == nil {
			return nil, fmt.Errorf("%w: hosts: %q is not an IP address or DNS name", ErrUsage, h)
		}
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	var written []string
	caCert, caKey, created, err := loadOrCreateCA(opts.Dir, opts.Validity)
	if err != nil {
		return nil, err
	}
	if created {
		written = append(written, filepath.Join(opts.Dir, "ca.crt"), filepath.Join(opts.Dir, "ca.key"))
	}
	kept := 0
	for i, host := range opts.Hosts {
		base := filepath.Join(opts.Dir, "replica-"+strconv.Itoa(i))
		if !opts.Force {
			// A replica's files that are there already stay, if they are
			// what this run would issue (so that adding a replica leaves
			// the others alone); other files are never overwritten.
			if issued(base, caCert, append([]string{host}, opts.ExtraHosts...)) {
				kept++
				continue
			}
			for _, p := range []string{base + ".crt", base + ".key"} {
				if _, err := os.Stat(p); err == nil {
					return written, fmt.Errorf("%w: %s exists (pass --force to overwrite)", ErrUsage, p)
				}
			}
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return written, err
		}
		tmpl, err := certTemplate("durio replica "+strconv.Itoa(i), opts.Validity)
		if err != nil {
			return written, err
		}
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		// Peers present this certificate both when they serve and when they
		// call.
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		for _, h := range append([]string{host}, opts.ExtraHosts...) {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return written, err
		}
		if err := writePEM(base+".key", "PRIVATE KEY", mustPKCS8(key), 0o600); err != nil {
			return written, err
		}
		if err := writePEM(base+".crt", "CERTIFICATE", der, 0o644); err != nil {
			return written, err
		}
		written = append(written, base+".crt", base+".key")
	}
	if kept == len(opts.Hosts) {
		return written, fmt.Errorf("%w: every replica's certificate exists: nothing to add (pass --force to re-key them)", ErrUsage)
	}
	return written, nil
}

// issued reports whether base.crt and base.key are a pair that ca signed,
// valid for every host in hosts.
func issued(base string, ca *x509.Certificate, hosts []string) bool {
	pair, err := tls.LoadX509KeyPair(base+".crt", base+".key")
	if err != nil {
		return false
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || cert.CheckSignatureFrom(ca) != nil || time.Now().After(cert.NotAfter) {
		return false
	}
	for _, h := range hosts {
		if cert.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

// loadOrCreateCA reads dir/ca.crt and dir/ca.key, or creates both when
// neither exists.
func loadOrCreateCA(dir string, validity time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, bool, error) {
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		cert, key, err := parseCA(certPEM, keyPEM)
		if err != nil {
			return nil, nil, false, fmt.Errorf("durio: existing CA in %s: %w", dir, err)
		}
		return cert, key, false, nil
	case !errors.Is(certErr, os.ErrNotExist) || !errors.Is(keyErr, os.ErrNotExist):
		return nil, nil, false, fmt.Errorf("%w: %s needs both ca.crt and ca.key, or neither", ErrUsage, dir)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, false, err
	}
	tmpl, err := certTemplate("durio cluster CA", validity)
	if err != nil {
		return nil, nil, false, err
	}
	tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.MaxPathLenZero = true, true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, false, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, false, err
	}
	if err := writePEM(keyPath, "PRIVATE KEY", mustPKCS8(key), 0o600); err != nil {
		return nil, nil, false, err
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		return nil, nil, false, err
	}
	return cert, key, true, nil
}

func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !cert.IsCA || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, errors.New("ca.key is not the ECDSA key of CA certificate ca.crt")
	}
	return cert, key, nil
}

func certTemplate(cn string, validity time.Duration) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"durio"}},
		// An hour of slack for clocks that disagree (a Pi without an RTC
		// before NTP syncs).
		NotBefore: now.Add(-time.Hour),
		NotAfter:  now.Add(validity),
	}, nil
}

func mustPKCS8(key *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err) // a freshly generated P-256 key always marshals
	}
	return der
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	var buf bytes.Buffer
	if err := pem.Encode(&buf, &pem.Block{Type: typ, Bytes: der}); err != nil {
		return err
	}
	// Write next to the target and rename, so a crash never leaves half a
	// key, and an existing file's looser mode is not kept.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".durio-certs-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
