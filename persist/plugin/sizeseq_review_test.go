package plugin

import (
	"context"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/ruaft/ruaft/persist"
	persistv1 "github.com/ruaft/ruaft/rpc/persist/v1"
)

// bufconnClient serves impl over bufconn and returns a gRPC client of it.
func bufconnClient(t *testing.T, impl persistv1.PersisterServiceServer) persistv1.PersisterServiceClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	persistv1.RegisterPersisterServiceServer(srv, impl)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return persistv1.NewPersisterServiceClient(conn)
}

// newPluginServer is the plugin side with a direct channel over st; it
// returns the server and the host's end of the channel.
func newPluginServer(t *testing.T, st persist.Store) (*server, endpoint) {
	t.Helper()
	host, child, err := directPair()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{open: func(Params) (persist.Store, string, error) { return st, "memory", nil }, direct: pluginEnd(t, child)}
	t.Cleanup(s.stopDirect)
	return s, host
}

// forgetfulPlugin is a plugin from before size_sequence.
type forgetfulPlugin struct{ *server }

// Open answers as a plugin from before size_sequence would: it never saw
// the field, and never sets it in its answer.
func (p forgetfulPlugin) Open(ctx context.Context, req *persistv1.OpenRequest) (*persistv1.OpenResponse, error) {
	req.SizeSequence = false
	resp, err := p.server.Open(ctx, req)
	if resp != nil {
		resp.SizeSequence = false
	}
	return resp, err
}

// TestReviewOldHostNewPlugin: a host from before size_sequence (it does not
// ask) gets the old 9-byte direct frame from a new plugin.
func TestReviewOldHostNewPlugin(t *testing.T) {
	st := persist.NewMemory()
	s, host := newPluginServer(t, st)
	rpc := bufconnClient(t, s)
	resp, err := rpc.Open(ctx0, &persistv1.OpenRequest{}) // an old host: no size_sequence
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetSizeSequence() || !resp.GetDirectAppend() {
		t.Fatalf("open: %+v", resp)
	}
	dc := newDirectClient(host, false) // the old host's parser
	defer dc.close()
	for i := uint64(1); i <= 5; i++ {
		fig, answered, err := dc.append(ctx0, persist.HardState{Term: 7}, testEntries(i, 1))
		if err != nil || !answered || fig.size != st.Size() {
			t.Fatalf("append %d: %+v %v %v (store %d)", i, fig, answered, err, st.Size())
		}
	}
	// An error answer in the old frame too.
	if _, answered, err := dc.append(ctx0, persist.HardState{Term: 7}, testEntries(20, 1)); err == nil || !answered {
		t.Fatalf("gap: %v %v", answered, err)
	}
	if _, _, err := dc.append(ctx0, persist.HardState{Term: 7}, testEntries(6, 1)); err != nil {
		t.Fatalf("after the gap: %v", err)
	}
}

// TestReviewNewHostOldPlugin: a new host and a plugin that ignores
// size_sequence: the direct channel keeps the old frame, and the host does
// not take snapshots beside appends.
func TestReviewNewHostOldPlugin(t *testing.T) {
	st := persist.NewMemory()
	s, host := newPluginServer(t, st)
	c := &Client{rpc: bufconnClient(t, forgetfulPlugin{s}), offer: host}
	if err := c.OpenStore(ctx0, Params{}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.DirectAppend() || c.SnapshotsBesideAppends() || c.sequenced {
		t.Fatalf("direct %v beside %v sequenced %v", c.DirectAppend(), c.SnapshotsBesideAppends(), c.sequenced)
	}
	for i := uint64(1); i <= 5; i++ {
		if err := c.Append(ctx0, persist.HardState{Term: 7}, testEntries(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.SaveSnapshot(ctx0, persist.Snapshot{Index: 3, Term: 7, Data: []byte("s")}); err != nil {
		t.Fatal(err)
	}
	if c.Size() != st.Size() {
		t.Fatalf("Size %d, store %d", c.Size(), st.Size())
	}
}

// slowAnswers delays a SaveSnapshot's answer after the store has stored
// it (the figure is read), so the Appends beside it answer first.
type slowAnswers struct{ *server }

type slowStream struct {
	grpc.ClientStreamingServer[persistv1.SaveSnapshotRequest, persistv1.SaveSnapshotResponse]
}

func (s slowStream) SendAndClose(r *persistv1.SaveSnapshotResponse) error {
	time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
	return s.ClientStreamingServer.SendAndClose(r)
}

func (p slowAnswers) SaveSnapshot(stream grpc.ClientStreamingServer[persistv1.SaveSnapshotRequest, persistv1.SaveSnapshotResponse]) error {
	return p.server.SaveSnapshot(slowStream{stream})
}

// TestReviewBesideStress: compactions beside direct Appends whose answers
// come in any order (each snapshot's answer is held back up to 3 ms after
// the plugin read its figure); after each round the host's figure is the
// store's. Without the numbering it fails in the first rounds.
func TestReviewBesideStress(t *testing.T) {
	st := persist.NewMemory()
	s, host := newPluginServer(t, st)
	c := &Client{rpc: bufconnClient(t, slowAnswers{s}), offer: host}
	if err := c.OpenStore(ctx0, Params{}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.DirectAppend() || !c.SnapshotsBesideAppends() {
		t.Fatal("not direct and beside")
	}
	var last uint64
	for r := range 150 {
		next := last + 20
		if err := c.Append(ctx0, persist.HardState{Term: 7, Commit: last}, testEntries(last+1, 20)); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			done <- c.SaveSnapshot(ctx0, persist.Snapshot{Index: next - 10, Term: 7, Data: []byte("snap")})
		}()
		n := rand.IntN(6)
		for i := next + 1; i <= next+uint64(n); i++ {
			if err := c.Append(ctx0, persist.HardState{Term: 7, Commit: i - 1}, testEntries(i, 1)); err != nil {
				t.Fatalf("round %d: %v", r, err)
			}
		}
		if err := <-done; err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		if c.Size() != st.Size() {
			t.Fatalf("round %d: host Size %d, store %d", r, c.Size(), st.Size())
		}
		last = next + uint64(n)
	}
}
