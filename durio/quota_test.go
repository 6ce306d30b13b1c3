package durio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/durio/client"
	"github.com/ruaft/ruaft/kvraft"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// A cluster with --quota-bytes refuses the write that would grow its keys
// and values past the quota, on every path (REST at a follower and at the
// leader, Twirp, the Go client) with the same definite answer, and
// applies it nowhere; deletes go on, and free room for later writes. The
// size and the quota show in Status and on /metrics.
func TestQuotaRefusesGrowth(t *testing.T) {
	const quota = 2000
	c := startTestCluster(t, 3, "http", func(cfg *Config) { cfg.QuotaBytes = quota })
	leader, _ := c.waitLeader(t)
	follower := (leader + 1) % 3
	deadline := time.Now().Add(10 * time.Second)
	for _, r := range c.replicas {
		for r.kv.ApplyLevel() != kvraft.ApplyLevel {
			if time.Now().After(deadline) {
				t.Fatalf("replica at apply level %d after 10s", r.kv.ApplyLevel())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	base := func(i int) string { return "http://" + c.replicas[i].ClientAddr() }
	value := strings.Repeat("v", 300)
	put := func(i int, key string) (int, string) {
		t.Helper()
		code, body, _ := authDo(t, "POST", base(i)+"/kvstore/put", "", fmt.Sprintf(`{"key":%q,"value":%q}`, key, value))
		return code, body
	}
	// Each key costs 2 + 300 + 64 bytes: five fit in 2000, a sixth does not.
	for i := range 5 {
		if code, body := put([]int{follower, leader}[i%2], fmt.Sprintf("k%d", i)); code != http.StatusOK {
			t.Fatalf("put %d: %d %s", i, code, body)
		}
	}
	for _, at := range []int{follower, leader} {
		code, body := put(at, "k5")
		var e struct {
			Code string
			Msg  string
			Meta map[string]string
		}
		_ = json.Unmarshal([]byte(body), &e)
		if code != http.StatusInsufficientStorage || e.Code != "failed_precondition" || e.Meta["reason"] != "no_space" ||
			!strings.Contains(e.Msg, "quota is 2000 bytes") || strings.Count(e.Msg, "quota on the size") != 1 {
			t.Fatalf("put over the quota at replica %d: %d %s", at, code, body)
		}
	}
	// Twirp and the Go client: a definite refusal, at once.
	_, err := c.clients[follower].Put(context.Background(), &kvv1.PutRequest{Key: "k5", Value: value})
	var terr twirp.Error
	if !errors.As(err, &terr) || terr.Code() != twirp.FailedPrecondition || terr.Meta("reason") != "no_space" {
		t.Fatalf("Twirp put over the quota: %v", err)
	}
	cl, err := client.New([]string{base(follower)}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cl.Put(context.Background(), "k5", value); !errors.Is(err, client.ErrNoSpace) || time.Since(start) > 5*time.Second {
		t.Fatalf("client put over the quota: %v after %v", err, time.Since(start))
	}
	if code, body, _ := authDo(t, "GET", base(leader)+"/kvstore/get/k5", "", ""); code != http.StatusNotFound {
		t.Fatalf("a refused key reads back: %d %s", code, body)
	}
	// Size and quota, the same on every replica once applied.
	size := uint64(5 * (2 + 300 + 64))
	for i := range c.replicas {
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := c.clients[i].Status(context.Background(), &kvv1.StatusRequest{})
			if err == nil && st.GetStateBytes() == size && st.GetQuotaBytes() == quota {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %d status: %v %v", i, st, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	_, metrics, _ := authDo(t, "GET", base(follower)+"/metrics", "", "")
	for _, want := range []string{fmt.Sprintf("durio_kv_state_bytes %d\n", size), "durio_kv_quota_bytes 2000\n"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
		}
	}
	// Shrinking writes apply over a full store, and make room.
	if code, body, _ := authDo(t, "POST", base(follower)+"/kvstore/put", "", `{"key":"k0","value":"small"}`); code != http.StatusOK {
		t.Fatalf("a shrinking put: %d %s", code, body)
	}
	if code, body, _ := authDo(t, "DELETE", base(follower)+"/kvstore/k1", "", ""); code != http.StatusOK {
		t.Fatalf("delete over the quota: %d %s", code, body)
	}
	if code, body := put(follower, "k5"); code != http.StatusOK {
		t.Fatalf("put after making room: %d %s", code, body)
	}
}
