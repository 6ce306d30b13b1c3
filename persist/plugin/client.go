package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/persistwire"
	persistv1 "github.com/ruaft/ruaft/rpc/persist/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Client is the host side of the PersisterService: a persist.Store that
// forwards each call to the plugin: Append as one frame on the direct
// channel when the plugin serves it (direct.go), everything else — and
// Append otherwise — as one RPC per call (Load and SaveSnapshot streamed).
// Get one from Open (a subprocess) or plugintest.OpenInProcess (tests); a
// Client from GRPCPlugin.GRPCClient must be opened with OpenStore first.
type Client struct {
	rpc persistv1.PersisterServiceClient
	// direct, if set, carries Append instead of the Append RPC (see
	// direct.go); offer, if set, is the host's end of a channel the plugin
	// has not yet accepted (OpenStore decides).
	direct *directClient
	offer  endpoint
	// down, if set, reports whether the plugin process has exited, so calls
	// fail fast with persist.ErrUnavailable.
	down func() bool

	name string
	// canLoad is the plugin's OpenResponse.load_snapshot, until the plugin
	// answers LoadSnapshot with Unimplemented all the same (built wrongly):
	// then the client stops calling it.
	canLoad atomic.Bool
	// announcedBeside is the plugin's
	// OpenResponse.snapshots_beside_appends, and sequenced its
	// size_sequence (its figures come numbered). The figures of a plugin
	// that does not number them could not be kept in order beside a
	// snapshot: such a plugin (none released announces snapshots beside
	// appends without numbering, a hand-written one might) is not taken at
	// its word, and gets its snapshots stored with no Append beside them
	// (the host logs it).
	announcedBeside, sequenced bool

	closed atomic.Bool
	size   atomic.Int64 // the latest size figure the plugin reported

	// sizeMu guards sizeSeq, the number of the figure in size. A
	// SaveSnapshot's answer and those of the Appends beside it come on
	// different streams, in any order; the figure with the higher number
	// was read later, so it wins. Without it a snapshot's answer could
	// overwrite a later Append's larger figure (the replica would snapshot
	// late) or an Append from before the compaction the snapshot's smaller
	// one (the replica would ask for another snapshot at once).
	sizeMu  sync.Mutex
	sizeSeq uint64
}

var (
	_ persist.Store               = (*Client)(nil)
	_ persist.SnapshotLoader      = (*Client)(nil)
	_ persist.BackgroundSnapshots = (*Client)(nil)
)

// OpenStore opens the plugin's store with p; it must be called once, before
// any other method.
func (c *Client) OpenStore(ctx context.Context, p Params) error {
	resp, err := c.rpc.Open(ctx, &persistv1.OpenRequest{DataDir: p.DataDir, Sync: p.Sync, Options: p.Options,
		SizeSequence: true})
	if err != nil {
		if c.offer != nil {
			_ = c.offer.Close()
			c.offer = nil
		}
		return fromStatus("open", err)
	}
	c.name = resp.GetStoreName()
	c.size.Store(int64(resp.GetLogSizeBytes()))
	c.canLoad.Store(resp.GetLoadSnapshot())
	c.announcedBeside, c.sequenced = resp.GetSnapshotsBesideAppends(), resp.GetSizeSequence()
	if c.offer != nil {
		if resp.GetDirectAppend() {
			c.direct = newDirectClient(c.offer, c.sequenced)
		} else {
			_ = c.offer.Close() // an older plugin: Append goes over gRPC
		}
		c.offer = nil
	}
	return nil
}

// SnapshotsBesideAppends implements persist.BackgroundSnapshots: what the
// plugin announced for its store, if it numbers its size figures. A
// snapshot streams over its own RPC while
// Appends go over the direct channel (or their own RPCs).
func (c *Client) SnapshotsBesideAppends() bool { return c.announcedBeside && c.sequenced }

// DirectAppend reports whether Append goes over the direct channel rather
// than the Append RPC.
func (c *Client) DirectAppend() bool { return c.direct != nil }

// StoreName is the name the plugin gave its store, for logs.
func (c *Client) StoreName() string { return c.name }

func (c *Client) check() error {
	if c.closed.Load() {
		return persist.ErrClosed
	}
	if c.down != nil && c.down() {
		return fmt.Errorf("persist/plugin: %w: the plugin process has exited", persist.ErrUnavailable)
	}
	return nil
}

