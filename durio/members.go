package durio

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	"github.com/ruaft/ruaft/kvraft/kvwire"
	"github.com/ruaft/ruaft/raft"
	"github.com/ruaft/ruaft/raft/twirptransport"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// This file keeps a replica's address book in step with the cluster's
// membership, which lives in raft's replicated configuration: every member
// carries, in raft.Member.Addr (opaque to raft), its peer and client URLs.

// memberAddr is what durio stores in raft.Member.Addr: how to reach a
// replica.
type memberAddr struct {
	// Peer is the peer listener's URL.
	Peer string `json:"peer"`
	// Client is the client listener's URL; may be empty.
	Client string `json:"client,omitempty"`
}

// encodeAddr is the raft.Member.Addr of a replica at peer and client.
func encodeAddr(peer, client string) string {
	b, _ := json.Marshal(memberAddr{Peer: peer, Client: client})
	return string(b)
}

// decodeAddr reads a raft.Member.Addr. An empty or unreadable one (a
// configuration bootstrapped without addresses) decodes as the zero value,
// for which the replica falls back to its --peers and --client-urls.
func decodeAddr(addr string) memberAddr {
	var a memberAddr
	if addr != "" && json.Unmarshal([]byte(addr), &a) != nil {
		return memberAddr{}
	}
	return a
}

// member is one replica of the configuration, with its addresses decoded.
type member struct {
	ID      int
	Learner bool
	memberAddr
}

// bootstrapMembers is the first configuration of a cluster started with
// --peers: replica i at Peers[i] (and ClientURLs[i]), every one a voter.
func bootstrapMembers(cfg Config) []raft.Member {
	if len(cfg.Peers) == 0 {
		return nil
	}
	out := make([]raft.Member, len(cfg.Peers))
	for i, p := range cfg.Peers {
		client := ""
		if i < len(cfg.ClientURLs) {
			client = cfg.ClientURLs[i]
		}
		out[i] = raft.Member{ID: i, Addr: encodeAddr(p, client)}
	}
	return out
}

// directory is a replica's address book: the members of the configuration
// raft holds, and how to reach each one. It feeds the peer transport, the
// frontend's clerk (it is the clerk's kvclient.Servers: this replica's
// kvraft server for itself, a batching Forwarder over the peer listener for
// each other member), leader hints and /status. A replica that is not a
// member (one still joining) is in it too, so that it serves its own reads.
type directory struct {
	self     int
	selfAddr memberAddr
	local    kvclient.Service // this replica's kvraft server
	localKV  kvv1.KVService   // the same, as kv.v1 (for /status)
	// fallback gives the addresses of a member stored without them: its
	// --peers and --client-urls entries.
	fallback  func(id int) memberAddr
	transport *twirptransport.Transport
	peerHTTP  *http.Client
	// streams carries forwarded write batches (nil: the stream is off).
	streams *twirptransport.StreamPool
	fcfg    kvwire.ForwarderConfig
	logger  *slog.Logger

	mu      sync.Mutex // guards members, remotes, ids, clientHosts
	members []member   // sorted by id; the configuration in force
	remotes map[int]*remote
	ids     []int // the members' ids and self, sorted
	// clientHosts are the host names (lower case) of the members' client
	// URLs and this replica's own (isClientHost).
	clientHosts map[string]bool
}

// remote is how this replica reaches another one.
type remote struct {
	addr       memberAddr
	kv         kvv1.KVService         // its KVService on the peer listener
	fwd        *kvwire.Forwarder      // writes, batched
	membership kvv1.MembershipService // its MembershipService on the peer listener
}

var _ kvclient.Servers = (*directory)(nil)

// Server implements kvclient.Servers.
func (d *directory) Server(id int) kvclient.Service {
	if id == d.self {
		return d.local
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := d.remotes[id]; r != nil {
		return r.fwd
	}
	return nil
}

// IDs implements kvclient.Servers.
func (d *directory) IDs() []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ids
}

// Members returns the configuration in force (a copy), sorted by id.
func (d *directory) Members() []member {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.members)
}

// isClientHost reports whether host (lower case) is the host of a member's
// client URL, or of this replica's: the browser policy accepts it for
// same-origin requests (Limits.memberHost).
func (d *directory) isClientHost(host string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.clientHosts[host]
}

func clientURLsOf(ms []member) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		if m.Client != "" {
			out = append(out, m.Client)
		}
	}
	return out
}

