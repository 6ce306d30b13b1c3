package twirptransport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ruaft/ruaft/raft"
)

// testPKI writes a CA and one peer certificate for 127.0.0.1 to dir and
// returns the peer's cert, key and CA file names.
func testPKI(t *testing.T, dir string) (certFile, keyFile, caFile string) {
	t.Helper()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caKeyDER, _ := x509.MarshalPKCS8PrivateKey(caKey)
	write("ca.key", "PRIVATE KEY", caKeyDER)
	caFile = write("ca.crt", "CERTIFICATE", caDER)
	certFile, keyFile = issuePeer(t, dir, 2)
	return certFile, keyFile, caFile
}

// issuePeer writes a new key and a peer certificate for 127.0.0.1 with
// serial, signed by dir's CA (testPKI), as peer.crt and peer.key.
func issuePeer(t *testing.T, dir string, serial int64) (certFile, keyFile string) {
	t.Helper()
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := pem.Decode(data)
		return b.Bytes
	}
	ca, err := x509.ParseCertificate(read("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := x509.ParsePKCS8PrivateKey(read("ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "peer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("peer.crt", "CERTIFICATE", der), write("peer.key", "PRIVATE KEY", keyDER)
}

// Over MutualTLS, a peer with a certificate from the cluster CA gets
// through; one without a client certificate, or with one from another CA,
// does not.
func TestMutualTLS(t *testing.T) {
	cert, key, ca := testPKI(t, t.TempDir())
	serverTLS, clientTLS, err := MutualTLS(cert, key, ca)
	if err != nil {
		t.Fatal(err)
	}
	url := serveTLS(t, NewHandler(echoNode{}), serverTLS)
	ctx := context.Background()
	call := func(tlsConfig *tls.Config) error {
		_, err := New(0, []string{"", url}, Options{TLS: tlsConfig}).RequestVote(ctx, 1, &raft.RequestVoteRequest{Term: 1})
		return err
	}
	if err := call(clientTLS); err != nil {
		t.Fatalf("peer with the cluster's certificate: %v", err)
	}
	noCert := clientTLS.Clone()
	noCert.GetClientCertificate = nil
	if err := call(noCert); err == nil {
		t.Fatal("a client without a certificate got through")
	}
	otherCert, otherKey, otherCA := testPKI(t, t.TempDir())
	_, foreign, err := MutualTLS(otherCert, otherKey, otherCA)
	if err != nil {
		t.Fatal(err)
	}
	foreign.RootCAs = clientTLS.RootCAs // trusts the server, but its own certificate is foreign
	if err := call(foreign); err == nil {
		t.Fatal("a client with another CA's certificate got through")
	}
	if _, _, err := MutualTLS(cert, key, filepath.Join(t.TempDir(), "missing.crt")); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
}

// serveTLS serves h over cfg on 127.0.0.1 and returns its https URL.
// (httptest's StartTLS would add its own certificate, which a server
// prefers to GetCertificate for a client that sends no server name.)
func serveTLS(t *testing.T, h http.Handler, cfg *tls.Config) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = tls.NewListener(srv.Listener, cfg)
	srv.Start()
	t.Cleanup(srv.Close)
	return strings.Replace(srv.URL, "http://", "https://", 1)
}

// A KeyPair's Reload changes the certificate later handshakes present, on
// both sides, and a reload of bad files keeps the one in use.
func TestKeyPairReload(t *testing.T) {
	dir := t.TempDir()
	cert, key, ca := testPKI(t, dir)
	kp, err := LoadKeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, clientTLS, err := MutualTLSWith(kp, ca)
	if err != nil {
		t.Fatal(err)
	}
	url := serveTLS(t, NewHandler(echoNode{}), serverTLS)
	first := kp.Leaf().SerialNumber
	seen := func() *big.Int {
		t.Helper()
		cfg := clientTLS.Clone()
		var serial *big.Int
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			serial = cs.PeerCertificates[0].SerialNumber
			return nil
		}
		if _, err := New(0, []string{"", url}, Options{TLS: cfg}).RequestVote(context.Background(), 1, &raft.RequestVoteRequest{Term: 1}); err != nil {
			t.Fatal(err)
		}
		return serial
	}
	if got := seen(); got.Cmp(first) != 0 {
		t.Fatalf("the server presented %v, want %v", got, first)
	}
	issuePeer(t, dir, 3) // a renewal: a new key and certificate from the same CA
	if err := kp.Reload(); err != nil {
		t.Fatal(err)
	}
	if kp.Leaf().SerialNumber.Cmp(first) == 0 {
		t.Fatal("Reload kept the old certificate")
	}
	if got := seen(); got.Cmp(kp.Leaf().SerialNumber) != 0 {
		t.Fatalf("after Reload the server presented %v, want %v", got, kp.Leaf().SerialNumber)
	}
	renewed := kp.Leaf().SerialNumber
	if err := os.WriteFile(cert, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := kp.Reload(); !errors.Is(err, ErrTLSConfig) {
		t.Fatalf("Reload of a broken file: %v", err)
	}
	if got := seen(); got.Cmp(renewed) != 0 {
		t.Fatalf("after a failed Reload the server presented %v, want %v", got, renewed)
	}
}
