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

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ruaft/ruaft/internal/exepages"
	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/persistwire"
	persistv1 "github.com/ruaft/ruaft/rpc/persist/v1"
)

// PluginName is the name the persister plugin is dispensed under.
const PluginName = "persister"

// Handshake is the go-plugin handshake between a host and a persister
// plugin. ProtocolVersion changes whenever rpc/persist/v1 changes
// incompatibly.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "RUAFT_PERSISTER_PLUGIN",
	MagicCookieValue: "9c1d0f5e-ruaft-persister",
}

// ChunkBytes is the most snapshot data (or entry data, in Load) one stream
// message carries.
const ChunkBytes = 1 << 20

// maxMessageBytes bounds one gRPC message, which bounds one Append batch.
const maxMessageBytes = 512 << 20

// Params are what the host passes to the plugin's store when it opens it.
type Params struct {
	// DataDir is the folder the store keeps its files in; the replica owns it.
	DataDir string
	// Sync makes every write durable before it returns. Off is for tests
	// and benchmarks only.
	Sync bool
	// Options are store-specific settings by name.
	Options map[string]string
}

// OpenFunc opens the store a plugin serves. It returns the store and a name
// for logs.
type OpenFunc func(p Params) (persist.Store, string, error)

// GRPCPlugin is the go-plugin plugin for the persister service: on the
// plugin side it serves the store Open opens; on the host side it yields a
// *Client.
type GRPCPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	// Open opens the store; needed on the plugin side only.
	Open OpenFunc

	// direct is the plugin's end of the direct Append channel (Serve sets
	// it from EnvAppendFD), or nil; srv is the server GRPCServer made, so
	// Serve can stop the channel.
	direct endpoint
	srv    *server
}

var _ goplugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer implements goplugin.GRPCPlugin.
func (p *GRPCPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	p.srv = &server{open: p.Open, direct: p.direct}
	persistv1.RegisterPersisterServiceServer(s, p.srv)
	return nil
}

// GRPCClient implements goplugin.GRPCPlugin; it returns a *Client, not yet
// open.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return &Client{rpc: persistv1.NewPersisterServiceClient(cc)}, nil
}

// server is the plugin side of the PersisterService over one store.
type server struct {
	persistv1.UnimplementedPersisterServiceServer
	open   OpenFunc
	direct endpoint // the direct Append channel, or nil

	mu      sync.Mutex    // guards st and serving; held only to read or set them, never across a store call
	st      persist.Store // nil before Open
	serving *directServer // serves direct once the store is open, or nil

	// figMu serializes reading a size figure (held across the store's
	// Size only) and numbering it with figSeq, the last number given.
	figMu  sync.Mutex
	figSeq uint64

	writes      atomic.Uint64 // Append and SaveSnapshot calls so far (releaseLoop)
	stopRelease chan struct{} // closed to stop releaseLoop, or nil if it does not run
	released    chan struct{} // closed when releaseLoop has returned
}

// stopDirect stops serving the direct channel, if it was served.
func (s *server) stopDirect() {
	s.mu.Lock()
	d := s.serving
	s.serving = nil
	s.mu.Unlock()
	if d != nil {
		d.stop()
	}
}

// figure reads st's size figure and numbers it: a figure read later gets a
// higher number, and so tells the host which of the answers it got on
// different streams (a SaveSnapshot beside Appends) is the latest.
func (s *server) figure(st persist.Store) figure {
	s.figMu.Lock()
	defer s.figMu.Unlock()
	s.figSeq++
	return figure{size: st.Size(), seq: s.figSeq}
}

func (s *server) store() (persist.Store, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil {
		return nil, status.Error(codes.FailedPrecondition, "persist/plugin: store not open")
	}
	return s.st, nil
}

