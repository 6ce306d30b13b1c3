#!/usr/bin/env bash
# What a large state costs a cluster while its replicas snapshot it: runs three
# `durio serve` processes (persister PERSISTER, default badger), writes N keys of
# 1 MB each, one put at a time and spread over the three replicas (10 s client
# timeout each), and prints the leader changes after the first election, the
# puts that failed, the slowest put, each replica's snapshots and the slowest
# store Append bucket (durio_store_append_duration_seconds). With the default
# --snapshot-bytes the replicas snapshot at about 4, 8, 16, 32 and 64 MB of state,
# every replica at about the same time. Everything listens on 127.0.0.1.
#
# Usage: scripts/large-state-check.sh [N]     (default 100)
# Env:   DURIO [built from this tree]  PERSISTER [badger]  PORT [31100]  KEEP (keep the data and logs)
#        ARGS (more `durio serve` flags, e.g. "--election-timeout 1s --heartbeat-interval 100ms")
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-100}
PERSISTER=${PERSISTER:-badger}
PORT=${PORT:-31100}
work=$(mktemp -d -t durio-large.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then echo "data and logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
durio=${DURIO:-}
if [ -z "$durio" ]; then
  (cd "$root" && go build -o "$work/durio" ./cmd/durio)
  durio=$work/durio
fi
cp=$((PORT + 1)) pp=$((PORT + 101))
peers=http://127.0.0.1:$pp,http://127.0.0.1:$((pp + 1)),http://127.0.0.1:$((pp + 2))
clients=http://127.0.0.1:$cp,http://127.0.0.1:$((cp + 1)),http://127.0.0.1:$((cp + 2))
for i in 0 1 2; do
  "$durio" serve --id "$i" --peers "$peers" --client-urls "$clients" --listen-client "127.0.0.1:$((cp + i))" \
    --data-dir "$work/$i" --persister "$PERSISTER" --log-level info ${ARGS:-} >"$work/log-$i" 2>&1 &
  pids+=($!)
done
leader=
for _ in $(seq 1 150); do
  for i in 0 1 2; do
    curl -fsS --max-time 1 "http://127.0.0.1:$((cp + i))/kvstore/is_leader" 2>/dev/null | grep -q '"leader": *true' && leader=$i
  done
  [ -n "$leader" ] && break
  sleep 0.2
done
[ -n "$leader" ] || { echo "no leader" >&2; cat "$work"/log-* >&2; exit 1; }

python3 - "$n" "$cp" <<'PY'
import http.client, json, sys, time
n, port = int(sys.argv[1]), int(sys.argv[2])
value = "v" * 1_000_000
ok = bad = 0
slowest = 0.0
start = time.monotonic()
for i in range(1, n + 1):
    body = json.dumps({"key": f"k{i}", "value": value})
    t0 = time.monotonic()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port + i % 3, timeout=10)
        c.request("POST", "/kvstore/put", body, {"Content-Type": "application/json"})
        code = c.getresponse().status
        c.close()
    except OSError as e:
        code = f"{type(e).__name__}"
    slowest = max(slowest, time.monotonic() - t0)
    if code == 200:
        ok += 1
    else:
        bad += 1
        print(f"put {i}: {code}", file=sys.stderr)
print(f"puts: {ok} ok, {bad} failed, in {time.monotonic() - start:.1f} s; slowest put {slowest:.2f} s")
PY

metric() { # replica name: the metric's value
  curl -fsS "http://127.0.0.1:$((cp + $1))/metrics" | awk -v m="$2" '$1 == m {print $2}'
}
changes=$(metric 0 durio_raft_leader_changes_total)
echo "leader changes after the first election (as replica 0 saw them): $((${changes%.*} - 1))"
for i in 0 1 2; do
  slow=$(curl -fsS "http://127.0.0.1:$((cp + i))/metrics" |
    awk -F'[{}" ]+' '$1 == "durio_store_append_duration_seconds_bucket" && $3 != "+Inf" { if ($4 > prev) top = $3; prev = $4 } END {print top}')
  echo "replica $i: snapshots $(metric "$i" durio_snapshots_total), slowest store Append at most ${slow} s"
done
