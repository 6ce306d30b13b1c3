package durio

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/raft/twirptransport"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// The cluster id of a bootstrap without --cluster-token is the digest
// earlier versions recorded (pinned: a data folder's cluster-id file must
// stay valid across an upgrade); a token changes it, alike on every
// replica of the bootstrap.
func TestBootstrapClusterIDToken(t *testing.T) {
	peers := []string{"http://10.0.0.1:7001", "http://10.0.0.2:7001", "http://10.0.0.3:7001"}
	if got := bootstrapClusterID(Config{Peers: peers}); got != "cb9bf00f693e04f1" {
		t.Fatalf("cluster id without a token %s, want cb9bf00f693e04f1 (the one earlier versions recorded)", got)
	}
	prod := bootstrapClusterID(Config{Peers: peers, ClusterToken: "prod"})
	if prod == "cb9bf00f693e04f1" || prod == bootstrapClusterID(Config{Peers: peers, ClusterToken: "staging"}) {
		t.Fatalf("the token does not change the cluster id: %s", prod)
	}
	for id := range peers {
		if got := bootstrapClusterID(Config{ID: id, Peers: peers, ClusterToken: "prod"}); got != prod {
			t.Fatalf("replica %d computes %s, replica 0 %s", id, got, prod)
		}
	}
	cfg, err := ParseServeFlags([]string{"--peers", "http://127.0.0.1:7001", "--listen-client", "127.0.0.1:8001",
		"--cluster-token", "prod"})
	if err != nil || cfg.ClusterToken != "prod" {
		t.Fatalf("--cluster-token: %q, %v", cfg.ClusterToken, err)
	}
}

