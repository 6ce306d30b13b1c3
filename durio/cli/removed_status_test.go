package cli

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// removedKV is a replica that knows it was removed from the cluster; the
// other methods are not served (nil KVService: calling one panics, which
// the Twirp server answers as an internal error).
type removedKV struct{ kvv1.KVService }

func (removedKV) Status(context.Context, *kvv1.StatusRequest) (*kvv1.StatusResponse, error) {
	return &kvv1.StatusResponse{ReplicaId: 3, Role: kvv1.Role_ROLE_FOLLOWER, Term: 9, Removed: true}, nil
}

// `durio status` shows a replica that knows it was removed (raft's
// Status.Removed, carried as StatusResponse.removed) as "removed from
// cluster", and "removed":true with --json.
func TestStatusShowsRemovedReplica(t *testing.T) {
	srv := httptest.NewServer(kvv1.NewKVServiceServer(removedKV{}))
	t.Cleanup(srv.Close)
	run := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), append(args, "--endpoints", srv.URL, "--timeout", "2s"), strings.NewReader(""), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	if code, out := run("status"); code != ExitOK || !strings.Contains(out, "removed from cluster") {
		t.Fatalf("durio status: exit %d:\n%s", code, out)
	}
	if code, out := run("status", "--json"); code != ExitOK || !strings.Contains(out, `"removed":true`) {
		t.Fatalf("durio status --json: exit %d:\n%s", code, out)
	}
}
