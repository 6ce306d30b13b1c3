// The token option against scripted servers (no cluster): which requests
// carry it, which values the client refuses, and that a refusal of it is final.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { IncomingMessage, ServerResponse } from "node:http";
import { inspect } from "node:util";
import { connect, RpcError, type DurioClient } from "../index";
import { serve } from "./scripted";

const token = "w-0123456789abcdef";

/** The kind of a request as the tests name it: a Twirp method, or "stream" for a watch stream. */
function kind(req: IncomingMessage): string {
  const twirp = "/twirp/kv.v1.KVService/";
  if (req.method === "POST" && req.url?.startsWith(twirp)) return req.url.slice(twirp.length);
  if (req.method === "GET" && req.url?.startsWith("/kvstore/watch/")) return "stream";
  return `${req.method} ${req.url}`;
}

/** answer answers a request as a replica would that has one change, at revision 2, to give. */
function answer(req: IncomingMessage, res: ServerResponse): void {
  const k = kind(req);
  if (k === "stream") {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.end(`id: 2\ndata: {"type":"put","kv":{"key":"k","value":"v","create_revision":2,"mod_revision":2,"version":1}}\n\n`);
    return;
  }
  if (req.headers["content-type"] === "application/protobuf") {
    res.writeHead(200, { "content-type": "application/protobuf" });
    res.end(); // every field at its default
    return;
  }
  const bodies: Record<string, unknown> = {
    OpenSession: { clientId: "7" },
    List: { revision: "1" },
    Watch: { events: [{ type: "EVENT_TYPE_PUT", kv: { key: "k", modRevision: "2" } }], nextAfterRevision: "2" },
  };
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify(bodies[k] ?? {}));
}

/** One of every kind of request the client makes, over `json` or protobuf (a follow needs JSON answers). */
async function everyKind(kv: DurioClient, json: boolean): Promise<void> {
  await kv.get({ key: "k" });
  await kv.put({ key: "k", value: "v" });
  await kv.status();
  await kv.leaseTimeToLive("1");
  if (!json) return;
  for await (const _ of kv.follow("k")) break;
  for await (const _ of kv.followStream("k")) break;
}

test("a token goes with every request: Twirp calls, follow's long polls, followStream; none without one", async () => {
  const seen: string[] = [];
  await serve((req, _body, res) => {
    seen.push(`${kind(req)} ${req.headers["authorization"]}`);
    answer(req, res);
  }, async (url) => {
    for (const json of [false, true]) {
      for (const opts of [{ token }, {}]) {
        seen.length = 0;
        await everyKind(connect(url, { json, ...opts }), json);
        const header = "token" in opts ? `Bearer ${token}` : "undefined";
        const kinds = ["Get", "OpenSession", "Put", "Status", "LeaseTimeToLive", ...(json ? ["List", "Watch", "List", "stream"] : [])];
        assert.deepEqual(seen, kinds.map((k) => `${k} ${header}`), `json ${json}, ${"token" in opts ? "a token" : "no token"}`);
      }
    }
  });
});

test("a token no header can carry as is is refused at construction, and not repeated in the error; logging a client shows none", () => {
  for (const bad of ["secret token", " secret-token", "secret-token ", "secret\ttoken", "secret-token\r\nX-Injected: 1",
    "secret-token\n", "secret-token\r", "secret\x00token", "secret\x7ftoken", "secret-tökenß", "secret-token-€"]) {
    assert.throws(() => connect("127.0.0.1:1", { token: bad }), (e: unknown) => {
      assert.ok(e instanceof Error);
      assert.match(e.message, /^durio: the token /);
      assert.ok(!e.message.includes("secret"), `the message repeats the token: ${e.message}`);
      return true;
    }, JSON.stringify(bad));
  }
  assert.throws(() => connect("127.0.0.1:1", { token: "" }), /^Error: durio: the token is empty$/);
  assert.throws(() => connect("127.0.0.1:1", { token: 42 as unknown as string }), /durio: the token must be a string/);
  const kv = connect("127.0.0.1:1", { token });
  assert.ok(!inspect(kv, { depth: Infinity, showHidden: true }).includes(token), "inspecting the client shows the token");
  connect("127.0.0.1:1", { token: "~!@#$%^&*()_+={}[]|\\:;\"'<>,.?/`" });
});

/** Each way the client could meet a refusal: a call, a write (its session first), a follow, a stream, a keep-alive. */
const refusable: [string, (kv: DurioClient, signal: AbortSignal) => Promise<unknown>][] = [
  ["get over protobuf", (kv) => kv.get({ key: "k" })],
  ["get", (kv) => kv.get({ key: "k" })],
  ["put", (kv) => kv.put({ key: "k", value: "v" })],
  ["follow", async (kv, signal) => { for await (const _ of kv.follow("k", { afterRevision: "1", signal })) break; }],
  ["followStream", async (kv, signal) => { for await (const _ of kv.followStream("k", { afterRevision: "1", signal })) break; }],
  ["keepAlive", (kv, signal) => kv.keepAlive("1", 600, signal)],
];

