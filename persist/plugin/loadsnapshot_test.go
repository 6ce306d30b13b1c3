package plugin

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/persistwire"
	persistv1 "github.com/ruaft/ruaft/rpc/persist/v1"
)

// oldPlugin is a plugin built before LoadSnapshot: the RPC answers
// Unimplemented; claim makes Open say it serves it anyway, and that its
// store takes snapshots beside appends although it does not number its
// size figures.
type oldPlugin struct {
	persistv1.UnimplementedPersisterServiceServer
	claim bool
	calls *atomic.Int64 // LoadSnapshot calls; nil: not counted
}

func (p oldPlugin) LoadSnapshot(req *persistv1.LoadSnapshotRequest, stream grpc.ServerStreamingServer[persistv1.LoadSnapshotResponse]) error {
	if p.calls != nil {
		p.calls.Add(1)
	}
	return p.UnimplementedPersisterServiceServer.LoadSnapshot(req, stream)
}

func (p oldPlugin) Open(context.Context, *persistv1.OpenRequest) (*persistv1.OpenResponse, error) {
	return &persistv1.OpenResponse{StoreName: "old", LoadSnapshot: p.claim, SnapshotsBesideAppends: p.claim}, nil
}

// TestLoadSnapshotOldPlugin: a plugin that predates LoadSnapshot makes the
// host's store say it cannot load its snapshot (so raft keeps the data in
// memory), and an Unimplemented answer is errors.ErrUnsupported, not a
// failed store; a plugin that claimed to serve it is not asked again.
func TestLoadSnapshotOldPlugin(t *testing.T) {
	for _, claim := range []bool{false, true} {
		lis := bufconn.Listen(1 << 20)
		srv := grpc.NewServer()
		var calls atomic.Int64
		persistv1.RegisterPersisterServiceServer(srv, oldPlugin{claim: claim, calls: &calls})
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
		// A plugin from before snapshots_beside_appends never announces it,
		// and one that does without numbering its size figures could not
		// keep them in order: raft stores its snapshots from the loop.
		if c.SnapshotsBesideAppends() {
			t.Fatalf("claim %v: an old plugin's store takes snapshots beside its appends", claim)
		}
		if unnumbered := c.announcedBeside && !c.sequenced; unnumbered != claim {
			t.Fatalf("claim %v: the client noted an unnumbered announcement: %v (the host logs it)", claim, unnumbered)
		}
		if _, err := c.LoadSnapshot(context.Background()); !errors.Is(err, errors.ErrUnsupported) {
			t.Fatalf("claim %v: LoadSnapshot = %v, want errors.ErrUnsupported", claim, err)
		}
		// A plugin that claimed it and answered Unimplemented is not asked
		// again.
		if c.CanLoadSnapshot() {
			t.Fatalf("claim %v: CanLoadSnapshot still true after an Unimplemented answer", claim)
		}
		if _, err := c.LoadSnapshot(context.Background()); !errors.Is(err, errors.ErrUnsupported) {
			t.Fatalf("claim %v: second LoadSnapshot = %v, want errors.ErrUnsupported", claim, err)
		}
		want := int64(0)
		if claim {
			want = 1
		}
		if got := calls.Load(); got != want {
			t.Fatalf("claim %v: %d LoadSnapshot RPCs, want %d", claim, got, want)
		}
		_ = conn.Close()
		srv.Stop()
	}
}

// endlessPlugin announces a small snapshot in LoadSnapshot and then sends
// chunks without end, as a broken plugin might.
type endlessPlugin struct {
	oldPlugin
	entries bool // Load streams entries, not snapshot chunks
}

func (endlessPlugin) LoadSnapshot(_ *persistv1.LoadSnapshotRequest, stream grpc.ServerStreamingServer[persistv1.LoadSnapshotResponse]) error {
	meta := &persistv1.LoadSnapshotResponse_Metadata{Metadata: persistwire.SnapshotMetadataToProto(
		persist.Snapshot{Index: 5, Term: 1, Data: make([]byte, 10)})}
	if err := stream.Send(&persistv1.LoadSnapshotResponse{Part: meta}); err != nil {
		return err
	}
	chunk := &persistv1.LoadSnapshotResponse{Part: &persistv1.LoadSnapshotResponse_Chunk{Chunk: make([]byte, 64<<10)}}
	for {
		if err := stream.Send(chunk); err != nil {
			return err
		}
	}
}

// Load, from the same plugin, announces a 10-byte snapshot and two entries
// and then streams snapshot chunks, or with entries set batches of
// entries, without end.
func (p endlessPlugin) Load(_ *persistv1.LoadRequest, stream grpc.ServerStreamingServer[persistv1.LoadResponse]) error {
	hdr := &persistv1.LoadResponse_Header{Header: &persistv1.LoadHeader{
		HardState:  persistwire.HardStateToProto(persist.EmptyHardState),
		Snapshot:   persistwire.SnapshotMetadataToProto(persist.Snapshot{Index: 5, Term: 1, Data: make([]byte, 10)}),
		EntryCount: 2,
	}}
	if err := stream.Send(&persistv1.LoadResponse{Part: hdr}); err != nil {
		return err
	}
	part := &persistv1.LoadResponse{Part: &persistv1.LoadResponse_SnapshotChunk{SnapshotChunk: make([]byte, 64<<10)}}
	if p.entries {
		es := persistwire.EntriesToProto([]persist.Entry{{Index: 6, Term: 1, Type: persist.EntryNoop}, {Index: 7, Term: 1, Type: persist.EntryNoop}, {Index: 8, Term: 1, Type: persist.EntryNoop}})
		part = &persistv1.LoadResponse{Part: &persistv1.LoadResponse_Entries{Entries: &persistv1.LoadEntries{Entries: es}}}
	}
	for {
		if err := stream.Send(part); err != nil {
			return err
		}
	}
}

