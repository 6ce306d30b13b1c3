// Example: put, append and get a key through a durio cluster.
//   go run ./cmd/durio dev            (in the repository root, another terminal)
//   npm run example -- http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003
import { connect } from "./index";

async function main(): Promise<void> {
  const kv = connect(process.argv[2] ?? "http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003");
  await kv.put({ key: "greeting", value: "hello" });
  await kv.append({ key: "greeting", value: ", world" });
  const got = await kv.get({ key: "greeting" });
  console.log(`${got.key} = ${got.value} (served by replica ${got.header?.replicaId})`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
