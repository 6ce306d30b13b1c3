package durio

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ruaft/ruaft/raft/twirptransport"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// methodWriteBatch is kv.v1.ForwardService's WriteBatch on the peer stream.
const methodWriteBatch = "kv.v1.ForwardService/WriteBatch"

// newPeerStreams is the pool of this replica's streams to its peers (nil
// with no-peer-stream): one connection per peer carries raft's RPCs and the
// write batches this replica forwards, with the peer listener's frame limit
// and authentication, naming clusterID (requireCluster).
func newPeerStreams(cfg Config, clientTLS *tls.Config, clusterID string) *twirptransport.StreamPool {
	if cfg.NoPeerStream {
		return nil
	}
	return twirptransport.NewStreamPool(twirptransport.StreamOptions{
		TLS: clientTLS, Token: cfg.PeerToken, MaxFrameBytes: int(cfg.MaxPeerBodyBytes),
		Header: http.Header{clusterHeader: {clusterID}},
		// Below the peers' idle timeout (the same setting), so that the
		// client side closes an idle stream and no call races a close.
		IdleTimeout: cfg.IdleTimeout / 2,
	})
}

// newPeerStreamServer serves the peer stream on the peer listener: raft's
// RPCs to node and forwarded write batches to batches, within the peer
// listener's limits (frame = body limit, idle and write timeouts).
func newPeerStreamServer(cfg Config, node twirptransport.Handlers, batches kvv1.ForwardService, logger *slog.Logger) *twirptransport.StreamServer {
	s := twirptransport.NewStreamServer(twirptransport.StreamServerOptions{
		MaxFrameBytes: int(cfg.MaxPeerBodyBytes), IdleTimeout: cfg.IdleTimeout, WriteTimeout: cfg.WriteTimeout, Logger: logger,
	})
	s.HandleRaft(node)
	s.Handle(methodWriteBatch, twirptransport.Unary(func() *kvv1.WriteBatchRequest { return new(kvv1.WriteBatchRequest) }, batches.WriteBatch))
	return s
}

// peerForwardService is kv.v1.ForwardService at one peer: over the peer
// stream when there is one and the peer offers it, else over Twirp.
type peerForwardService struct {
	stream *twirptransport.StreamClient // nil: Twirp only
	twirp  kvv1.ForwardService
}

func newPeerForwardService(peerURL string, peerHTTP *http.Client, streams *twirptransport.StreamPool) kvv1.ForwardService {
	f := peerForwardService{twirp: kvv1.NewForwardServiceProtobufClient(peerURL, peerHTTP)}
	if streams != nil {
		f.stream = streams.Client(peerURL)
	}
	return f
}

var _ kvv1.ForwardService = peerForwardService{}

// WriteBatch implements kv.v1.ForwardService. A batch that fails on the
// stream's side (not the peer's answer) has an unknown outcome, as a Twirp
// call that got no answer: kvwire.ErrorFromTwirp reads it so, and the
// writes are retried with their write ids.
func (f peerForwardService) WriteBatch(ctx context.Context, req *kvv1.WriteBatchRequest) (*kvv1.WriteBatchResponse, error) {
	return twirptransport.CallStream(ctx, f.stream, methodWriteBatch, req, f.twirp.WriteBatch)
}

// streamConnsGauge is durio_peer_stream_connections: the peer streams this
// replica serves (one per peer that talks to it, normally).
func streamConnsGauge(s *twirptransport.StreamServer) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "durio_peer_stream_connections",
		Help: "Upgraded peer stream connections this replica serves."}, func() float64 { return float64(s.Connections()) })
}
