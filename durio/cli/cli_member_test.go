package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/durio"
	"github.com/ruaft/ruaft/durio/duriotest"
	"github.com/ruaft/ruaft/kvraft/kvwire"
)

// Each refusal the membership service answers with (its code and reason,
// as durio's TestMembershipRefusals pins them) maps to its exit code.
func TestMemberExitCodes(t *testing.T) {
	for _, tc := range []struct {
		code   twirp.ErrorCode
		reason string
		exit   int
	}{
		{twirp.FailedPrecondition, durio.ReasonLearnerBehind, ExitRetry},
		{twirp.Aborted, durio.ReasonChangeInProgress, ExitRetry},
		{twirp.Aborted, durio.ReasonOutcomeUnknown, ExitRetry},
		{twirp.FailedPrecondition, durio.ReasonLastVoter, ExitFailure},
		{twirp.NotFound, durio.ReasonUnknownMember, ExitNotFound},
	} {
		err := twirp.NewError(tc.code, "refused").WithMeta(kvwire.MetaReason, tc.reason)
		if got := ExitCode(memberErr{err}); got != tc.exit {
			t.Fatalf("%s/%s: exit code %d, want %d", tc.code, tc.reason, got, tc.exit)
		}
	}
}

// The member commands against a real one-replica cluster: the refusals map
// to their exit codes and the command prints the cluster's message.
func TestMemberCLIExitCodes(t *testing.T) {
	url := duriotest.StartOne(t)
	run := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), append(args, "--endpoints", url, "--timeout", "3s"), strings.NewReader(""), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	if code, out := run("member", "remove", "9"); code != ExitNotFound || !strings.Contains(out, "not a member") {
		t.Fatalf("remove unknown: exit %d: %s", code, out)
	}
	if code, out := run("member", "add", "0", "http://127.0.0.1:7100"); code != ExitFailure || !strings.Contains(out, "already a member") {
		t.Fatalf("add existing: exit %d: %s", code, out)
	}
	if code, out := run("member", "add", "x", "http://127.0.0.1:7100"); code != ExitUsage {
		t.Fatalf("add with a bad id: exit %d: %s", code, out)
	}
	// Nothing listens at the learner's URL, so it never catches up.
	if code, out := run("member", "add", "4", "http://127.0.0.1:1", "--client-url", "http://127.0.0.1:1"); code != ExitOK ||
		!strings.Contains(out, "added learner 4") {
		t.Fatalf("add: exit %d: %s", code, out)
	}
	if code, out := run("member", "promote", "4"); code != ExitRetry || !strings.Contains(out, "caught up") {
		t.Fatalf("promote a lagging learner: exit %d: %s", code, out)
	}
	code, out := run("member", "list", "--json")
	if code != ExitOK || !strings.Contains(out, `"cluster_id":"`) || !strings.Contains(out, `"id":4,"role":"learner"`) {
		t.Fatalf("list: exit %d: %s", code, out)
	}
}