// TestLoadSnapshotMoreThanAnnounced: a stream carrying more data than its
// metadata announced fails at the first chunk past the size, rather than
// being read to its end (a raft sender waits for the load with no timeout
// but Kill).
func TestLoadSnapshotMoreThanAnnounced(t *testing.T) {
	c := openOverBufconn(t, endlessPlugin{oldPlugin: oldPlugin{claim: true}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.LoadSnapshot(ctx)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("LoadSnapshot of an endless stream = %v (context: %v), want an error before the context ends", err, ctx.Err())
	}
}

// TestLoadMoreThanAnnounced: Load fails at the first snapshot chunk or
// entry batch past what the stream's header announced instead of reading
// an endless stream into memory.
func TestLoadMoreThanAnnounced(t *testing.T) {
	for _, entries := range []bool{false, true} {
		lis := bufconn.Listen(1 << 20)
		srv := grpc.NewServer()
		persistv1.RegisterPersisterServiceServer(srv, endlessPlugin{entries: entries})
		go func() { _ = srv.Serve(lis) }()
		conn, err := grpc.NewClient("passthrough:///endless", grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
		if err != nil {
			t.Fatal(err)
		}
		c := &Client{rpc: persistv1.NewPersisterServiceClient(conn)}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = c.Load(ctx)
		if !errors.Is(err, persist.ErrUnavailable) || ctx.Err() != nil {
			t.Errorf("entries %v: Load of an endless stream = %v (context: %v), want ErrUnavailable before the context ends",
				entries, err, ctx.Err())
		}
		cancel()
		conn.Close()
		srv.Stop()
	}
}

// blockingLoader is a store whose LoadSnapshot waits for its context to
// end (a large snapshot being read), and says when it started and ended.
type blockingLoader struct {
	*persist.Memory
	started, stopped chan struct{}
}

func (s blockingLoader) LoadSnapshot(ctx context.Context) (persist.Snapshot, error) {
	close(s.started)
	<-ctx.Done()
	close(s.stopped)
	return persist.Snapshot{}, ctx.Err()
}

// TestLoadSnapshotCancelReachesPluginStore: a host that gives up a
// LoadSnapshot (its context ends) stops the plugin's store read too: the
// plugin passes the stream's context to the store, and the host's call
// returns at once with an error, not a failed store.
func TestLoadSnapshotCancelReachesPluginStore(t *testing.T) {
	st := blockingLoader{Memory: persist.NewMemory(), started: make(chan struct{}), stopped: make(chan struct{})}
	c := openOverBufconn(t, &server{open: func(Params) (persist.Store, string, error) { return st, "blocking", nil }})
	if !c.CanLoadSnapshot() {
		t.Fatal("the plugin does not announce LoadSnapshot")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.LoadSnapshot(ctx)
		done <- err
	}()
	select {
	case <-st.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the plugin's store read did not start")
	}
	cancel()
	select {
	case <-st.stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the plugin's store read went on after the host gave up")
	}
	select {
	case err := <-done:
		if err == nil || errors.Is(err, persist.ErrCorrupt) {
			t.Fatalf("LoadSnapshot given up: %v, want an error that is not ErrCorrupt", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the host's LoadSnapshot did not return after its context ended")
	}
	if !c.CanLoadSnapshot() { // a canceled read says nothing about the plugin
		t.Fatal("a canceled LoadSnapshot turned CanLoadSnapshot off")
	}
}

// openOverBufconn serves impl over an in-memory gRPC connection and returns
// a host Client of it with its store open; both end with the test.
func openOverBufconn(t *testing.T, impl persistv1.PersisterServiceServer) *Client {
	t.Helper()
	c := &Client{rpc: bufconnClient(t, impl)}
	if err := c.OpenStore(context.Background(), Params{}); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSizeFiguresInOrder: a SaveSnapshot's answer and those of the Appends
// beside it arrive in any order; from a plugin that numbers its figures the
// client keeps the latest read whatever the order they arrive in, and from
// one that does not (whose calls never overlap) the last to arrive.
func TestSizeFiguresInOrder(t *testing.T) {
	c := &Client{sequenced: true}
	for _, f := range []struct {
		fig  figure
		want int64
	}{
		{figure{size: 900, seq: 4}, 900},
		{figure{size: 300, seq: 6}, 300}, // the snapshot's, read after
		{figure{size: 950, seq: 5}, 300}, // an Append from before it, late
		{figure{size: 320, seq: 6}, 300}, // a repeated number is not newer
		{figure{size: 0, seq: 0}, 300},   // unnumbered: not from this plugin
		{figure{size: 340, seq: 9}, 340},
	} {
		c.setSize(f.fig)
		if got := c.Size(); got != f.want {
			t.Fatalf("after %+v: Size = %d, want %d", f.fig, got, f.want)
		}
	}
	old := &Client{}
	old.setSize(figure{size: 900})
	old.setSize(figure{size: 300})
	if got := old.Size(); got != 300 {
		t.Fatalf("unnumbered figures: Size = %d, want the last, 300", got)
	}
	// The server numbers what it reads in increasing order.
	srv := &server{}
	st := persist.NewMemory()
	a, b := srv.figure(st), srv.figure(st)
	if a.seq == 0 || b.seq <= a.seq {
		t.Fatalf("server's figures numbered %d then %d", a.seq, b.seq)
	}
}