// Load implements persist.Store.
func (c *Client) Load(ctx context.Context) (persist.State, error) {
	if err := c.check(); err != nil {
		return persist.State{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream if we return early
	stream, err := c.rpc.Load(ctx, &persistv1.LoadRequest{MaxChunkBytes: ChunkBytes})
	if err != nil {
		return persist.State{}, fromStatus("load", err)
	}
	msg, err := stream.Recv()
	if err != nil {
		return persist.State{}, fromStatus("load", err)
	}
	hdr := msg.GetHeader()
	if hdr == nil {
		return persist.State{}, fmt.Errorf("persist/plugin: load: %w: stream does not start with a header", persist.ErrUnavailable)
	}
	hs, err := persistwire.HardStateFromProto(hdr.GetHardState())
	if err != nil {
		return persist.State{}, invalidLoad(err)
	}
	st := persist.State{HardState: hs}
	snapMeta := hdr.GetSnapshot()
	if snapSize := snapMeta.GetSizeBytes(); snapSize > 0 {
		if snapSize > maxSnapshotBytes || snapSize > math.MaxInt {
			return persist.State{}, fmt.Errorf("persist/plugin: load: snapshot of %d bytes announced", snapSize)
		}
		st.Snapshot.Data = make([]byte, 0, snapSize)
	}
	st.Entries = make([]persist.Entry, 0, min(hdr.GetEntryCount(), 1<<20))
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return persist.State{}, fromStatus("load", err)
		}
		switch p := msg.GetPart().(type) {
		case *persistv1.LoadResponse_SnapshotChunk:
			if st.Snapshot.Data, err = appendChunk("load", st.Snapshot.Data, p.SnapshotChunk, snapMeta.GetSizeBytes()); err != nil {
				return persist.State{}, err
			}
		case *persistv1.LoadResponse_Entries:
			es, err := persistwire.EntriesFromProto(p.Entries.GetEntries())
			if err != nil {
				return persist.State{}, invalidLoad(err)
			}
			if uint64(len(st.Entries))+uint64(len(es)) > hdr.GetEntryCount() {
				return persist.State{}, fmt.Errorf("persist/plugin: load: %w: more than the %d entries announced",
					persist.ErrUnavailable, hdr.GetEntryCount())
			}
			st.Entries = append(st.Entries, es...)
		default:
			return persist.State{}, fmt.Errorf("persist/plugin: load: unexpected stream message %T", p)
		}
	}
	if uint64(len(st.Snapshot.Data)) != snapMeta.GetSizeBytes() || uint64(len(st.Entries)) != hdr.GetEntryCount() {
		return persist.State{}, fmt.Errorf("persist/plugin: load: %w: got %d snapshot bytes and %d entries, header said %d and %d",
			persist.ErrUnavailable, len(st.Snapshot.Data), len(st.Entries), snapMeta.GetSizeBytes(), hdr.GetEntryCount())
	}
	if snapMeta != nil {
		if st.Snapshot, err = persistwire.SnapshotFromProto(snapMeta, st.Snapshot.Data); err != nil {
			return persist.State{}, invalidLoad(err)
		}
	}
	c.size.Store(int64(hdr.GetLogSizeBytes()))
	return st, nil
}

// CanLoadSnapshot implements persist.SnapshotLoader: whether the plugin said
// at Open that it serves LoadSnapshot (one built before it did not), and
// has not answered it with Unimplemented since.
func (c *Client) CanLoadSnapshot() bool { return c.canLoad.Load() }

// LoadSnapshot implements persist.SnapshotLoader: one streamed RPC, the
// data in chunks of at most ChunkBytes. gRPC streams are safe to open
// concurrently with the other calls.
func (c *Client) LoadSnapshot(ctx context.Context) (persist.Snapshot, error) {
	if err := c.check(); err != nil {
		return persist.Snapshot{}, err
	}
	if !c.canLoad.Load() {
		return persist.Snapshot{}, fmt.Errorf("persist/plugin: load snapshot: %w", errors.ErrUnsupported)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream if we return early
	stream, err := c.rpc.LoadSnapshot(ctx, &persistv1.LoadSnapshotRequest{MaxChunkBytes: ChunkBytes})
	if err != nil {
		return persist.Snapshot{}, c.loadSnapshotError(err)
	}
	msg, err := stream.Recv()
	if err != nil {
		return persist.Snapshot{}, c.loadSnapshotError(err)
	}
	meta := msg.GetMetadata()
	if meta == nil {
		return persist.Snapshot{}, fmt.Errorf("persist/plugin: load snapshot: %w: stream does not start with metadata", persist.ErrUnavailable)
	}
	size := meta.GetSizeBytes()
	if size > maxSnapshotBytes || size > math.MaxInt {
		return persist.Snapshot{}, fmt.Errorf("persist/plugin: load snapshot: snapshot of %d bytes announced", size)
	}
	data := make([]byte, 0, size)
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return persist.Snapshot{}, c.loadSnapshotError(err)
		}
		chunk, ok := msg.GetPart().(*persistv1.LoadSnapshotResponse_Chunk)
		if !ok {
			return persist.Snapshot{}, fmt.Errorf("persist/plugin: load snapshot: unexpected stream message %T", msg.GetPart())
		}
		if data, err = appendChunk("load snapshot", data, chunk.Chunk, size); err != nil {
			return persist.Snapshot{}, err
		}
	}
	if uint64(len(data)) != size {
		return persist.Snapshot{}, fmt.Errorf("persist/plugin: load snapshot: %w: got %d bytes, metadata said %d",
			persist.ErrUnavailable, len(data), size)
	}
	if meta.GetLastIncludedIndex() == 0 {
		return persist.Snapshot{}, nil
	}
	snap, err := persistwire.SnapshotFromProto(meta, data)
	if err != nil {
		return persist.Snapshot{}, fmt.Errorf("persist/plugin: load snapshot: %w: %w", persist.ErrCorrupt, err)
	}
	return snap, nil
}

