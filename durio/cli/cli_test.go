package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/durio"
	"github.com/ruaft/ruaft/durio/client"
	"github.com/ruaft/ruaft/kvraft/kvclient"
	"github.com/ruaft/ruaft/kvraft/kvwire"
)

func TestExitCode(t *testing.T) {
	transport := func(err error) error {
		return twirp.InternalErrorWith(&url.Error{Op: "Post", URL: "http://x", Err: err})
	}
	cases := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, ExitOK},
		{"usage", fmt.Errorf("%w: bad flag", durio.ErrUsage), ExitUsage},
		{"config", fmt.Errorf("%w: peers", durio.ErrConfig), ExitUsage},
		{"not found", client.ErrNotFound, ExitNotFound},
		{"status none reachable", fmt.Errorf("%w (of 3)", errNoneReachable), ExitUnavailable},
		{"503", twirp.NewError(twirp.Unavailable, "no leader"), ExitUnavailable},
		{"504", twirp.NewError(twirp.DeadlineExceeded, "unknown"), ExitTimeout},
		{"400", twirp.InvalidArgumentError("key", "too long"), ExitFailure},
		{"our deadline after a 503", fmt.Errorf("%w (last error: %w)", context.DeadlineExceeded, twirp.NewError(twirp.Unavailable, "no leader")), ExitUnavailable},
		{"our deadline, no answer", fmt.Errorf("%w (last error: %w)", context.DeadlineExceeded, transport(context.DeadlineExceeded)), ExitTimeout},
		{"connection refused", transport(syscall.ECONNREFUSED), ExitUnavailable},
		{"our deadline, every replica refused", fmt.Errorf("%w: %w (last error: %w)", client.ErrUnavailable, context.DeadlineExceeded,
			fmt.Errorf("%w: %w", kvclient.ErrUnreachable, transport(syscall.ECONNREFUSED))), ExitUnavailable},
		{"our deadline, a write maybe applied", fmt.Errorf("%w: %w (last error: %w)", client.ErrUnknownOutcome, context.DeadlineExceeded,
			transport(context.DeadlineExceeded)), ExitTimeout},
		{"untrusted certificate", transport(x509.UnknownAuthorityError{}), ExitFailure},
		{"other", errors.New("disk full"), ExitFailure},
	}
	for _, c := range cases {
		if got := ExitCode(c.err); got != c.want {
			t.Errorf("%s: ExitCode(%v) = %d, want %d", c.name, c.err, got, c.want)
		}
	}
}

func TestCertificateErrorsAreNotRetried(t *testing.T) {
	err := twirp.InternalErrorWith(&url.Error{Op: "Post", URL: "https://x", Err: x509.HostnameError{Host: "x"}})
	if !kvclient.Definitive(kvwire.ErrorFromTwirp(err)) {
		t.Fatal("a certificate error must fail at once")
	}
	if kvclient.Definitive(kvwire.ErrorFromTwirp(twirp.InternalErrorWith(&url.Error{Op: "Post", URL: "http://x", Err: syscall.ECONNREFUSED}))) {
		t.Fatal("a refused connection should move on to the next endpoint")
	}
}

func TestBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/ruaft/ruaft", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-11-30T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"}, {Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "arm"}, {Key: "GOARM", Value: "7"}}}
	info := buildInfoFrom(bi)
	if info.String() != "v1.2.3 (0123456789ab, modified)" || info.Platform != "linux/arm/v7" {
		t.Fatalf("%q %+v", info.String(), info)
	}
	var out strings.Builder
	if err := info.write(&out); err != nil || !strings.Contains(out.String(), "revision: 0123456789abcdef0123 (2026-11-30T10:00:00Z), with uncommitted changes") {
		t.Fatalf("%q %v", out.String(), err)
	}
	if info := buildInfoFrom(&debug.BuildInfo{Main: debug.Module{Path: "m"}}); info.String() != "(devel)" {
		t.Fatalf("no version: %q", info.String())
	}
}
