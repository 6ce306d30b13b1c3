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

// An endpoint that takes requests and never answers: a stopped (SIGSTOP) or
// cut-off replica. Calls and keep-alives used to wait there for their whole
// timeout, and stayed there: the next call went to it again.
async function silent(f: (url: string) => Promise<void>): Promise<void> {
  await serve(() => { /* never answers */ }, f);
}

test("keepAlive keeps a lease across an endpoint that stopped answering: each refresh gives up within a third of the TTL and the next goes elsewhere", async () => {
  let kept = 0;
  await silent(async (stopped) => {
    await serve((req, _body, res) => {
      if (req.url?.endsWith("/LeaseKeepAlive")) kept++;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ id: "1", ttl_ms: "900" }));
    }, async (live) => {
      const kv = connect([stopped, live], { json: true });
      const ctl = new AbortController();
      let failed: unknown;
      const running = kv.keepAlive("1", 900, ctl.signal).catch((e: unknown) => { failed = e; });
      const deadline = Date.now() + 10000;
      while (kept < 6 && failed === undefined) {
        assert.ok(Date.now() < deadline, `only ${kept} keep-alives reached the live endpoint in 10 s`);
        await new Promise((r) => setTimeout(r, 50));
      }
      ctl.abort();
      await running;
      assert.equal(failed, undefined, `keepAlive gave the lease up: ${failed}`);
    });
  });
});

test("a call moves on from an endpoint that does not answer after attemptTimeoutMs, and the next call starts elsewhere", async () => {
  let served = 0;
  await silent(async (stopped) => {
    await serve((_req, _body, res) => {
      served++;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ key: "k", value: "v", header: { revision: "3" } }));
    }, async (live) => {
      const kv = connect([stopped, live], { json: true, timeoutMs: 5000, attemptTimeoutMs: 300 });
      let began = Date.now();
      assert.equal((await kv.get({ key: "k" })).value, "v");
      assert.ok(Date.now() - began < 2000, `the first get took ${Date.now() - began} ms`);
      began = Date.now();
      assert.equal((await kv.get({ key: "k" })).value, "v");
      assert.ok(Date.now() - began < 250, `the second get took ${Date.now() - began} ms: it tried the silent endpoint again`);
      assert.equal(served, 2);
    });
  });
});

test("a watch refused with too_many_watchers by one replica is asked of another", async () => {
  await serve((_req, _body, res) => {
    res.writeHead(429, { "content-type": "application/json", "retry-after": "1" });
    res.end(JSON.stringify({ code: "resource_exhausted", msg: "too many watchers", meta: { reason: "too_many_watchers" } }));
  }, async (full) => {
    await serve((_req, _body, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ events: [{ type: "EVENT_TYPE_PUT", kv: { key: "k", value: "v", mod_revision: "5" } }], next_after_revision: "5" }));
    }, async (roomy) => {
      const kv = connect([full, roomy], { json: true, timeoutMs: 5000 });
      const resp = await kv.watch({ key: "k", afterRevision: "4", waitMs: "1000" });
      assert.equal(resp.nextAfterRevision, "5");
      assert.equal(resp.events.length, 1);
    });
  });
});
