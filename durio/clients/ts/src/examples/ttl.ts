// Example: a TTL key (presence). The key lives while the program keeps its
// lease alive and is deleted by the cluster when the lease ends: revoked
// here, or expired if the program died without revoking it.
//   go run ./cmd/durio dev            (in the repository root, another terminal)
//   npm run example:ttl -- http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003
import { connect, RpcError } from "../index";

async function main(): Promise<void> {
  const kv = connect(process.argv[2] ?? "http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003");
  const key = `examples/presence-${Date.now()}`;
  const lease = await kv.leaseGrant(2000);
  await kv.put({ key, value: "online", lease: lease.id });
  const stop = new AbortController();
  const alive = kv.keepAlive(lease.id, Number(lease.ttlMs), stop.signal);
  await new Promise((r) => setTimeout(r, 5000)); // longer than the TTL: the keep-alive holds it
  console.log(`after 5s: ${key} = ${(await kv.get({ key })).value}`);
  stop.abort();
  await alive;
  await kv.leaseRevoke(lease.id); // or just stop refreshing: the key goes after 2s
  try {
    await kv.get({ key });
  } catch (e) {
    if (e instanceof RpcError && e.code === "not_found") console.log(`after revoking the lease: ${key} is gone`);
    else throw e;
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
