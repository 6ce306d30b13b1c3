package durio_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ruaft/ruaft/durio/cli"
	"github.com/ruaft/ruaft/durio/client"
	"github.com/ruaft/ruaft/kvraft/kvclient"
)

// Transactions end to end, with real processes: REST through a follower
// (forwarded in a batch), exactly once under a session, a failed txn's
// answer, the refusals of bad bodies, Twirp JSON, the Go client and the
// CLI.
func TestE2ETxn(t *testing.T) {
	c := startCluster(t, 3, "noop")
	follower := c.clients[(c.leader()+1)%3]
	for _, kv := range []string{`{"key":"acct/a","value":"100"}`, `{"key":"acct/b","value":"50"}`, `{"key":"tmp","value":"x"}`} {
		if code, body := httpDo(t, "POST", c.clients[0]+"/kvstore/put", kv); code != 200 {
			t.Fatalf("put: %d %v", code, body)
		}
	}
	revOf := func(key string) float64 {
		t.Helper()
		code, body := httpDo(t, "GET", c.clients[1]+"/kvstore/get/"+key, "")
		if code != 200 {
			t.Fatalf("get %s: %d %v", key, code, body)
		}
		return body["mod_revision"].(float64)
	}
	a, b := revOf("acct/a"), revOf("acct/b")

	// A transfer through a follower, under a session, sent twice (a
	// client retrying after a lost answer): applied once, the same answer.
	code, body := httpDo(t, "POST", follower+"/kvstore/session", "")
	if code != 200 {
		t.Fatalf("session: %d %v", code, body)
	}
	sess := strconv.FormatFloat(body["client_id"].(float64), 'f', -1, 64)
	transfer := fmt.Sprintf(`{"conditions":[{"key":"acct/a","if_revision":%v},{"key":"acct/b","if_revision":%v}],
		"writes":[{"put":{"key":"acct/a","value":"90"}},{"put":{"key":"acct/b","value":"60"}},{"delete":{"key":"tmp"}}],
		"client_id":%s,"sequence":1}`, a, b, sess)
	code1, first := httpDo(t, "POST", follower+"/kvstore/txn", transfer)
	code2, again := httpDo(t, "POST", follower+"/kvstore/txn", transfer)
	if code1 != 200 || first["succeeded"] != true || code2 != 200 || again["succeeded"] != true || first["revision"] != again["revision"] {
		t.Fatalf("a txn sent twice: %d %v, then %d %v; want the same success twice", code1, first, code2, again)
	}
	if _, ok := first["failed"]; ok {
		t.Fatalf("a succeeded txn carries failed: %v", first)
	}
	code, list := httpDo(t, "GET", c.clients[2]+"/kvstore/list?prefix=acct/", "")
	if code != 200 {
		t.Fatalf("list: %d %v", code, list)
	}
	kvs := list["kvs"].([]any)
	if len(kvs) != 2 || kvs[0].(map[string]any)["value"] != "90" || kvs[1].(map[string]any)["value"] != "60" ||
		kvs[0].(map[string]any)["version"] != 2.0 || kvs[1].(map[string]any)["mod_revision"] != first["revision"].(float64)-1 {
		t.Fatalf("after the transfer: %v (txn at %v)", kvs, first["revision"])
	}
	if code, _ := httpDo(t, "GET", c.clients[0]+"/kvstore/get/tmp", ""); code != 404 {
		t.Fatalf("the txn's delete: get answered %d", code)
	}

	// The same conditions again: not applied, 200 with the failed
	// conditions and the compared keys as they are.
	stale := strings.Replace(transfer, `"sequence":1`, `"sequence":2`, 1)
	code, failed := httpDo(t, "POST", c.clients[0]+"/kvstore/txn", stale)
	if code != 200 || failed["succeeded"] != false || fmt.Sprint(failed["failed"]) != "[0 1]" || failed["revision"] != first["revision"] {
		t.Fatalf("a stale txn: %d %v", code, failed)
	}
	if cur := failed["current"].([]any); len(cur) != 2 || cur[0].(map[string]any)["value"] != "90" {
		t.Fatalf("a stale txn's current: %v", cur)
	}

	// Bad bodies are 400 and change nothing.
	for _, bad := range []string{
		`{}`,
		`{"writes":[]}`,
		`{"writes":[{}]}`,
		`{"writes":[{"put":{"key":"x","value":"1"},"delete":{"key":"y"}}]}`,
		`{"writes":[{"put":{"key":"x"}}]}`,
		`{"writes":[{"put":{"key":"","value":"1"}}]}`,
		`{"writes":[{"put":{"key":"x","value":"1"}},{"delete":{"key":"x"}}]}`,
		`{"conditions":[{"key":"x"}],"writes":[{"delete":{"key":"x"}}]}`,
		`{"conditions":[{"key":"x","if_absent":true,"if_version":0}],"writes":[{"delete":{"key":"x"}}]}`,
		`{"writes":[{"delete":{"key":"x"}}],"extra":1}`,
		`{"writes":[{"delete":{"key":"x"}}],"sequence":1}`,
	} {
		if code, body := httpDo(t, "POST", follower+"/kvstore/txn", bad); code != 400 {
			t.Errorf("txn %s: %d %v, want 400", bad, code, body)
		}
	}
	// A lease that does not exist: 404, nothing applied.
	if code, body := httpDo(t, "POST", follower+"/kvstore/txn", `{"writes":[{"put":{"key":"x","value":"1"}},{"put":{"key":"y","value":"1","lease":12345}}]}`); code != 404 {
		t.Fatalf("txn with a missing lease: %d %v, want 404", code, body)
	}
	if code, _ := httpDo(t, "GET", c.clients[0]+"/kvstore/get/x", ""); code != 404 {
		t.Fatalf("a refused txn wrote x: get answered %d", code)
	}

	// Twirp JSON, as a web page would call it.
	code, tw := httpDo(t, "POST", follower+"/twirp/kv.v1.KVService/Txn",
		`{"conditions":[{"key":"acct/a","condition":{"kind":"CONDITION_KIND_VALUE","value":"90"}}],"writes":[{"put":{"key":"acct/c","value":"0"}}]}`)
	if code != 200 || tw["succeeded"] != true {
		t.Fatalf("Twirp JSON txn: %d %v", code, tw)
	}

	// The Go client, from a follower.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.New([]string{follower}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	kv, _, err := cl.GetKV(ctx, "acct/c")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cl.Txn(ctx, []client.Compare{{Key: "acct/c", Condition: client.IfModRevision(kv.ModRevision)}, {Key: "lock", Condition: client.IfAbsent()}},
		client.TxnPut("acct/c", "5"), client.TxnPut("lock", "me"))
	if err != nil || !resp.Succeeded {
		t.Fatalf("client Txn: %+v, %v", resp, err)
	}
	resp, err = cl.Txn(ctx, []client.Compare{{Key: "lock", Condition: client.IfAbsent()}}, client.TxnPut("lock", "you"))
	if err != nil || resp.Succeeded || len(resp.Failed) != 1 || len(resp.Current) != 1 || resp.Current[0].Value != "me" {
		t.Fatalf("client Txn on a taken lock: %+v, %v", resp, err)
	}
	if _, err := cl.Txn(ctx, nil); !errors.Is(err, kvclient.ErrInvalid) {
		t.Fatalf("client Txn without writes: %v, want ErrInvalid", err)
	}

	// The CLI: applied, then refused with its exit code and the state.
	ep := "--endpoints=" + strings.Join(c.clients, ",")
	kv, _, err = cl.GetKV(ctx, "acct/c")
	if err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, nil, "", "txn", ep, "--if-revision", fmt.Sprintf("acct/c=%d", kv.ModRevision), "--put", "acct/c=6", "--delete", "lock")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "ok (revision ") {
		t.Fatalf("durio txn: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, nil, "", "txn", ep, "--json", "--if-revision", fmt.Sprintf("acct/c=%d", kv.ModRevision), "--put", "acct/c=7")
	var out map[string]any
	if r.code != cli.ExitConditionFailed || json.Unmarshal([]byte(r.stdout), &out) != nil || out["succeeded"] != false ||
		fmt.Sprint(out["failed"]) != "[0]" || !strings.Contains(r.stdout, `"value":"6"`) {
		t.Fatalf("durio txn on a stale revision: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, nil, "", "txn", ep, "--if-absent", "x"); r.code != cli.ExitUsage {
		t.Fatalf("durio txn without writes: exit %d, %q", r.code, r.stderr)
	}
	if r := runCLI(t, nil, "", "txn", ep, "--put", "novalue"); r.code != cli.ExitUsage {
		t.Fatalf("durio txn --put without =: exit %d, %q", r.code, r.stderr)
	}
	if v, err := cl.Get(ctx, "acct/c"); err != nil || v != "6" {
		t.Fatalf("acct/c = %q, %v; want 6", v, err)
	}
	if _, err := cl.Get(ctx, "lock"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("lock after the CLI's txn: %v, want not found", err)
	}
}
