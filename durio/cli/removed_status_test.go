package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ruaft/ruaft/durio/client"
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

// `durio status` also lists a member that has no client URL (a learner
// added with only its peer URL): it is not asked, but it is part of the
// cluster, and the leader's view of it (learner, how far behind) is shown.
// It used to be left out, as if the cluster had one replica fewer.
func TestStatusListsMemberWithoutClientURL(t *testing.T) {
	srv := httptest.NewServer(kvv1.NewKVServiceServer(removedKV{}))
	t.Cleanup(srv.Close)
	c, err := client.New([]string{srv.URL}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	members := []client.Member{
		{ID: 3, PeerURL: "http://127.0.0.1:1", ClientURL: srv.URL},
		{ID: 4, PeerURL: "http://127.0.0.1:2", Learner: true, ProgressKnown: true, Lag: 12, RecentActive: true},
	}
	var out bytes.Buffer
	if err := printStatus(context.Background(), c, members, false, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want a header and 2 members:\n%s", len(lines), out.String())
	}
	if f := strings.Fields(lines[2]); len(f) < 4 || f[1] != "4" || f[3] != "learner" || !strings.Contains(lines[2], "(12 behind)") ||
		!strings.Contains(lines[2], "no client URL; peer http://127.0.0.1:2") {
		t.Errorf("the learner's line: %q", lines[2])
	}
	out.Reset()
	if err := printStatus(context.Background(), c, members, true, &out); err != nil {
		t.Fatal(err)
	}
	var rows []replicaStatus
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[1].ID != 4 || rows[1].Member != "learner" || rows[1].Reachable || rows[1].Lag == nil || *rows[1].Lag != 12 {
		t.Errorf("--json rows: %+v", rows)
	}
}
