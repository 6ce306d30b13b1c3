package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The client must stay small: nothing of storage, plugins, gRPC, raft or
// the server may reach its import graph.
func TestImportGraph(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/ruaft/ruaft/durio/client").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	forbidden := []string{
		"google.golang.org/grpc",
		"github.com/hashicorp/go-plugin",
		"github.com/dgraph-io/badger",
		"github.com/ruaft/ruaft/persist",
		"github.com/ruaft/ruaft/plugins",
		"github.com/ruaft/ruaft/raft",
		"github.com/ruaft/ruaft/rpc/raft",
		"github.com/ruaft/ruaft/rpc/persist",
		"github.com/ruaft/ruaft/kvraft/rsm",
		"testing",
	}
	for _, d := range deps {
		if d == "github.com/ruaft/ruaft/durio" || d == "github.com/ruaft/ruaft/kvraft" {
			t.Errorf("the client imports %s", d)
		}
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("the client imports %s", d)
			}
		}
	}
	t.Logf("%d packages in the client's import graph", len(deps))
}
