package durio

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
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns their
// paths and a pool that trusts the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "durio test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// A single-replica cluster with TLS on the client listener and a peer token:
// HTTPS works, plain HTTP does not, and peer RPCs without the token get 401.
func TestReplicaTLSAndPeerToken(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	cfg := DefaultConfig()
	cfg.Peers = []string{"http://127.0.0.1:0"}
	cfg.ListenPeer = "127.0.0.1:0"
	cfg.ListenClient = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.TLSCert, cfg.TLSKey = certFile, keyFile
	cfg.PeerToken = "s3cret"
	r, err := StartReplica(cfg, persist.NewNoop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := r.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	base := "https://" + r.ClientAddr()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Post(base+"/kvstore/put", "application/json", strings.NewReader(`{"key":"k","value":"v"}`))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no successful put over HTTPS within 10s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := client.Get(base + "/kvstore/get/k")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("get over HTTPS: %v %v", resp, err)
	}
	resp.Body.Close()
	if resp, err := http.Get("http://" + r.ClientAddr() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP must not be served when TLS is on")
		}
	}
	resp, err = http.Post("http://"+r.PeerAddr()+"/twirp/raft.v1.RaftService/RequestVote", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("peer RPC without the token: %d, want 401", resp.StatusCode)
	}
}
