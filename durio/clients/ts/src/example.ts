// Example: put, append and get a key through a durio cluster.
//   go run ./cmd/durio dev            (in the repository root, another terminal)
//   npm run example -- http://127.0.0.1:8001
import { connect } from "./index";

async function main(): Promise<void> {
  const url = process.argv[2] ?? "http://127.0.0.1:8001";
  const kv = connect(url);
  await kv.put({ key: "greeting", value: "hello" });
  await kv.append({ key: "greeting", value: ", world" });
  const { response } = await kv.get({ key: "greeting", consistency: 0 });
  console.log(`${response.key} = ${response.value} (served by replica ${response.header?.replicaId})`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
