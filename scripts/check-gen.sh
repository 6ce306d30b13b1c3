#!/usr/bin/env bash
# Fails if the committed generated code (Go in rpc/, TypeScript in
# durio/clients/ts/src/gen, Python in durio/clients/python/durio_client/_gen) differs from what the .proto files generate now. Regenerates into a scratch folder; changes nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

scripts/gen.sh "$scratch" >/dev/null

list() {
  (cd "$1" && { find rpc -type f \( -name '*.pb.go' -o -name '*.twirp.go' \); \
    find durio/clients/ts/src/gen durio/clients/python/durio_client/_gen -type f \
      -not -name '*.pyc' 2>/dev/null; } | sort)
}
status=0
if ! diff -u <(list "$root") <(list "$scratch") >"$scratch/files.diff"; then
  echo "check-gen: the set of generated files differs (- committed, + generated):" >&2
  cat "$scratch/files.diff" >&2
  status=1
fi
while read -r f; do
  if [ -f "$root/$f" ] && ! diff -q "$root/$f" "$scratch/$f" >/dev/null; then
    echo "check-gen: $f is out of date:" >&2
    diff -u "$root/$f" "$scratch/$f" | head -40 >&2
    status=1
  fi
done < <(list "$scratch")

if [ "$status" -ne 0 ]; then
  echo "check-gen: generated code is stale; run scripts/gen.sh and commit the result." >&2
  exit 1
fi
echo "check-gen: generated code is up to date"
