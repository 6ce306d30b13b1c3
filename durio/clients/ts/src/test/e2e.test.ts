// End-to-end test: starts a `durio dev` cluster built from this checkout and
// talks to it with the generated client over protobuf and over JSON.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createServer } from "node:net";
import { RpcError } from "@protobuf-ts/runtime-rpc";
import { connect, Role } from "../index";

const repoRoot = resolve(__dirname, "../../../../..");
let dir = "";
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
  const bin = join(dir, "durio");
  execFileSync("go", ["build", "-o", bin, "./cmd/durio"], { cwd: repoRoot, stdio: "inherit" });
  const clientPort = await freeRange(3);
  const peerPort = await freeRange(3);
  clientUrls = [0, 1, 2].map((i) => `http://127.0.0.1:${clientPort + i}`);
  cluster = spawn(bin, ["dev", "--dir", join(dir, "data"), "--persister", "file",
    "--client-port", String(clientPort), "--peer-port", String(peerPort)], { stdio: ["ignore", "pipe", "inherit"] });
  cluster.stdout?.resume();
  await waitFor("a leader", 20000, async () => {
    for (const u of clientUrls) {
      const { response } = await connect(u).status({});
      if (response.role === Role.LEADER) return true;
    }
    return undefined;
  });
});

after(async () => {
  if (cluster && cluster.exitCode === null) {
    const exited = new Promise((r) => cluster!.once("exit", r));
    cluster.kill("SIGINT");
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

for (const json of [false, true]) {
  const enc = json ? "json" : "protobuf";
  test(`KV operations over ${enc}`, async () => {
    const kv = connect(clientUrls[0], { json });
    const key = `ts-${enc}`;
    await kv.put({ key, value: "a" });
    await kv.append({ key, value: "b" });
    const got = await kv.get({ key, consistency: 0 });
    assert.equal(got.response.value, "ab");
    const del = await kv.delete({ key });
    assert.equal(del.response.existed, true);
    await assert.rejects(async () => kv.get({ key, consistency: 0 }), (e: unknown) => e instanceof RpcError && e.code === "not_found");
  });

  test(`bad input gets an error code over ${enc}`, async () => {
    const kv = connect(clientUrls[1], { json });
    await assert.rejects(async () => kv.put({ key: "", value: "x" }), (e: unknown) => e instanceof RpcError && e.code === "invalid_argument");
  });

  test(`a follower forwards to the leader over ${enc}`, async () => {
    let follower = "";
    for (const u of clientUrls) {
      const { response } = await connect(u, { json }).status({});
      if (response.role !== Role.LEADER) { follower = u; break; }
    }
    assert.notEqual(follower, "");
    const kv = connect(follower, { json });
    await kv.put({ key: `via-follower-${enc}`, value: "1", write: { clientId: json ? "78" : "77", sequence: "1", ack: "1" } });
    // A retried write (same client id and sequence) is applied once.
    const retry = { clientId: json ? "78" : "77", sequence: "2", ack: "2" };
    await kv.append({ key: `via-follower-${enc}`, value: "x", write: retry });
    await kv.append({ key: `via-follower-${enc}`, value: "x", write: retry });
    const got = await connect(clientUrls[2], { json }).get({ key: `via-follower-${enc}`, consistency: 0 });
    assert.equal(got.response.value, "1x");
  });
}
