package durio_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ruaft/ruaft/durio"
	"github.com/ruaft/ruaft/durio/duriotest"
)

// chromium finds Debian's headless Chromium; .ci/run installs it.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed; .ci/run installs Debian's chromium package")
	}
	t.Skip("chromium not installed (apt-get install chromium)")
	return ""
}

func chromiumArgs(profile string, extra ...string) []string {
	return append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + profile, "--virtual-time-budget=4000"}, extra...)
}

func TestE2EStatusPageInChromium(t *testing.T) {
	bin := chromium(t)
	c := startCluster(t, 3, "noop")
	leader := c.waitLeader(10 * time.Second)
	url := c.clients[(leader+1)%3] + "/" // a follower's page shows the whole cluster

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()

	// The rendered DOM: the script has fetched /status and filled the table.
	dom, err := exec.CommandContext(ctx, bin, chromiumArgs(filepath.Join(dir, "p1"), "--dump-dom", url)...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	for _, want := range []string{"3 of 3 replicas reachable", `class="leader"`} {
		if !strings.Contains(string(dom), want) {
			t.Errorf("rendered page lacks %q:\n%s", want, dom)
		}
	}
	// A busy machine may re-elect while Chromium starts: the page must name
	// the leader of before or of after its rendering.
	after := c.waitLeader(10 * time.Second)
	if !strings.Contains(string(dom), "leader: replica "+strconv.Itoa(leader)) && !strings.Contains(string(dom), "leader: replica "+strconv.Itoa(after)) {
		t.Errorf("rendered page names neither replica %d nor %d as leader:\n%s", leader, after, dom)
	}

	// The screenshot: the page is drawn, and the leader's row is highlighted.
	shot := filepath.Join(dir, "status.png")
	cmd := exec.CommandContext(ctx, bin, chromiumArgs(filepath.Join(dir, "p2"), "--window-size=1000,400", "--screenshot="+shot, url)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, out)
	}
	data, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 1000 || b.Dy() != 400 {
		t.Fatalf("screenshot is %v, want 1000x400", b)
	}
	if n := countColor(img, 0xea, 0xf7, 0xea); n < 2000 {
		t.Errorf("the leader row (background #eaf7ea) covers %d pixels; the table did not render", n)
	}
	if os.Getenv("DURIO_KEEP_SCREENSHOT") != "" {
		_ = os.WriteFile(os.Getenv("DURIO_KEEP_SCREENSHOT"), data, 0o644)
	}
}

// countColor counts pixels within a small distance of an RGB color.
func countColor(img image.Image, r, g, b uint8) int {
	n := 0
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			pr, pg, pb, _ := img.At(x, y).RGBA()
			if near(pr>>8, r) && near(pg>>8, g) && near(pb>>8, b) {
				n++
			}
		}
	}
	return n
}

func near(a uint32, b uint8) bool { return a+3 >= uint32(b) && a <= uint32(b)+3 }

