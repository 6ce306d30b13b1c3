#!/usr/bin/env bash
# Runs the ARM builds for real, under qemu-user emulation (Debian's
# qemu-user-static): for each target (linux/arm64 and linux/arm GOARM=7), a
# 3-replica cluster on loopback takes a put through one replica and every
# replica then holds it (read from its own state). Each replica runs the ARM
# durio binary under qemu, and so does its persister plugin: durio serves its
# built-in stores by re-executing itself, which cannot cross into emulation
# without binfmt_misc, so --persister names a small wrapper that starts the
# ARM durio under qemu as the plugin (the same code path as on a Pi).
#
# Usage: scripts/qemu-cluster.sh            (TARGETS="arm64:badger arm:file arm:badger" by default)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
targets=${TARGETS:-"arm64:badger arm:file arm:badger"}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# free_base N: a port p such that p..p+N-1 are not listening on loopback.
free_base() {
  local n=$1 base i busy
  for _ in $(seq 50); do
    base=$((20000 + RANDOM % 30000)); busy=0
    for ((i = 0; i < n; i++)); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$((base + i))") 2>/dev/null; then busy=1; break; fi
    done
    [ $busy = 0 ] && { echo "$base"; return; }
  done
  echo "no free ports" >&2; return 1
}

for target in $targets; do
  arch=${target%%:*} persister=${target##*:}
  case $arch in
    arm64) qemu=qemu-aarch64-static; goarm= ;;
    arm) qemu=qemu-arm-static; goarm=7 ;;
    *) echo "unknown arch $arch" >&2; exit 2 ;;
  esac
  command -v "$qemu" >/dev/null || { echo "$qemu not found: apt-get install qemu-user-static" >&2; exit 1; }
  dir="$work/$arch-$persister"
  mkdir -p "$dir"
  echo "== linux/$arch${goarm:+ GOARM=$goarm}, persister $persister: build"
  (cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOARM=$goarm go build -trimpath -o "$dir/durio" ./cmd/durio)
  file "$dir/durio" 2>/dev/null | sed 's/^/   /' || true
  "$qemu" "$dir/durio" version | sed 's/^/   /'
  cat > "$dir/persister" <<SH
#!/bin/sh
RUAFT_PERSISTER_BUILTIN=$persister exec $qemu "$dir/durio" "\$@"
SH
  chmod +x "$dir/persister"
  base=$(free_base 6)
  peers=() clients=()
  for i in 0 1 2; do
    peers+=("http://127.0.0.1:$((base + i))"); clients+=("http://127.0.0.1:$((base + 3 + i))")
  done
  peer_list=$(IFS=,; echo "${peers[*]}") client_list=$(IFS=,; echo "${clients[*]}")
  started=()
  for i in 0 1 2; do
    "$qemu" "$dir/durio" serve --id $i --peers "$peer_list" --client-urls "$client_list" \
      --listen-client "127.0.0.1:$((base + 3 + i))" --data-dir "$dir/replica-$i" \
      --persister "$dir/persister" --request-timeout 10s --log-level warn 2>"$dir/replica-$i.log" &
    pids+=($!) started+=($!)
  done
  cli() { "$qemu" "$dir/durio" "$@"; }
  deadline=$((SECONDS + 120))
  until cli status --endpoints "$client_list" --timeout 5s --json 2>/dev/null | grep -q '"role":"leader"'; do
    if [ $SECONDS -gt $deadline ]; then
      echo "no leader within 120s"; tail -n 20 "$dir"/replica-*.log; exit 1
    fi
    sleep 1
  done
  echo "== leader elected after $((SECONDS - deadline + 120))s; put through replica 2"
  value="hello from $arch ($persister) $$"
  cli put pi/greeting "$value" --endpoints "${clients[2]}" --timeout 60s
  for i in 0 1 2; do
    got=
    until [ "$got" = "$value" ]; do
      got=$(cli get pi/greeting --stale --endpoints "${clients[$i]}" --timeout 5s 2>/dev/null || true)
      if [ $SECONDS -gt $deadline ] && [ "$got" != "$value" ]; then
        echo "replica $i does not have the value: got '$got'"; tail -n 20 "$dir/replica-$i.log"; exit 1
      fi
      [ "$got" = "$value" ] || sleep 0.5
    done
    echo "   replica $i: $got"
  done
  for p in "${started[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${started[@]}"; do wait "$p" 2>/dev/null || true; done
  echo "== linux/$arch ($persister): ok"
done
