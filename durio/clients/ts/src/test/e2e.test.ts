// End-to-end test: starts a `durio dev` cluster built from this checkout (or
// $DURIO_BINARY, as the Python client's tests take it) and talks to it with
// the generated client over protobuf and over JSON; one test starts a
// `durio serve` cluster of its own that requires client tokens.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createServer, type AddressInfo } from "node:net";
import { createServer as createHttpServer } from "node:http";
import { serve } from "./scripted";
import { MAX_PENDING, RpcError, connect, ReadConsistency, Role, ConditionFailed, EventType, ifAbsent, ifModRevision, ifValue, ifVersion } from "../index";

const repoRoot = resolve(__dirname, "../../../../..");
let dir = "";
let bin = "";
let cluster: ChildProcess | undefined;
let clientUrls: string[] = [];

/** A free loopback port with `count` free ports after it, found by trying. */
async function freeRange(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 30000);
    const ok = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        new Promise<boolean>((res) => {
          const s = createServer();
          s.once("error", () => res(false));
          s.listen(base + i, "127.0.0.1", () => s.close(() => res(true)));
        })));
    if (ok.every(Boolean)) return base;
  }
  throw new Error("no free port range");
}

async function waitFor<T>(what: string, ms: number, f: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}: ${last}`);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "durio-ts-e2e-"));
  bin = process.env.DURIO_BINARY || join(dir, "durio");
  if (!process.env.DURIO_BINARY) execFileSync("go", ["build", "-o", bin, "./cmd/durio"], { cwd: repoRoot, stdio: "inherit" });
  const clientPort = await freeRange(3);
  const peerPort = await freeRange(3);
  clientUrls = [0, 1, 2].map((i) => `http://127.0.0.1:${clientPort + i}`);
  // stdin is a pipe: the failover test types `kill N` / `start N` into durio dev.
  cluster = spawn(bin, ["dev", "--dir", join(dir, "data"), "--persister", "file",
    "--client-port", String(clientPort), "--peer-port", String(peerPort)], { stdio: ["pipe", "pipe", "inherit"] });
  cluster.stdout?.on("data", (b: Buffer) => { devOutput += b.toString(); });
  await leader();
});

after(async () => {
  if (cluster) await stop(cluster);
  rmSync(dir, { recursive: true, force: true });
});

let devOutput = "";

/** stop ends a durio process with SIGINT, or SIGKILL if it has not exited 10 s later. */
async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once("exit", r));
  p.kill("SIGINT");
  const t = setTimeout(() => p.kill("SIGKILL"), 10000);
  await exited;
  clearTimeout(t);
}

/** The index of the replica that says it leads, waiting for one. */
async function leader(): Promise<number> {
  return waitFor("a leader", 20000, async () => {
    for (let i = 0; i < clientUrls.length; i++) {
      try {
        if ((await connect(clientUrls[i], { timeoutMs: 1000 }).status()).role === Role.LEADER) return i;
      } catch { /* down */ }
    }
    return undefined;
  });
}

const isCode = (code: string) => (e: unknown) => e instanceof RpcError && e.code === code;

