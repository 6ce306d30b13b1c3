package durio_test

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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

// durio serve --client-auth-file: tokens are checked by the real process,
// and SIGHUP re-reads the file (a bad file keeps the tokens in force).
func TestE2EClientAuthReloadOnSIGHUP(t *testing.T) {
	const read, write, newWrite = "r-0123456789abcdef", "w-0123456789abcdef", "n-0123456789abcdef"
	authFile := filepath.Join(t.TempDir(), "tokens")
	writeTokens := func(content string) {
		t.Helper()
		if err := os.WriteFile(authFile, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeTokens("read " + read + "\nwrite " + write + "\n")
	c := startCluster(t, 1, "noop", "--client-auth-file", authFile)
	put := func(token string) int { return putWithToken(t, c.clients[0], token) }
	for token, want := range map[string]int{"": 401, read: 403, write: 200, newWrite: 401} {
		if got := put(token); got != want {
			t.Errorf("put with token %q: %d, want %d", token, got, want)
		}
	}
	hup := func() {
		t.Helper()
		if err := c.procs[0].cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 15s; log:\n%s", what, c.procs[0].logText())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	writeTokens("write " + newWrite + "\n")
	hup()
	waitFor("the new token admitted", func() bool { return put(newWrite) == 200 })
	if got := put(write); got != 401 {
		t.Errorf("the revoked token after SIGHUP: %d", got)
	}
	writeTokens("superuser " + write + "\n")
	hup()
	waitFor("the bad file reported", func() bool { return strings.Contains(c.procs[0].logText(), "client tokens not reloaded") })
	if got := put(newWrite); got != 200 {
		t.Errorf("the token in force after a bad reload: %d", got)
	}
	if strings.Contains(c.procs[0].logText(), newWrite) || strings.Contains(c.procs[0].logText(), write) {
		t.Error("the log shows a token")
	}
}

// putWithToken puts k=v through base's REST route with token as its bearer
// token ("" for none) and returns the status.
func putWithToken(t *testing.T, base, token string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/kvstore/put", strings.NewReader(`{"key":"k","value":"v"}`))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