// appendChunk appends a streamed chunk of snapshot data to data, or fails
// once the stream carries more than the size its first message announced:
// a broken plugin's endless stream is not read to its end (a raft sender
// waits for LoadSnapshot with no timeout but Kill).
func appendChunk(op string, data, chunk []byte, size uint64) ([]byte, error) {
	if uint64(len(data))+uint64(len(chunk)) > size {
		return data, fmt.Errorf("persist/plugin: %s: %w: more data than the %d bytes announced", op, persist.ErrUnavailable, size)
	}
	return append(data, chunk...), nil
}

// loadSnapshotError is fromStatus for LoadSnapshot, except that a plugin
// without the RPC (Unimplemented) means the store cannot load its snapshot,
// not that it failed: the client does not call it again.
func (c *Client) loadSnapshotError(err error) error {
	if status.Code(err) == codes.Unimplemented {
		c.canLoad.Store(false)
		return fmt.Errorf("persist/plugin: load snapshot: %w: %w", errors.ErrUnsupported, err)
	}
	return fromStatus("load snapshot", err)
}

// invalidLoad is the error of a Load whose state fails persistwire's
// checks: the store handed out data a replica must not use.
func invalidLoad(err error) error {
	return fmt.Errorf("persist/plugin: load: %w: %w", persist.ErrCorrupt, err)
}

// Append implements persist.Store: one frame on the direct channel if the
// plugin serves one, else one RPC.
func (c *Client) Append(ctx context.Context, hs persist.HardState, entries []persist.Entry) error {
	if err := c.check(); err != nil {
		return err
	}
	if c.direct != nil {
		fig, answered, err := c.direct.append(ctx, hs, entries)
		if answered {
			c.setSize(fig)
		}
		return err
	}
	resp, err := c.rpc.Append(ctx, &persistv1.AppendRequest{HardState: persistwire.HardStateToProto(hs), Entries: persistwire.EntriesToProto(entries)})
	if err != nil {
		return fromStatus("append", err)
	}
	c.setSize(figure{size: int64(resp.GetLogSizeBytes()), seq: resp.GetSizeSequence()})
	return nil
}

// figure is a size figure the plugin reported and its number (0 from a
// plugin that does not number them).
type figure struct {
	size int64
	seq  uint64
}

// setSize records f unless the plugin numbers its figures and f is older
// than the one recorded. An unnumbered figure always wins: such a plugin
// gets no call beside another, so its answers come in order.
func (c *Client) setSize(f figure) {
	c.sizeMu.Lock()
	defer c.sizeMu.Unlock()
	if c.sequenced {
		if f.seq <= c.sizeSeq {
			return
		}
		c.sizeSeq = f.seq
	}
	c.size.Store(f.size)
}

// SaveSnapshot implements persist.Store, streaming the data in chunks of at
// most ChunkBytes.
func (c *Client) SaveSnapshot(ctx context.Context, snap persist.Snapshot) error {
	if err := c.check(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // aborts the stream if we return early
	stream, err := c.rpc.SaveSnapshot(ctx)
	if err != nil {
		return fromStatus("save snapshot", err)
	}
	meta := persistwire.SnapshotMetadataToProto(snap)
	off := 0
	for first := true; first || off < len(snap.Data); first = false {
		end := min(off+ChunkBytes, len(snap.Data))
		msg := &persistv1.SaveSnapshotRequest{Chunk: snap.Data[off:end]}
		if first {
			msg.Metadata = meta
		}
		if err := stream.Send(msg); err != nil {
			// The server ended the stream; its status comes with CloseAndRecv.
			break
		}
		off = end
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return fromStatus("save snapshot", err)
	}
	c.setSize(figure{size: int64(resp.GetLogSizeBytes()), seq: resp.GetSizeSequence()})
	return nil
}

// Size implements persist.Store: the figure the plugin reported with its last
// answer.
func (c *Client) Size() int64 { return c.size.Load() }

// Close implements persist.Store: it closes the plugin's store. It does not
// stop the plugin process (Store.Close does).
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	if c.direct != nil {
		_ = c.direct.close() // the plugin stops serving it on EOF
	}
	if c.offer != nil {
		_ = c.offer.Close()
	}
	if c.down != nil && c.down() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if _, err := c.rpc.Close(ctx, &persistv1.CloseRequest{}); err != nil {
		return fromStatus("close", err)
	}
	return nil
}

// closeTimeout bounds the wait for a plugin's store to close (badger
// flushes its memtable); a plugin that takes longer is killed, which its
// store survives as it survives a crash.
var closeTimeout = 10 * time.Second
