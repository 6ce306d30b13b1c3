package durio

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ruaft/ruaft/kvraft"
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
	cfg := oneMemberConfig(t)
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

// ReloadTLS (what SIGHUP does) makes the client and peer listeners present
// renewed certificates to new connections, and a pair that does not load
// keeps the one in force.
func TestReplicaReloadsCertificates(t *testing.T) {
	dir := t.TempDir()
	renew := func() {
		t.Helper()
		if _, err := WriteCerts(CertsOptions{Dir: dir, Hosts: []string{"127.0.0.1"}, Validity: 24 * time.Hour, Force: true}); err != nil {
			t.Fatal(err)
		}
	}
	renew()
	cert, key, ca := filepath.Join(dir, "replica-0.crt"), filepath.Join(dir, "replica-0.key"), filepath.Join(dir, "ca.crt")
	cfg := DefaultConfig()
	cfg.Peers = []string{"https://127.0.0.1:0"}
	cfg.ListenPeer, cfg.ListenClient = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.PeerCert, cfg.PeerKey, cfg.PeerCA = cert, key, ca
	cfg.TLSCert, cfg.TLSKey = cert, key
	r, err := StartReplica(cfg, persist.NewNoop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	// The peer listener wants a client certificate: the one from before
	// the renewal is as good (same CA).
	clientCert, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	served := func(addr string) *x509.Certificate {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{clientCert}}) //nolint:gosec // the test reads what is served
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := conn.Handshake(); err != nil {
			t.Fatal(err)
		}
		return conn.ConnectionState().PeerCertificates[0]
	}
	expiry := func(listener string) float64 {
		t.Helper()
		mfs, err := r.metrics.registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "durio_tls_certificate_expiry_timestamp_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == listener {
					return m.GetGauge().GetValue()
				}
			}
		}
		t.Fatalf("no expiry gauge for %s", listener)
		return 0
	}
	before := served(r.ClientAddr())
	if got := served(r.PeerAddr()); got.SerialNumber.Cmp(before.SerialNumber) != 0 {
		t.Fatalf("the peer listener serves %v, the client listener %v", got.SerialNumber, before.SerialNumber)
	}
	if expiry("client") != float64(before.NotAfter.Unix()) || expiry("peer") != float64(before.NotAfter.Unix()) {
		t.Fatalf("expiry gauges %v, %v; want %d", expiry("client"), expiry("peer"), before.NotAfter.Unix())
	}

	renew()
	reloaded, err := r.ReloadTLS()
	if err != nil || len(reloaded) != 2 {
		t.Fatalf("ReloadTLS = %v, %v", reloaded, err)
	}
	after := served(r.ClientAddr())
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Fatal("the client listener still serves the old certificate")
	}
	if got := served(r.PeerAddr()); got.SerialNumber.Cmp(after.SerialNumber) != 0 {
		t.Fatalf("the peer listener serves %v after the reload, want %v", got.SerialNumber, after.SerialNumber)
	}
	if expiry("client") != float64(after.NotAfter.Unix()) {
		t.Fatalf("the client expiry gauge %v, want %d", expiry("client"), after.NotAfter.Unix())
	}

	// A broken file: reported, and both listeners keep what they serve.
	if err := os.WriteFile(key, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	reload(r, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if !strings.Contains(logs.String(), "certificate was not reloaded") {
		t.Fatalf("a broken key was not reported: %s", logs.String())
	}
	for _, addr := range []string{r.ClientAddr(), r.PeerAddr()} {
		if got := served(addr); got.SerialNumber.Cmp(after.SerialNumber) != 0 {
			t.Fatalf("%s serves %v after a failed reload, want %v", addr, got.SerialNumber, after.SerialNumber)
		}
	}
}

// A replica refuses to start with a peer certificate from another CA than
// --peer-ca, and a SIGHUP that finds one in the peer files (`durio certs`
// run in a new folder, say) keeps the one in force and says why: every peer verifies against the CA read at start, so swapping it in
// would cut the replica off from the cluster at its next connection while
// the log said "certificate reloaded".
func TestReplicaRefusesPeerCertFromAnotherCA(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	for _, d := range []string{dir, other} {
		if _, err := WriteCerts(CertsOptions{Dir: d, Hosts: []string{"127.0.0.1"}, Validity: 24 * time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	peerDir := t.TempDir()
	cert, key := filepath.Join(peerDir, "peer.crt"), filepath.Join(peerDir, "peer.key")
	install := func(from string) {
		t.Helper()
		for src, dst := range map[string]string{filepath.Join(from, "replica-0.crt"): cert, filepath.Join(from, "replica-0.key"): key} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg := DefaultConfig()
	cfg.Peers = []string{"https://127.0.0.1:0"}
	cfg.ListenPeer, cfg.ListenClient = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.PeerCert, cfg.PeerKey, cfg.PeerCA = cert, key, filepath.Join(dir, "ca.crt")
	// Started with it, the replica would serve as a member no peer
	// accepts, its own log saying only "remote error: tls: bad
	// certificate": a configuration error, exit status 2.
	install(other)
	if r, err := StartReplica(cfg, persist.NewNoop(), nil); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "peers would refuse") {
		if err == nil {
			r.Close(context.Background())
		}
		t.Fatalf("StartReplica with a peer certificate from another CA: %v, want a configuration error", err)
	}
	install(dir)
	r, err := StartReplica(cfg, persist.NewNoop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	before := r.peerCert.Leaf().SerialNumber

	install(other)
	var logs strings.Builder
	reload(r, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if !strings.Contains(logs.String(), "certificate was not reloaded") || strings.Contains(logs.String(), "SIGHUP: certificate reloaded") {
		t.Fatalf("a peer certificate from another CA was not refused: %s", logs.String())
	}
	if got := r.peerCert.Leaf().SerialNumber; got.Cmp(before) != 0 {
		t.Fatalf("the peer listener presents %v after the refused reload, want %v", got, before)
	}
	// A renewal from the cluster's own CA still loads.
	if _, err := WriteCerts(CertsOptions{Dir: dir, Hosts: []string{"127.0.0.1"}, Validity: 24 * time.Hour, Force: true}); err != nil {
		t.Fatal(err)
	}
	install(dir)
	if reloaded, err := r.ReloadTLS(); err != nil || len(reloaded) != 1 {
		t.Fatalf("ReloadTLS of a renewal = %v, %v", reloaded, err)
	}
	if r.peerCert.Leaf().SerialNumber.Cmp(before) == 0 {
		t.Fatal("the renewal was not loaded")
	}
}

// A replica whose peer certificate is not valid for the host of its peer
// URL says so at start: the peers check that name when they connect and
// refuse it, while its own log said only "remote error: tls: bad
// certificate" (the peers' logs said nothing; /status showed the x509
// error).
func TestReplicaWarnsOfPeerCertForAnotherHost(t *testing.T) {
	dir := t.TempDir()
	if _, err := WriteCerts(CertsOptions{Dir: dir, Hosts: []string{"192.0.2.7", "127.0.0.1"}, Validity: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false} {
		cfg := DefaultConfig()
		cfg.Peers = []string{"https://127.0.0.1:0"}
		cfg.ListenPeer, cfg.ListenClient = "127.0.0.1:0", "127.0.0.1:0"
		cfg.DataDir = t.TempDir()
		cfg.PeerCert = filepath.Join(dir, "replica-"+strconv.Itoa(i)+".crt")
		cfg.PeerKey = filepath.Join(dir, "replica-"+strconv.Itoa(i)+".key")
		cfg.PeerCA = filepath.Join(dir, "ca.crt")
		var logs bytes.Buffer
		r, err := StartReplica(cfg, persist.NewNoop(), slog.New(slog.NewTextHandler(&syncWriterBuf{b: &logs}, nil)))
		if err != nil {
			t.Fatal(err)
		}
		r.Close(context.Background())
		if got := strings.Contains(logs.String(), "not valid for this replica's peer URL"); got != want {
			t.Errorf("certificate for %s, peer URL %s: warned %v, want %v: %s", []string{"192.0.2.7", "127.0.0.1"}[i], cfg.Peers[0], got, want, logs.String())
		}
	}
}

// A replica reports the apply level in force and the highest it supports,
// in Status and /metrics; a one-replica cluster (every member of this
// version) moves to kvraft.ApplyLevel on its own.
func TestReplicaReportsApplyLevel(t *testing.T) {
	cfg := oneMemberConfig(t)
	r, err := StartReplica(cfg, persist.NewNoop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	gauge := func(name string) float64 {
		t.Helper()
		mfs, err := r.metrics.registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatalf("no gauge %s", name)
		return 0
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.status().GetApplyLevel() != kvraft.ApplyLevel {
		if time.Now().After(deadline) {
			t.Fatalf("status %v: the replica did not reach apply level %d", r.status(), kvraft.ApplyLevel)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := r.status(); st.GetMaxApplyLevel() != kvraft.ApplyLevel {
		t.Fatalf("max_apply_level %d, want %d", st.GetMaxApplyLevel(), kvraft.ApplyLevel)
	}
	if g, s := gauge("durio_apply_level"), gauge("durio_apply_level_supported"); g != float64(kvraft.ApplyLevel) || s != float64(kvraft.ApplyLevel) {
		t.Fatalf("durio_apply_level %v, durio_apply_level_supported %v, want %d", g, s, kvraft.ApplyLevel)
	}
}

// A replica starts with a peer certificate that has expired (a renewed one
// is picked up on SIGHUP), but says at warn level that every peer will
// refuse it; a valid one draws no such warning.
func TestReplicaWarnsOfExpiredPeerCert(t *testing.T) {
	dir := t.TempDir()
	// A CA of three days ago (its own, as durio certs would have made
	// then), a certificate from it that expired yesterday and a current one.
	issue := func(name string, from, to time.Time, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
		t.Helper()
		tmpl, err := certTemplate(name, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.NotBefore, tmpl.NotAfter = from, to
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if parent == nil {
			tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
			tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
			parent, parentKey = tmpl, key
		} else {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
			tmpl.KeyUsage = x509.KeyUsageDigitalSignature
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		if err := writePEM(filepath.Join(dir, name+".crt"), "CERTIFICATE", der, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := writePEM(filepath.Join(dir, name+".key"), "PRIVATE KEY", mustPKCS8(key), 0o600); err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return cert, key
	}
	now := time.Now()
	ca, caKey := issue("ca", now.Add(-72*time.Hour), now.Add(365*24*time.Hour), nil, nil)
	issue("expired", now.Add(-48*time.Hour), now.Add(-24*time.Hour), ca, caKey)
	issue("current", now.Add(-48*time.Hour), now.Add(24*time.Hour), ca, caKey)
	for name, want := range map[string]bool{"expired": true, "current": false} {
		cfg := DefaultConfig()
		cfg.Peers = []string{"https://127.0.0.1:0"}
		cfg.ListenPeer, cfg.ListenClient = "127.0.0.1:0", "127.0.0.1:0"
		cfg.DataDir = t.TempDir()
		cfg.PeerCert, cfg.PeerKey = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		cfg.PeerCA = filepath.Join(dir, "ca.crt")
		var logs bytes.Buffer
		out := &syncWriterBuf{b: &logs}
		r, err := StartReplica(cfg, persist.NewNoop(), slog.New(slog.NewTextHandler(out, nil)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		r.Close(context.Background())
		out.mu.Lock()
		got := strings.Contains(logs.String(), "peer certificate is not valid now") && strings.Contains(logs.String(), "level=WARN")
		out.mu.Unlock()
		if got != want {
			t.Errorf("%s certificate: warned %v, want %v: %s", name, got, want, logs.String())
		}
	}
}

// oneMemberConfig is the configuration of a one-member cluster on loopback
// (ports chosen by the system) with its data folder in t's temporary
// folder, for the tests that start a replica in process.
func oneMemberConfig(t *testing.T) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Peers = []string{"http://127.0.0.1:0"}
	cfg.ListenPeer, cfg.ListenClient = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	return cfg
}
