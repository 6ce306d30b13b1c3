#!/usr/bin/env bash
# Cross-builds durio for Raspberry Pis: linux/arm64 (Pi 3/4/5 with a 64-bit
# OS) and linux/arm GOARM=7 (32-bit Raspberry Pi OS), plus linux/amd64.
# Output: dist/<os>-<arch>/durio. No cgo, so no cross toolchain is needed.
# The persister plugins are served by durio itself (it re-executes itself),
# so one binary per target is all a node needs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${OUT_DIR:-dist}
targets=${TARGETS:-"linux/arm64 linux/arm/7 linux/amd64"}
for t in $targets; do
  IFS=/ read -r os arch arm <<<"$t"
  dir="$out/$os-$arch${arm:+v$arm}"
  mkdir -p "$dir"
  echo "building $dir/durio"
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch GOARM=${arm:-} \
    go build -trimpath -ldflags "-s -w" -o "$dir/durio" ./cmd/durio
  for p in plugins/*/; do
    [ -f "$p/main.go" ] || continue
    name=durio-persister-$(basename "$p")
    CGO_ENABLED=0 GOOS=$os GOARCH=$arch GOARM=${arm:-} \
      go build -trimpath -ldflags "-s -w" -o "$dir/$name" "./$p"
  done
done
ls -l "$out"/*/
