#!/usr/bin/env bash
# Packs the TypeScript client (npm pack), installs the tarball into a scratch
# project as a user would, and type-checks and runs a consumer that uses the
# optional fields as optional (get({ key })). Needs `npm ci` in the package.
set -euo pipefail
pkg="$(cd "$(dirname "$0")/../durio/clients/ts" && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$pkg" && npm pack --silent --pack-destination "$work" >/dev/null)
cd "$work"
npm init -y >/dev/null
npm install --no-audit --no-fund --prefer-offline --loglevel=error ./durio-client-*.tgz
cat > consumer.ts <<'TS'
import { connect, DurioClient, ifAbsent, ReadConsistency, RpcError, type GetResponse, type TxnInput, type TxnResult } from "@durio/client";
const kv: DurioClient = connect("http://127.0.0.1:1,http://127.0.0.1:2", { timeoutMs: 200 });
async function main(): Promise<void> {
  const got: Promise<GetResponse> = kv.get({ key: "a" });
  const txn: TxnInput = { conditions: [{ key: "a", condition: ifAbsent() }], writes: [{ put: { key: "a", value: "1" } }, { delete: { key: "b" } }] };
  const done: Promise<TxnResult> = kv.txn(txn);
  const results = await Promise.allSettled([got, kv.get({ key: "a", consistency: ReadConsistency.STALE }), kv.put({ key: "a", value: "1" }), done]);
  for (const r of results) {
    if (r.status !== "rejected" || !(r.reason instanceof RpcError) || r.reason.code !== "deadline_exceeded") {
      throw new Error("expected deadline_exceeded from dead endpoints, got " + JSON.stringify(r));
    }
  }
}
main().catch((e) => { console.error(e); process.exitCode = 1; });
TS
"$pkg/node_modules/.bin/tsc" --strict --target ES2022 --module commonjs --moduleResolution node10 --types node \
  --typeRoots "$pkg/node_modules/@types" --outDir out consumer.ts
node out/consumer.js
echo "npm pack, install and a consumer type-check: ok"