for (const [status, code] of [[401, "unauthenticated"], [403, "permission_denied"]] as const) {
  test(`${status} (${code}) is final: one request, none to the next endpoint, no retry, no token in the error`, async () => {
    for (const [what, run] of refusable) {
      const refused: string[] = [], other: string[] = [];
      await serve((req, _body, res) => {
        refused.push(kind(req));
        res.writeHead(status, { "content-type": "application/json", "www-authenticate": 'Bearer realm="durio"' });
        // An echo of the header (a proxy's, say) the client must blank out.
        const got = String(req.headers["authorization"]);
        res.end(JSON.stringify({ code, msg: `refused: ${got}`, meta: { got, [got]: "x" } }));
      }, (first) => serve((req, _body, res) => {
        other.push(kind(req));
        answer(req, res);
      }, async (second) => {
        // A retry would end by the call's timeout or the signal, without the
        // refusal: the assertions below fail then instead of the test hanging.
        const kv = connect([first, second], { json: what !== "get over protobuf", token, timeoutMs: 5000 });
        await assert.rejects(run(kv, AbortSignal.timeout(5000)), (e: unknown) => {
          assert.ok(e instanceof RpcError, `${what}: ${e}`);
          assert.equal(e.code, code, what);
          assert.equal(e.message, "refused: Bearer <token>", what);
          assert.ok(!`${e} ${e.stack} ${JSON.stringify(e.meta)}`.includes(token), `${what}: the error repeats the token`);
          return true;
        });
        assert.equal(refused.length, 1, `${what}: requests to the refusing endpoint: ${refused}`);
        assert.deepEqual(other, [], `${what}: requests to the next endpoint`);
      }));
    }
  });
}

test("a token echoed in answers the client retries is not in the error it ends with", async () => {
  let requests = 0;
  await serve((req, _body, res) => {
    requests++;
    res.writeHead(503, { "content-type": "application/json" });
    res.end(JSON.stringify({ code: "unavailable", msg: `no leader for ${req.headers["authorization"]}` }));
  }, async (url) => {
    const kv = connect(url, { token, timeoutMs: 300 });
    await assert.rejects(kv.get({ key: "k" }), (e: unknown) =>
      e instanceof RpcError && e.code === "unavailable" && !`${e} ${e.stack}`.includes(token));
    assert.ok(requests > 1, `${requests} requests: not retried`);
  });
});

test("a watch stream ended for a revoked token: the reconnect's 401 ends followStream after the events it gave", async () => {
  const seen: string[] = [];
  await serve((req, _body, res) => {
    seen.push(kind(req));
    if (seen.length === 1) {
      answer(req, res); // one change, then the replica ends the stream (the token was revoked)
      return;
    }
    res.writeHead(401, { "content-type": "application/json", "www-authenticate": 'Bearer realm="durio"' });
    res.end(JSON.stringify({ code: "unauthenticated", msg: "a valid token is required" }));
  }, async (url) => {
    const kv = connect(url, { token });
    const got: string[] = [];
    await assert.rejects(async () => {
      for await (const ev of kv.followStream("k", { afterRevision: "1", signal: AbortSignal.timeout(5000) })) got.push(`${ev.kv?.key}@${ev.kv?.modRevision}`);
    }, (e: unknown) => e instanceof RpcError && e.code === "unauthenticated");
    assert.deepEqual(got, ["k@2"]);
    assert.deepEqual(seen, ["stream", "stream"]);
  });
});

test("a redirect to another origin does not carry the token (fetch drops it), a call's nor a stream's", async () => {
  const seen: string[] = [];
  await serve((req, _body, res) => {
    seen.push(`${kind(req)} ${req.headers["authorization"]}`);
    answer(req, res);
  }, (elsewhere) => serve((req, _body, res) => {
    res.writeHead(307, { location: elsewhere + req.url });
    res.end();
  }, async (url) => {
    const kv = connect(url, { json: true, token });
    await kv.get({ key: "k" });
    for await (const _ of kv.followStream("k", { afterRevision: "1" })) break;
    assert.deepEqual(seen, ["Get undefined", "stream undefined"]);
  }));
});

test("a watch stream refused with a body that is not a Twirp error still ends with the status's code", async () => {
  for (const [status, code] of [[401, "unauthenticated"], [403, "permission_denied"]] as const) {
    let requests = 0;
    await serve((_req, _body, res) => {
      requests++;
      res.writeHead(status, { "content-type": "text/plain" }); // say, from a proxy in front
      res.end("go away\n");
    }, async (url) => {
      const kv = connect(url, { token });
      await assert.rejects(async () => {
        for await (const _ of kv.followStream("k", { afterRevision: "1", signal: AbortSignal.timeout(5000) })) break;
      }, (e: unknown) => e instanceof RpcError && e.code === code && !e.message.includes(token));
      assert.equal(requests, 1);
    });
  }
});