// With --client-auth-file the page asks for a token, and takes one from a
// #token= fragment (kept for the tab, dropped from the address).
func TestE2EStatusPageWithClientAuth(t *testing.T) {
	bin := chromium(t)
	const readToken = "r-0123456789abcdef"
	authFile := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(authFile, []byte("read "+readToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := duriotest.StartOneWith(t, func(cfg *durio.Config) { cfg.ClientAuthFile = authFile })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	summary := regexp.MustCompile(`<p id="summary">([^<]*)</p>`)
	for i, c := range []struct {
		fragment, summary, form, note string
	}{
		{"", "this cluster needs a client token with the read role (HTTP 401)", `<form id="auth">`, `<span id="authnote" class="err"></span>`},
		{"#token=x-0123456789abcdef", "this cluster needs a client token with the read role (HTTP 401)", `<form id="auth">`, "is not one this cluster knows"},
		{"#token=" + readToken, "1 of 1 replicas reachable; leader: replica 0", `<form id="auth" hidden="">`, `<span id="authnote" class="err"></span>`},
	} {
		dom, err := exec.CommandContext(ctx, bin, chromiumArgs(filepath.Join(dir, strconv.Itoa(i)), "--dump-dom", base+"/"+c.fragment)...).Output()
		if err != nil {
			t.Fatalf("chromium --dump-dom: %v", err)
		}
		got := ""
		if m := summary.FindSubmatch(dom); m != nil {
			got = string(m[1])
		}
		if !strings.HasPrefix(got, c.summary) || !strings.Contains(string(dom), c.form) || !strings.Contains(string(dom), c.note) {
			t.Errorf("page %q: summary %q, want %q, the form as %s and %q:\n%s", c.fragment, got, c.summary, c.form, c.note, dom)
		}
	}
}

// The timeline shows learners apart and marks each new configuration once,
// from the replicas' history (served here by a fake replica, so the test
// needs no membership change of a real cluster).
func TestE2EStatusPageMembershipTimeline(t *testing.T) {
	bin := chromium(t)
	resp, err := http.Get(duriotest.StartOne(t) + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the status page: %d %v", resp.StatusCode, err)
	}
	started := time.Now().Add(-30 * time.Second)
	history := func() any {
		now := time.Now()
		replica := func(id int, member func(i int) string, events []map[string]any) map[string]any {
			n := 20
			cols := map[string]any{"id": id, "reachable": true, "started_ms": started.UnixMilli(), "now_ms": now.UnixMilli(), "interval_ms": 1000}
			ts, zeros, terms, roles, leaders, members := []int64{}, []int{}, []int{}, []string{}, []int{}, []string{}
			for i := range n {
				ts = append(ts, now.Add(time.Duration(i-n)*time.Second).UnixMilli())
				zeros, terms, leaders = append(zeros, 0), append(terms, 2), append(leaders, 0)
				role := "follower"
				if id == 0 {
					role = "leader"
				}
				roles, members = append(roles, role), append(members, member(i))
			}
			cols["t_ms"], cols["term"], cols["role"], cols["leader"], cols["member"] = ts, terms, roles, leaders, members
			for _, k := range []string{"request_p50_us", "request_p99_us", "commits", "applies", "store_append_p50_us",
				"store_append_p99_us", "store_appends", "store_errors", "snapshots", "log_bytes", "last_index", "snapshot_index"} {
				cols[k] = zeros
			}
			cols["events"] = events
			return cols
		}
		at := func(i int) int64 { return now.Add(time.Duration(i-20) * time.Second).UnixMilli() }
		added := map[string]any{"t_ms": at(5), "kind": "membership", "term": 2, "detail": "voters 0; learners 3"}
		promoted := map[string]any{"t_ms": at(12), "kind": "membership", "term": 2, "detail": "voters 0, 3"}
		// Both replicas record both changes, a moment apart: one mark each.
		late := func(e map[string]any) map[string]any {
			c := maps.Clone(e)
			c["t_ms"] = e["t_ms"].(int64) + 300
			return c
		}
		voter := func(int) string { return "voter" }
		learnerThenVoter := func(i int) string {
			switch {
			case i < 5:
				return ""
			case i < 12:
				return "learner"
			}
			return "voter"
		}
		return map[string]any{"replicas": []any{
			replica(0, voter, []map[string]any{added, promoted}),
			replica(3, learnerThenVoter, []map[string]any{late(added), late(promoted)}),
		}}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write(page)
		case "/status":
			json.NewEncoder(w).Encode(map[string]any{"self": 0, "replicas": []any{
				map[string]any{"id": 0, "reachable": true, "role": "leader", "member": "voter", "term": 2, "leader_known": true, "leader_id": 0},
				map[string]any{"id": 3, "reachable": true, "role": "follower", "member": "voter", "term": 2, "leader_known": true, "leader_id": 0},
			}})
		case "/status/history":
			json.NewEncoder(w).Encode(history())
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dom, err := exec.CommandContext(ctx, bin, chromiumArgs(filepath.Join(t.TempDir(), "p"), "--dump-dom", srv.URL+"/")...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	marks := regexp.MustCompile(`class="mark membership-change"[^>]*data-detail="([^"]*)"`).FindAllStringSubmatch(string(dom), -1)
	var details []string
	for _, m := range marks {
		details = append(details, m[1])
	}
	if want := []string{"voters 0; learners 3", "voters 0, 3"}; !slices.Equal(details, want) {
		t.Errorf("membership marks %q, want %q", details, want)
	}
	for _, want := range []string{`class="seg role-learner" data-replica="3"`, `class="seg role-not-a-member" data-replica="3"`,
		`class="seg role-follower" data-replica="3"`, "membership change</span>", "learner</span>"} {
		if !strings.Contains(string(dom), want) {
			t.Errorf("the timeline lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("rendered page:\n%s", dom)
	}
}
