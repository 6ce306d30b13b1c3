package durio_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ruaft/ruaft/durio/backup"
	"github.com/ruaft/ruaft/durio/client"
	"github.com/ruaft/ruaft/internal/freeport"
	"github.com/ruaft/ruaft/kvraft"
)

// Backup under load, restore into a fresh 3-replica cluster: every write
// acknowledged before the save is there, on every replica, and the new
// cluster takes writes.
func TestSnapshotSaveUnderLoadRestoreIntoNewCluster(t *testing.T) {
	src := startCluster(t, 3, "file")
	endpoints := strings.Join(src.clients, ",")
	cl, err := client.New(src.clients, client.Options{})
	if err != nil {
		t.Fatal(err)
	}

	// Load: 4 writers, each acknowledging keys in order; acked records them.
	var (
		mu    sync.Mutex // guards acked
		acked = map[string]string{}
		wg    sync.WaitGroup
	)
	ctx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				key, value := "w"+strconv.Itoa(w)+"/k"+strconv.Itoa(i), strings.Repeat("v", i%50)+strconv.Itoa(i)
				opCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := cl.Put(opCtx, key, value)
				cancel()
				if err == nil {
					mu.Lock()
					acked[key] = value
					mu.Unlock()
				}
			}
		})
	}
	waitFor(t, "200 acknowledged writes", 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 200 })

	// Every write acknowledged before the save starts must be in the file.
	mu.Lock()
	before := make(map[string]string, len(acked))
	for k, v := range acked {
		before[k] = v
	}
	mu.Unlock()
	file := filepath.Join(t.TempDir(), "backup.durio")
	r := runCLI(t, []string{"DURIO_ENDPOINTS=" + endpoints}, "", "snapshot", "save", file, "--json")
	r.expect(t, 0, "snapshot save")
	var hdr backup.Header
	if err := json.Unmarshal([]byte(r.stdout), &hdr); err != nil || hdr.Index == 0 || hdr.Term == 0 || len(hdr.SHA256) != 64 {
		t.Fatalf("snapshot save --json: %q %v", r.stdout, err)
	}
	stopLoad()
	wg.Wait()
	if len(before) == 0 {
		t.Fatal("no writes were acknowledged before the save")
	}

	r = runCLI(t, nil, "", "snapshot", "inspect", file, "--json")
	r.expect(t, 0, "snapshot inspect")
	var info struct {
		Index, Keys int
		Revision    uint64
		ApplyLevel  uint32 `json:"apply_level"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil || info.Keys < len(before) || uint64(info.Index) != hdr.Index ||
		info.Revision < uint64(len(before)) || info.ApplyLevel != kvraft.ApplyLevel {
		t.Fatalf("inspect: %q %v (want index %d, >= %d keys and revisions, apply level %d)", r.stdout, err, hdr.Index, len(before), kvraft.ApplyLevel)
	}

	// Seed three empty data folders and start a new cluster on them.
	dst := &cluster{t: t, persister: "file", dir: t.TempDir(), procs: make([]*proc, 3)}
	ports := freeport.Ports(t, 6)
	for i := range 3 {
		dst.peers = append(dst.peers, "http://127.0.0.1:"+strconv.Itoa(ports[i]))
		dst.clients = append(dst.clients, "http://127.0.0.1:"+strconv.Itoa(ports[3+i]))
		dataDir := filepath.Join(dst.dir, "replica-"+strconv.Itoa(i))
		runCLI(t, nil, "", "snapshot", "restore", file, "--data-dir", dataDir, "--persister", "file").expect(t, 0, "snapshot restore")
		if i == 0 { // a second restore into the same folder is refused
			r := runCLI(t, nil, "", "snapshot", "restore", file, "--data-dir", dataDir, "--persister", "file")
			r.expect(t, 1, "snapshot restore into a used folder")
			if !strings.Contains(r.stderr, "already holds raft state") {
				t.Fatalf("restore into a used folder: %q", r.stderr)
			}
		}
	}
	for i := range 3 {
		dst.start(i)
	}
	t.Cleanup(dst.stopAll)
	dst.waitLeader(time.Minute) // three processes starting on a busy machine, then an election

	// Every key acknowledged before the save, read through every replica
	// (linearizable, so forwarded to the leader) and from each replica's own
	// state (stale reads, once it has applied the snapshot).
	for i, u := range dst.clients {
		c, err := client.New([]string{u}, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for k, v := range before {
			if n++; n > 100 && i > 0 { // every key through replica 0, a sample through the others
				break
			}
			got, err := c.Get(context.Background(), k)
			if err != nil || got != v {
				t.Fatalf("replica %d: key %s = %q, %v; want %q", i, k, got, err, v)
			}
		}
		waitFor(t, "the snapshot applied on replica "+strconv.Itoa(i), 10*time.Second, func() bool {
			code, body := httpDo(t, "GET", u+"/kvstore/get/"+firstKey(before)+"?stale=true", "")
			return code == 200 && body["value"] == before[firstKey(before)]
		})
	}
	// The new cluster carries on from the snapshot's index.
	dc, _ := client.New(dst.clients, client.Options{})
	if err := dc.Put(context.Background(), "after/restore", "yes"); err != nil {
		t.Fatal(err)
	}
	st, err := dc.StatusOf(context.Background(), dst.leader())
	if err != nil || st.GetCommitIndex() <= hdr.Index {
		t.Fatalf("new cluster commit index %d, want above the snapshot's %d (%v)", st.GetCommitIndex(), hdr.Index, err)
	}
}

// A damaged snapshot file is refused before anything is written.
func TestSnapshotRestoreRefusesDamagedFiles(t *testing.T) {
	dir := t.TempDir()
	state := "\x01\x00\x00" // kvraft's encoding of an empty state
	good := "durio-snapshot 1\n" + `{"index":7,"term":2,"bytes":3,"sha256":"` + sha256Hex(state) + `","created":"2026-11-30T00:00:00Z","replica":0}` + "\n" + state
	cases := map[string]string{
		"not-a-snapshot": "hello\n",
		"bad-checksum":   strings.Replace(good, sha256Hex(state), strings.Repeat("0", 64), 1),
		"truncated":      good[:len(good)-1],
		"trailing":       good + "x",
		"bad-header":     "durio-snapshot 1\n{\"index\":\n",
		"unknown-field":  strings.Replace(good, `"replica":0`, `"replica":0,"x":1`, 1),
	}
	for name, content := range cases {
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		dataDir := filepath.Join(dir, name+"-data")
		r := runCLI(t, nil, "", "snapshot", "restore", file, "--data-dir", dataDir, "--persister", "file")
		r.expect(t, 1, "restore", name)
		if !strings.Contains(r.stderr, "bad snapshot") || strings.Count(r.stderr, "durio:") != 1 {
			t.Errorf("%s: stderr %q, want one line beginning durio: and saying bad snapshot", name, r.stderr)
		}
		if _, err := os.Stat(dataDir); err == nil {
			t.Errorf("%s: restore created %s although the file is bad", name, dataDir)
		}
	}
	file := filepath.Join(dir, "good")
	if err := os.WriteFile(file, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	runCLI(t, nil, "", "snapshot", "inspect", file).expect(t, 0, "inspect good")
	runCLI(t, nil, "", "snapshot", "restore", file).expect(t, 2, "restore without --data-dir")
	// A store that keeps nothing once the command ends is refused, not
	// "restored".
	for _, p := range []string{"noop", "memory"} {
		r := runCLI(t, nil, "", "snapshot", "restore", file, "--data-dir", filepath.Join(dir, p+"-data"), "--persister", p)
		r.expect(t, 2, "restore with --persister", p)
		if !strings.Contains(r.stderr, "keeps nothing") {
			t.Errorf("--persister %s: stderr %q", p, r.stderr)
		}
	}
}

func firstKey(m map[string]string) string {
	for k := range m {
		return k
	}
	return ""
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
