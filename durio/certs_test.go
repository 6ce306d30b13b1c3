package durio

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: not PEM", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestWriteCerts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	hosts := []string{"192.168.1.10", "192.168.1.11", "pi3.lan"}
	opts := CertsOptions{Dir: dir, Hosts: hosts, ExtraHosts: []string{"localhost"}, Validity: 24 * time.Hour}
	written, err := WriteCerts(opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 2+2*len(hosts) {
		t.Fatalf("wrote %v", written)
	}
	ca := readCert(t, filepath.Join(dir, "ca.crt"))
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for i, h := range hosts {
		base := filepath.Join(dir, "replica-"+string(rune('0'+i)))
		cert := readCert(t, base+".crt")
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := cert.Verify(x509.VerifyOptions{DNSName: h, Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("replica %d for %s, usage %v: %v", i, h, usage, err)
			}
		}
		if err := cert.VerifyHostname("localhost"); err != nil {
			t.Errorf("replica %d: extra host: %v", i, err)
		}
		if err := cert.VerifyHostname(hosts[(i+1)%len(hosts)]); err == nil {
			t.Errorf("replica %d is valid for another replica's host", i)
		}
		if fi, err := os.Stat(base + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("replica %d key: %v %v, want mode 0600", i, fi.Mode(), err)
		}
	}
	// Again: the existing files are not overwritten...
	caBefore, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if _, err := WriteCerts(opts); !errors.Is(err, ErrUsage) {
		t.Fatalf("second run without --force: %v", err)
	}
	// ...unless forced, and the CA is kept either way, so new certificates
	// work with the old ones.
	opts.Force = true
	if _, err := WriteCerts(opts); err != nil {
		t.Fatal(err)
	}
	if caAfter, _ := os.ReadFile(filepath.Join(dir, "ca.crt")); !bytes.Equal(caBefore, caAfter) {
		t.Fatal("the CA changed")
	}
	if _, err := readCert(t, filepath.Join(dir, "replica-0.crt")).Verify(x509.VerifyOptions{DNSName: hosts[0], Roots: roots}); err != nil {
		t.Fatalf("reissued certificate: %v", err)
	}
	for _, bad := range []CertsOptions{{Dir: dir, Validity: time.Hour}, {Dir: dir, Hosts: []string{"a b"}, Validity: time.Hour}, {Dir: dir, Hosts: []string{"x"}}} {
		if _, err := WriteCerts(bad); !errors.Is(err, ErrUsage) {
			t.Errorf("%+v: %v, want a usage error", bad, err)
		}
	}
}
