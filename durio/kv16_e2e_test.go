package durio_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ruaft/ruaft/durio"
	"github.com/ruaft/ruaft/durio/cli"
	"github.com/ruaft/ruaft/durio/client"
	"github.com/ruaft/ruaft/durio/duriotest"
)

// End-to-end tests of issue 16 (revisions, compare-and-swap, watch, leases)
// with real processes: the replicas and, where a user would run it, the
// durio command itself.

// Two writers edit one document at once, each through a different replica,
// each with compare-and-swap on the revision it read: in every round exactly
// one wins, and the loser is told the winner's revision and value. The same
// race over REST: one 200, one 409 carrying the winner's state.
func TestE2EEditConflict(t *testing.T) {
	c := startCluster(t, 3, "noop")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	writers := make([]*client.Client, 2)
	for i := range writers {
		cl, err := client.New([]string{c.clients[i]}, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		writers[i] = cl
	}
	if _, err := writers[0].PutWith(ctx, "doc", "v0", client.WriteOptions{Condition: client.IfAbsent()}); err != nil {
		t.Fatal(err)
	}
	if _, err := writers[1].PutWith(ctx, "doc", "again", client.WriteOptions{Condition: client.IfAbsent()}); !errors.Is(err, client.ErrConditionFailed) {
		t.Fatalf("second create: %v, want a failed condition", err)
	}
	const rounds = 20
	for round := range rounds {
		kv, _, err := writers[0].GetKV(ctx, "doc")
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			rev uint64
			err error
		}
		results := make([]result, 2)
		var wg sync.WaitGroup
		for i, w := range writers {
			wg.Go(func() {
				rev, err := w.PutWith(ctx, "doc", fmt.Sprintf("r%d-w%d", round, i), client.WriteOptions{Condition: client.IfModRevision(kv.ModRevision)})
				results[i] = result{rev, err}
			})
		}
		wg.Wait()
		won := -1
		for i, r := range results {
			if r.err == nil {
				if won >= 0 {
					t.Fatalf("round %d: both writers won (revisions %d and %d)", round, results[won].rev, r.rev)
				}
				won = i
			}
		}
		if won < 0 {
			t.Fatalf("round %d: nobody won: %v / %v", round, results[0].err, results[1].err)
		}
		var cf *client.ConditionFailedError
		lost := results[1-won].err
		if !errors.As(lost, &cf) || cf.Current == nil {
			t.Fatalf("round %d: the loser got %v, want a *ConditionFailedError with the current key", round, lost)
		}
		want := fmt.Sprintf("r%d-w%d", round, won)
		if cf.Current.Value != want || cf.Current.ModRevision != results[won].rev || cf.Current.Version != kv.Version+1 {
			t.Fatalf("round %d: loser saw %+v, want the winner's %q at revision %d, version %d", round, cf.Current, want, results[won].rev, kv.Version+1)
		}
		got, _, err := writers[1].GetKV(ctx, "doc")
		if err != nil || got.Value != want {
			t.Fatalf("round %d: doc is %q (%v), want the winner's %q", round, got.Value, err, want)
		}
	}

	// The same race over REST, through two different replicas.
	code, body := httpDo(t, "GET", c.clients[2]+"/kvstore/get/doc", "")
	if code != 200 {
		t.Fatalf("get: %d %v", code, body)
	}
	rev := uint64(body["mod_revision"].(float64))
	codes := make([]int, 2)
	bodies := make([]map[string]any, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			codes[i], bodies[i] = httpDo(t, "POST", c.clients[i]+"/kvstore/put",
				fmt.Sprintf(`{"key":"doc","value":"rest-%d","if_revision":%d}`, i, rev))
		})
	}
	wg.Wait()
	if !(codes[0] == 200 && codes[1] == 409 || codes[0] == 409 && codes[1] == 200) {
		t.Fatalf("REST race: %d %v / %d %v, want one 200 and one 409", codes[0], bodies[0], codes[1], bodies[1])
	}
	winner := 0
	if codes[1] == 200 {
		winner = 1
	}
	cur, _ := bodies[1-winner]["current"].(map[string]any)
	if cur["value"] != fmt.Sprintf("rest-%d", winner) || cur["mod_revision"] != bodies[winner]["revision"] {
		t.Fatalf("409 body %v does not show the winner's write %v", bodies[1-winner], bodies[winner])
	}
}

