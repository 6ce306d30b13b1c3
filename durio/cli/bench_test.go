package cli

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/ruaft/ruaft/durio/duriotest"
)

func TestBenchOpsMode(t *testing.T) {
	base := duriotest.StartOne(t)
	opts, asJSON, err := parseBenchFlags([]string{"--endpoints", base, "--clients", "4", "--duration", "300ms",
		"--warmup", "50ms", "--op", "mixed", "--read-ratio", "0.5", "--keys", "20", "--json"})
	if err != nil || !asJSON {
		t.Fatal(err, asJSON)
	}
	var progress bytes.Buffer
	res, err := runBench(context.Background(), opts, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops == 0 || res.Errors != 0 || res.OpsPerSec <= 0 || res.P50ms <= 0 || res.P99ms < res.P50ms || res.P999ms < res.P99ms {
		t.Fatalf("implausible result %+v", res)
	}
	var out bytes.Buffer
	if err := printBench(&out, res, true); err != nil || !strings.Contains(out.String(), `"ops_per_sec"`) {
		t.Fatalf("json output %q %v", out.String(), err)
	}
	if _, _, err := parseBenchFlags([]string{"--op", "scan"}); err == nil {
		t.Fatal("--op scan should be refused")
	}
}

// `durio bench --op list`, `--op txn` and `--op watch` against a real replica: the
// watch mode delivers every put to every watcher, once and in order.
func TestBenchListAndWatchModes(t *testing.T) {
	base := duriotest.StartOne(t)
	for _, args := range [][]string{
		{"--op", "list", "--keys", "50", "--list-limit", "20"},
		{"--op", "txn", "--keys", "50"},
		{"--op", "watch", "--watchers", "5", "--keys", "10"},
		{"--op", "watch", "--watchers", "5", "--keys", "10", "--stream=false"},
	} {
		opts, _, err := parseBenchFlags(append([]string{"--endpoints", base, "--clients", "2", "--duration", "300ms", "--warmup", "50ms"}, args...))
		if err != nil {
			t.Fatal(err)
		}
		res, err := runBench(context.Background(), opts, io.Discard)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		switch opts.Op {
		case "list":
			if res.Ops == 0 || res.KeysPerSec <= 0 || res.Errors != 0 {
				t.Fatalf("list: implausible %+v", res)
			}
		case "txn":
			if res.Ops == 0 || res.Errors != 0 || res.P50ms <= 0 {
				t.Fatalf("txn: implausible %+v", res)
			}
		case "watch":
			if res.Ops == 0 || res.EventsPerSec <= 0 || res.Missed != 0 || res.Watchers != 5 || res.DeliveryP50ms <= 0 ||
				res.Stream != !slices.Contains(args, "--stream=false") {
				t.Fatalf("watch: implausible %+v", res)
			}
		}
	}
	if _, _, err := parseBenchFlags([]string{"--op", "watch", "--watchers", "0"}); err == nil {
		t.Fatal("--watchers 0 was accepted")
	}
	if _, _, err := parseBenchFlags([]string{"--op", "list", "--list-limit", "20000"}); err == nil {
		t.Fatal("--list-limit above the page cap was accepted")
	}
}
