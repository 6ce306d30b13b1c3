package plugin

import (
	"context"
	"errors"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	persistv1 "github.com/ruaft/ruaft/rpc/persist/v1"
)

// oldPlugin is a plugin built before LoadSnapshot: the RPC answers
// Unimplemented; claim makes Open say it serves it anyway.
type oldPlugin struct {
	persistv1.UnimplementedPersisterServiceServer
	claim bool
}

func (p oldPlugin) Open(context.Context, *persistv1.OpenRequest) (*persistv1.OpenResponse, error) {
	return &persistv1.OpenResponse{StoreName: "old", LoadSnapshot: p.claim}, nil
}

// TestLoadSnapshotOldPlugin: a plugin that predates LoadSnapshot makes the
// host's store say it cannot load its snapshot (so raft keeps the data in
// memory), and an Unimplemented answer is errors.ErrUnsupported, not a
// failed store.
func TestLoadSnapshotOldPlugin(t *testing.T) {
	for _, claim := range []bool{false, true} {
		lis := bufconn.Listen(1 << 20)
		srv := grpc.NewServer()
		persistv1.RegisterPersisterServiceServer(srv, oldPlugin{claim: claim})
		go func() { _ = srv.Serve(lis) }()
		conn, err := grpc.NewClient("passthrough:///old", grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
		if err != nil {
			t.Fatal(err)
		}
		c := &Client{rpc: persistv1.NewPersisterServiceClient(conn)}
		if err := c.OpenStore(context.Background(), Params{}); err != nil {
			t.Fatal(err)
		}
		if c.CanLoadSnapshot() != claim {
			t.Fatalf("claim %v: CanLoadSnapshot = %v", claim, c.CanLoadSnapshot())
		}
		if _, err := c.LoadSnapshot(context.Background()); !errors.Is(err, errors.ErrUnsupported) {
			t.Fatalf("claim %v: LoadSnapshot = %v, want errors.ErrUnsupported", claim, err)
		}
		_ = conn.Close()
		srv.Stop()
	}
}
