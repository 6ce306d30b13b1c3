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
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
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
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "peer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	return write("peer.crt", "CERTIFICATE", der), write("peer.key", "PRIVATE KEY", keyDER), write("ca.crt", "CERTIFICATE", caDER)
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
	srv := httptest.NewUnstartedServer(NewHandler(echoNode{}))
	srv.TLS = serverTLS
	srv.StartTLS()
	defer srv.Close()
	ctx := context.Background()
	call := func(tlsConfig *tls.Config) error {
		_, err := New(0, []string{"", srv.URL}, Options{TLS: tlsConfig}).RequestVote(ctx, 1, &raft.RequestVoteRequest{Term: 1})
		return err
	}
	if err := call(clientTLS); err != nil {
		t.Fatalf("peer with the cluster's certificate: %v", err)
	}
	noCert := clientTLS.Clone()
	noCert.Certificates = nil
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
