package durio_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ruaft/ruaft/durio/client"
)

// A cluster grown 1 → 3 with --join (README, "Growing 1 → 3") survives a
// restart of every replica at once (a power cut): the replicas that joined
// are restarted with --join and their data folders, as systemd does, and
// must not wait for a cluster that cannot elect a leader without them. A
// joined replica that was removed and is restarted the same way is not
// added back.
func TestE2EJoinedReplicasRestartTogether(t *testing.T) {
	c := startCluster(t, 1, "file")
	joined := c.reserve(2)
	c.join(joined[0], 0)
	c.waitMembers(40*time.Second, []int{0}, []int{0, joined[0]}, nil)
	c.join(joined[1], 0)
	all := []int{0, joined[0], joined[1]}
	c.waitMembers(40*time.Second, []int{0}, all, nil)
	cl, err := client.New(c.clients, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Put(t.Context(), "k", "v"); err != nil {
		t.Fatal(err)
	}

	for _, i := range all {
		c.stop(i)
	}
	for _, i := range all {
		c.start(i)
	}
	// Without the fix the joined replicas asked the cluster for its
	// members for a minute, then exited: no leader ever.
	c.waitLeader(45 * time.Second)
	waitKey(t, cl, "k", "v", "the cluster restarted at once", func() string { return c.procs[joined[0]].logText() })

	removed := joined[1]
	c.memberChange(0, func(ctx context.Context, cl *client.Client) error {
		_, err := cl.MemberRemove(ctx, removed)
		return err
	})
	c.waitMembers(20*time.Second, []int{0}, []int{0, joined[0]}, nil)
	c.stop(removed)
	c.start(removed)
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(c.procs[removed].logText(), `"msg":"replica started"`) {
		if time.Now().After(deadline) {
			t.Fatalf("the removed replica did not start:\n%s", tail(c.procs[removed].logText(), 4096))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// It would ask to be added at once after starting: watch the
	// membership for a few seconds.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		ms, err := c.members(0)
		if err != nil {
			continue
		}
		if i := slices.IndexFunc(ms, func(m client.Member) bool { return m.ID == removed }); i >= 0 {
			t.Fatalf("the removed replica, restarted with --join, was added back: %+v", ms[i])
		}
	}
	resp, err := http.Get(c.clients[0] + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("replica 0 /readyz %d after the removed replica restarted", resp.StatusCode)
	}
}
