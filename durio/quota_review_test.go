package durio

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ruaft/ruaft/kvraft"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// A REST put with ttl_ms grants its lease before the put; when the put is
// refused for good (here: over the quota, which a full store answers to
// every growing put) the lease must not be left to live out its TTL: a
// client retrying puts with a TTL against a full store would otherwise
// fill the lease table (--max-leases) and refuse every client's grants.
func TestReviewRefusedTTLPutLeavesNoLease(t *testing.T) {
	c := startTestCluster(t, 1, "http", func(cfg *Config) { cfg.QuotaBytes = 1000 })
	c.waitLeader(t)
	deadline := time.Now().Add(10 * time.Second)
	for c.replicas[0].kv.ApplyLevel() != kvraft.ApplyLevel {
		if time.Now().After(deadline) {
			t.Fatal("level not reached")
		}
		time.Sleep(10 * time.Millisecond)
	}
	base := "http://" + c.replicas[0].ClientAddr()
	value := strings.Repeat("v", 300)
	for i := range 2 {
		if code, body, _ := authDo(t, "POST", base+"/kvstore/put", "", fmt.Sprintf(`{"key":"k%d","value":%q}`, i, value)); code != http.StatusOK {
			t.Fatalf("put %d: %d %s", i, code, body)
		}
	}
	for i := range 5 {
		code, body, _ := authDo(t, "POST", base+"/kvstore/put", "", fmt.Sprintf(`{"key":"t%d","value":%q,"ttl_ms":60000}`, i, value))
		if code != http.StatusInsufficientStorage {
			t.Fatalf("put with ttl over the quota: %d %s", code, body)
		}
	}
	st, err := c.clients[0].Status(context.Background(), &kvv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetLeases() != 0 {
		t.Fatalf("%d leases live on after 5 refused puts with ttl_ms", st.GetLeases())
	}
}