// clientURL is member id's client URL, or "" if unknown: for leader hints.
func (d *directory) clientURL(id int) string {
	if id == d.self {
		return d.selfAddr.Client
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := d.remotes[id]; r != nil {
		return r.addr.Client
	}
	return ""
}

// peerURL is member id's peer URL, or "" if it is not a member.
func (d *directory) peerURL(id int) string {
	if id == d.self {
		return d.selfAddr.Peer
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := d.remotes[id]; r != nil {
		return r.addr.Peer
	}
	return ""
}

// membershipOf returns the MembershipService of member id's peer listener,
// or nil if it is not a member.
func (d *directory) membershipOf(id int) kvv1.MembershipService {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := d.remotes[id]; r != nil {
		return r.membership
	}
	return nil
}

// statusTargets returns every member's (and this replica's) kv.v1 view, by
// id, for /status.
func (d *directory) statusTargets() map[int]kvv1.KVService {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[int]kvv1.KVService, len(d.remotes)+1)
	out[d.self] = d.localKV
	for id, r := range d.remotes {
		out[id] = r.kv
	}
	return out
}

// update installs a new configuration: the transport's address book, a
// Forwarder and clients per other member (kept for members whose peer URL
// did not change), leader hints. Forwarders of members that left or moved
// are closed after the directory stops handing them out; Close waits for
// their calls in flight, which the clerk then retries elsewhere.
func (d *directory) update(ms raft.Membership) {
	next := make([]member, 0, len(ms.Members))
	for _, m := range ms.Members {
		a := decodeAddr(m.Addr)
		if a.Peer == "" {
			a = d.fallback(m.ID)
		}
		if m.ID == d.self && a.Client == "" {
			a.Client = d.selfAddr.Client
		}
		next = append(next, member{ID: m.ID, Learner: m.Learner, memberAddr: a})
	}
	slices.SortFunc(next, func(a, b member) int { return a.ID - b.ID })
	var closing []*kvwire.Forwarder
	d.mu.Lock()
	if slices.Equal(next, d.members) && d.remotes != nil {
		d.mu.Unlock()
		return
	}
	old := d.remotes
	d.remotes = make(map[int]*remote, len(next))
	book := make(map[int]string, len(next))
	ids := []int{d.self}
	for _, m := range next {
		if m.ID == d.self {
			continue
		}
		ids = append(ids, m.ID)
		if m.Peer == "" {
			continue // no address known: unreachable until the configuration gives one
		}
		book[m.ID] = m.Peer
		if r := old[m.ID]; r != nil && r.addr.Peer == m.Peer {
			r.addr = m.memberAddr
			d.remotes[m.ID] = r
			delete(old, m.ID)
			continue
		}
		d.remotes[m.ID] = d.newRemote(m.memberAddr)
	}
	for _, r := range old {
		closing = append(closing, r.fwd)
	}
	slices.Sort(ids)
	d.ids = slices.Compact(ids)
	d.members = next
	d.clientHosts = make(map[string]bool, len(next)+1)
	for _, u := range append([]string{d.selfAddr.Client}, clientURLsOf(next)...) {
		if pu, err := url.Parse(u); err == nil && pu.Hostname() != "" {
			d.clientHosts[strings.ToLower(pu.Hostname())] = true
		}
	}
	d.transport.SetPeers(book)
	d.mu.Unlock()
	d.logger.Info("membership", "members", describeMembers(next))
	for _, f := range closing {
		f.Close()
	}
}

func (d *directory) newRemote(a memberAddr) *remote {
	kv := kvv1.NewKVServiceProtobufClient(a.Peer, d.peerHTTP)
	// NewForwarder fails only on an invalid configuration, which fcfg is not.
	fwd, err := kvwire.NewForwarder(kv, newPeerForwardService(a.Peer, d.peerHTTP, d.streams), d.fcfg)
	if err != nil {
		panic("durio: forwarder configuration: " + err.Error())
	}
	return &remote{addr: a, kv: kv, fwd: fwd, membership: kvv1.NewMembershipServiceProtobufClient(a.Peer, d.peerHTTP)}
}

// close closes every Forwarder.
func (d *directory) close() {
	d.mu.Lock()
	remotes := d.remotes
	d.remotes = nil
	d.mu.Unlock()
	for _, r := range remotes {
		r.fwd.Close()
	}
}

// describeMembers is a log-friendly summary: "0=voter@http://h:7000 ...".
func describeMembers(ms []member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = strconv.Itoa(m.ID) + "=" + MemberRole(m.Learner) + "@" + m.Peer
	}
	return out
}

// follow keeps d in step with the node's configuration until ctx ends: at
// every event the node publishes (membership changes among them), and every
// membershipPoll as a safety net, since events coalesce.
func (d *directory) follow(ctx context.Context, subscribe func() (<-chan raft.Event, func()), current func() raft.Membership) {
	events, cancel := subscribe()
	defer cancel()
	tick := time.NewTicker(membershipPoll)
	defer tick.Stop()
	for {
		d.update(current())
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-tick.C:
		}
	}
}

