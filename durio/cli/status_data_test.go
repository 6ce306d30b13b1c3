package cli

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
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
