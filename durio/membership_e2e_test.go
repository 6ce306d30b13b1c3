package durio_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/durio/client"
	"github.com/ruaft/ruaft/internal/freeport"
	"github.com/ruaft/ruaft/kvraft/kvtest"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// reserve allocates ports for n replicas that are not started yet (to be
// added with join) and returns their ids.
func (c *cluster) reserve(n int) []int {
	c.t.Helper()
	ports := freeport.Ports(c.t, 2*n)
	var ids []int
	for i := range n {
		ids = append(ids, len(c.procs))
		c.peers = append(c.peers, "http://127.0.0.1:"+strconv.Itoa(ports[i]))
		c.clients = append(c.clients, "http://127.0.0.1:"+strconv.Itoa(ports[n+i]))
		c.procs = append(c.procs, nil)
	}
	return ids
}

// join starts reserved replica id with an empty data folder and --join via
// the client URLs of the replicas in via.
func (c *cluster) join(id int, via ...int) {
	c.t.Helper()
	if c.joins == nil {
		c.joins = map[int][]string{}
	}
	for _, v := range via {
		c.joins[id] = append(c.joins[id], c.clients[v])
	}
	c.start(id)
}

// members asks replica via for the cluster's members.
func (c *cluster) members(via int) ([]client.Member, error) {
	cl, err := client.New([]string{c.clients[via]}, client.Options{})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ms, _, err := cl.MemberList(ctx)
	return ms, err
}

