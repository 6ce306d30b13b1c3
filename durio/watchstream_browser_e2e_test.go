package durio_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// watchPage is a web page on another origin that follows a prefix with the
// browser's own EventSource and reports what it sees to its server
// (POST /report, one line each), closing the stream after want changes.
const watchPage = `<!doctype html><html><body><script>
const report = (line) => fetch("/report", {method: "POST", body: line});
const es = new EventSource(%q);
let seen = 0;
es.onopen = () => report("open");
es.onerror = () => report("error " + es.readyState);
es.onmessage = (e) => {
  const ev = JSON.parse(e.data);
  report("event " + e.lastEventId + " " + ev.type + " " + ev.kv.key + " " + ev.kv.mod_revision);
  if (++seen === %d) { es.close(); report("done"); }
};
</script></body></html>`

// A browser on another origin follows a prefix with EventSource: it gets
// each change with its revision as id, and when its replica is killed and
// restarted it reconnects by itself (with Last-Event-ID) and gets the
// change made while it was away, once.
func TestE2EWatchStreamInChromium(t *testing.T) {
	bin := chromium(t)
	var (
		mu      sync.Mutex
		reports []string
	)
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/report" {
			line, _ := io.ReadAll(io.LimitReader(r.Body, 1024))
			mu.Lock()
			reports = append(reports, string(line))
			mu.Unlock()
			return
		}
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, watchPage, r.URL.Query().Get("watch"), 2)
	}))
	defer page.Close()
	c := startCluster(t, 3, "file", "--cors-origins", page.URL)
	leader := c.waitLeader(10 * time.Second)
	watched := (leader + 1) % 3 // a follower, killed below
	writeTo := c.clients[leader]
	put := func(key string) {
		t.Helper()
		waitFor(t, "put "+key, 20*time.Second, func() bool {
			code, _ := httpDo(t, "POST", writeTo+"/kvstore/put", `{"key":"`+key+`","value":"v"}`)
			if code != http.StatusOK { // the leader may have moved
				writeTo = c.clients[c.waitLeader(10*time.Second)]
			}
			return code == http.StatusOK
		})
	}
	seen := func(prefix string) []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, r := range reports {
			if strings.HasPrefix(r, prefix) {
				out = append(out, r)
			}
		}
		return out
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// Virtual time stands still while the stream is open, so the page is
	// dumped once it closed the stream (or when ctx ends).
	cmd := exec.CommandContext(ctx, bin, chromiumArgs(filepath.Join(t.TempDir(), "profile"), "--virtual-time-budget=600000",
		"--dump-dom", page.URL+"/?watch="+c.clients[watched]+"/kvstore/watch/app/%3Fprefix=true")...)
	done := make(chan error, 1)
	go func() { done <- cmd.Run() }()
	defer func() {
		cancel()
		<-done
	}()

	waitFor(t, "the page's stream open", 60*time.Second, func() bool { return len(seen("open")) > 0 })
	put("app/a")
	waitFor(t, "the page sees app/a", 20*time.Second, func() bool { return len(seen("event")) > 0 })

	// The page's replica dies; a change is made meanwhile; the replica comes
	// back on the same address and the page reconnects by itself.
	c.kill(watched)
	waitFor(t, "the page sees its stream break", 20*time.Second, func() bool { return len(seen("error")) > 0 })
	put("app/b")
	c.start(watched)
	waitFor(t, "the page sees app/b after reconnecting", 60*time.Second, func() bool { return len(seen("done")) > 0 })

	events := seen("event")
	if len(events) != 2 {
		t.Fatalf("the page saw %v, want app/a then app/b, once each", events)
	}
	for i, key := range []string{"app/a", "app/b"} {
		var id, typ, k, rev string
		if _, err := fmt.Sscan(strings.TrimPrefix(events[i], "event "), &id, &typ, &k, &rev); err != nil ||
			typ != "put" || k != key || id != rev {
			t.Fatalf("event %d: %q, want a put of %s whose id is its revision", i, events[i], key)
		}
	}
	t.Logf("page reports: %v", seen(""))
}