// durioWatch is a `durio watch --json` process and the events it printed.
type durioWatch struct {
	cmd    *exec.Cmd
	mu     sync.Mutex // guards events
	events []map[string]any
	done   chan struct{}
	stderr bytes.Buffer
}

func startWatch(t *testing.T, endpoints []string, args ...string) *durioWatch {
	t.Helper()
	w := &durioWatch{done: make(chan struct{})}
	w.cmd = exec.Command(durioBin, append([]string{"watch", "--json", "--endpoints", strings.Join(endpoints, ",")}, args...)...)
	w.cmd.Env = cleanEnv()
	w.cmd.Stderr = &syncWriter{w: &w.stderr}
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	dieWithTest(w.cmd)
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev map[string]any
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("durio watch printed a line that is not JSON: %q", sc.Text())
				continue
			}
			w.mu.Lock()
			w.events = append(w.events, ev)
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = w.cmd.Process.Kill()
		<-w.done
		_ = w.cmd.Wait()
	})
	return w
}

func (w *durioWatch) seen() []map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]map[string]any(nil), w.events...)
}

// stop sends SIGINT and returns the exit code.
func (w *durioWatch) stop(t *testing.T) int {
	t.Helper()
	_ = w.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-w.done:
	case <-time.After(15 * time.Second):
		t.Fatal("durio watch did not exit within 15s of SIGINT")
	}
	err := w.cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	return 0
}

// A `durio watch --prefix` process sees every write in order, none twice,
// while the leader is SIGKILLed and restarted under the writes, and exits 0
// on SIGINT.
func TestE2EWatchSurvivesLeaderKill(t *testing.T) {
	for _, mode := range []string{"--stream=true", "--stream=false"} {
		t.Run(mode, func(t *testing.T) { watchSurvivesLeaderKill(t, mode) })
	}
}