// membershipPoll bounds how long the address book may lag a configuration
// change whose event was coalesced away.
const membershipPoll = time.Second

// membersCollector exports the configuration as Prometheus metrics: how
// many voters and learners there are (every replica), and on the leader
// each other member's replication lag, so a dashboard shows a learner
// catching up.
type membersCollector struct {
	dir  *directory
	node memberNode
}

var (
	votersDesc  = prometheus.NewDesc("durio_cluster_voters", "Voting members of the configuration this replica holds.", nil, nil)
	learnerDesc = prometheus.NewDesc("durio_cluster_learners", "Learners (non-voting members) of the configuration this replica holds.", nil, nil)
	lagDesc     = prometheus.NewDesc("durio_member_lag_entries",
		"Entries a member is behind the leader's last log index (exported by the leader only).", []string{"member", "role"}, nil)
	activeDesc = prometheus.NewDesc("durio_member_recent_active",
		"1 if the member answered the leader recently (exported by the leader only).", []string{"member", "role"}, nil)
	memberLevelDesc = prometheus.NewDesc("durio_member_apply_level",
		"The highest apply level a member reported supporting (exported by the leader only; 0 until it answers, and from versions without levels): "+
			"a member below durio_apply_level_supported is left to upgrade.", []string{"member", "role"}, nil)
)

// Describe implements prometheus.Collector.
func (c membersCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- votersDesc
	ch <- learnerDesc
	ch <- lagDesc
	ch <- activeDesc
	ch <- memberLevelDesc
}

// Collect implements prometheus.Collector.
func (c membersCollector) Collect(ch chan<- prometheus.Metric) {
	var voters, learners float64
	members := c.dir.Members()
	for _, m := range members {
		if m.Learner {
			learners++
		} else {
			voters++
		}
	}
	ch <- prometheus.MustNewConstMetric(votersDesc, prometheus.GaugeValue, voters)
	ch <- prometheus.MustNewConstMetric(learnerDesc, prometheus.GaugeValue, learners)
	st := c.node.Status()
	if st.Role != raft.Leader {
		return
	}
	progress := c.node.Progress()
	for _, m := range members {
		p, ok := progress[m.ID]
		if m.ID == c.dir.self || !ok {
			continue
		}
		labels := []string{strconv.Itoa(m.ID), MemberRole(m.Learner)}
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(st.LastIndex-min(p.Match, st.LastIndex)), labels...)
		ch <- prometheus.MustNewConstMetric(activeDesc, prometheus.GaugeValue, b2f(p.RecentActive), labels...)
		ch <- prometheus.MustNewConstMetric(memberLevelDesc, prometheus.GaugeValue, float64(p.AppVersion), labels...)
	}
}

// MemberJSON is one member as GET /status and `durio member list --json`
// show it.
type MemberJSON struct {
	ID            int    `json:"id"`
	Role          string `json:"role"`
	PeerURL       string `json:"peer_url"`
	ClientURL     string `json:"client_url,omitempty"`
	ProgressKnown bool   `json:"progress_known"`
	Match         uint64 `json:"match_index"`
	Lag           uint64 `json:"lag_entries"`
	RecentActive  bool   `json:"recent_active"`
	// ApplyLevel is the apply level the member reported (kv.v1.Member);
	// valid with ProgressKnown.
	ApplyLevel uint32 `json:"apply_level"`
}

// MemberRole names a member's role: "learner" or "voter".
func MemberRole(learner bool) string {
	if learner {
		return "learner"
	}
	return "voter"
}

// memberSummary is the configuration for /status: the leader's view with
// each member's lag (asked through members, which forwards), or this
// replica's own view without progress when no leader answers in time.
func (r *Replica) memberSummary(ctx context.Context, members kvv1.MembershipService) []MemberJSON {
	if resp, err := members.MemberList(ctx, &kvv1.MemberListRequest{}); err == nil {
		out := make([]MemberJSON, len(resp.GetMembers()))
		for i, m := range resp.GetMembers() {
			out[i] = MemberJSON{ID: int(m.GetId()), Role: MemberRole(m.GetLearner()), PeerURL: m.GetPeerUrl(),
				ClientURL: m.GetClientUrl(), ProgressKnown: m.GetProgressKnown(), Match: m.GetMatchIndex(),
				Lag: m.GetLagEntries(), RecentActive: m.GetRecentActive(), ApplyLevel: m.GetApplyLevel()}
		}
		return out
	}
	var out []MemberJSON
	for _, m := range r.dir.Members() {
		out = append(out, MemberJSON{ID: m.ID, Role: MemberRole(m.Learner), PeerURL: m.Peer, ClientURL: m.Client})
	}
	return out
}
