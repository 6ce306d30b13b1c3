package durio

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestBenchAgainstFakeService(t *testing.T) {
	srv := httptest.NewServer(clientHandler(&mapKV{m: map[string]string{}}, DefaultLimits(), nil))
	defer srv.Close()
	opts, asJSON, err := ParseBenchFlags([]string{"--endpoints", srv.URL, "--clients", "4", "--duration", "300ms",
		"--warmup", "50ms", "--op", "mixed", "--read-ratio", "0.5", "--keys", "20", "--json"})
	if err != nil || !asJSON {
		t.Fatal(err, asJSON)
	}
	var progress bytes.Buffer
	res, err := RunBench(context.Background(), opts, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops == 0 || res.Errors != 0 || res.OpsPerSec <= 0 || res.P50ms <= 0 || res.P99ms < res.P50ms || res.P999ms < res.P99ms {
		t.Fatalf("implausible result %+v", res)
	}
	var out bytes.Buffer
	if err := PrintBench(&out, res, true); err != nil || !strings.Contains(out.String(), `"ops_per_sec"`) {
		t.Fatalf("json output %q %v", out.String(), err)
	}
	if _, _, err := ParseBenchFlags([]string{"--op", "scan"}); err == nil {
		t.Fatal("--op scan should be refused")
	}
}
