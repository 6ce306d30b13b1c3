package durio_test

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The secure setup end to end: `durio certs` makes the CA and certificates,
// three `durio serve` processes talk over https with mutual TLS, and a write
// through one replica reads back through every one.
func TestE2EMutualTLSCluster(t *testing.T) {
	certs := t.TempDir()
	out, err := exec.Command(durioBin, "certs", "--dir", certs, "--hosts", "127.0.0.1,127.0.0.1,127.0.0.1").CombinedOutput()
	if err != nil {
		t.Fatalf("durio certs: %v\n%s", err, out)
	}
	c := startClusterWith(t, 3, "file", "https", func(i int) []string {
		n := strconv.Itoa(i)
		return []string{"--peer-ca", filepath.Join(certs, "ca.crt"),
			"--peer-cert", filepath.Join(certs, "replica-"+n+".crt"), "--peer-key", filepath.Join(certs, "replica-"+n+".key")}
	})
	leader := c.waitLeader(15 * time.Second)
	for i := range 3 {
		if code, body := httpDo(t, "POST", c.clients[(leader+1+i)%3]+"/kvstore/put", `{"key":"k`+strconv.Itoa(i)+`","value":"v"}`); code != 200 {
			t.Fatalf("put through replica %d: %d %v", (leader+1+i)%3, code, body)
		}
	}
	for i := range 3 {
		for j := range 3 {
			if code, body := httpDo(t, "GET", c.clients[j]+"/kvstore/get/k"+strconv.Itoa(i), ""); code != 200 || body["value"] != "v" {
				t.Fatalf("get k%d through replica %d: %d %v", i, j, code, body)
			}
		}
	}
}

// A peer listener other machines can reach, with no authentication, is a
// configuration error: exit status 2 and a message that says what to do.
func TestE2EExposedPeerListenerRefused(t *testing.T) {
	cmd := exec.Command(durioBin, "serve", "--peers", "http://192.0.2.1:7000", "--listen-peer", "0.0.0.0:7000",
		"--listen-client", "127.0.0.1:0", "--data-dir", t.TempDir(), "--persister", "noop")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("got %v, want exit status 2; stderr:\n%s", err, stderr.String())
	}
	for _, want := range []string{"listen-peer", "not authenticated", "durio certs", "--insecure-peers"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("message lacks %q:\n%s", want, stderr.String())
		}
	}
}
