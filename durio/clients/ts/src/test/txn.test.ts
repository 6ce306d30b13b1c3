// txn against scripted servers (no cluster): the request it sends in both
// encodings, its answers, and that it is retried as every write is.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { IncomingMessage, ServerResponse } from "node:http";
import { connect, ifAbsent, ifModRevision, ifValue, ifVersion, ConditionKind, OpenSessionResponse, RpcError, TxnRequest, TxnResponse, type TxnResult } from "../index";
import { serve } from "./scripted";

const twirp = "/twirp/kv.v1.KVService/";

/** The request a scripted server got, decoded whatever its encoding. */
function txnRequest(req: IncomingMessage, raw: Buffer): TxnRequest {
  return req.headers["content-type"] === "application/json" ? TxnRequest.fromJsonString(raw.toString()) : TxnRequest.fromBinary(raw);
}

/** answerTxn answers a Txn in the request's encoding. */
function answerTxn(req: IncomingMessage, res: ServerResponse, answer: TxnResponse): void {
  const json = req.headers["content-type"] === "application/json";
  res.writeHead(200, { "content-type": req.headers["content-type"] });
  res.end(json ? TxnResponse.toJsonString(answer) : Buffer.from(TxnResponse.toBinary(answer)));
}

/** openSession answers an OpenSession with session 42 in the request's encoding. */
function openSession(req: IncomingMessage, res: ServerResponse): void {
  const answer = OpenSessionResponse.create({ clientId: "42" });
  const json = req.headers["content-type"] === "application/json";
  res.writeHead(200, { "content-type": req.headers["content-type"] });
  res.end(json ? OpenSessionResponse.toJsonString(answer) : Buffer.from(OpenSessionResponse.toBinary(answer)));
}

/** plain is a decoded message as plain objects, for deepEqual (protobuf-ts's have no prototype). */
const plain = (m: unknown): unknown => JSON.parse(JSON.stringify(m));

/** A replica that opens session 42 and answers every Txn with `answer`, recording the requests. */
function replica(answer: TxnResponse, seen: TxnRequest[]) {
  return (req: IncomingMessage, _body: string, res: ServerResponse, raw: Buffer) => {
    if (req.url === twirp + "OpenSession") {
      openSession(req, res);
      return;
    }
    assert.equal(req.url, twirp + "Txn");
    seen.push(txnRequest(req, raw));
    answerTxn(req, res, answer);
  };
}

for (const json of [false, true]) {
  const enc = json ? "json" : "protobuf";

  test(`txn sends its conditions and writes with a session header, and answers succeeded over ${enc}`, async () => {
    const seen: TxnRequest[] = [];
    const answer = TxnResponse.create({ header: { revision: "9" }, succeeded: true });
    let got: TxnResult | undefined;
    await serve(replica(answer, seen), async (url) => {
      got = await connect(url, { json }).txn({
        conditions: [{ key: "a", condition: ifAbsent() }, { key: "b", condition: ifModRevision(5) },
          { key: "c", condition: ifVersion(2n) }, { key: "d", condition: ifValue("x") }],
        writes: [{ put: { key: "a", value: "1" } }, { put: { key: "b", value: "2", lease: "7" } }, { delete: { key: "c" } }],
      });
    });
    assert.equal(seen.length, 1);
    const r = seen[0];
    assert.deepEqual(r.conditions.map((c) => [c.key, c.condition?.kind]), [
      ["a", ConditionKind.ABSENT], ["b", ConditionKind.MOD_REVISION], ["c", ConditionKind.VERSION], ["d", ConditionKind.VALUE]]);
    assert.equal(r.conditions[1].condition?.modRevision, "5");
    assert.equal(r.conditions[2].condition?.version, "2");
    assert.equal(r.conditions[3].condition?.value, "x");
    assert.deepEqual(plain(r.writes.map((w) => w.op)), [
      { oneofKind: "put", put: { key: "a", value: "1", lease: "0" } },
      { oneofKind: "put", put: { key: "b", value: "2", lease: "7" } },
      { oneofKind: "delete", delete: { key: "c" } }]);
    assert.deepEqual(plain(r.write), { clientId: "42", sequence: "1", ack: "1" });
    assert.equal(got?.succeeded, true);
    assert.equal(got?.revision, "9");
    assert.deepEqual(got?.failed, []);
  });
}

