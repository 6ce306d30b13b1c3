package durio

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ruaft/ruaft/kvraft/kvwire"
	"github.com/ruaft/ruaft/raft"
	"github.com/ruaft/ruaft/raft/twirptransport"
)

// The browser policy's same-origin host names follow the membership: a
// member's client URL host (one that joined, with no --client-urls
// anywhere) is accepted once it is in the configuration and refused again
// once it is removed; this replica's own client URL host always is, and
// an unknown name (a DNS-rebinding page) never.
func TestBrowserHostsFollowMembership(t *testing.T) {
	d := &directory{self: 0, selfAddr: memberAddr{Peer: "http://127.0.0.1:7000", Client: "http://pi0.example:8080"},
		fallback: func(int) memberAddr { return memberAddr{} }, transport: twirptransport.NewWithPeers(0, nil, twirptransport.Options{}),
		peerHTTP: &http.Client{}, fcfg: kvwire.DefaultForwarderConfig(), logger: discardLogger()}
	t.Cleanup(d.close)
	limits := DefaultLimits()
	limits.memberHost = d.isClientHost
	h := clientHandler(&mapKV{m: map[string]string{"k": "v"}}, limits, nil)
	get := func(host string) int {
		req := httptest.NewRequest("GET", "http://"+host+"/healthz", nil)
		req.Host = host
		req.Header.Set("Origin", "http://"+host)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	}
	self := raft.Member{ID: 0, Addr: encodeAddr("http://127.0.0.1:7000", "")}
	joined := raft.Member{ID: 4, Addr: encodeAddr("http://127.0.0.1:7004", "http://Pi4.example:8080")}

	d.update(raft.Membership{Members: []raft.Member{self}})
	if code := get("pi4.example:8080"); code != http.StatusForbidden {
		t.Fatalf("before 4 joined: %d, want 403", code)
	}
	if code := get("pi0.example:8080"); code != http.StatusOK {
		t.Fatalf("own client URL host: %d, want 200", code)
	}
	d.update(raft.Membership{Members: []raft.Member{self, joined}})
	if code := get("pi4.example:8080"); code != http.StatusOK {
		t.Fatalf("after 4 joined: %d, want 200", code)
	}
	if code := get("rebind.example:8080"); code != http.StatusForbidden {
		t.Fatalf("unknown host: %d, want 403", code)
	}
	d.update(raft.Membership{Members: []raft.Member{self}})
	if code := get("pi4.example:8080"); code != http.StatusForbidden {
		t.Fatalf("after 4 was removed: %d, want 403", code)
	}
}