func (s *server) Open(_ context.Context, req *persistv1.OpenRequest) (*persistv1.OpenResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock() // Open runs once, before anything else; holding the lock is fine
	if s.st != nil {
		return nil, status.Error(codes.FailedPrecondition, "persist/plugin: store already open")
	}
	if s.open == nil {
		return nil, status.Error(codes.Unimplemented, "persist/plugin: no store to open")
	}
	st, name, err := s.open(Params{DataDir: req.GetDataDir(), Sync: req.GetSync(), Options: req.GetOptions()})
	if err != nil {
		return nil, toStatus(err)
	}
	s.st = st
	if releaseAfterOpen {
		if _, err := exepages.Release(); err != nil {
			pluginLogger().Warn("persister plugin: release the binary's init pages", "err", err)
		}
		s.stopRelease, s.released = make(chan struct{}), make(chan struct{})
		go func(stop, done chan struct{}) {
			defer close(done)
			s.releaseLoop(stop)
		}(s.stopRelease, s.released)
	}
	resp := &persistv1.OpenResponse{StoreName: name, LogSizeBytes: uint64(st.Size()), LoadSnapshot: canLoadSnapshot(st),
		SnapshotsBesideAppends: persist.TakesSnapshotsBesideAppends(st), SizeSequence: req.GetSizeSequence()}
	if s.direct != nil {
		s.serving = serveDirect(s.direct, s, req.GetSizeSequence())
		resp.DirectAppend = true
	}
	return resp, nil
}

func (s *server) Load(req *persistv1.LoadRequest, stream grpc.ServerStreamingServer[persistv1.LoadResponse]) error {
	st, err := s.store()
	if err != nil {
		return err
	}
	state, err := st.Load(stream.Context())
	if err != nil {
		return toStatus(err)
	}
	chunk := int(req.GetMaxChunkBytes())
	if chunk <= 0 || chunk > ChunkBytes {
		chunk = ChunkBytes
	}
	hdr := &persistv1.LoadHeader{
		HardState:    persistwire.HardStateToProto(state.HardState),
		EntryCount:   uint64(len(state.Entries)),
		LogSizeBytes: uint64(st.Size()),
	}
	if snap := state.Snapshot; snap.Index > 0 {
		hdr.Snapshot = persistwire.SnapshotMetadataToProto(snap)
	}
	if err := stream.Send(&persistv1.LoadResponse{Part: &persistv1.LoadResponse_Header{Header: hdr}}); err != nil {
		return err
	}
	data := state.Snapshot.Data
	for off := 0; off < len(data); off += chunk {
		part := data[off:min(off+chunk, len(data))]
		if err := stream.Send(&persistv1.LoadResponse{Part: &persistv1.LoadResponse_SnapshotChunk{SnapshotChunk: part}}); err != nil {
			return err
		}
	}
	for es := state.Entries; len(es) > 0; {
		n, bytes := 0, 0
		for n < len(es) && (n == 0 || bytes+len(es[n].Data)+32 <= chunk) {
			bytes += len(es[n].Data) + 32
			n++
		}
		msg := &persistv1.LoadResponse{Part: &persistv1.LoadResponse_Entries{
			Entries: &persistv1.LoadEntries{Entries: persistwire.EntriesToProto(es[:n])}}}
		if err := stream.Send(msg); err != nil {
			return err
		}
		es = es[n:]
	}
	return nil
}

// canLoadSnapshot reports whether st can read its snapshot back.
func canLoadSnapshot(st persist.Store) bool {
	l, ok := st.(persist.SnapshotLoader)
	return ok && l.CanLoadSnapshot()
}

func (s *server) LoadSnapshot(req *persistv1.LoadSnapshotRequest, stream grpc.ServerStreamingServer[persistv1.LoadSnapshotResponse]) error {
	st, err := s.store()
	if err != nil {
		return err
	}
	if !canLoadSnapshot(st) {
		return status.Error(codes.Unimplemented, "persist/plugin: the store cannot load its snapshot")
	}
	snap, err := st.(persist.SnapshotLoader).LoadSnapshot(stream.Context())
	if err != nil {
		return toStatus(err)
	}
	chunk := int(req.GetMaxChunkBytes())
	if chunk <= 0 || chunk > ChunkBytes {
		chunk = ChunkBytes
	}
	meta := &persistv1.LoadSnapshotResponse_Metadata{Metadata: persistwire.SnapshotMetadataToProto(snap)}
	if err := stream.Send(&persistv1.LoadSnapshotResponse{Part: meta}); err != nil {
		return err
	}
	for off := 0; off < len(snap.Data); off += chunk {
		part := snap.Data[off:min(off+chunk, len(snap.Data))]
		if err := stream.Send(&persistv1.LoadSnapshotResponse{Part: &persistv1.LoadSnapshotResponse_Chunk{Chunk: part}}); err != nil {
			return err
		}
	}
	return nil
}

