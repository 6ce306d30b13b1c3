// followStream against a scripted server (no cluster): which key reaches the
// replica, and what ends a follow.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, RpcError } from "../index";
import { serve } from "./scripted";

test("followStream sends every key as one percent-encoded path segment; a dot key goes by long poll", async () => {
  const seen: string[] = [];
  await serve((req, body, res) => {
    if (req.method === "POST" && req.url === "/twirp/kv.v1.KVService/Watch") {
      seen.push("twirp " + JSON.parse(body).key);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ events: [{ type: "EVENT_TYPE_PUT", kv: { key: JSON.parse(body).key, modRevision: "2" } }], nextAfterRevision: "2" }));
      return;
    }
    seen.push("stream " + decodeURIComponent(req.url!.split("?")[0].slice("/kvstore/watch/".length)));
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.end(`id: 2\ndata: {"type":"put","kv":{"key":"x","value":"v","create_revision":2,"mod_revision":2,"version":1}}\n\n`);
  }, async (url) => {
    const kv = connect(url, { json: true });
    for (const key of ["a/b", "a%b?#", "ü ç", "a/..", "../x", ".", ".."]) {
      seen.length = 0;
      for await (const _ of kv.followStream(key, { prefix: true, afterRevision: "1" })) break;
      const how = key === "." || key === ".." ? "twirp" : "stream";
      assert.deepEqual(seen, [`${how} ${key}`], `key ${JSON.stringify(key)}`);
    }
  });
});

test("followStream ends on a refusal every replica would repeat, and on abort during its pause", async () => {
  let status = 404;
  await serve((_req, _body, res) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify({ code: status === 404 ? "bad_route" : "unavailable", msg: "no" }));
  }, async (url) => {
    const kv = connect(url, { json: true });
    await assert.rejects(async () => {
      for await (const _ of kv.followStream("k", { afterRevision: "1" })) break;
    }, (e: unknown) => e instanceof RpcError && e.code === "bad_route");
    // 503 is worth trying again (after a pause of a second), until aborted.
    status = 503;
    const stop = new AbortController();
    const started = Date.now();
    setTimeout(() => stop.abort(), 200);
    for await (const _ of kv.followStream("k", { afterRevision: "1", signal: stop.signal })) assert.fail("an event from a 503");
    assert.ok(Date.now() - started < 900, `returned ${Date.now() - started} ms after start, want soon after the abort at 200 ms`);
  });
});

test("followStream goes on with long polls against a replica from before watch streams", async () => {
  const seen: string[] = [];
  await serve((req, body, res) => {
    if (req.method === "POST" && req.url === "/twirp/kv.v1.KVService/Watch") {
      seen.push("twirp after " + JSON.parse(body).afterRevision);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ events: [{ type: "EVENT_TYPE_PUT", kv: { key: "k", modRevision: "6" } }], nextAfterRevision: "6" }));
      return;
    }
    seen.push("get " + req.url);
    res.writeHead(200, { "content-type": "application/json" }); // an old replica's long poll: nothing yet
    res.end(JSON.stringify({ events: [], next_index: 5, revision: 5 }));
  }, async (url) => {
    const kv = connect(url, { json: true });
    const got: string[] = [];
    for await (const ev of kv.followStream("k", { afterRevision: "5" })) {
      got.push(`${ev.kv?.key}@${ev.kv?.modRevision}`);
      break;
    }
    assert.deepEqual(got, ["k@6"]);
    assert.deepEqual(seen, ["get /kvstore/watch/k?index=5&stream=true&wait=10000ms", "twirp after 5"]);
  });
});