// waitMembers waits until the members (asked through any of via) are
// exactly voters and learners.
func (c *cluster) waitMembers(timeout time.Duration, via []int, voters, learners []int) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		for _, v := range via {
			ms, err := c.members(v)
			if err != nil {
				last = err.Error()
				continue
			}
			var gotV, gotL []int
			for _, m := range ms {
				if m.Learner {
					gotL = append(gotL, m.ID)
				} else {
					gotV = append(gotV, m.ID)
				}
			}
			if slices.Equal(gotV, voters) && slices.Equal(gotL, learners) {
				return
			}
			last = fmt.Sprintf("voters %v learners %v", gotV, gotL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("members are not voters %v learners %v within %v; last: %s", voters, learners, timeout, last)
}

// memberChange runs a membership change through replica via's client
// listener, retrying while the cluster says "later" (no leader, another
// change in flight).
func (c *cluster) memberChange(via int, change func(context.Context, *client.Client) error) {
	c.t.Helper()
	cl, err := client.New([]string{c.clients[via]}, client.Options{})
	if err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := change(ctx, cl)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("membership change through replica %d: %v", via, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// linLoad is a porcupine-checked load of gets, puts and appends on a few
// keys from several clients, each starting at its own endpoint.
type linLoad struct {
	t      *testing.T
	log    *kvtest.OpLog
	keys   []string
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   atomic.Int64 // operations that completed
}

// startLinLoad starts clients over endpoints (rotated per client).
func startLinLoad(t *testing.T, endpoints []string, clients int) *linLoad {
	l := &linLoad{t: t, log: kvtest.NewOpLog(), keys: []string{"a", "b", "c"}}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	for cli := range clients {
		k := cli % len(endpoints)
		eps := append(slices.Clone(endpoints[k:]), endpoints[:k]...)
		cl, err := client.New(eps, client.Options{AttemptTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		l.wg.Go(func() { l.run(ctx, cli, cl) })
	}
	return l
}

func (l *linLoad) run(ctx context.Context, cli int, cl *client.Client) {
	for n := 0; ctx.Err() == nil; n++ {
		key := l.keys[rand.IntN(len(l.keys))]
		opCtx, opCancel := context.WithTimeout(ctx, 3*time.Second)
		call := l.log.Now()
		switch r := rand.IntN(10); {
		case r < 4:
			v, err := cl.Get(opCtx, key)
			if errors.Is(err, client.ErrNotFound) {
				v, err = "", nil
			}
			if err == nil {
				l.log.Add(cli, kvtest.KVInput{Op: kvtest.OpGet, Key: key}, kvtest.KVOutput{Value: kvtest.DigestOf(v)}, call, l.log.Now())
				l.done.Add(1)
			}
		default:
			kind, value := kvtest.OpAppend, fmt.Sprintf("x %d %d y", cli, n)
			var err error
			if r < 6 {
				kind = kvtest.OpPut
				err = cl.Put(opCtx, key, value)
			} else {
				err = cl.Append(opCtx, key, value)
			}
			ret := l.log.Now()
			switch {
			case err == nil:
				l.done.Add(1)
			case errors.Is(err, client.ErrUnavailable):
				opCancel()
				continue // no replica took it: not applied
			default:
				// Unknown outcome (or cut off by the end of the load): it
				// may take effect at any time after the call.
				ret = math.MaxInt64
			}
			l.log.Add(cli, kvtest.KVInput{Op: kind, Key: key, Value: value}, kvtest.KVOutput{}, call, ret)
		}
		opCancel()
	}
}

// waitProgress waits until n more operations completed: writes keep
// flowing.
func (l *linLoad) waitProgress(n int64, within time.Duration, what string) {
	l.t.Helper()
	want := l.done.Load() + n
	deadline := time.Now().Add(within)
	for l.done.Load() < want {
		if time.Now().After(deadline) {
			l.t.Fatalf("%s: fewer than %d operations completed within %v", what, n, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the load, reads every key linearizably through each replica
// in readers (so an acknowledged write missing from any of them breaks
// the history), and checks the history with porcupine.
func (l *linLoad) stop(c *cluster, readers []int) {
	l.t.Helper()
	l.cancel()
	l.wg.Wait()
	for _, id := range readers {
		cl, err := client.New([]string{c.clients[id]}, client.Options{})
		if err != nil {
			l.t.Fatal(err)
		}
		for _, key := range l.keys {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			call := l.log.Now()
			v, err := cl.Get(ctx, key)
			cancel()
			if errors.Is(err, client.ErrNotFound) {
				v, err = "", nil
			}
			if err != nil {
				l.t.Fatalf("final read of %s through replica %d: %v", key, id, err)
			}
			l.log.Add(1000+id, kvtest.KVInput{Op: kvtest.OpGet, Key: key}, kvtest.KVOutput{Value: kvtest.DigestOf(v)}, call, l.log.Now())
		}
	}
	l.t.Logf("%d operations completed", l.done.Load())
	l.log.CheckLinearizable(l.t)
}

// TestE2EMembershipGrowShrinkRemoveLeader grows a cluster of real processes
// from 3 to 5 replicas (two new ones join at once with empty data folders,
// catch up as learners and are promoted), then shrinks it back to 3 by
// removing the current leader and then a follower, while clients read and
// write throughout; the history must be linearizable and every replica left
// must hold every acknowledged write.
func TestE2EMembershipGrowShrinkRemoveLeader(t *testing.T) {
	c := startCluster(t, 3, "file")
	added := c.reserve(2)
	load := startLinLoad(t, c.clients, 5)
	defer load.cancel()
	load.waitProgress(50, 20*time.Second, "before growing")

	// 3 -> 5: both new replicas join at once, through different existing
	// ones; raft takes one change at a time, so their requests collide
	// (change_in_progress) and the joiners retry until both are voters.
	c.join(added[0], 1, 2)
	c.join(added[1], 2, 0)
	c.waitMembers(40*time.Second, []int{0, 1, 2}, []int{0, 1, 2, 3, 4}, nil)
	load.waitProgress(50, 20*time.Second, "after adding replicas 3 and 4")
	// The status history marks the changes (the page's timeline draws them).
	var hist struct {
		Replicas []struct {
			ID     int `json:"id"`
			Events []struct {
				Kind   string `json:"kind"`
				Detail string `json:"detail"`
			} `json:"events"`
		} `json:"replicas"`
	}
	resp, err := http.Get(c.clients[0] + "/status/history")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&hist)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status history: %d %v", resp.StatusCode, err)
	}
	var configs []string
	for _, r := range hist.Replicas {
		for _, e := range r.Events {
			if r.ID == 0 && e.Kind == "membership" {
				configs = append(configs, e.Detail)
			}
		}
	}
	// (Events coalesce, so the learner steps between may not all be
	// there; the configuration in force is.)
	if !slices.Contains(configs, "voters 0, 1, 2, 3, 4") {
		t.Errorf("replica 0's history records the configurations %q, want voters 0, 1, 2, 3, 4 among them", configs)
	}

	// 5 -> 4: remove the current leader; it steps down and another leads.
	leader := c.waitLeader(10 * time.Second)
	others := slices.DeleteFunc([]int{0, 1, 2, 3, 4}, func(i int) bool { return i == leader })
	c.memberChange(leader, func(ctx context.Context, cl *client.Client) error {
		_, err := cl.MemberRemove(ctx, leader)
		return err
	})
	t.Logf("removed leader %d", leader)
	c.waitMembers(20*time.Second, others, others, nil)
	load.waitProgress(50, 20*time.Second, "after removing the leader")
	newLeader := c.waitLeader(10 * time.Second)
	if newLeader == leader {
		// The removed replica may still say so for a moment: wait it out.
		deadline := time.Now().Add(10 * time.Second)
		for newLeader == leader && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			newLeader = c.leader()
		}
		if newLeader == leader {
			t.Fatalf("removed leader %d still leads", leader)
		}
	}
	c.stop(leader)

	// 4 -> 3: remove a follower that bootstrapped the cluster, so the
	// replicas that joined are needed for a quorum.
	victim := -1
	for _, id := range others {
		if id != newLeader && id < 3 {
			victim = id
			break
		}
	}
	if victim < 0 {
		victim = slices.DeleteFunc(slices.Clone(others), func(i int) bool { return i == newLeader })[0]
	}
	remaining := slices.DeleteFunc(slices.Clone(others), func(i int) bool { return i == victim })
	c.memberChange(remaining[0], func(ctx context.Context, cl *client.Client) error {
		_, err := cl.MemberRemove(ctx, victim)
		return err
	})
	c.waitMembers(20*time.Second, remaining, remaining, nil)
	c.stop(victim)
	load.waitProgress(50, 20*time.Second, "after shrinking to 3")

	// A replica restarted with its old --peers (0, 1, 2) says they disagree
	// with the replicated membership and keeps the latter.
	boot := slices.IndexFunc(remaining, func(i int) bool { return i < 3 })
	b := remaining[boot]
	c.stop(b)
	c.start(b)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(c.procs[b].logText(), "disagrees with the cluster's replicated membership") {
		if time.Now().After(deadline) {
			t.Fatalf("replica %d restarted with stale --peers did not say so", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.waitMembers(20*time.Second, remaining, remaining, nil)
	load.waitProgress(50, 20*time.Second, "after restarting a replica with stale --peers")
	load.stop(c, remaining)
}

// TestE2EMembershipReplaceReplica replaces a dead replica with a new one at
// a new address and an empty disk, the README's "replace a dead Pi" steps:
// the new replica joins (catching up through InstallSnapshot: the log is
// compacted), is promoted, and the dead one is removed, under load.
func TestE2EMembershipReplaceReplica(t *testing.T) {
	c := startClusterWith(t, 3, "file", "http", func(int) []string { return []string{"--snapshot-bytes", "65536"} })
	added := c.reserve(1)
	// Enough data that the leader has compacted its log before the new
	// replica joins.
	cl, err := client.New(c.clients, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 2048)
	for i := range 100 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := cl.Put(ctx, "fill-"+strconv.Itoa(i), big)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Wait until every replica has compacted its log into a snapshot, so a
	// newcomer cannot be sent the log from its start.
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < 3; {
		st, err := kvv1.NewKVServiceProtobufClient(c.clients[i], http.DefaultClient).Status(context.Background(), &kvv1.StatusRequest{})
		if err == nil && st.GetSnapshotIndex() > 0 {
			i++
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %d took no snapshot: %v %v", i, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	load := startLinLoad(t, c.clients, 5)
	defer load.cancel()
	load.waitProgress(50, 20*time.Second, "before the replacement")

	dead := (c.waitLeader(10*time.Second) + 1) % 3
	c.kill(dead)
	t.Logf("killed replica %d (the dead Pi)", dead)
	load.waitProgress(50, 20*time.Second, "after the kill")
	live := slices.DeleteFunc([]int{0, 1, 2}, func(i int) bool { return i == dead })

	c.join(added[0], live...)
	want := append(slices.Clone([]int{0, 1, 2}), added[0])
	c.waitMembers(40*time.Second, live, want, nil)
	// It caught up through InstallSnapshot: the leader had compacted the
	// log's start.
	deadline = time.Now().Add(20 * time.Second)
	for !strings.Contains(c.procs[added[0]].logText(), "raft: stored a snapshot received from the leader") {
		if time.Now().After(deadline) {
			t.Fatal("the new replica did not catch up through a snapshot")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, line := range strings.Split(c.procs[added[0]].logText(), "\n") {
		if strings.Contains(line, `"layer":"join"`) {
			t.Log(line)
		}
	}
	c.memberChange(live[0], func(ctx context.Context, cl *client.Client) error {
		_, err := cl.MemberRemove(ctx, dead)
		return err
	})
	now := append(slices.Clone(live), added[0])
	slices.Sort(now)
	c.waitMembers(20*time.Second, now, now, nil)
	load.waitProgress(50, 20*time.Second, "after the replacement")
	load.stop(c, now)
	for i := range 100 {
		v, err := cl.Get(context.Background(), "fill-"+strconv.Itoa(i))
		if err != nil || v != big {
			t.Fatalf("fill-%d after the replacement: %d bytes, %v", i, len(v), err)
		}
	}
}

// A member added at another spelling of an existing member's peer URL
// (localhost for 127.0.0.1) is refused: that replica would answer, and
// vote, for the new id as well as its own, so one machine would hold two
// of four votes and its loss would stop the cluster. A URL where nothing
// answers yet (a replica to be started) is still accepted.
func TestE2EMemberAddRefusesAnotherMembersPeerURL(t *testing.T) {
	c := startCluster(t, 3, "noop")
	cl, err := client.New(c.clients, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	alias := strings.Replace(c.peers[1], "127.0.0.1", "localhost", 1)
	var lastErr error
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, lastErr = cl.MemberAdd(ctx, 9, alias, "")
		cancel()
		if lastErr == nil || strings.Contains(lastErr.Error(), "already_exists") || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // no leader yet, or another change in flight
	}
	if lastErr == nil || !strings.Contains(lastErr.Error(), "answers as replica 1") {
		t.Fatalf("MemberAdd(9, %s) = %v, want refused: that is replica 1", alias, lastErr)
	}
	c.waitMembers(10*time.Second, []int{0}, []int{0, 1, 2}, nil)
	free := "http://127.0.0.1:" + strconv.Itoa(freeport.Ports(t, 1)[0])
	c.memberChange(0, func(ctx context.Context, cl *client.Client) error {
		_, err := cl.MemberAdd(ctx, 9, free, "")
		return err
	})
	c.waitMembers(10*time.Second, []int{0}, []int{0, 1, 2}, []int{9})
}

// A replica removed from the cluster but still running (the operator has
// not stopped it yet) no longer applies the cluster's changes: its watches
// would wait forever. It refuses them with 503 once it knows, and its open
// streams end, so that FollowStream, which started there, goes on at
// another replica and gets the changes made after the removal.
func TestE2EWatchLeavesARemovedReplica(t *testing.T) {
	c := startCluster(t, 3, "noop")
	leader := c.waitLeader(20 * time.Second)
	victim := (leader + 1) % 3
	other := (leader + 2) % 3
	cl, err := client.New([]string{c.clients[victim], c.clients[leader], c.clients[other]}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var start uint64
	waitFor(t, "a first put", 20*time.Second, func() bool {
		start, err = cl.PutWith(ctx, "rm/0", "x", client.WriteOptions{})
		return err == nil
	})
	got := make(chan client.Event, 16)
	followed := make(chan error, 1)
	go func() {
		followed <- cl.FollowStream(ctx, "rm/", true, start, func(ev client.Event) error {
			got <- ev
			return nil
		})
	}()
	waitFor(t, "the stream open at the victim", 20*time.Second, func() bool {
		return strings.Contains(scrapeMetrics(t, c.clients[victim]), "\ndurio_watch_streams 1\n")
	})
	c.memberChange(leader, func(ctx context.Context, cl *client.Client) error {
		_, err := cl.MemberRemove(ctx, victim)
		return err
	})
	c.waitMembers(20*time.Second, []int{leader, other}, slices.Sorted(slices.Values([]int{leader, other})), nil)
	writer, err := client.New([]string{c.clients[leader], c.clients[other]}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := writer.PutWith(ctx, "rm/1", "after the removal", client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		if ev.KV.Key != "rm/1" || ev.KV.ModRevision != rev {
			t.Fatalf("got %+v, want rm/1 at %d", ev, rev)
		}
	case err := <-followed:
		t.Fatalf("FollowStream ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatalf("the change at %d never came: the stream stayed at the removed replica", rev)
	}
	waitFor(t, "the removed replica refusing watches", 10*time.Second, func() bool {
		resp, err := http.Get(c.clients[victim] + "/kvstore/watch/rm/?prefix=true&index=" + strconv.FormatUint(rev, 10) + "&wait=1s")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
}

// scrapeMetrics returns the text of base's /metrics.
func scrapeMetrics(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}
