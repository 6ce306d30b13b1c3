// keepAlive against a scripted server (no cluster).
import { test } from "node:test";
import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { connect } from "../index";
import { serve } from "./scripted";

test("keepAlive holds one abort listener on its signal however long it runs, and resolves on abort", async () => {
  let keepAlives = 0;
  await serve((req, _body, res) => {
    if (req.url?.endsWith("/LeaseKeepAlive")) keepAlives++;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ id: "1", ttl_ms: "300" }));
  }, async (url) => {
    const kv = connect(url, { json: true, timeoutMs: 5000 });
    const ctl = new AbortController();
    const running = kv.keepAlive("1", 300, ctl.signal); // a keep-alive every 100 ms
    const deadline = Date.now() + 10000;
    while (keepAlives < 12) {
      assert.ok(Date.now() < deadline, `only ${keepAlives} keep-alives in 10 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const listeners = getEventListeners(ctl.signal, "abort").length;
    assert.ok(listeners <= 1, `${listeners} abort listeners on the signal after ${keepAlives} keep-alives`);
    ctl.abort();
    await running;
  });
});
