#!/usr/bin/env bash
# Regenerates the Go code for the protobuf contracts in rpc/ with buf and the
# protoc plugins pinned in scripts/tools/go.mod (no system protoc).
# Usage: scripts/gen.sh [OUTPUT_DIR]   (default: the repository root)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root}
cd "$root"
buf() { go tool -modfile=scripts/tools/go.mod buf "$@"; }

buf lint
if [ "$out" = "$root" ]; then
  # Drop generated files first so a removed .proto leaves nothing behind.
  find rpc -type f \( -name '*.pb.go' -o -name '*.twirp.go' \) -delete
fi
buf generate --output "$out"
