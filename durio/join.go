package durio

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/durio/client"
	"github.com/ruaft/ruaft/kvraft"
	"github.com/ruaft/ruaft/kvraft/kvwire"
	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/raft/twirptransport"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// How a replica joins a cluster (durio serve --join):
//
//  1. Before it starts, it asks the cluster (MemberList, at any of the
//     --join URLs) for its cluster id and members, and checks its data
//     folder: an empty store is fine (the cluster id is recorded in the
//     folder); a store holding raft state must carry the same cluster id
//     (a restart of a replica that joined), otherwise it belongs to another
//     cluster and the replica refuses to start (ErrForeignDataDir). A
//     restart asks for at most joinRestartAsk: its vote may be what the
//     cluster needs to elect the leader that would answer.
//  2. It starts with an empty configuration: it does not campaign, and
//     waits for the leader to send it the log or a snapshot.
//  3. Unless it is a member already, or was one (its store holds raft
//     state: a removed replica stays out), it asks to be added as a
//     learner (MemberAdd) at its --peer-url and --client-url.
//  4. The joiner, not the leader, asks to be promoted: it calls
//     MemberPromote for itself (through its own client service, which
//     forwards to the leader) every joinRetry until the leader accepts,
//     which it does once the learner is within raft's MaxPromoteLag entries
//     of the leader's log and answering. An operator who wants to promote by
//     hand instead removes nothing: `durio member promote` works as well,
//     and the joiner then finds itself a voter and stops asking.

// clusterIDFile is the file in the data folder that names the cluster the
// replica's state belongs to.
const clusterIDFile = "cluster-id"

// ErrForeignDataDir is returned when a replica is asked to join a cluster
// with a data folder that holds another cluster's state.
var ErrForeignDataDir = errors.New("durio: the data folder holds another cluster's state")

// joinTimeout bounds how long a joining replica waits for the cluster to
// answer before it gives up (and exits, to be restarted).
const joinTimeout = time.Minute

// joinRestartAsk bounds how long a replica restarted with --join and the
// data folder it joined with waits for the cluster's member list before it
// starts on its own state. Longer than a replica's default request timeout,
// so that a cluster that has a leader answers.
const joinRestartAsk = 10 * time.Second

// joinRetry is the pause between attempts to join and to be promoted.
const joinRetry = 300 * time.Millisecond

// joinSilentWarn is how long a replica added by its join waits for the
// leader's first message before it warns that the others cannot reach it,
// and then how often it warns again. A variable for tests.
var joinSilentWarn = 30 * time.Second

// joinRetryLogEvery is how often a join that keeps failing says so at
// info level.
const joinRetryLogEvery = 5 * time.Second