for (const json of [false, true]) {
  const enc = json ? "json" : "protobuf";
  test(`KV operations over ${enc}, optional fields optional`, async () => {
    const kv = connect(clientUrls, { json });
    const key = `ts-${enc}`;
    await kv.put({ key, value: "a" });
    await kv.append({ key, value: "b" });
    const got = await kv.get({ key });
    assert.equal(got.value, "ab");
    assert.equal((await kv.get({ key, consistency: ReadConsistency.STALE })).key, key);
    const del = await kv.delete({ key });
    assert.equal(del.existed, true);
    await assert.rejects(async () => kv.get({ key }), isCode("not_found"));
  });

  test(`bad input gets an error code at once over ${enc}`, async () => {
    const kv = connect(clientUrls, { json });
    await assert.rejects(async () => kv.put({ key: "", value: "x" }), isCode("invalid_argument"));
  });

  test(`a follower forwards to the leader; a retried write header applies once over ${enc}`, async () => {
    const l = await leader();
    const follower = clientUrls[(l + 1) % 3];
    const kv = connect(follower, { json });
    const key = `via-follower-${enc}`;
    // An exactly-once session of our own, to send one write header twice by hand.
    const opened = await fetch(`${follower}/twirp/kv.v1.KVService/OpenSession`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: "{}",
    });
    assert.equal(opened.status, 200);
    const session = await opened.json();
    const id = String(session.client_id ?? session.clientId);
    await kv.put({ key, value: "1", write: { clientId: id, sequence: "1", ack: "1" } });
    const retry = { clientId: id, sequence: "2", ack: "2" };
    await kv.append({ key, value: "x", write: retry });
    await kv.append({ key, value: "x", write: retry });
    assert.equal((await connect(clientUrls[2], { json }).get({ key })).value, "1x");
  });
  test(`txn over ${enc}: a put and a delete at once, failed conditions, a retried header applied once, refusals`, async () => {
    const kv = connect(clientUrls, { json });
    const p = `ts-txn-${enc}-${Date.now()}/`;
    const a = await kv.put({ key: p + "a", value: "1" });
    await kv.put({ key: p + "b", value: "2" });

    const done = await kv.txn({
      conditions: [{ key: p + "a", condition: ifModRevision(a.header!.revision) }, { key: p + "c", condition: ifAbsent() }],
      writes: [{ put: { key: p + "c", value: "3" } }, { delete: { key: p + "b" } }],
    });
    assert.equal(done.succeeded, true);
    assert.deepEqual(done.failed, []);
    assert.deepEqual(done.current, []);
    const c = await kv.get({ key: p + "c" });
    assert.equal(c.value, "3");
    assert.equal(BigInt(done.revision), BigInt(c.modRevision) + 1n, "the writes at consecutive revisions, the answer's the last");
    await assert.rejects(async () => kv.get({ key: p + "b" }), isCode("not_found"));

    // a holds, c exists (not absent), b is gone (version 0, not 1): nothing is written.
    const refused = await kv.txn({
      conditions: [{ key: p + "a", condition: ifValue("1") }, { key: p + "c", condition: ifAbsent() }, { key: p + "b", condition: ifVersion(1) }],
      writes: [{ put: { key: p + "a", value: "never" } }],
    });
    assert.equal(refused.succeeded, false);
    assert.deepEqual(refused.failed, [1, 2]);
    assert.deepEqual(refused.current.map((x) => [x.key, x.value]), [[p + "a", "1"], [p + "c", "3"]]);
    assert.equal(refused.current[1].modRevision, c.modRevision);
    assert.ok(BigInt(refused.revision) >= BigInt(done.revision));
    assert.equal((await kv.get({ key: p + "a" })).value, "1");

    // One write header sent twice: the second answer is the first's, not a
    // second run (which would find d present and fail).
    const opened = await fetch(`${clientUrls[0]}/twirp/kv.v1.KVService/OpenSession`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: "{}",
    });
    assert.equal(opened.status, 200);
    const session = await opened.json();
    const id = String(session.client_id ?? session.clientId);
    const create = { conditions: [{ key: p + "d", condition: ifAbsent() }], writes: [{ put: { key: p + "d", value: "once" } }] };
    const first = await kv.txn({ ...create, write: { clientId: id, sequence: "1", ack: "1" } });
    const again = await connect(clientUrls[1], { json }).txn({ ...create, write: { clientId: id, sequence: "1", ack: "1" } });
    assert.equal(first.succeeded, true);
    assert.equal(again.succeeded, true);
    assert.equal((await kv.get({ key: p + "d" })).version, "1");
    assert.equal((await kv.txn({ ...create, write: { clientId: id, sequence: "2", ack: "2" } })).succeeded, false, "a new header runs it again");

    for (const bad of [
      { writes: [] },
      { writes: [{ put: { key: p + "e", value: "1" } }, { delete: { key: p + "e" } }] },
      { conditions: [{ key: p + "a", condition: {} }], writes: [{ put: { key: p + "e", value: "1" } }] },
      { writes: [{ put: { key: "", value: "1" } }] },
    ]) {
      await assert.rejects(async () => kv.txn(bad), isCode("invalid_argument"), JSON.stringify(bad));
    }
    // A lease that does not exist fails the whole txn: the delete before it is not applied either.
    await assert.rejects(async () => kv.txn({ writes: [{ delete: { key: p + "a" } }, { put: { key: p + "e", value: "1", lease: "987654321" } }] }),
      (e: unknown) => e instanceof RpcError && e.meta["reason"] === "lease_not_found");
    assert.equal((await kv.get({ key: p + "a" })).value, "1");
    await assert.rejects(async () => kv.get({ key: p + "e" }), isCode("not_found"));
  });
}

