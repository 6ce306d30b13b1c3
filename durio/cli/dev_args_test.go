package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// durio dev -- FLAGS passes serve flags to every replica; it refuses, before
// any replica starts or any folder is made, positional arguments, the flags
// it sets itself and values durio serve would refuse.
func TestDevServeArgsRefused(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"argument before --", []string{"stray"}, "takes no arguments"},
		{"argument before and after --", []string{"stray", "--", "--election-timeout", "1s"}, "takes no arguments"},
		{"flag durio dev sets", []string{"--", "--id", "3"}, "durio dev sets --id for each replica"},
		{"flags durio dev sets", []string{"--", "--data-dir=/x", "--tls-cert", "c.pem"}, "durio dev sets --data-dir, --tls-cert"},
		{"unknown flag", []string{"--", "--no-such-flag"}, "unknown flag: --no-such-flag"},
		{"one dash, which durio serve does not take", []string{"--", "-election-timeout", "1s"}, "unknown shorthand flag"},
		{"bool flag given a separate value", []string{"--", "--pprof", "false"}, `unexpected argument "false"`},
		{"bad value", []string{"--", "--read-batch-window", "soon"}, `invalid argument "soon" for "--read-batch-window"`},
		{"argument after --", []string{"--", "--election-timeout", "1s", "stray"}, `unexpected argument "stray"`},
		{"heartbeat too slow for the election timeout", []string{"--", "--election-timeout", "100ms", "--heartbeat-interval", "90ms"}, "heartbeat"},
		{"read window not below the heartbeat", []string{"--", "--heartbeat-interval", "20ms", "--read-batch-window", "20ms"}, "read"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "dev")
			var out, errOut bytes.Buffer
			args := append([]string{"dev", "--dir", dir, "--client-port", "1", "--peer-port", "4"}, c.args...)
			code := Main(context.Background(), args, strings.NewReader(""), &out, &errOut)
			if code != ExitUsage {
				t.Fatalf("exit %d, want %d (usage); stderr: %s", code, ExitUsage, errOut.String())
			}
			if !strings.Contains(strings.ToLower(errOut.String()), strings.ToLower(c.want)) {
				t.Fatalf("stderr %q does not say %q", errOut.String(), c.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "replica-0")); err == nil {
				t.Fatal("a replica folder was made before the flags were checked")
			}
			if strings.Contains(out.String(), "started") {
				t.Fatalf("a replica started: %s", out.String())
			}
		})
	}
}

// Serve flags durio dev does not set pass the check, with each other and with
// the flags durio dev gives the replica.
func TestDevServeArgsAccepted(t *testing.T) {
	d := &devCluster{
		o:       devOptions{Persister: "badger", LogLevel: "warn"},
		dir:     t.TempDir(),
		peers:   []string{"http://127.0.0.1:9001", "http://127.0.0.1:9002", "http://127.0.0.1:9003"},
		clients: []string{"http://127.0.0.1:8001", "http://127.0.0.1:8002", "http://127.0.0.1:8003"},
	}
	for _, extra := range [][]string{
		nil,
		{"--election-timeout", "500ms", "--heartbeat-interval", "100ms", "--read-batch-window", "0"},
		{"--snapshot-bytes=65536", "--quota-bytes", "1048576", "--pprof"},
	} {
		if err := checkServeArgs(extra, d.serveArgs(0)); err != nil {
			t.Errorf("%q: %v", extra, err)
		}
	}
}
