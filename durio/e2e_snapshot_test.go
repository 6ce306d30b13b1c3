package durio_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ruaft/ruaft/internal/freeport"
	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/filestore"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// TestE2ESnapshotCatchUpAcrossLeaderChanges runs three real replicas with a
// small --snapshot-bytes, so that they snapshot every few writes. One
// follower is killed; while it is down the others write a state larger than
// one InstallSnapshot chunk (1 MiB) and compact the log past it. It then
// restarts and catches up through a chunked InstallSnapshot while the
// leader is killed and restarted again and again (every new leader starts
// the transfer over) and writes go on. In the end every replica holds the
// same state, equal to what was written, read locally (stale reads) on
// each.
func TestE2ESnapshotCatchUpAcrossLeaderChanges(t *testing.T) {
	c := startCluster(t, 3, "file", "--snapshot-bytes", "262144")
	value := func(key string, round int) string {
		return fmt.Sprintf("%s/%d/", key, round) + strings.Repeat("v", 48<<10)
	}
	want := map[string]string{}
	put := func(key, v string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for attempt := 0; ; attempt++ {
			i := attempt % len(c.clients)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_, err := kvv1.NewKVServiceProtobufClient(c.clients[i], http.DefaultClient).
				Put(ctx, &kvv1.PutRequest{Key: key, Value: v})
			cancel()
			if err == nil {
				want[key] = v
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("put %s: %v", key, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for k := range 8 {
		key := "k" + strconv.Itoa(k)
		put(key, value(key, 0))
	}

	lag := (c.waitLeader(15*time.Second) + 1) % 3
	c.kill(lag)
	// lagLog collects the logs of the lagging replica's incarnations (it
	// may lead, and be killed, in the loop below).
	var lagLog strings.Builder
	// About 2.4 MiB of state, about ten snapshots on each live replica.
	for k := range 50 {
		key := "k" + strconv.Itoa(k)
		put(key, value(key, 1))
	}
	c.start(lag)

	// Leader changes while the lagging replica catches up, with writes in
	// between (and more snapshots).
	changes := 0
	for round := 2; round < 5; round++ {
		l := c.waitLeader(15 * time.Second)
		c.kill(l)
		if l == lag {
			lagLog.WriteString(c.procs[lag].log.String()) // the process is gone: no writer
		}
		c.start(l)
		changes++
		for k := range 6 {
			key := "k" + strconv.Itoa((round*13+k)%50)
			put(key, value(key, round))
		}
	}
	if changes < 3 {
		t.Fatalf("%d leader changes", changes)
	}

	// Every replica reaches the same applied index, then holds the same
	// state, equal to what was written.
	statuses := func() []*kvv1.StatusResponse {
		var out []*kvv1.StatusResponse
		for _, u := range c.clients {
			st, err := kvv1.NewKVServiceProtobufClient(u, http.DefaultClient).Status(context.Background(), &kvv1.StatusRequest{})
			if err != nil {
				return nil
			}
			out = append(out, st)
		}
		return out
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		sts := statuses()
		if len(sts) == 3 && sts[0].GetAppliedIndex() == sts[1].GetAppliedIndex() &&
			sts[1].GetAppliedIndex() == sts[2].GetAppliedIndex() && sts[0].GetAppliedIndex() == sts[0].GetCommitIndex() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas did not converge within 30 s: %v", sts)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i, u := range c.clients {
		kv := kvv1.NewKVServiceProtobufClient(u, http.DefaultClient)
		for key, v := range want {
			got, err := kv.Get(context.Background(), &kvv1.GetRequest{Key: key, Consistency: kvv1.ReadConsistency_READ_CONSISTENCY_STALE})
			if err != nil || got.GetValue() != v {
				t.Fatalf("replica %d: %s = %.20q (%v), want %.20q", i, key, got.GetValue(), err, v)
			}
		}
	}

	// The lagging replica got a snapshot larger than one chunk from a
	// leader (it could not catch up from the log: the log was compacted).
	// Stop it first: its log is complete and no longer written to.
	c.stop(lag)
	lagLog.WriteString(c.procs[lag].log.String())
	installed := regexp.MustCompile(`"msg":"raft: stored a snapshot received from the leader".*"bytes":(\d+)`)
	var largest int
	for _, m := range installed.FindAllStringSubmatch(lagLog.String(), -1) {
		n, _ := strconv.Atoi(m[1])
		largest = max(largest, n)
	}
	if largest <= 1<<20 {
		t.Fatalf("the lagging replica's largest snapshot from a leader was %d bytes, want more than one 1 MiB chunk", largest)
	}
	t.Logf("lagging replica %d installed a %d-byte snapshot; %d leader changes", lag, largest, changes)
}

// TestE2ERefusesToStartFromUnrestorableSnapshot: a replica whose stored
// snapshot the key-value state machine cannot decode exits at once with a
// non-zero status and an error naming the snapshot, instead of running (or
// panicking) with a state it cannot restore, again after every restart.
func TestE2ERefusesToStartFromUnrestorableSnapshot(t *testing.T) {
	dir := t.TempDir()
	store, err := filestore.Open(filepath.Join(dir, "store"), filestore.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := store.Append(ctx, persist.HardState{Term: 3, VotedFor: persist.NoVote}, nil); err != nil {
		t.Fatal(err)
	}
	if err := store.SaveSnapshot(ctx, persist.Snapshot{Index: 5, Term: 3, Data: []byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4}}); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	ports := freeport.Ports(t, 2)
	cmd := exec.Command(durioBin, "serve", "--id", "0",
		"--peers", "http://127.0.0.1:"+strconv.Itoa(ports[0]),
		"--listen-client", "127.0.0.1:"+strconv.Itoa(ports[1]),
		"--data-dir", dir, "--persister", "file")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &syncWriter{w: &out}, &syncWriter{w: &out}
	dieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("durio serve still running 30 s after start:\n%s", tail(out.String(), 4096))
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("durio serve exited with %v, want status 1:\n%s", err, tail(out.String(), 4096))
	}
	msg := out.String()
	if !strings.Contains(msg, "snapshot rejected") || !strings.Contains(msg, "index 5") || strings.Contains(msg, "panic") {
		t.Fatalf("output does not say which snapshot was refused (or panicked):\n%s", tail(msg, 4096))
	}
}
