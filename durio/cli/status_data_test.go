package cli

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	"github.com/ruaft/ruaft/kvraft/kvwire"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
	"github.com/twitchtv/twirp"
)

// quotaKV is a replica whose keys and values take 200 MiB of a 256 MiB
// quota.
type quotaKV struct{ kvv1.KVService }

func (quotaKV) Status(context.Context, *kvv1.StatusRequest) (*kvv1.StatusResponse, error) {
	return &kvv1.StatusResponse{ReplicaId: 1, Role: kvv1.Role_ROLE_LEADER, Term: 2, LeaderKnown: true, LeaderId: 1,
		StateBytes: 200 << 20, QuotaBytes: 256 << 20}, nil
}

// `durio status` shows each replica's data size and its share of the
// quota (DATA), and both in bytes with --json.
func TestStatusShowsDataAndQuota(t *testing.T) {
	srv := httptest.NewServer(kvv1.NewKVServiceServer(quotaKV{}))
	t.Cleanup(srv.Close)
	run := func(args ...string) string {
		var out, errOut bytes.Buffer
		if code := Main(context.Background(), append(args, "--endpoints", srv.URL, "--timeout", "2s"), strings.NewReader(""), &out, &errOut); code != ExitOK {
			t.Fatalf("%v: exit %d: %s", args, code, out.String()+errOut.String())
		}
		return out.String()
	}
	if out := run("status"); !strings.Contains(out, "DATA") || !strings.Contains(out, "200.0 MiB of 256.0 MiB (78%)") {
		t.Fatalf("durio status:\n%s", out)
	}
	if out := run("status", "--json"); !strings.Contains(out, `"state_bytes":209715200,"quota_bytes":268435456`) {
		t.Fatalf("durio status --json:\n%s", out)
	}
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	if got := (replicaStatus{StateBytes: 3 << 20}).dataText(); got != "3.0 MiB" {
		t.Errorf("without a quota: %q", got)
	}
}

// fullKV is a replica whose store is at its quota: every put is refused
// with no_space, in the words a replica uses.
type fullKV struct{ kvv1.KVService }

func (fullKV) OpenSession(context.Context, *kvv1.OpenSessionRequest) (*kvv1.OpenSessionResponse, error) {
	return &kvv1.OpenSessionResponse{ClientId: 1, IdleTimeoutSeconds: 60}, nil
}

func (fullKV) Put(_ context.Context, req *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	return nil, twirp.NewError(twirp.FailedPrecondition, fmt.Sprintf("%v (key %q; the quota is 2000 bytes)", kvclient.ErrNoSpace, req.GetKey())).
		WithMeta(kvwire.MetaReason, kvwire.ReasonNoSpace)
}

// `durio put` into a full store says so once, in the replica's words, with
// what to do, and exits 1 at once (a definite refusal is not retried).
func TestPutIntoFullStore(t *testing.T) {
	srv := httptest.NewServer(kvv1.NewKVServiceServer(fullKV{}))
	t.Cleanup(srv.Close)
	var out, errOut bytes.Buffer
	code := Main(context.Background(), []string{"put", "k", "v", "--endpoints", srv.URL, "--timeout", "5s"}, strings.NewReader(""), &out, &errOut)
	msg := errOut.String()
	if code != ExitFailure || strings.Count(msg, "quota on the size of keys and values is reached") != 1 ||
		!strings.Contains(msg, `(key "k"; the quota is 2000 bytes)`) || !strings.Contains(msg, "delete keys to make room") ||
		strings.Contains(msg, "twirp error") {
		t.Fatalf("exit %d: %s%s", code, out.String(), msg)
	}
}