test("keys with slashes, through the client and the REST route", async () => {
  const kv = connect(clientUrls);
  await kv.put({ key: "config/db/host", value: "db.local" });
  const res = await fetch(`${clientUrls[1]}/kvstore/get/config/db/host`);
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.key, "config/db/host");
  assert.equal(body.value, "db.local");
  assert.ok(Number(res.headers.get("X-Durio-Revision")) >= body.mod_revision);
  const del = await fetch(`${clientUrls[2]}/kvstore/config/db/host`, { method: "DELETE" });
  assert.equal(del.status, 200);
  await assert.rejects(async () => kv.get({ key: "config/db/host" }), isCode("not_found"));
});

test("the client fails over: a dead endpoint, then a killed leader", async () => {
  const dead = `http://127.0.0.1:${await freeRange(1)}`;
  const kv = connect([dead, ...clientUrls]);
  await kv.put({ key: "failover", value: "0" });
  const l = await leader();
  cluster!.stdin!.write(`kill ${l}\n`);
  await waitFor("the kill", 10000, async () => (devOutput.includes(`replica ${l}: killed`) ? true : undefined));
  // Writes keep working through the same client while the others elect a leader.
  for (let i = 1; i <= 5; i++) await kv.append({ key: "failover", value: String(i) });
  assert.equal((await kv.get({ key: "failover" })).value, "012345");
  cluster!.stdin!.write(`start ${l}\n`);
  await waitFor("the restart", 10000, async () => (devOutput.match(new RegExp(`replica ${l}: started`, "g"))?.length === 2 ? true : undefined));
});

test("followStream sees every change once, in order, while its replica is killed and restarted", async () => {
  const l = await leader();
  const watched = (l + 1) % 3; // a follower, the first endpoint: the stream starts there
  const kv = connect([clientUrls[watched], ...clientUrls.filter((_, i) => i !== watched)], { json: true });
  const prefix = `ts-stream-${Date.now()}/`;
  const from = await kv.revision();
  const stop = new AbortController();
  const seen: string[] = [];
  const following = (async () => {
    for await (const ev of kv.followStream(prefix, { prefix: true, afterRevision: from, signal: stop.signal })) {
      seen.push(`${ev.type === EventType.DELETE ? "delete" : "put"} ${ev.kv?.key.slice(prefix.length)} ${ev.kv?.value}`);
      if (seen.length === 4) stop.abort();
    }
  })();
  const count = (what: string) => devOutput.split(what).length - 1;
  await kv.put({ key: prefix + "a", value: "1" });
  await waitFor("the first change", 10000, async () => (seen.length === 1 ? true : undefined));
  const started = count(`replica ${watched}: started`);
  cluster!.stdin!.write(`kill ${watched}\n`);
  await waitFor("the kill", 10000, async () => (devOutput.includes(`replica ${watched}: killed`) ? true : undefined));
  await kv.put({ key: prefix + "b", value: "2" });
  await kv.delete({ key: prefix + "a" });
  cluster!.stdin!.write(`start ${watched}\n`);
  await waitFor("the restart", 10000, async () => (count(`replica ${watched}: started`) > started ? true : undefined));
  await kv.put({ key: prefix + "c", value: "3" });
  await waitFor("every change", 30000, async () => (seen.length === 4 ? true : undefined));
  await following;
  assert.deepEqual(seen, ["put a 1", "put b 2", "delete a ", "put c 3"]);
  await assert.rejects(async () => {
    for await (const _ of kv.followStream("", { afterRevision: "1" })) break; // an empty key needs prefix
  }, isCode("invalid_argument"));
});

