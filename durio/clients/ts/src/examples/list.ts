// Example: prefix listing. Stores a few keys under a prefix and lists them,
// one page of two at a time, all pages at one store revision.
//   go run ./cmd/durio dev            (in the repository root, another terminal)
//   npm run example:list -- http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003
import { connect } from "../index";

async function main(): Promise<void> {
  const kv = connect(process.argv[2] ?? "http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003");
  const prefix = `examples/users-${Date.now()}/`;
  for (const name of ["ann", "bob", "eve", "joe", "kim"]) {
    await kv.put({ key: prefix + name, value: `${name}@example.org` });
  }
  for await (const user of kv.listAll(prefix, { pageSize: 2 })) {
    console.log(`${user.key} = ${user.value} (version ${user.version}, revision ${user.modRevision})`);
  }
  const first = await kv.list({ prefix, limit: 2, keysOnly: true });
  console.log(`first page: ${first.kvs.map((k) => k.key).join(", ")}; more: ${first.more}; at revision ${first.revision}`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
