package durio_test

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