test("every endpoint down: a deadline_exceeded error after timeoutMs", async () => {
  const kv = connect([`http://127.0.0.1:${await freeRange(1)}`], { timeoutMs: 300 });
  await assert.rejects(async () => kv.get({ key: "x" }), isCode("deadline_exceeded"));
});

test("a write refused for an expired session is renumbered in a new one", async () => {
  const writes: any[] = [];
  let sessions = 0;
  const srv = createHttpServer((req, res) => {
    let body = "";
    req.on("data", (c) => { body += c; });
    req.on("end", () => {
      res.setHeader("Content-Type", "application/json");
      if (req.url?.endsWith("/OpenSession")) {
        sessions++;
        res.end(JSON.stringify({ client_id: String(100 + sessions) }));
        return;
      }
      const w = JSON.parse(body).write;
      writes.push(w);
      if (w.clientId === "101" || w.client_id === "101") {
        res.statusCode = 412;
        res.end(JSON.stringify({ code: "failed_precondition", msg: "no such session", meta: { reason: "no_session" } }));
        return;
      }
      res.end("{}");
    });
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  try {
    const kv = connect(`http://127.0.0.1:${(srv.address() as AddressInfo).port}`, { json: true });
    await kv.put({ key: "a", value: "1" });
    assert.equal(sessions, 2);
    assert.equal(writes.length, 2);
    assert.equal(kv.clientId, "102");
  } finally {
    srv.close();
  }
});

test("writes carry a client id, increasing sequences and the lowest open sequence as ack", async () => {
  const bodies: any[] = [];
  let sessions = 0;
  const srv = createHttpServer((req, res) => {
    let body = "";
    req.on("data", (c) => { body += c; });
    req.on("end", () => {
      res.setHeader("Content-Type", "application/json");
      if (req.url?.endsWith("/OpenSession")) {
        sessions++;
        res.end(JSON.stringify({ client_id: "42", idle_timeout_seconds: "600" }));
        return;
      }
      bodies.push(JSON.parse(body));
      res.end("{}");
    });
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  try {
    const kv = connect(`http://127.0.0.1:${(srv.address() as AddressInfo).port}`, { json: true });
    await kv.put({ key: "a", value: "1" });
    await Promise.all([kv.append({ key: "a", value: "2" }), kv.delete({ key: "a" })]);
    assert.equal(bodies.length, 3);
    const ids = new Set(bodies.map((b) => b.write.clientId));
    assert.equal(ids.size, 1);
    assert.equal(sessions, 1, "one session for every write");
    assert.equal([...ids][0], "42");
    assert.equal(kv.clientId, "42");
    assert.deepEqual(bodies.map((b) => b.write.sequence), ["1", "2", "3"]);
    assert.equal(bodies[0].write.ack, "1");
    assert.equal(bodies[2].write.ack, "2"); // sequence 2 was still open when 3 started
  } finally {
    srv.close();
  }
});

test(`more writes at once than a session keeps (${MAX_PENDING}): each session stays within its window, more sessions are opened`, async () => {
  // The server answers no write until all of them have arrived, so every
  // one is running at once; it refuses, as a replica does, a write past
  // MAX_PENDING results at or above its ack.
  const n = 2 * MAX_PENDING + 100;
  const writes: { clientId: string; seq: number; ack: number }[] = [];
  const held: (() => void)[] = [];
  let sessions = 0;
  let refused = 0;
  await serve((req, body, res) => {
    res.setHeader("Content-Type", "application/json");
    if (req.url?.endsWith("/OpenSession")) {
      sessions++;
      res.end(JSON.stringify({ client_id: String(sessions) }));
      return;
    }
    const w = JSON.parse(body).write;
    const seq = Number(w.sequence), ack = Number(w.ack);
    writes.push({ clientId: w.clientId, seq, ack });
    if (seq - ack >= MAX_PENDING) {
      refused++;
      res.statusCode = 412;
      res.end(JSON.stringify({ code: "failed_precondition", msg: "too many unacknowledged writes", meta: { reason: "too_many_pending" } }));
      return;
    }
    held.push(() => res.end("{}"));
    if (held.length === n) for (const answer of held) answer();
  }, async (url) => {
    const kv = connect(url, { json: true, timeoutMs: 20000 });
    await Promise.all(Array.from({ length: n }, (_, i) => kv.put({ key: `k${i}`, value: "v" })));
  });
  assert.equal(refused, 0, "a write was refused for too many pending");
  assert.equal(writes.length, n, "every write was sent once");
  assert.equal(sessions, Math.ceil(n / MAX_PENDING));
  for (const id of new Set(writes.map((w) => w.clientId))) {
    const seqs = writes.filter((w) => w.clientId === id).map((w) => w.seq).sort((a, b) => a - b);
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1), `session ${id} numbers its writes 1, 2, ...`);
  }
});

test(`${4 * MAX_PENDING} puts at once from one client all apply, each once`, async () => {
  const kv = connect(clientUrls, { timeoutMs: 30000 });
  const n = 4 * MAX_PENDING;
  await Promise.all(Array.from({ length: n }, (_, i) => kv.put({ key: `bulk/${i}`, value: String(i) })));
  await Promise.all(Array.from({ length: n }, (_, i) => kv.append({ key: `bulk/${i}`, value: "+" })));
  let seen = 0;
  for (const r of (await kv.list({ prefix: "bulk/", limit: n })).kvs) {
    assert.equal(r.value, `${r.key.slice("bulk/".length)}+`, `${r.key} holds its put and one append`);
    seen++;
  }
  assert.equal(seen, n);
});

test("compare-and-swap: create once, one of two racing edits wins, the loser sees the winner", async () => {
  const kv = connect(clientUrls);
  const key = `ts-cas-${Date.now()}`;
  const created = await kv.put({ key, value: "v0", condition: ifAbsent() });
  await assert.rejects(async () => kv.put({ key, value: "again", condition: ifAbsent() }), (e: unknown) =>
    e instanceof ConditionFailed && e.current?.value === "v0" && e.current.modRevision === created.header?.revision);
  const read = await kv.get({ key });
  assert.equal(read.version, "1");
  const results = await Promise.allSettled(["a", "b"].map((v) => kv.put({ key, value: v, condition: ifModRevision(read.modRevision) })));
  const won = results.filter((r) => r.status === "fulfilled");
  const lost = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
  assert.equal(won.length, 1);
  assert.equal(lost.length, 1);
  assert.ok(lost[0].reason instanceof ConditionFailed);
  assert.equal(lost[0].reason.current?.value, (await kv.get({ key })).value);
  await assert.rejects(async () => kv.delete({ key, condition: ifValue("neither") }), ConditionFailed);
  assert.equal((await kv.delete({ key, condition: ifValue((await kv.get({ key })).value) })).existed, true);
});

test("list pages at one revision; follow sees every change in order; a lease takes its key with it", async () => {
  const kv = connect(clientUrls, { json: true });
  const prefix = `ts-list-${Date.now()}/`;
  const from = await kv.revision();
  for (const k of ["c", "a", "b"]) await kv.put({ key: prefix + k, value: k });
  const keys: string[] = [];
  for await (const e of kv.listAll(prefix, { pageSize: 2 })) keys.push(e.key);
  assert.deepEqual(keys, [prefix + "a", prefix + "b", prefix + "c"]);

  const lease = await kv.leaseGrant(60000);
  await kv.put({ key: prefix + "eph", value: "x", lease: lease.id });
  assert.deepEqual((await kv.leaseTimeToLive(lease.id, true)).keys, [prefix + "eph"]);
  assert.equal((await kv.leaseRevoke(lease.id)).existed, true);
  await assert.rejects(async () => kv.get({ key: prefix + "eph" }), isCode("not_found"));
  await assert.rejects(async () => kv.leaseKeepAlive(lease.id), (e: unknown) => e instanceof RpcError && e.meta["reason"] === "lease_not_found");

  const stop = new AbortController();
  const seen: string[] = [];
  for await (const ev of kv.follow(prefix, { prefix: true, afterRevision: from, waitMs: 2000, signal: stop.signal })) {
    seen.push(`${ev.type === EventType.DELETE ? "delete" : "put"} ${ev.kv?.key.slice(prefix.length)}`);
    if (seen.length === 5) stop.abort();
  }
  assert.deepEqual(seen, ["put c", "put a", "put b", "put eph", "delete eph"]);
});

test("client tokens on durio serve: a read token gets but may not put, a write token puts, no token is refused", async () => {
  const read = "r-0123456789abcdef", write = "w-0123456789abcdef";
  const authDir = join(dir, "auth");
  mkdirSync(authDir);
  const tokens = join(authDir, "tokens");
  writeFileSync(tokens, `read ${read}\nwrite ${write}\n`, { mode: 0o600 });
  const clientPort = await freeRange(3);
  const peerPort = await freeRange(3);
  const urls = [0, 1, 2].map((i) => `http://127.0.0.1:${clientPort + i}`);
  const peers = [0, 1, 2].map((i) => `http://127.0.0.1:${peerPort + i}`);
  let logs = "";
  const replicas = [0, 1, 2].map((i) => {
    const p = spawn(bin, ["serve", "--id", String(i), "--peers", peers.join(","), "--client-urls", urls.join(","),
      "--listen-client", `127.0.0.1:${clientPort + i}`, "--data-dir", join(authDir, `replica-${i}`), "--persister", "file",
      "--client-auth-file", tokens], { stdio: ["ignore", "pipe", "pipe"] });
    p.stdout?.on("data", (b: Buffer) => { logs += b.toString(); });
    p.stderr?.on("data", (b: Buffer) => { logs += b.toString(); });
    return p;
  });
  try {
    // /readyz needs no token: every replica knows the leader.
    await waitFor("every replica ready", 20000, async () =>
      ((await Promise.all(urls.map((u) => fetch(`${u}/readyz`).then((r) => r.ok, () => false)))).every(Boolean) ? true : undefined));
    const writer = connect(urls, { token: write });
    const key = `ts-auth-${Date.now()}`;
    const put = await writer.put({ key, value: "v" });
    const reader = connect(urls, { token: read });
    assert.equal((await reader.get({ key })).value, "v");
    let streamed: string | undefined;
    const from = String(BigInt(put.header!.revision) - 1n);
    for await (const ev of reader.followStream(key, { afterRevision: from, signal: AbortSignal.timeout(10000) })) {
      streamed = ev.kv?.value;
      break;
    }
    assert.equal(streamed, "v", "the put, over the read token's watch stream");
    const refused = (code: string) => (e: unknown) =>
      e instanceof RpcError && e.code === code && !e.message.includes(read) && !e.message.includes(write);
    await assert.rejects(reader.put({ key, value: "w" }), refused("permission_denied"));
    const anonymous = connect(urls);
    await assert.rejects(anonymous.get({ key }), refused("unauthenticated"));
    await assert.rejects(async () => { for await (const _ of anonymous.followStream(key, { afterRevision: "1" })) break; }, refused("unauthenticated"));
    assert.equal((await writer.get({ key })).value, "v", "the refused put changed nothing");
  } catch (e) {
    console.error(`durio serve output:\n${logs.slice(-4000)}`);
    throw e;
  } finally {
    await Promise.all(replicas.map(stop));
  }
});
