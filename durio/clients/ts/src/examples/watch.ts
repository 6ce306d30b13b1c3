// Example: watch. Follows every change under a prefix while another part of
// the program writes, then stops.
//   go run ./cmd/durio dev            (in the repository root, another terminal)
//   npm run example:watch -- http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003
import { connect, EventType } from "../index";

async function main(): Promise<void> {
  const kv = connect(process.argv[2] ?? "http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003");
  const prefix = `examples/jobs-${Date.now()}/`;
  const from = await kv.revision(); // see every change after this point
  const stop = new AbortController();
  const writer = (async () => {
    await kv.put({ key: prefix + "1", value: "queued" });
    await kv.put({ key: prefix + "1", value: "running" });
    await kv.delete({ key: prefix + "1" });
  })();
  let seen = 0;
  for await (const ev of kv.follow(prefix, { prefix: true, afterRevision: from, waitMs: 5000, signal: stop.signal })) {
    const what = ev.type === EventType.DELETE ? "deleted" : `= ${ev.kv?.value}`;
    console.log(`revision ${ev.kv?.modRevision}: ${ev.kv?.key} ${what}`);
    if (++seen === 3) stop.abort();
  }
  await writer;
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
