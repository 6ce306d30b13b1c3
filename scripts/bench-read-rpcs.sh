#!/usr/bin/env bash
# Measures what a linearizable read costs in peer RPCs: runs a local 3-replica
# cluster (durio dev, noop persister), measures the peer RPCs of the idle
# cluster (heartbeats) over DUR, then runs `durio bench --op get` with CLIENTS
# clients against the leader or a follower for DUR, and prints reads, peer
# RPCs (durio_raft_rpc_duration_seconds_count summed over the three replicas)
# and RPCs per read beyond the heartbeat baseline, plus the read rounds and
# read-index requests counted by raft. Everything listens on 127.0.0.1.
#
# Usage: scripts/bench-read-rpcs.sh [leader|follower]     (default leader)
# Env:   DURIO [built from this tree]  CLIENTS [64]  DUR [8s]  PORT [18400]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
at=${1:-leader}
CLIENTS=${CLIENTS:-64}
DUR=${DUR:-8s}
PORT=${PORT:-18400}
work=$(mktemp -d -t durio-reads.XXXXXX)
dev=
cleanup() {
  if [ -n "$dev" ]; then kill -TERM "$dev" 2>/dev/null || true; wait "$dev" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
durio=${DURIO:-}
if [ -z "$durio" ]; then
  (cd "$root" && go build -o "$work/durio" ./cmd/durio)
  durio=$work/durio
fi
cp=$((PORT + 1)) pp=$((PORT + 51))
"$durio" dev --dir "$work/data" --persister noop --client-port "$cp" --peer-port "$pp" --log-level error >"$work/dev.log" 2>&1 &
dev=$!
eps="http://127.0.0.1:$cp,http://127.0.0.1:$((cp + 1)),http://127.0.0.1:$((cp + 2))"
leader=
for _ in $(seq 1 150); do
  leader=$("$durio" status --endpoints "$eps" --json 2>/dev/null |
    python3 -c 'import json,sys; print(next((str(r["id"]) for r in json.load(sys.stdin) if r.get("role") == "leader"), ""))' 2>/dev/null || true)
  [ -n "$leader" ] && break
  sleep 0.2
done
[ -n "$leader" ] || { echo "no leader" >&2; cat "$work/dev.log" >&2; exit 1; }
target=$leader
[ "$at" = follower ] && target=$(((leader + 1) % 3))
url=http://127.0.0.1:$((cp + target))
"$durio" put --endpoints "$url" key value >/dev/null

metric() { # name: sum over the replicas
  for i in 0 1 2; do curl -fsS "http://127.0.0.1:$((cp + i))/metrics"; done |
    awk -v m="$1" '$1 ~ "^"m"({|$)" {s += $2} END {printf "%d\n", s}'
}
secs=$(python3 -c "import re,sys; v='$DUR'; print(float(v[:-1]) * {'s':1,'m':60}[v[-1]])")
a=$(metric durio_raft_rpc_duration_seconds_count)
sleep "$secs"
idle=$(($(metric durio_raft_rpc_duration_seconds_count) - a))
a=$(metric durio_raft_rpc_duration_seconds_count)
r0=$(metric durio_raft_read_rounds_total) q0=$(metric durio_raft_read_index_requests_total)
out=$("$durio" bench --endpoints "$url" --clients "$CLIENTS" --duration "$DUR" --warmup 0s --op get --keys 1 | tail -1)
load=$(($(metric durio_raft_rpc_duration_seconds_count) - a))
rounds=$(($(metric durio_raft_read_rounds_total) - r0)) requests=$(($(metric durio_raft_read_index_requests_total) - q0))
reads=$(echo "$out" | sed -E 's/.*: ([0-9]+) ops in.*/\1/')
echo "$out"
python3 -c "
reads, load, idle = $reads, $load, $idle
print(f'reads at the $at: {reads}; peer RPCs: {load} under load, {idle} idle over the same time; '
      f'{load / reads:.4f} RPCs per read, {(load - idle) / reads:.4f} beyond the heartbeat baseline; '
      f'read rounds {$rounds}, read-index requests {$requests}')"
