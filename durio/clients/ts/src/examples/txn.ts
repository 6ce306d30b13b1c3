// Example: a transaction. Two workers race to claim one job: a claim moves the
// job from the queue to the worker (a delete and a put) only if the job is
// still queued, so exactly one of them gets it and the other is told why.
//   go run ./cmd/durio dev            (in the repository root, another terminal)
//   npm run example:txn -- http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003
import { connect, ifValue } from "../index";

async function main(): Promise<void> {
  const kv = connect(process.argv[2] ?? "http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003");
  const job = `examples/queue/job-${Date.now()}`;
  await kv.put({ key: job, value: "queued" });
  const claim = (worker: string) => kv.txn({
    conditions: [{ key: job, condition: ifValue("queued") }],
    writes: [{ delete: { key: job } }, { put: { key: `examples/running/${worker}`, value: job } }],
  });
  const results = await Promise.all([claim("ann"), claim("bob")]);
  for (const [who, r] of [["ann", results[0]], ["bob", results[1]]] as const) {
    if (r.succeeded) {
      console.log(`${who}: claimed ${job} (revision ${r.revision})`);
    } else {
      const now = r.current.length === 0 ? "gone" : JSON.stringify(r.current[0].value);
      console.log(`${who}: too late, conditions ${r.failed.join(",")} failed; the job is ${now}`);
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
