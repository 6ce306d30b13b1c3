package durio_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/kvraft"
)

// historyDoc is the part of GET /status/history this test reads.
type historyDoc struct {
	Self     int `json:"self"`
	Replicas []struct {
		ID        int                                       `json:"id"`
		Reachable bool                                      `json:"reachable"`
		Error     string                                    `json:"error"`
		StartedMS int64                                     `json:"started_ms"`
		TimeMS    []int64                                   `json:"t_ms"`
		Requests  map[string]map[string][]uint32            `json:"requests"`
		Role      []string                                  `json:"role"`
		Followers map[string]struct{ LagEntries []*uint64 } `json:"followers"`
		Events    []struct {
			TimeMS int64  `json:"t_ms"`
			Kind   string `json:"kind"`
			Term   uint64 `json:"term"`
			Leader *int   `json:"leader"`
		} `json:"events"`
	} `json:"replicas"`
}

func getHistory(t *testing.T, url string) historyDoc {
	t.Helper()
	resp, err := http.Get(url + "/status/history")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc historyDoc
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// The status page's history: under load, the leader is killed and
// restarted; the page (rendered by headless Chromium) must draw the
// throughput and lag charts with data, mark the restart, and show the
// leader change on the leadership timeline.
func TestE2EStatusHistoryInChromium(t *testing.T) {
	bin := chromium(t)
	c := startCluster(t, 3, "file")
	oldLeader := c.waitLeader(10 * time.Second)

	// Load: puts and gets spread over every replica, bounded in time.
	ctx, stopLoad := context.WithTimeout(context.Background(), 40*time.Second)
	defer stopLoad()
	var ok atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			hc := &http.Client{Timeout: 3 * time.Second}
			for n := 0; ctx.Err() == nil; n++ {
				u := c.clients[(w+n)%len(c.clients)]
				var resp *http.Response
				var err error
				if n%2 == 0 {
					resp, err = hc.Post(u+"/kvstore/put", "application/json",
						strings.NewReader(fmt.Sprintf(`{"key":"k%d","value":"v%d"}`, w, n)))
				} else {
					resp, err = hc.Get(u + "/kvstore/get/k" + strconv.Itoa(w))
				}
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode < 300 {
						ok.Add(1)
					}
				}
			}
		})
	}
	defer wg.Wait()
	defer stopLoad()
	waitFor(t, "writes before the restart", 20*time.Second, func() bool { return ok.Load() > 200 })
	time.Sleep(2 * time.Second) // two more samples of load, on the chart before the restart

	c.kill(oldLeader)
	killedAt := time.Now()
	newLeader := c.waitLeader(10 * time.Second)
	c.start(oldLeader)
	waitFor(t, "the restarted replica to answer", 15*time.Second, func() bool {
		resp, err := http.Get(c.clients[oldLeader] + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	before := ok.Load()
	waitFor(t, "writes after the restart", 20*time.Second, func() bool { return ok.Load() > before+200 })
	// The restarted replica catches up and is sampled a few times.
	page := c.clients[newLeader]
	waitFor(t, "the restarted replica's samples", 15*time.Second, func() bool {
		for _, r := range getHistory(t, page).Replicas {
			if r.ID == oldLeader && len(r.TimeMS) >= 3 {
				return true
			}
		}
		return false
	})
	stopLoad()
	wg.Wait()

	// The JSON first: every replica answered, the restart and the new
	// leadership are there.
	doc := getHistory(t, page)
	if len(doc.Replicas) != 3 {
		t.Fatalf("history of %d replicas, want 3", len(doc.Replicas))
	}
	var newTerm uint64
	for _, r := range doc.Replicas {
		if !r.Reachable {
			t.Fatalf("replica %d unreachable: %s", r.ID, r.Error)
		}
		if r.ID == oldLeader && r.StartedMS < killedAt.UnixMilli() {
			t.Errorf("the restarted replica says it started at %d, before the kill (%d)", r.StartedMS, killedAt.UnixMilli())
		}
		for _, e := range r.Events {
			if e.Kind == "leader" && e.Leader != nil && *e.Leader == newLeader && e.TimeMS >= killedAt.UnixMilli()-1000 {
				newTerm = max(newTerm, e.Term)
			}
		}
	}
	if newTerm == 0 {
		t.Fatalf("no replica recorded replica %d's leadership after the kill: %+v", newLeader, doc)
	}

	dir := t.TempDir()
	// Three Chromium runs: generous, since one took over 40 s at a load
	// average of 17.
	ctx2, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dom, err := exec.CommandContext(ctx2, bin, chromiumArgs(filepath.Join(dir, "p1"), "--window-size=1000,1600", "--dump-dom", page+"/")...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	html := string(dom)
	points := func(chart string) int {
		m := regexp.MustCompile(`id="c-` + chart + `"><svg [^>]*data-points="(\d+)"`).FindStringSubmatch(html)
		if m == nil {
			t.Fatalf("no %s chart in the rendered page:\n%s", chart, html)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	if n := points("throughput"); n < 10 {
		t.Errorf("throughput chart has %d points", n)
	}
	if n := points("latency"); n < 10 {
		t.Errorf("latency chart has %d points", n)
	}
	if n := points("lag"); n < 5 {
		t.Errorf("replication-lag chart has %d points", n)
	}
	if n := points("commit"); n < 10 {
		t.Errorf("commit chart has %d points", n)
	}
	restart := regexp.MustCompile(`class="mark restart" data-replica="`+strconv.Itoa(oldLeader)+`" data-t="(\d+)"`).FindAllStringSubmatch(html, -1)
	if len(restart) == 0 {
		t.Errorf("no restart of replica %d marked:\n%s", oldLeader, html)
	}
	for _, m := range restart {
		if at, _ := strconv.ParseInt(m[1], 10, 64); at < killedAt.UnixMilli() {
			t.Errorf("restart of replica %d marked at %d, before the kill (%d)", oldLeader, at, killedAt.UnixMilli())
		}
	}
	change := fmt.Sprintf(`class="mark leader-change" data-term="%d" data-leader="%d"`, newTerm, newLeader)
	if !strings.Contains(html, change) {
		t.Errorf("the leadership timeline lacks %q:\n%s", change, html)
	}
	if !strings.Contains(html, `class="seg role-leader" data-replica="`+strconv.Itoa(newLeader)+`"`) {
		t.Errorf("the timeline shows no leadership of replica %d", newLeader)
	}
	// Every replica runs this version: the table shows each at its level.
	if n := strings.Count(html, fmt.Sprintf(`data-apply-level="%d"`, kvraft.ApplyLevel)); n != 3 {
		t.Errorf("the replica table shows %d replicas at apply level %d, want 3", n, kvraft.ApplyLevel)
	}
	if !strings.Contains(html, "3 replicas, one sample per second") {
		t.Errorf("the page does not say every replica answered")
	}

	// Screenshots, wide and phone-sized: the timeline's leader green and the
	// restart's red are drawn, and on the phone the charts fit the width.
	// Headless Chromium lays out no window narrower than 500 px: the phone
	// is that wide (a phone is 360-430 px; the page has one column below
	// about 480 px).
	for _, size := range []struct{ w, h, green, red int }{{1000, 1400, 300, 40}, {500, 2600, 150, 20}} {
		shot := filepath.Join(dir, fmt.Sprintf("history-%d.png", size.w))
		cmd := exec.CommandContext(ctx2, bin, chromiumArgs(filepath.Join(dir, "p"+strconv.Itoa(size.w)),
			fmt.Sprintf("--window-size=%d,%d", size.w, size.h), "--hide-scrollbars", "--screenshot="+shot, page+"/")...)
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
		if b := img.Bounds(); b.Dx() != size.w {
			t.Fatalf("screenshot is %v wide, want %d", b.Dx(), size.w)
		}
		if n := countColor(img, 0x2e, 0x7d, 0x32); n < size.green {
			t.Errorf("%dpx wide: leader green (#2e7d32) covers %d pixels; the timeline did not render", size.w, n)
		}
		if n := countColor(img, 0xd6, 0x27, 0x28); n < size.red {
			t.Errorf("%dpx wide: restart red (#d62728) covers %d pixels; the restart is not marked", size.w, n)
		}
		if size.w <= 500 {
			if x := rightmostInk(img); x < size.w/2 || x >= size.w-2 {
				t.Errorf("%dpx wide: the drawing ends at x=%d: the page overflows (or is not there)", size.w, x)
			}
		}
		if keep := os.Getenv("DURIO_KEEP_SCREENSHOT"); keep != "" {
			_ = os.WriteFile(strings.TrimSuffix(keep, ".png")+"-history-"+strconv.Itoa(size.w)+".png", data, 0o644)
		}
	}
}

// rightmostInk is the largest x of a pixel that is neither the page's
// background (#fafafa) nor white.
func rightmostInk(img image.Image) int {
	b := img.Bounds()
	for x := b.Max.X - 1; x >= b.Min.X; x-- {
		for y := b.Min.Y; y < b.Max.Y; y++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if !(near(r>>8, 0xfa) && near(g>>8, 0xfa) && near(bl>>8, 0xfa)) && !(r>>8 == 0xff && g>>8 == 0xff && bl>>8 == 0xff) {
				return x
			}
		}
	}
	return -1
}
