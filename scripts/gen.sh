#!/usr/bin/env bash
# Regenerates the code for the protobuf contracts in rpc/: Go (buf and the
# protoc plugins pinned in scripts/tools/go.mod; no system protoc) and the
# TypeScript client in durio/clients/ts (protobuf-ts from that package's
# lockfile, installed with npm ci when missing) and the Python client in
# durio/clients/python (protoc's built-in Python generator from Debian's
# protobuf-compiler at the version in scripts/protoc.version, and the
# project's own cmd/protoc-gen-twirp-python).
# Usage: scripts/gen.sh [OUTPUT_DIR]   (default: the repository root)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root}
cd "$root"
buf() { go tool -modfile=scripts/tools/go.mod buf "$@"; }

buf lint
want_protoc=$(cat scripts/protoc.version)
have_protoc=$(protoc --version 2>/dev/null | awk '{print $2}') || true
if [ "$have_protoc" != "$want_protoc" ]; then
  echo "gen.sh: the Python code needs protoc $want_protoc (Debian: apt-get install protobuf-compiler); found '${have_protoc:-none}'" >&2
  exit 1
fi
ts=durio/clients/ts
if [ ! -x "$ts/node_modules/.bin/protoc-gen-ts" ]; then
  (cd "$ts" && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ "$out" = "$root" ]; then
  # Drop generated files first so a removed .proto leaves nothing behind.
  find rpc -type f \( -name '*.pb.go' -o -name '*.twirp.go' \) -delete
  rm -rf "$ts/src/gen" durio/clients/python/durio_client/_gen
fi
buf generate --output "$out"
buf generate --template buf.gen.ts.yaml --path rpc/kv/v1 --output "$out"
buf generate --template buf.gen.py.yaml --path rpc/kv/v1 --output "$out"
