package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/durio/client"
	"github.com/ruaft/ruaft/kvraft/kvclient"
)

// scriptedStreams serves watch streams from a script per replica: each
// request gets the next script of its replica, written as is (a script
// starting with a digit is a status code and a body instead).
type scriptedStreams struct {
	mu      sync.Mutex
	scripts map[int][]string
	asked   []string // "replica url" of each request, in order
}

// script replaces the scripts and forgets the requests.
func (s *scriptedStreams) script(scripts map[int][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripts, s.asked = scripts, nil
}

func (s *scriptedStreams) server(t *testing.T, replica int) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.asked = append(s.asked, fmt.Sprintf("%d %s", replica, r.URL.RequestURI()))
		var script string
		if q := s.scripts[replica]; len(q) > 0 {
			script, s.scripts[replica] = q[0], q[1:]
		}
		s.mu.Unlock()
		if r.Header.Get("Accept") != "text/event-stream" {
			t.Errorf("a stream asked with Accept %q", r.Header.Get("Accept"))
		}
		if script == "" || script[0] >= '0' && script[0] <= '9' {
			code, body, _ := strings.Cut(script, " ")
			status := 503
			fmt.Sscan(code, &status)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, body)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for part := range strings.SplitSeq(script, "|") {
			if part == "hang" { // say nothing more until the client leaves
				<-r.Context().Done()
				return
			}
			io.WriteString(w, part)
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func putEv(key string, rev int) string {
	return fmt.Sprintf("id: %d\ndata: {\"type\":\"put\",\"kv\":{\"key\":%q,\"value\":\"v%d\",\"create_revision\":%d,\"mod_revision\":%d,\"version\":1}}\n\n", rev, key, rev, rev, rev)
}

// FollowStream delivers each change once, in order, across streams that
// break (resuming at the next replica from the last revision delivered or
// announced by a heartbeat), replicas that refuse or fall silent, and
// returns fn's error, ErrCompacted or ErrInvalid as they come.
func TestFollowStream(t *testing.T) {
	s := &scriptedStreams{scripts: map[int][]string{
		0: {
			// Two changes (one with CRLF line ends and a comment), a
			// heartbeat id, then the connection breaks.
			"retry: 1000\n\n" + putEv("a/1", 5) + strings.ReplaceAll(putEv("a/2", 6), "\n", "\r\n") + ": hi\n\n" + "id: 9\n\n",
			// Asked again later: the same change twice (a replica must not
			// repeat; the client drops it), then a newer one, then silence.
			putEv("a/2", 6) + putEv("a/3", 12) + "|hang",
		},
		1: {
			`503 {"code":"unavailable","msg":"shutting down"}`,
			putEv("a/4", 13) + `event: compacted` + "\n" + `data: {"code":"out_of_range","msg":"gone"}` + "\n\n",
		},
	}}
	eps := []string{s.server(t, 0), s.server(t, 1)}
	c, err := client.New(eps, client.Options{StreamIdleTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []string
	err = c.FollowStream(ctx, "a/", true, 4, func(ev client.Event) error {
		got = append(got, fmt.Sprintf("%s@%d", ev.KV.Key, ev.KV.ModRevision))
		return nil
	})
	if !errors.Is(err, client.ErrCompacted) {
		t.Fatalf("FollowStream = %v, want ErrCompacted", err)
	}
	if want := "a/1@5 a/2@6 a/3@12 a/4@13"; strings.Join(got, " ") != want {
		t.Fatalf("delivered %v, want %s", got, want)
	}
	s.mu.Lock()
	asked := strings.Join(s.asked, "\n")
	s.mu.Unlock()
	// Each request resumes from the last revision delivered or announced:
	// after the heartbeat's 9, then after 12 once replica 0 fell silent.
	want := strings.Join([]string{
		"0 /kvstore/watch/a%2F?index=4&prefix=true&stream=true&wait=150ms",
		"1 /kvstore/watch/a%2F?index=9&prefix=true&stream=true&wait=150ms",
		"0 /kvstore/watch/a%2F?index=9&prefix=true&stream=true&wait=150ms",
		"1 /kvstore/watch/a%2F?index=12&prefix=true&stream=true&wait=150ms",
	}, "\n")
	if asked != want {
		t.Fatalf("requests:\n%s\nwant:\n%s", asked, want)
	}

	// fn's error ends it; so do 410 and 400.
	s.script(map[int][]string{0: {putEv("k", 3)}})
	boom := errors.New("boom")
	if err := c.FollowStream(ctx, "k", false, 1, func(client.Event) error { return boom }); err != boom {
		t.Fatalf("FollowStream with a failing fn = %v, want its error", err)
	}
	s.script(map[int][]string{0: {`410 {"code":"out_of_range","msg":"compacted"}`}})
	if err := c.FollowStream(ctx, "k", false, 1, func(client.Event) error { return nil }); !errors.Is(err, client.ErrCompacted) {
		t.Fatalf("FollowStream answered 410 = %v, want ErrCompacted", err)
	}
	s.script(map[int][]string{0: {`400 {"code":"invalid_argument","msg":"bad"}`}})
	if err := c.FollowStream(ctx, "k", false, 1, func(client.Event) error { return nil }); !errors.Is(err, kvclient.ErrInvalid) {
		t.Fatalf("FollowStream answered 400 = %v, want ErrInvalid", err)
	}
	// A refusal every replica would repeat (no such route: a replica
	// without streams; a forbidden origin) ends it too, rather than retry
	// forever; 429 and 503 are tried elsewhere (above).
	for _, refusal := range []string{`404 {"code":"bad_route","msg":"no route"}`, `403 {"code":"permission_denied","msg":"origin"}`} {
		s.script(map[int][]string{0: {refusal}, 1: {refusal}})
		if err := c.FollowStream(ctx, "k", false, 1, func(client.Event) error { return nil }); err == nil || ctx.Err() != nil ||
			!strings.Contains(err.Error(), refusal[:3]) {
			t.Fatalf("FollowStream answered %s = %v, want that refusal", refusal[:3], err)
		}
	}
	// A stream that sends a malformed id or event is left for another
	// replica, not trusted.
	s.script(map[int][]string{0: {"id: x\ndata: {}\n\n"}, 1: {"id: 4\ndata: not json\n\n"}})
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancelShort()
	if err := c.FollowStream(short, "k", false, 1, func(client.Event) error {
		t.Error("an event delivered from a malformed stream")
		return nil
	}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("FollowStream over malformed streams = %v, want the context's end", err)
	}

	// A certificate the client does not trust fails at once: retrying
	// cannot cure it.
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	defer tlsSrv.Close()
	untrusting, err := client.New([]string{tlsSrv.URL}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = untrusting.FollowStream(ctx, "k", false, 1, func(client.Event) error { return nil })
	if err == nil || ctx.Err() != nil || time.Since(start) > 10*time.Second || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("FollowStream against an untrusted certificate = %v after %v, want the certificate error at once", err, time.Since(start))
	}
}

// A replica that keeps its stream alive with heartbeats is not left because
// fn took longer than StreamIdleTimeout: the idle clock measures the
// replica's silence, not the consumer's work.
func TestFollowStreamSlowConsumerKeepsStream(t *testing.T) {
	var streams atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streams.Add(1)
		after, _ := strconv.Atoi(r.URL.Query().Get("index"))
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, fmt.Sprintf("retry: 1000\nid: %d\n\n", after))
		for rev := after + 1; ; rev++ {
			io.WriteString(w, putEv("k", rev))
			w.(http.Flusher).Flush()
			for range 5 { // a heartbeat every 50 ms between changes
				select {
				case <-r.Context().Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
				io.WriteString(w, ":\n\n")
				w.(http.Flusher).Flush()
			}
		}
	}))
	defer srv.Close()
	c, err := client.New([]string{srv.URL}, client.Options{StreamIdleTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := errors.New("done")
	n := 0
	err = c.FollowStream(ctx, "k", false, 0, func(client.Event) error {
		time.Sleep(300 * time.Millisecond) // longer than StreamIdleTimeout
		if n++; n == 3 {
			return done
		}
		return nil
	})
	if err != done {
		t.Fatalf("FollowStream = %v", err)
	}
	if s := streams.Load(); s != 1 {
		t.Fatalf("%d streams opened for a replica that never fell silent, want 1", s)
	}
}
