package durio

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
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

// Run again with one more host, `durio certs` adds that replica's files and
// leaves the others' (the README's way to add a replica): it used to stop
// at replica-0.crt ("exists, pass --force"), and --force re-keys them all.
// A file that is not what the run would issue is still never overwritten.
func TestWriteCertsAddsAReplica(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	opts := CertsOptions{Dir: dir, Hosts: []string{"192.168.1.10", "192.168.1.11", "192.168.1.12"}, Validity: 24 * time.Hour}
	if _, err := WriteCerts(opts); err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	before := map[string][]byte{}
	for _, f := range []string{"ca.crt", "replica-0.crt", "replica-0.key", "replica-1.crt", "replica-1.key", "replica-2.crt", "replica-2.key"} {
		before[f] = read(f)
	}
	opts.Hosts = append(opts.Hosts, "192.168.1.13")
	written, err := WriteCerts(opts)
	if err != nil {
		t.Fatalf("adding replica 3: %v", err)
	}
	if want := []string{filepath.Join(dir, "replica-3.crt"), filepath.Join(dir, "replica-3.key")}; !slices.Equal(written, want) {
		t.Fatalf("adding replica 3 wrote %v, want %v", written, want)
	}
	for f, b := range before {
		if !bytes.Equal(read(f), b) {
			t.Errorf("adding replica 3 changed %s", f)
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, filepath.Join(dir, "ca.crt")))
	if _, err := readCert(t, filepath.Join(dir, "replica-3.crt")).Verify(x509.VerifyOptions{DNSName: "192.168.1.13", Roots: roots}); err != nil {
		t.Fatalf("replica 3: %v", err)
	}
	// Replica 1 moved to another host: its files are not what this run
	// would issue, and stay without --force.
	opts.Hosts[1] = "192.168.1.21"
	if _, err := WriteCerts(opts); !errors.Is(err, ErrUsage) {
		t.Fatalf("another host for an existing replica without --force: %v", err)
	}
	if !bytes.Equal(read("replica-1.crt"), before["replica-1.crt"]) {
		t.Fatal("replica-1.crt was overwritten without --force")
	}
}
