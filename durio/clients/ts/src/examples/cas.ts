// Example: compare-and-swap. Two editors change one document; each writes
// only if the document is still at the revision it read, so an edit made in
// between is never overwritten silently.
//   go run ./cmd/durio dev            (in the repository root, another terminal)
//   npm run example:cas -- http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003
import { connect, ConditionFailed, ifAbsent, ifModRevision } from "../index";

async function main(): Promise<void> {
  const kv = connect(process.argv[2] ?? "http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003");
  const key = `examples/doc-${Date.now()}`;
  await kv.put({ key, value: "draft", condition: ifAbsent() }); // create, only if new
  const read = await kv.get({ key });
  // Both editors start from the same revision; only the first write wins.
  const [a, b] = await Promise.allSettled([
    kv.put({ key, value: "edited by Ann", condition: ifModRevision(read.modRevision) }),
    kv.put({ key, value: "edited by Bob", condition: ifModRevision(read.modRevision) }),
  ]);
  for (const [who, r] of [["Ann", a], ["Bob", b]] as const) {
    if (r.status === "fulfilled") {
      console.log(`${who}: saved at revision ${r.value.header?.revision}`);
    } else if (r.reason instanceof ConditionFailed) {
      console.log(`${who}: conflict, the document is now ${JSON.stringify(r.reason.current?.value)} at revision ${r.reason.current?.modRevision}; reload and retry`);
    } else {
      throw r.reason;
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