test("a txn whose conditions fail is an answer, not an error, and is not retried", async () => {
  const seen: TxnRequest[] = [];
  const current = { key: "b", value: "theirs", createRevision: "3", modRevision: "8", version: "2", lease: "0" };
  const answer = TxnResponse.create({ header: { revision: "8" }, succeeded: false, failed: [0, 1], current: [current] });
  await serve(replica(answer, seen), async (url) => {
    const got = await connect(url, { json: true }).txn({
      conditions: [{ key: "a", condition: ifVersion(1) }, { key: "b", condition: ifValue("mine") }],
      writes: [{ delete: { key: "a" } }],
    });
    assert.equal(got.succeeded, false);
    assert.equal(got.revision, "8");
    assert.deepEqual(got.failed, [0, 1]);
    assert.deepEqual(plain(got.current), [current]);
  });
  assert.equal(seen.length, 1);
});

test("a txn without conditions sends none; a txn the cluster refuses rejects at once with its code", async () => {
  const seen: TxnRequest[] = [];
  await serve((req, _body, res, raw) => {
    if (req.url === twirp + "OpenSession") {
      openSession(req, res);
      return;
    }
    seen.push(txnRequest(req, raw));
    res.writeHead(400, { "content-type": "application/json" });
    res.end(JSON.stringify({ code: "invalid_argument", msg: "a txn needs at least one write", meta: { argument: "writes" } }));
  }, async (url) => {
    await assert.rejects(connect(url, { json: true }).txn({ writes: [] }),
      (e: unknown) => e instanceof RpcError && e.code === "invalid_argument" && e.meta["argument"] === "writes");
  });
  assert.equal(seen.length, 1);
  assert.deepEqual(seen[0].conditions, []);
  assert.deepEqual(seen[0].writes, []);
});

test("a txn is retried with the same write header at the leader another replica names", async () => {
  const seen: string[] = [];
  const headers: unknown[] = [];
  const follower = (req: IncomingMessage, _body: string, res: ServerResponse, raw: Buffer) => {
    seen.push(`follower ${req.url}`);
    if (req.url === twirp + "OpenSession") {
      openSession(req, res);
      return;
    }
    headers.push(txnRequest(req, raw).write);
    res.writeHead(503, { "content-type": "application/json" });
    res.end(JSON.stringify({ code: "unavailable", msg: "not the leader", meta: { leader_id: "2" } }));
  };
  const leader = (req: IncomingMessage, _body: string, res: ServerResponse, raw: Buffer) => {
    seen.push(`leader ${req.url}`);
    headers.push(txnRequest(req, raw).write);
    answerTxn(req, res, TxnResponse.create({ header: { revision: "3" }, succeeded: true }));
  };
  await serve(follower, (fUrl) => serve(leader, async (lUrl) => {
    // Endpoint 1 (nothing listens on port 1) is skipped: the follower names endpoint 2.
    const dead = "http://127.0.0.1:1";
    const got = await connect([fUrl, dead, lUrl], { json: true, backoffMs: 1 }).txn({ writes: [{ put: { key: "k", value: "v" } }] });
    assert.equal(got.succeeded, true);
  }));
  assert.deepEqual(seen, [`follower ${twirp}OpenSession`, `follower ${twirp}Txn`, `leader ${twirp}Txn`]);
  assert.deepEqual(plain(headers), [{ clientId: "42", sequence: "1", ack: "1" }, { clientId: "42", sequence: "1", ack: "1" }]);
});

test("a txn with the caller's write header sends it as given, without a session of the client's", async () => {
  const seen: TxnRequest[] = [];
  const urls: string[] = [];
  await serve((req, _body, res, raw) => {
    urls.push(req.url ?? "");
    seen.push(txnRequest(req, raw));
    answerTxn(req, res, TxnResponse.create({ succeeded: true }));
  }, async (url) => {
    const kv = connect(url, { json: true });
    const write = { clientId: "77", sequence: "5", ack: "4" };
    assert.equal((await kv.txn({ writes: [{ delete: { key: "k" } }], write })).revision, "0");
    assert.equal(kv.clientId, "");
  });
  assert.deepEqual(urls, [twirp + "Txn"]);
  assert.deepEqual(plain(seen[0].write), { clientId: "77", sequence: "5", ack: "4" });
});

test("a txn write that is neither or both of a put and a delete throws before anything is sent", async () => {
  const urls: string[] = [];
  await serve((req, _body, res) => {
    urls.push(req.url ?? "");
    res.writeHead(500);
    res.end();
  }, async (url) => {
    const kv = connect(url, { json: true });
    for (const bad of [{}, { put: { key: "a", value: "1" }, delete: { key: "a" } }]) {
      await assert.rejects(kv.txn({ writes: [bad as never] }), (e: unknown) => e instanceof TypeError && /txn write/.test(e.message));
    }
  });
  assert.deepEqual(urls, []);
});