// joinHTTPClient is the client a joining replica asks the cluster with
// (cfg.Join): the system's roots, and with cfg.PeerCA that CA as well, so
// that client URLs served with a certificate from the cluster's own CA
// (durio certs) are trusted as the peers are.
func joinHTTPClient(cfg Config) (*http.Client, error) {
	if cfg.PeerCA == "" {
		return twirptransport.NewHTTPClient(nil), nil
	}
	ca, err := os.ReadFile(cfg.PeerCA)
	if err != nil {
		return nil, configErr("peer-ca", "%v", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(ca) {
		return nil, configErr("peer-ca", "%s holds no PEM certificate", cfg.PeerCA)
	}
	return twirptransport.NewHTTPClient(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}), nil
}

// bootstrapClusterID names a cluster bootstrapped with --peers: a digest of
// its first members and --cluster-token, which every one of them computes
// alike. Two clusters bootstrapped with the very same peer URLs and no
// token (or the same one) share it. Without a token the digest is the one
// of versions before the token, so existing clusters keep their ids.
func bootstrapClusterID(cfg Config) string {
	h := sha256.New()
	h.Write([]byte("durio-cluster\n"))
	for _, m := range bootstrapMembers(cfg) {
		fmt.Fprintf(h, "%d %s\n", m.ID, decodeAddr(m.Addr).Peer)
	}
	if cfg.ClusterToken != "" {
		fmt.Fprintf(h, "token %s\n", cfg.ClusterToken)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// clusterHeader carries the sender's cluster id on every peer request and
// on the peer stream's upgrade (see requireCluster).
const clusterHeader = "Durio-Cluster"

// requireCluster checks the cluster id a peer request names in
// clusterHeader against id, before its body is read: a replica of another
// cluster (one bootstrapped with the same peer URLs, or pointed here by
// mistake) must not drive this one's raft. With enforce it answers such a
// request 412 (a Twirp "failed_precondition" error); without (an id
// recorded by a version before the check, see readClusterID) it serves it
// and only logs. A request without the header is served: a replica from
// before the header, during a rolling upgrade, or an operator's tool
// (pprof). Either way it logs at most once a minute.
func requireCluster(id string, enforce bool, logger *slog.Logger, next http.Handler) http.Handler {
	start := time.Now()
	var lastLog atomic.Int64 // time.Since(start) of the last log
	lastLog.Store(-int64(time.Minute))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get(clusterHeader)
		if got == "" || got == id {
			next.ServeHTTP(w, r)
			return
		}
		if now, last := int64(time.Since(start)), lastLog.Load(); now-last >= int64(time.Minute) && lastLog.CompareAndSwap(last, now) {
			args := []any{"cluster_id", id, "caller_cluster_id", got[:min(len(got), 64)], "remote", r.RemoteAddr, "path", r.URL.Path}
			if enforce {
				logger.Warn("refused a peer request naming another cluster: a replica of another cluster, "+
					"or one of this cluster bootstrapped with --peers or --cluster-token spelled differently", args...)
			} else {
				logger.Warn("served a peer request naming another cluster, because this replica's cluster id was recorded "+
					"by a version that did not check it: if the caller is not a member, it is a replica of another cluster "+
					"and must be stopped; if it is, make the members' "+clusterIDFile+" files agree", args...)
			}
		}
		if !enforce {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Connection", "close")
		_ = twirp.WriteError(w, twirp.NewError(twirp.FailedPrecondition, "this replica belongs to cluster "+id+", the caller to another"))
	})
}

// clusterIDCheckedFile, next to clusterIDFile, says that the recorded id
// is enforced on peer requests (requireCluster). Versions before the check
// wrote no such file, and computed the id from each replica's own spelling
// of --peers, which may differ between the members of a cluster that works
// (localhost on one, 127.0.0.1 on another): their ids are not enforced.
// A file of its own, not a second line, so that those versions still read
// the id file written now.
const clusterIDCheckedFile = clusterIDFile + ".checked"

// readClusterID returns the cluster id recorded in dir, or "" if none, and
// whether it is enforced on peer requests (clusterIDCheckedFile).
func readClusterID(dir string) (id string, checked bool, err error) {
	data, err := os.ReadFile(filepath.Join(dir, clusterIDFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	_, err = os.Stat(filepath.Join(dir, clusterIDCheckedFile))
	if errors.Is(err, os.ErrNotExist) {
		return strings.TrimSpace(string(data)), false, nil
	}
	return strings.TrimSpace(string(data)), err == nil, err
}

// validClusterID reports whether id has the form bootstrapClusterID gives
// (16 lowercase hexadecimal digits): an id learned from the cluster goes
// into a file and a header.
func validClusterID(id string) bool {
	if len(id) != 16 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// writeClusterID records id in dir, durably, as enforced on peer requests:
// the id file, then the marker (a crash between the two leaves an id that
// is not enforced, as before the check).
func writeClusterID(dir, id string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	if err := writeFileSynced(filepath.Join(dir, clusterIDFile), id+"\n"); err != nil {
		return err
	}
	return writeFileSynced(filepath.Join(dir, clusterIDCheckedFile), "the cluster id is checked on peer requests\n")
}

// writeFileSynced replaces path with data: written to a temporary name,
// synced, then renamed over it.
func writeFileSynced(path, data string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	_, err = f.WriteString(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// clusterIDOf returns the cluster id of a replica started with --peers: the
// one its data folder records, else the bootstrap digest (recorded then,
// enforced); and whether it is enforced on peer requests.
func clusterIDOf(cfg Config) (string, bool, error) {
	id, checked, err := readClusterID(cfg.DataDir)
	if err != nil || id != "" {
		return id, checked, err
	}
	id = bootstrapClusterID(cfg)
	return id, true, writeClusterID(cfg.DataDir, id)
}

// storeEmpty reports whether store holds no raft state at all.
func storeEmpty(ctx context.Context, store persist.Store) (bool, error) {
	st, err := store.Load(ctx)
	if err != nil {
		return false, err
	}
	return st.HardState.Term == 0 && st.Snapshot.Index == 0 && len(st.Entries) == 0, nil
}

// joinPlan is what prepareJoin found out.
type joinPlan struct {
	clusterID string
	// clusterChecked: the id is enforced on peer requests (readClusterID).
	clusterChecked bool
	member         bool // this id is a member already, at this peer URL
	clients        []kvv1.MembershipService
	// addrs are the members' addresses as the cluster listed them: the
	// directory's fallback for members whose configuration entry carries
	// none.
	addrs map[int]memberAddr
}

// prepareJoin asks the cluster for its id and members and checks the data
// folder against them (step 1 above).
func prepareJoin(ctx context.Context, cfg Config, store persist.Store, hc *http.Client, logger *slog.Logger) (*joinPlan, error) {
	plan := &joinPlan{}
	if t := cfg.clientTokens; t != nil && t.admin != "" {
		// The members check tokens on their client listeners: ask them
		// with the first admin token of this replica's own file (a
		// cluster's replicas share one).
		authed, err := client.WithToken(hc, t.admin)
		if err != nil {
			return nil, fmt.Errorf("durio: join: %w", err)
		}
		hc = authed
	}
	for _, u := range cfg.Join {
		plan.clients = append(plan.clients, kvv1.NewMembershipServiceProtobufClient(strings.TrimRight(u, "/"), hc))
	}
	local, checked, err := readClusterID(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("durio: join: %w", err)
	}
	empty, err := storeEmpty(ctx, store)
	if err != nil {
		return nil, fmt.Errorf("durio: join: reading the store: %w", err)
	}
	// A store holding raft state was sent to this replica by a leader that
	// had added it: a member, or one since removed, but never one to add
	// again (ids are not reused; a removed replica restarted must stay out).
	restart := !empty && local != ""
	askCtx := ctx
	if restart {
		// The cluster may be unable to answer because it is restarting
		// too and needs this replica's vote: do not wait for it long.
		var cancel context.CancelFunc
		askCtx, cancel = context.WithTimeout(ctx, joinRestartAsk)
		defer cancel()
	}
	var list *kvv1.MemberListResponse
	err = plan.each(askCtx, logger, "asking the cluster for its members", func(ctx context.Context, ms kvv1.MembershipService) (err error) {
		list, err = ms.MemberList(ctx, &kvv1.MemberListRequest{})
		return err
	})
	if err != nil && restart && askCtx.Err() != nil && ctx.Err() == nil {
		logger.Warn("join: the cluster did not answer; restarting on the data folder's state", "cluster_id", local, "err", err)
		plan.clusterID, plan.clusterChecked, plan.member = local, checked, true
		return plan, nil
	}
	if err != nil {
		return nil, fmt.Errorf("durio: join %s: %w", strings.Join(cfg.Join, ","), err)
	}
	plan.clusterID = list.GetClusterId()
	if !validClusterID(plan.clusterID) {
		return nil, fmt.Errorf("durio: join %s: the cluster answered cluster id %q, not 16 hexadecimal digits",
			strings.Join(cfg.Join, ","), plan.clusterID[:min(len(plan.clusterID), 64)])
	}
	plan.addrs = make(map[int]memberAddr, len(list.GetMembers()))
	for _, m := range list.GetMembers() {
		plan.addrs[int(m.GetId())] = memberAddr{Peer: m.GetPeerUrl(), Client: m.GetClientUrl()}
		if int(m.GetId()) != cfg.ID {
			continue
		}
		if m.GetPeerUrl() != cfg.PeerURL {
			return nil, configErr("id", "replica %d is already a member of the cluster, at %s (this replica's peer-url is %s): "+
				"choose an id no member has, or remove member %d first (durio member remove %d)",
				cfg.ID, m.GetPeerUrl(), cfg.PeerURL, cfg.ID, cfg.ID)
		}
		plan.member = true
	}
	plan.clusterChecked = checked
	switch {
	case !empty && local != plan.clusterID:
		seen := "no cluster id"
		if local != "" {
			seen = "cluster id " + local
		}
		return nil, fmt.Errorf("%w: refusing to join cluster %s with data folder %s, which holds raft state of another cluster (%s): "+
			"move the folder aside or start with an empty --data-dir", ErrForeignDataDir, plan.clusterID, cfg.DataDir, seen)
	case !empty:
		plan.member = true // restarted: listed or removed, it is not added again
	case local != plan.clusterID || !checked:
		if err := writeClusterID(cfg.DataDir, plan.clusterID); err != nil {
			return nil, fmt.Errorf("durio: join: %w", err)
		}
		plan.clusterChecked = true
	}
	return plan, nil
}

// each calls f at the join URLs in turn until one answers, retrying every
// joinRetry until joinTimeout. A Twirp error other than unavailable ends it.
func (p *joinPlan) each(ctx context.Context, logger *slog.Logger, what string, f func(context.Context, kvv1.MembershipService) error) error {
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	var last error
	var logged time.Time
	for try := 0; ; try++ {
		ms := p.clients[try%len(p.clients)]
		actx, acancel := context.WithTimeout(ctx, 10*time.Second)
		err := f(actx, ms)
		acancel()
		var terr twirp.Error
		if err == nil || errors.As(err, &terr) && !kvwire.NoAnswer(err) && !retryableMemberErr(terr) {
			return err
		}
		last = err
		if try%len(p.clients) == len(p.clients)-1 {
			// A round every joinRetry: said at info every few seconds,
			// the rounds between at debug.
			if time.Since(logged) >= joinRetryLogEvery {
				logger.Info("join: retrying", "step", what, "err", err)
				logged = time.Now()
			} else {
				logger.Debug("join: retrying", "step", what, "err", err)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: %w (last error: %w)", what, ctx.Err(), last)
			case <-time.After(joinRetry):
			}
		}
	}
}

// retryableMemberErr reports whether a membership call that failed with err
// may succeed later without anyone acting: no leader, another change in
// flight, a learner still catching up, an outcome not known yet.
func retryableMemberErr(err twirp.Error) bool {
	switch err.Code() {
	case twirp.Unavailable, twirp.DeadlineExceeded, twirp.Aborted:
		return true
	case twirp.FailedPrecondition:
		return err.Meta(kvwire.MetaReason) == ReasonLearnerBehind
	}
	return false
}

// join runs steps 3 and 4 in the background of a started replica, until it
// is a voter or ctx ends. Failures that retrying cannot fix are logged.
func (plan *joinPlan) run(ctx context.Context, r *Replica, members kvv1.MembershipService) {
	log := r.logger.With("layer", "join")
	if !plan.member {
		req := &kvv1.MemberAddRequest{Id: uint32(r.cfg.ID), PeerUrl: r.cfg.PeerURL, ClientUrl: r.cfg.ClientURL,
			ApplyLevel: kvraft.ApplyLevel}
		err := plan.each(ctx, log, "adding this replica as a learner", func(ctx context.Context, ms kvv1.MembershipService) error {
			_, err := ms.MemberAdd(ctx, req)
			var terr twirp.Error
			if errors.As(err, &terr) && terr.Meta(kvwire.MetaReason) == ReasonAlreadyMember && terr.Meta("peer_url") == r.cfg.PeerURL {
				return nil // an earlier attempt that timed out did add it
			}
			return err
		})
		if err != nil {
			if ctx.Err() == nil {
				// Stop (exit non-zero): the service manager restarts the
				// replica, which then tries again from the start.
				r.fatal(fmt.Errorf("durio: join: could not be added to the cluster: %w", err))
			}
			return
		}
		log.Info("join: added as a learner; catching up", "id", r.cfg.ID, "peer_url", r.cfg.PeerURL)
	}
	added := time.Now()
	silent := added
	for {
		if r.isVoter() {
			log.Info("join: a voter now", "id", r.cfg.ID)
			return
		}
		if len(r.node.Membership().Members) == 0 && time.Since(silent) >= joinSilentWarn {
			// Added, but the leader's first message (the configuration
			// it was added in) never came: the others cannot reach it.
			log.Warn("join: added to the cluster, but no leader has reached this replica yet: check that the other "+
				"replicas can reach its --peer-url (address, port, firewall, TLS)", "peer_url", r.cfg.PeerURL,
				"waited", time.Since(added).Round(time.Second).String())
			silent = time.Now()
		}
		_, err := members.MemberPromote(ctx, &kvv1.MemberPromoteRequest{Id: uint32(r.cfg.ID)})
		var terr twirp.Error
		switch {
		case err == nil:
			log.Info("join: promoted to voter", "id", r.cfg.ID)
			return
		case errors.As(err, &terr) && terr.Meta(kvwire.MetaReason) == ReasonAlreadyVoter:
			return
		case errors.As(err, &terr) && terr.Code() == twirp.NotFound:
			log.Error("join: this replica is no longer a member (removed?); not asking to be promoted", "err", err)
			return
		case errors.As(err, &terr) && !retryableMemberErr(terr):
			log.Warn("join: promotion refused", "err", err)
		default:
			log.Debug("join: not promoted yet", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(joinRetry):
		}
	}
}

// isVoter reports whether this replica is a voter of the configuration in
// force.
func (r *Replica) isVoter() bool {
	for _, m := range r.node.Membership().Members {
		if m.ID == r.cfg.ID {
			return !m.Learner
		}
	}
	return false
}

// checkBootstrap logs when --peers disagrees with the replicated
// configuration, which wins.
func (r *Replica) checkBootstrap() {
	if len(r.cfg.Peers) == 0 {
		return
	}
	ms := r.node.Membership().Members
	if len(ms) == 0 {
		return
	}
	boot := bootstrapMembers(r.cfg)
	same := len(boot) == len(ms)
	for i := 0; same && i < len(ms); i++ {
		a := decodeAddr(ms[i].Addr)
		same = ms[i].ID == boot[i].ID && !ms[i].Learner && (a.Peer == "" || a.Peer == decodeAddr(boot[i].Addr).Peer)
	}
	if !same {
		r.logger.Warn("--peers disagrees with the cluster's replicated membership; using the replicated one "+
			"(--peers only bootstraps a new cluster)", "peers", r.cfg.Peers, "members", describeMembers(r.dir.Members()))
	}
}