// A peer request or stream upgrade that names another cluster is refused
// with 412 before it reaches raft; one naming this cluster, or none (an
// older replica, an operator's tool), is served.
func TestPeerPlaneRefusesOtherCluster(t *testing.T) {
	c := startTestCluster(t, 3, "http", func(cfg *Config) { cfg.ClusterToken = "blue" })
	leader, term := c.waitLeader(t)
	id := c.replicas[0].clusterID
	if id == "" || id != c.replicas[2].clusterID {
		t.Fatalf("replicas' cluster ids %q and %q", id, c.replicas[2].clusterID)
	}
	if _, err := c.clients[0].Put(context.Background(), &kvv1.PutRequest{Key: "k", Value: "real"}); err != nil {
		t.Fatal(err)
	}
	other := twirptransport.WithHeader(&http.Client{}, clusterHeader, "0123456789abcdef")
	attack(t, c, other, "http")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i, r := range c.replicas {
		peerURL := "http://" + r.PeerAddr()
		_, err := kvv1.NewMembershipServiceProtobufClient(peerURL, other).MemberList(ctx, &kvv1.MemberListRequest{})
		var terr twirp.Error
		if !errors.As(err, &terr) || terr.Code() != twirp.FailedPrecondition {
			t.Errorf("replica %d: MemberList naming another cluster: %v, want failed_precondition", i, err)
		}
		for name, client := range map[string]*http.Client{
			"no cluster": {}, "this cluster": twirptransport.WithHeader(&http.Client{}, clusterHeader, id),
		} {
			// The peer plane's MemberList answers at the leader only; a
			// follower's "unavailable" shows the request was served too.
			resp, err := kvv1.NewMembershipServiceProtobufClient(peerURL, client).MemberList(ctx, &kvv1.MemberListRequest{})
			var terr twirp.Error
			switch {
			case i == leader && (err != nil || resp.GetClusterId() != id):
				t.Errorf("leader %d: MemberList naming %s: cluster %q, %v; want %q", i, name, resp.GetClusterId(), err, id)
			case i != leader && (!errors.As(err, &terr) || terr.Code() != twirp.Unavailable):
				t.Errorf("follower %d: MemberList naming %s: %v, want unavailable (not the leader)", i, name, err)
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, peerURL+twirptransport.StreamPath, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", twirptransport.StreamProtocol)
		req.Header.Set(clusterHeader, "0123456789abcdef")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusPreconditionFailed {
			t.Errorf("replica %d: stream upgrade naming another cluster: HTTP %d, want 412", i, resp.StatusCode)
		}
	}
	c.checkUntouched(t, leader, term)
}

// spellPeersDifferently makes the third replica configured name the others
// by "localhost" where the rest say "127.0.0.1": the same peers, another
// bootstrap cluster id.
func spellPeersDifferently() func(cfg *Config) {
	n := 0
	return func(cfg *Config) {
		if n == 2 {
			peers := make([]string, len(cfg.Peers))
			for i, p := range cfg.Peers {
				if i != 2 {
					p = strings.Replace(p, "127.0.0.1", "localhost", 1)
				}
				peers[i] = p
			}
			cfg.Peers = peers
		}
		n++
	}
}

// Replicas whose cluster ids an older version recorded (a cluster-id file
// without the cluster-id.checked marker next to it) do not enforce them: a
// working cluster whose members spelled --peers differently, so recorded
// different ids, keeps working after the upgrade.
func TestClusterIDRecordedBeforeTheCheckIsNotEnforced(t *testing.T) {
	spell := spellPeersDifferently()
	c := startTestCluster(t, 3, "http", func(cfg *Config) {
		spell(cfg)
		// What a version before the check wrote at the first start.
		if err := os.WriteFile(filepath.Join(cfg.DataDir, clusterIDFile), []byte(bootstrapClusterID(*cfg)+"\n"), 0o640); err != nil {
			t.Fatal(err)
		}
	})
	if c.replicas[0].clusterID == c.replicas[2].clusterID || c.replicas[0].clusterChecked || c.replicas[2].clusterChecked {
		t.Fatalf("replicas 0 and 2 recorded %q and %q (enforced %v, %v); want two ids, neither enforced",
			c.replicas[0].clusterID, c.replicas[2].clusterID, c.replicas[0].clusterChecked, c.replicas[2].clusterChecked)
	}
	leader, _ := c.waitLeader(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range c.replicas {
		if _, err := c.clients[i].Put(ctx, &kvv1.PutRequest{Key: "k", Value: "v" + strconv.Itoa(i)}); err != nil {
			t.Fatalf("put through replica %d: %v", i, err)
		}
	}
	other := twirptransport.WithHeader(&http.Client{}, clusterHeader, "0123456789abcdef")
	if _, err := kvv1.NewMembershipServiceProtobufClient("http://"+c.replicas[leader].PeerAddr(), other).MemberList(ctx, &kvv1.MemberListRequest{}); err != nil {
		t.Fatalf("a request naming another cluster, at a replica whose id is not enforced: %v, want served", err)
	}
}

// A new cluster records its id as enforced: replicas bootstrapped with
// --peers spelled differently get different ids and refuse each other, as
// etcd's members do, instead of forming one cluster of two ids.
func TestClusterIDEnforcedFromTheFirstStart(t *testing.T) {
	c := startTestCluster(t, 3, "http", spellPeersDifferently())
	r0, r2 := c.replicas[0], c.replicas[2]
	if r0.clusterID == r2.clusterID || !r0.clusterChecked || !r2.clusterChecked {
		t.Fatalf("replicas 0 and 2 recorded %q and %q (enforced %v, %v); want two ids, both enforced",
			r0.clusterID, r2.clusterID, r0.clusterChecked, r2.clusterChecked)
	}
	id, checked, err := readClusterID(r0.cfg.DataDir)
	if err != nil || id != r0.clusterID || !checked {
		t.Fatalf("replica 0's file: %q, enforced %v, %v", id, checked, err)
	}
	// The id file alone is what earlier versions read, after a downgrade.
	if data, err := os.ReadFile(filepath.Join(r0.cfg.DataDir, clusterIDFile)); err != nil || string(data) != r0.clusterID+"\n" {
		t.Fatalf("replica 0's %s holds %q, %v; want the id alone", clusterIDFile, data, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	as2 := twirptransport.WithHeader(&http.Client{}, clusterHeader, r2.clusterID)
	_, err = kvv1.NewMembershipServiceProtobufClient("http://"+r0.PeerAddr(), as2).MemberList(ctx, &kvv1.MemberListRequest{})
	var terr twirp.Error
	if !errors.As(err, &terr) || terr.Code() != twirp.FailedPrecondition {
		t.Fatalf("replica 0, asked in replica 2's cluster: %v, want failed_precondition", err)
	}
}

func TestValidClusterID(t *testing.T) {
	for id, want := range map[string]bool{
		bootstrapClusterID(Config{Peers: []string{"http://a:1"}}): true, "0123456789abcdef": true,
		"": false, "0123456789abcde": false, "0123456789ABCDEF": false, "0123456789abcdefa": false, "01234567\r\nabcdef": false,
	} {
		if validClusterID(id) != want {
			t.Errorf("validClusterID(%q) = %v, want %v", id, !want, want)
		}
	}
}
