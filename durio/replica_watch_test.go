package durio

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ruaft/ruaft/durio/client"
	"github.com/ruaft/ruaft/persist"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// A real replica (one member, in process) applies --max-watchers to long
// polls (which leave ordinary requests alone), reports its revision, and a
// graceful shutdown ends waiting watchers at once rather than waiting them
// out (their write deadline is pushed past --write-timeout meanwhile).
func TestReplicaWatchLimitsAndShutdown(t *testing.T) {
	cfg := oneMemberConfig(t)
	cfg.MaxWatchers = 2
	cfg.MaxWatchWait = 30 * time.Second
	cfg.WriteTimeout = cfg.RequestTimeout + time.Second // shorter than a long poll: it must be pushed back
	r, err := StartReplica(cfg, persist.NewNoop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = r.Close(context.Background())
		}
	}()
	base := "http://" + r.ClientAddr()
	waitUntil(t, "a first write", func() bool {
		resp, err := http.Post(base+"/kvstore/put", "application/json", strings.NewReader(`{"key":"k","value":"v"}`))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	kv := kvv1.NewKVServiceJSONClient(base, http.DefaultClient)
	st, err := kv.Status(context.Background(), &kvv1.StatusRequest{})
	if err != nil || st.GetRevision() == 0 {
		t.Fatalf("status: revision %d, %v", st.GetRevision(), err)
	}

	// Two watchers wait (up to 30s: a minute lowered to --max-watch-wait);
	// a third is refused with 429 and Retry-After.
	started := time.Now()
	results := make(chan int, 2)
	for range 2 {
		go func() {
			for {
				resp, err := http.Get(base + "/kvstore/watch/k?wait=1m")
				if err != nil {
					results <- -1
					return
				}
				var body map[string]any
				_ = json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusTooManyRequests { // else the probe below held a slot: retry
					results <- resp.StatusCode
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	// Until both wait, a third may take a slot itself: it gives up after a
	// second (freeing the slot) and tries again.
	impatient := &http.Client{Timeout: time.Second}
	var third *http.Response
	waitUntil(t, "a third watcher refused", func() bool {
		resp, err := impatient.Get(base + "/kvstore/watch/k?wait=1m")
		if err != nil {
			// It held a slot until its timeout. Step back before the next
			// try, so the two watchers (retrying every 10ms) take the freed
			// slot: retrying at once won that race every time and starved
			// them until the deadline.
			time.Sleep(200 * time.Millisecond)
			return false
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			third = resp
			return true
		}
		return false
	})
	if third.Header.Get("Retry-After") == "" {
		t.Fatalf("429 without Retry-After")
	}
	// Ordinary requests still pass while the watchers hold their slots.
	if resp, err := http.Get(base + "/kvstore/get/k"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("a get while two watchers wait: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// Shutdown ends them with an empty answer, well before their wait.
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	closed = true
	for range 2 {
		if code := <-results; code != http.StatusOK {
			t.Fatalf("a watcher ended by shutdown got %d, want 200 with no events", code)
		}
	}
	if took := time.Since(started); took > 25*time.Second {
		t.Fatalf("the watchers ended %v after they began: shutdown waited them out", took)
	}
}

// A real replica's watch stream lives past the read and write timeouts,
// delivers every change once with its revision as id, and a reconnect with
// Last-Event-ID gets exactly the changes made while it was away.
func TestReplicaWatchStream(t *testing.T) {
	cfg := oneMemberConfig(t)
	cfg.ReadTimeout = 500 * time.Millisecond
	cfg.WriteTimeout = cfg.RequestTimeout + 100*time.Millisecond
	cfg.MaxWatchWait = 200 * time.Millisecond // the heartbeat
	r, err := StartReplica(cfg, persist.NewNoop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	base := "http://" + r.ClientAddr()
	put := func(key, value string) uint64 {
		t.Helper()
		var rev uint64
		waitUntil(t, "put "+key, func() bool {
			resp, err := http.Post(base+"/kvstore/put", "application/json", strings.NewReader(`{"key":"`+key+`","value":"`+value+`"}`))
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			var out struct{ Revision uint64 }
			if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
				return false
			}
			rev = out.Revision
			return rev > 0
		})
		return rev
	}
	// next returns the next change on s, skipping heartbeats.
	next := func(s *sseReader) (restEvent, string) {
		t.Helper()
		for {
			m, err := s.next()
			if err != nil {
				t.Fatalf("reading the stream: %v", err)
			}
			if m.data == "" {
				continue
			}
			var ev restEvent
			if err := json.Unmarshal([]byte(m.data), &ev); err != nil {
				t.Fatalf("data %q: %v", m.data, err)
			}
			return ev, m.id
		}
	}
	start := put("other", "x")

	ctx, cancel := context.WithCancel(context.Background())
	_, s := openStream(t, ctx, base+"/kvstore/watch/app/?prefix=true&index="+strconv.FormatUint(start, 10), nil)
	if m := scrape(t, r); !strings.Contains(m, "\ndurio_watch_streams 1\n") {
		t.Fatalf("/metrics with one stream open lacks durio_watch_streams 1")
	}
	rev := put("app/a", "1")
	if ev, id := next(s); ev.Type != "put" || ev.KV.Key != "app/a" || ev.KV.Value != "1" || id != strconv.FormatUint(rev, 10) {
		t.Fatalf("first change: %+v id %s, want app/a=1 at %d", ev, id, rev)
	}
	// Past both timeouts (heartbeats every 200 ms), a change still arrives.
	for heartbeats := 0; heartbeats < 6; {
		if m, err := s.next(); err != nil {
			t.Fatalf("heartbeat %d: %v", heartbeats, err)
		} else if m.data == "" {
			heartbeats++
		}
	}
	put("other", "y") // not under the prefix
	if code, body := do(t, "DELETE", base+"/kvstore/app/a", ""); code != http.StatusOK {
		t.Fatalf("delete: %d %v", code, body)
	}
	ev, lastID := next(s)
	if ev.Type != "delete" || ev.KV.Key != "app/a" {
		t.Fatalf("after the timeouts: %+v, want the delete of app/a", ev)
	}
	cancel()
	waitUntil(t, "durio_watch_streams back to 0", func() bool { return strings.Contains(scrape(t, r), "\ndurio_watch_streams 0\n") })

	// Away: two changes under the prefix. The reconnect (with the same URL,
	// as EventSource makes it) gets exactly those.
	r1, r2 := put("app/b", "2"), put("app/c", "3")
	_, s = openStream(t, context.Background(), base+"/kvstore/watch/app/?prefix=true&index="+strconv.FormatUint(start, 10),
		http.Header{"Accept": {"text/event-stream"}, "Last-Event-Id": {lastID}})
	for _, want := range []struct {
		key string
		rev uint64
	}{{"app/b", r1}, {"app/c", r2}} {
		if ev, id := next(s); ev.KV.Key != want.key || id != strconv.FormatUint(want.rev, 10) {
			t.Fatalf("after the reconnect: %+v id %s, want %s at %d", ev, id, want.key, want.rev)
		}
	}
}

// A stream opened without index (EventSource's "changes from now on") names
// its starting revision at once, so a client whose connection drops before
// any change reconnects with it as Last-Event-ID and gets the changes made
// while it was away.
func TestReplicaWatchStreamFromNowResumes(t *testing.T) {
	cfg := oneMemberConfig(t)
	cfg.MaxWatchWait = time.Minute // no heartbeat during the test
	r, err := StartReplica(cfg, persist.NewNoop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	base := "http://" + r.ClientAddr()
	waitUntil(t, "a first put", func() bool {
		code, _ := do(t, "POST", base+"/kvstore/put", `{"key":"other","value":"x"}`)
		return code == http.StatusOK
	})

	// The EventSource keeps the last id it saw (an id-only message sets it).
	url := base + "/kvstore/watch/k"
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%v %v", resp, err)
	}
	defer resp.Body.Close()
	m, err := newSSEReader(resp.Body).next()
	if err != nil || !m.hasID {
		t.Fatalf("the first message %+v %v, want the id the stream starts after", m, err)
	}
	cancel() // the connection drops before any change

	if code, body := do(t, "POST", base+"/kvstore/put", `{"key":"k","value":"away"}`); code != http.StatusOK {
		t.Fatalf("put: %d %v", code, body)
	}
	_, s := openStream(t, context.Background(), url, http.Header{"Accept": {"text/event-stream"}, "Last-Event-Id": {m.id}})
	m, err = s.next()
	var ev restEvent
	if err != nil || json.Unmarshal([]byte(m.data), &ev) != nil || ev.KV == nil || ev.KV.Key != "k" || ev.KV.Value != "away" {
		t.Fatalf("after the reconnect: %+v %v, want the put made while the client was away", m, err)
	}
}

// With the default history bounds (1 MiB), an overwrite of a value of
// 600 KB (an event of 1.2 MB, counting the value it replaced) reaches the
// streams that were up to date: of its own key, of another prefix, and of
// every key, and so do the deletes of a lease's large keys. The history
// used to drop such an event at once, which ended every stream on every
// replica with "compacted" (and an EventSource for good).
func TestReplicaWatchStreamLargeWrites(t *testing.T) {
	cfg := oneMemberConfig(t)
	r, err := StartReplica(cfg, persist.NewNoop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	cl, err := client.New([]string{"http://" + r.ClientAddr()}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	big := strings.Repeat("v", 600_000)
	var start uint64
	waitUntil(t, "a first put", func() bool {
		start, err = cl.PutWith(ctx, "big", big, client.WriteOptions{})
		return err == nil
	})
	type seen struct {
		key string
		rev uint64
		err error
	}
	follow := func(key string, prefix bool) chan seen {
		ch := make(chan seen, 16)
		go func() {
			err := cl.FollowStream(ctx, key, prefix, start, func(ev client.Event) error {
				ch <- seen{key: ev.KV.Key, rev: ev.KV.ModRevision}
				return nil
			})
			ch <- seen{err: err}
		}()
		return ch
	}
	own, other, all := follow("big", false), follow("other/", true), follow("", true)
	expect := func(ch chan seen, key string, rev uint64) {
		t.Helper()
		select {
		case s := <-ch:
			if s.err != nil || s.key != key || s.rev != rev {
				t.Fatalf("want %s at %d, got %+v", key, rev, s)
			}
		case <-ctx.Done():
			t.Fatalf("no %s at %d", key, rev)
		}
	}
	rev, err := cl.PutWith(ctx, "big", big, client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	expect(own, "big", rev)
	expect(all, "big", rev)
	rev, err = cl.PutWith(ctx, "other/small", "1", client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	expect(other, "other/small", rev) // not ended by the large overwrite
	expect(all, "other/small", rev)
	// A lease whose two large keys end together.
	id, _, err := cl.LeaseGrant(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"other/a", "other/b"} {
		if rev, err = cl.PutWith(ctx, k, big[:400_000], client.WriteOptions{Lease: id}); err != nil {
			t.Fatal(err)
		}
		expect(other, k, rev)
	}
	if _, err := cl.LeaseRevoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	expect(other, "other/a", rev+1)
	expect(other, "other/b", rev+2)
}