// watchSurvivesLeaderKill runs TestE2EWatchSurvivesLeaderKill with a
// `durio watch` that follows a stream (--stream=true) or long-polls.
func watchSurvivesLeaderKill(t *testing.T, mode string) {
	c := startCluster(t, 3, "badger")
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cl, err := client.New(c.clients, client.Options{AttemptTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.PutWith(ctx, "other", "not watched", client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	start, err := cl.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The watcher starts at the leader, the replica killed below, so that its
	// stream (or long poll) breaks and it resumes at another.
	first := c.waitLeader(10 * time.Second)
	eps := append(slices.Clone(c.clients[first:]), c.clients[:first]...)
	w := startWatch(t, eps, "w/", "--prefix", "--index", strconv.FormatUint(start, 10), mode)

	// One writer, one write at a time: each acknowledged write's revision is
	// known; a write whose outcome stayed unknown may or may not appear.
	type write struct {
		key string
		rev uint64
	}
	var acked []write
	unknown := map[string]bool{}
	writeN := func(from, to int) {
		for i := from; i < to; i++ {
			key := fmt.Sprintf("w/%04d", i)
			opCtx, opCancel := context.WithTimeout(ctx, 5*time.Second)
			rev, err := cl.PutWith(opCtx, key, key, client.WriteOptions{})
			opCancel()
			if err != nil {
				unknown[key] = true
				continue
			}
			acked = append(acked, write{key, rev})
			if i%10 == 0 {
				_, _ = cl.PutWith(ctx, "other", key, client.WriteOptions{}) // outside the prefix
			}
		}
	}
	writeN(0, 60)
	leader := c.waitLeader(10 * time.Second)
	c.kill(leader)
	writeN(60, 120)
	c.start(leader) // same data directory
	writeN(120, 160)
	if len(acked) < 100 {
		t.Fatalf("only %d of 160 writes acknowledged", len(acked))
	}
	last := acked[len(acked)-1]
	deadline := time.Now().Add(20 * time.Second)
	for {
		evs := w.seen()
		if n := len(evs); n > 0 && uint64(evs[n-1]["mod_revision"].(float64)) >= last.rev {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("durio watch saw %d events, not up to revision %d; stderr: %s", len(evs), last.rev, w.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := w.stop(t); code != 0 {
		t.Fatalf("durio watch exited %d on SIGINT; stderr: %s", code, w.stderr.String())
	}
	evs := w.seen()
	byKey := map[string]uint64{}
	var prev uint64
	for i, ev := range evs {
		key, _ := ev["key"].(string)
		rev := uint64(ev["mod_revision"].(float64))
		switch {
		case ev["type"] != "put" || !strings.HasPrefix(key, "w/") || ev["value"] != key:
			t.Fatalf("event %d: %v, want a put of a w/ key with its own name as value", i, ev)
		case rev <= prev:
			t.Fatalf("event %d at revision %d after revision %d: out of order or repeated", i, rev, prev)
		case byKey[key] != 0:
			t.Fatalf("event %d: %s seen twice (revisions %d and %d)", i, key, byKey[key], rev)
		}
		prev, byKey[key] = rev, rev
	}
	ackedKeys := map[string]bool{}
	for _, a := range acked {
		ackedKeys[a.key] = true
		if byKey[a.key] != a.rev {
			t.Fatalf("acknowledged write of %s at revision %d: watch saw revision %d", a.key, a.rev, byKey[a.key])
		}
	}
	for key := range byKey {
		if !unknown[key] && !ackedKeys[key] {
			t.Fatalf("watch saw %s, which was never written", key)
		}
	}
	t.Logf("%d events seen, %d writes acknowledged, %d unknown, leader %d killed, the watcher started at %d", len(evs), len(acked), len(unknown), leader, first)
}

// A key put with --ttl --keep-alive lives as long as its owner process:
// present well past its TTL while the owner refreshes it, gone within about
// a TTL once the owner is SIGKILLed (no more refreshes), and gone at once
// when an owner exits on SIGINT (it revokes its lease).
func TestE2ETTLKeyVanishesWithItsOwner(t *testing.T) {
	c := startCluster(t, 3, "noop")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := client.New(c.clients, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// owner starts an owner process; output returns what it printed so far.
	owner := func(key string) (cmd *exec.Cmd, done chan struct{}, output func() string) {
		var out bytes.Buffer
		cmd = exec.Command(durioBin, "put", key, "online", "--ttl", "2s", "--keep-alive", "--endpoints", strings.Join(c.clients, ","))
		cmd.Env = cleanEnv()
		w := &syncWriter{w: &out}
		cmd.Stdout, cmd.Stderr = w, w
		dieWithTest(cmd)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done = make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
		return cmd, done, func() string { w.mu.Lock(); defer w.mu.Unlock(); return out.String() }
	}
	waitFor := func(what string, within time.Duration, cond func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !cond() {
			if time.Since(start) > within {
				t.Fatalf("%s: not within %v", what, within)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(start)
	}
	present := func(key string) bool {
		_, _, err := cl.GetKV(ctx, key)
		if err != nil && !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("get %s: %v", key, err)
		}
		return err == nil
	}

	// The key is there once its put applied; the owner refreshes the lease
	// once it has the put's answer (it prints OK), which on a busy machine
	// can come seconds later.
	keepingAlive := func(output func() string) bool { return strings.HasPrefix(output(), "OK (lease ") }
	cmd, done, out := owner("presence/a")
	waitFor("the owner's put is acknowledged", 15*time.Second, func() bool { return keepingAlive(out) })
	kv, _, err := cl.GetKV(ctx, "presence/a")
	if err != nil || kv.Lease == 0 {
		t.Fatalf("presence/a: %+v %v, want a key with a lease", kv, err)
	}
	// Three TTLs with the owner alive: the key stays.
	until := time.Now().Add(6 * time.Second)
	for time.Now().Before(until) {
		if !present("presence/a") {
			t.Fatalf("the key vanished while its owner kept it alive; owner output: %s", out())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The leader's deadline for the lease, asked just before the kill: the
	// owner's refreshes only move it later, so the key must outlive it.
	asked := time.Now()
	ttl, err := cl.LeaseTimeToLive(ctx, kv.Lease, false)
	if err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Kill()
	<-done
	took := waitFor("the key vanishes after its owner is killed", 15*time.Second, func() bool { return !present("presence/a") })
	lived := time.Since(asked)
	t.Logf("key gone %v after its owner was killed (ttl 2s; %v left when asked, %v before the kill)",
		took.Round(time.Millisecond), ttl.Remaining.Round(time.Millisecond), (lived - took).Round(time.Millisecond))
	if lived < ttl.Remaining {
		t.Fatalf("the key vanished %v after the leader said its lease had %v left", lived, ttl.Remaining)
	}
	if _, err := cl.LeaseTimeToLive(ctx, kv.Lease, false); !errors.Is(err, client.ErrLeaseNotFound) {
		t.Fatalf("lease %d after it expired: %v, want ErrLeaseNotFound", kv.Lease, err)
	}

	// An owner that exits on SIGINT revokes its lease: the key goes at once
	// (long before its TTL could end), and the owner exits 0.
	cmd, done, out = owner("presence/b")
	waitFor("the second owner's put is acknowledged", 15*time.Second, func() bool { return keepingAlive(out) })
	if !present("presence/b") {
		t.Fatalf("the second owner's put was acknowledged but the key is not there; owner output: %s", out())
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("durio put --keep-alive did not exit on SIGINT")
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("durio put --keep-alive exited %d on SIGINT: %s", code, out())
	}
	if present("presence/b") {
		t.Fatal("the key is still there after its owner revoked its lease on SIGINT")
	}
}

// An owner interrupted (SIGINT) while its put is in flight, after the put
// applied but before its answer arrived, revokes the lease it was granted
// before it exits: the key does not stay for the lease's TTL. A proxy in
// front of a one-replica cluster holds the put's answer back until the
// owner gives up on it.
func TestE2ETTLKeepAliveInterruptedMidPutRevokesItsLease(t *testing.T) {
	base := duriotest.StartOne(t)
	target, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	applied := make(chan struct{}, 1)
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/kv.v1.KVService/Put") {
			rp.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			t.Errorf("the held put failed at the replica: %d %s", rec.Code, rec.Body)
		}
		select {
		case applied <- struct{}{}:
		default:
		}
		<-r.Context().Done() // the owner gave up on the answer
	}))
	defer proxy.Close()

	var out bytes.Buffer
	w := &syncWriter{w: &out}
	// --ttl far beyond the test: a lease left behind keeps the key.
	cmd := exec.Command(durioBin, "put", "presence/held", "online", "--ttl", "5m", "--keep-alive", "--endpoints", proxy.URL)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = w, w
	dieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	defer func() { _ = cmd.Process.Kill(); <-done }()
	output := func() string { w.mu.Lock(); defer w.mu.Unlock(); return out.String() }

	select {
	case <-applied:
	case <-done:
		t.Fatalf("the owner exited before its put reached the replica: %s", output())
	case <-time.After(15 * time.Second):
		t.Fatalf("the owner's put did not reach the replica within 15s: %s", output())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.New([]string{base}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	kv, _, err := cl.GetKV(ctx, "presence/held")
	if err != nil || kv.Lease == 0 {
		t.Fatalf("presence/held once the put applied: %+v %v, want a key with a lease", kv, err)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("durio put --keep-alive did not exit within 15s of SIGINT")
	}
	code := cmd.ProcessState.ExitCode()
	if code != cli.ExitFailure || !strings.Contains(output(), fmt.Sprintf("revoked its lease %d", kv.Lease)) {
		t.Fatalf("interrupted mid-put: exit %d, output %q; want exit %d saying that lease %d was revoked", code, output(), cli.ExitFailure, kv.Lease)
	}
	if _, _, err := cl.GetKV(ctx, "presence/held"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("presence/held after its interrupted owner exited: %v, want not found (the lease revoked)", err)
	}
	if _, err := cl.LeaseTimeToLive(ctx, kv.Lease, false); !errors.Is(err, client.ErrLeaseNotFound) {
		t.Fatalf("lease %d after its interrupted owner exited: %v, want ErrLeaseNotFound", kv.Lease, err)
	}
}

// A whole machine stalled for longer than a TTL (every replica and the key's
// owner frozen at once, as a CI machine at load 25 freezes processes for
// seconds) does not cost the owner its key: the leader does not count the
// time it could not run against the lease, whose refreshes it could not
// take meanwhile. The owner resumes once the cluster answers: a holder that
// was itself stopped for longer than its TTL cannot know the lease is still
// its own until a refresh succeeds, so a first refresh that fails ends it
// (as etcd's client does; the lease guards locks), and the test does not
// race the cluster's recovery for it.
func TestE2ETTLKeySurvivesAStalledMachine(t *testing.T) {
	c := startCluster(t, 3, "noop")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := client.New(c.clients, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w := &syncWriter{w: &out}
	output := func() string { w.mu.Lock(); defer w.mu.Unlock(); return out.String() }
	const ttl = 3 * time.Second
	owner := exec.Command(durioBin, "put", "stall/a", "online", "--ttl", ttl.String(), "--keep-alive", "--endpoints", strings.Join(c.clients, ","))
	owner.Env = cleanEnv()
	owner.Stdout, owner.Stderr = w, w
	dieWithTest(owner)
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = owner.Wait(); close(done) }()
	t.Cleanup(func() { _ = owner.Process.Kill(); <-done })
	waitFor(t, "the owner's put is acknowledged", 15*time.Second, func() bool { return strings.HasPrefix(output(), "OK (lease ") })

	var replicas []*os.Process
	for _, p := range c.procs {
		replicas = append(replicas, p.cmd.Process)
	}
	signal := func(sig syscall.Signal, procs ...*os.Process) {
		for _, p := range procs {
			if err := p.Signal(sig); err != nil {
				t.Fatal(err)
			}
		}
	}
	signal(syscall.SIGSTOP, owner.Process)
	signal(syscall.SIGSTOP, replicas...)
	// The stall itself: nothing to wait for, the machine is frozen.
	time.Sleep(7 * time.Second)
	signal(syscall.SIGCONT, replicas...)
	// The leader's lease clock runs again before the owner can refresh: the
	// key must still be there once the cluster answers.
	waitFor(t, "the cluster to answer after the stall", 30*time.Second, func() bool {
		_, _, err := cl.GetKV(ctx, "stall/a")
		if errors.Is(err, client.ErrNotFound) {
			t.Fatalf("the leader ended the lease during its own stall: stall/a is gone")
		}
		return err == nil
	})
	signal(syscall.SIGCONT, owner.Process)

	// Three TTLs after the stall, with the owner refreshing: the key stays.
	until := time.Now().Add(3 * ttl)
	for time.Now().Before(until) {
		_, _, err := cl.GetKV(ctx, "stall/a")
		if err != nil {
			t.Fatalf("after a 7s stall: get stall/a: %v; owner output: %s", err, output())
		}
		select {
		case <-done:
			t.Fatalf("the owner exited after the stall: %s", output())
		default:
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The REST API end to end: a blocking get wakes on a change made through
// another replica; a listing pages at one revision; a lease put over REST
// vanishes when revoked.
func TestE2ERESTRevisionedAPI(t *testing.T) {
	c := startCluster(t, 3, "noop")
	for i := range 5 {
		if code, body := httpDo(t, "POST", c.clients[i%3]+"/kvstore/put", fmt.Sprintf(`{"key":"dir/%d","value":"%d"}`, i, i)); code != 200 {
			t.Fatalf("put: %d %v", code, body)
		}
	}
	resp, err := http.Get(c.clients[1] + "/kvstore/get/dir/0")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	index := resp.Header.Get(durio.RevisionHeader)
	if index == "" {
		t.Fatalf("get: no %s header", durio.RevisionHeader)
	}
	woke := make(chan map[string]any, 1)
	go func() {
		code, body := httpDo(t, "GET", c.clients[1]+"/kvstore/get/dir/0?index="+index+"&wait=20s", "")
		if code != 200 {
			t.Errorf("blocking get: %d %v", code, body)
		}
		woke <- body
	}()
	time.Sleep(100 * time.Millisecond) // let it block; either order is correct
	if code, body := httpDo(t, "POST", c.clients[2]+"/kvstore/put", `{"key":"dir/0","value":"changed"}`); code != 200 {
		t.Fatalf("put: %d %v", code, body)
	}
	select {
	case body := <-woke:
		if body["value"] != "changed" {
			t.Fatalf("blocking get woke with %v, want the new value", body)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("a blocking get did not wake on a change made through another replica")
	}

	var keys []string
	after, revision := "", ""
	for pages := 0; ; pages++ {
		code, body := httpDo(t, "GET", c.clients[0]+"/kvstore/list?prefix=dir/&limit=2&after="+after+"&revision="+revision, "")
		if code != 200 || pages > 5 {
			t.Fatalf("list page %d: %d %v", pages, code, body)
		}
		if pages == 0 { // a write between pages does not show in the listing
			httpDo(t, "POST", c.clients[0]+"/kvstore/put", `{"key":"dir/00","value":"late"}`)
		}
		revision = strconv.FormatFloat(body["revision"].(float64), 'f', -1, 64)
		for _, kv := range body["kvs"].([]any) {
			keys = append(keys, kv.(map[string]any)["key"].(string))
		}
		if body["more"] != true {
			break
		}
		after = keys[len(keys)-1]
	}
	if strings.Join(keys, ",") != "dir/0,dir/1,dir/2,dir/3,dir/4" {
		t.Fatalf("listing at one revision: %v", keys)
	}

	// Exactly-once through the forwarding path: a conditional put, a
	// conditional delete and a lease grant sent to a follower, each sent
	// twice with the same session and sequence (a client retrying after a
	// lost answer), apply once, and the retry gets the first answer back,
	// not a failed condition (the key changed since, by the write itself).
	follower := c.clients[(c.leader()+1)%3]
	code, body := httpDo(t, "POST", follower+"/kvstore/session", "")
	if code != 200 {
		t.Fatalf("session: %d %v", code, body)
	}
	sess := strconv.FormatFloat(body["client_id"].(float64), 'f', -1, 64)
	code, body = httpDo(t, "GET", follower+"/kvstore/get/dir/1", "")
	if code != 200 {
		t.Fatalf("get: %d %v", code, body)
	}
	casBody := fmt.Sprintf(`{"key":"dir/1","value":"once","if_revision":%v,"client_id":%s,"sequence":1}`, body["mod_revision"], sess)
	code1, first := httpDo(t, "POST", follower+"/kvstore/put", casBody)
	code2, again := httpDo(t, "POST", follower+"/kvstore/put", casBody)
	if code1 != 200 || code2 != 200 || first["revision"] != again["revision"] {
		t.Fatalf("a conditional put sent twice: %d %v, then %d %v; want the same 200 twice", code1, first, code2, again)
	}
	if code, got := httpDo(t, "GET", c.clients[0]+"/kvstore/get/dir/1", ""); code != 200 || got["version"] != 2.0 || got["mod_revision"] != first["revision"] {
		t.Fatalf("after the retried put: %d %v, want version 2 at revision %v (applied once)", code, got, first["revision"])
	}
	del := fmt.Sprintf("/kvstore/dir/1?if_value=once&client_id=%s&sequence=2", sess)
	code1, first = httpDo(t, "DELETE", follower+del, "")
	code2, again = httpDo(t, "DELETE", follower+del, "")
	if code1 != 200 || code2 != 200 || first["existed"] != true || again["existed"] != true {
		t.Fatalf("a conditional delete sent twice: %d %v, then %d %v", code1, first, code2, again)
	}
	grant := fmt.Sprintf(`{"ttl_ms":60000,"client_id":%s,"sequence":3}`, sess)
	code1, first = httpDo(t, "POST", follower+"/kvstore/lease/grant", grant)
	code2, again = httpDo(t, "POST", follower+"/kvstore/lease/grant", grant)
	if code1 != 200 || code2 != 200 || first["id"] != again["id"] {
		t.Fatalf("a lease grant sent twice: %d %v, then %d %v; want one lease", code1, first, code2, again)
	}

	code, body = httpDo(t, "POST", c.clients[1]+"/kvstore/put", `{"key":"eph","value":"x","ttl_ms":60000}`)
	if code != 200 || body["lease"] == nil {
		t.Fatalf("put with ttl_ms: %d %v", code, body)
	}
	lease := strconv.FormatFloat(body["lease"].(float64), 'f', -1, 64)
	if code, body := httpDo(t, "GET", c.clients[2]+"/kvstore/lease/"+lease+"?keys=true", ""); code != 200 || fmt.Sprint(body["keys"]) != "[eph]" {
		t.Fatalf("lease: %d %v", code, body)
	}
	if code, body := httpDo(t, "POST", c.clients[2]+"/kvstore/lease/revoke", `{"id":`+lease+`}`); code != 200 || body["existed"] != true {
		t.Fatalf("revoke: %d %v", code, body)
	}
	if code, _ := httpDo(t, "GET", c.clients[0]+"/kvstore/get/eph", ""); code != 404 {
		t.Fatalf("get of a revoked lease's key: %d", code)
	}
	if code, _ := httpDo(t, "POST", c.clients[0]+"/kvstore/lease/keepalive", `{"id":`+lease+`}`); code != 404 {
		t.Fatalf("keepalive of a revoked lease: %d", code)
	}
}

// The CLI of the revisioned API: compare-and-swap with its own exit code
// and the key's state, list at one revision, get --json with revisions,
// leases, and usage errors (exit 2) for impossible flag combinations.
func TestE2ECLIRevisionedCommands(t *testing.T) {
	c := startCluster(t, 3, "noop")
	ep := "--endpoints=" + strings.Join(c.clients, ",")
	run := func(code int, args ...string) cliResult {
		t.Helper()
		r := runCLI(t, nil, "", append(args, ep)...)
		r.expect(t, code, args...)
		return r
	}
	run(0, "put", "cfg/a", "1", "--if-absent")
	r := run(cli.ExitConditionFailed, "put", "cfg/a", "2", "--if-absent")
	if !strings.Contains(r.stderr, "condition failed") || !strings.Contains(r.stderr, `value "1"`) {
		t.Fatalf("failed condition: stderr %q", r.stderr)
	}
	var got struct {
		Value       string `json:"value"`
		ModRevision uint64 `json:"mod_revision"`
		Version     uint64 `json:"version"`
		Revision    uint64 `json:"revision"`
	}
	if err := json.Unmarshal([]byte(run(0, "get", "cfg/a", "--json").stdout), &got); err != nil || got.Value != "1" || got.Version != 1 || got.Revision < got.ModRevision {
		t.Fatalf("get --json: %+v %v", got, err)
	}
	rev := strconv.FormatUint(got.ModRevision, 10)
	run(0, "put", "cfg/a", "2", "--if-revision", rev)
	run(cli.ExitConditionFailed, "put", "cfg/a", "3", "--if-revision", rev)
	run(cli.ExitConditionFailed, "delete", "cfg/a", "--if-value", "1")
	run(0, "put", "cfg/b", "x\ty")
	run(0, "put", "other", "z")
	if out := run(0, "list", "cfg/").stdout; out != "cfg/a\t2\ncfg/b\t\"x\\ty\"\n" {
		t.Fatalf("list: %q", out)
	}
	if out := run(0, "list", "cfg/", "--keys-only", "--limit", "1").stdout; out != "cfg/a\n" {
		t.Fatalf("list --keys-only --limit 1: %q", out)
	}
	var listed struct {
		Revision uint64 `json:"revision"`
		KVs      []struct {
			Key string `json:"key"`
		} `json:"kvs"`
	}
	if err := json.Unmarshal([]byte(run(0, "list", "--json").stdout), &listed); err != nil || len(listed.KVs) != 3 || listed.Revision == 0 {
		t.Fatalf("list --json: %+v %v", listed, err)
	}
	run(0, "delete", "cfg/a", "--if-version", "2")

	id := strings.TrimSpace(run(0, "lease", "grant", "30s").stdout)
	run(0, "put", "cfg/eph", "x", "--lease", id)
	if out := run(0, "lease", "show", id, "--keys").stdout; !strings.Contains(out, "cfg/eph") || !strings.Contains(out, "ttl 30s") {
		t.Fatalf("lease show: %q", out)
	}
	run(0, "lease", "keepalive", id, "--once")
	if out := run(0, "lease", "revoke", id).stdout; out != "revoked\n" {
		t.Fatalf("lease revoke: %q", out)
	}
	run(cli.ExitNotFound, "get", "cfg/eph")
	run(cli.ExitNotFound, "lease", "keepalive", id, "--once")
	run(cli.ExitNotFound, "lease", "show", id)

	for _, args := range [][]string{
		{"put", "k", "v", "--if-absent", "--if-value", "x"},
		{"put", "k", "v", "--if-revision", "0"},
		{"put", "k", "v", "--ttl", "500ms"},
		{"put", "k", "v", "--ttl", "5s", "--lease", "7"},
		{"put", "k", "v", "--keep-alive"},
		{"append", "k", "v", "--if-absent"},
		{"delete", "k", "--if-absent"},
		{"list", "--limit", "-1"},
		{"watch", ""},
		{"lease", "grant", "10"},
		{"lease", "revoke", "zero"},
	} {
		run(cli.ExitUsage, args...)
	}
}