func (s *server) Append(ctx context.Context, req *persistv1.AppendRequest) (*persistv1.AppendResponse, error) {
	st, err := s.store()
	if err != nil {
		return nil, err
	}
	hs, err := persistwire.HardStateFromProto(req.GetHardState())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "persist/plugin: Append: %v", err)
	}
	entries, err := persistwire.EntriesFromProto(req.GetEntries())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "persist/plugin: Append: %v", err)
	}
	s.writes.Add(1)
	if err := st.Append(ctx, hs, entries); err != nil {
		return nil, toStatus(err)
	}
	fig := s.figure(st)
	return &persistv1.AppendResponse{LogSizeBytes: uint64(fig.size), SizeSequence: fig.seq}, nil
}

// maxSnapshotBytes bounds the buffer a SaveSnapshot stream may announce.
const maxSnapshotBytes = 16 << 30

func (s *server) SaveSnapshot(stream grpc.ClientStreamingServer[persistv1.SaveSnapshotRequest, persistv1.SaveSnapshotResponse]) error {
	st, err := s.store()
	if err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	meta := first.GetMetadata()
	if meta == nil {
		return status.Error(codes.InvalidArgument, "persist/plugin: SaveSnapshot: first message has no metadata")
	}
	if meta.GetSizeBytes() > maxSnapshotBytes || meta.GetSizeBytes() > math.MaxInt {
		return status.Errorf(codes.InvalidArgument, "persist/plugin: SaveSnapshot: %d bytes is too large", meta.GetSizeBytes())
	}
	data := make([]byte, 0, meta.GetSizeBytes())
	data = append(data, first.GetChunk()...)
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if msg.GetMetadata() != nil {
			return status.Error(codes.InvalidArgument, "persist/plugin: SaveSnapshot: metadata after the first message")
		}
		data = append(data, msg.GetChunk()...)
	}
	snap, err := persistwire.SnapshotFromProto(meta, data)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "persist/plugin: SaveSnapshot: %v", err)
	}
	s.writes.Add(1)
	if err := st.SaveSnapshot(stream.Context(), snap); err != nil {
		return toStatus(err)
	}
	fig := s.figure(st)
	return stream.SendAndClose(&persistv1.SaveSnapshotResponse{LogSizeBytes: uint64(fig.size), SizeSequence: fig.seq})
}

// releaseEvery is how often releaseLoop gives back the pages of the
// store's memory-mapped files, and releaseTrail for how many periods after
// the last write it goes on doing so (a write's flush and the compactions
// it sets off run after it).
const (
	releaseEvery = time.Second
	releaseTrail = 10
)

// releaseLoop gives back, every releaseEvery while the store is being
// written and for releaseTrail more, the pages of the store's
// memory-mapped files (exepages.ReleaseShared) until stop is closed. Badger
// writes its tables, write-ahead log and value log through shared mappings
// and reads the log back only at startup, so under writes the pages it
// wrote stayed in the plugin's resident set: 6-9 MiB of a badger plugin's
// under a put load (README, "Persister plugins"). Releasing them costs one
// read of /proc/self/maps and a madvise per mapping, and the pages badger
// touches again (the current write-ahead log page, tables being compacted)
// are read back from the file: 0.2-0.8 MB/s per plugin under put
// load, against none before. The binary's own pages are released once only
// (exepages.Release): the serving code refaults within a second, and
// releasing it every second cost 17% more plugin CPU per Append
// (BenchmarkAppendPaced).
func (s *server) releaseLoop(stop <-chan struct{}) {
	t := time.NewTicker(releaseEvery)
	defer t.Stop()
	var seen uint64
	idle := releaseTrail
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if w := s.writes.Load(); w != seen {
			seen, idle = w, 0
		} else if idle++; idle > releaseTrail {
			continue
		}
		if _, err := exepages.ReleaseShared(); err != nil {
			// An older kernel (before 5.4) has no MADV_PAGEOUT: it
			// fails the same way every time.
			pluginLogger().Warn("persister plugin: release the store's mapped pages; not trying again", "err", err)
			return
		}
	}
}

func (s *server) Close(context.Context, *persistv1.CloseRequest) (*persistv1.CloseResponse, error) {
	st, err := s.store()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	released := s.released
	if s.stopRelease != nil {
		close(s.stopRelease)
		s.stopRelease, s.released = nil, nil
	}
	s.mu.Unlock()
	if released != nil {
		<-released // no madvise while the store unmaps its files
	}
	if err := st.Close(); err != nil {
		return nil, toStatus(fmt.Errorf("close: %w", err))
	}
	return &persistv1.CloseResponse{}, nil
}
