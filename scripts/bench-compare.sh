#!/usr/bin/env bash
# Measures durio against etcd on this machine, side by side, with the same load
# generator (kvload from the shared bench harness): puts at 64 and 256 clients
# and linearizable gets at 64 clients, 256-byte values. Each system runs alone:
# durio dev (3 replica processes, badger persister as plugin subprocesses),
# then etcd (3 member processes). Everything listens on 127.0.0.1.
#
# Usage: scripts/bench-compare.sh            (BENCH_DIR defaults to ../shared/bench)
# Env:   DUR [10s]  PUT_CLIENTS ["64 256"]  GET_CLIENTS ["64"]  PERSISTER [badger]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bench=${BENCH_DIR:-$root/../shared/bench}
DUR=${DUR:-10s}
PUT_CLIENTS=${PUT_CLIENTS:-"64 256"}
GET_CLIENTS=${GET_CLIENTS:-"64"}
PERSISTER=${PERSISTER:-badger}
work=$(mktemp -d -t durio-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

echo "building durio and the bench tools into $work" >&2
(cd "$root" && go build -o "$work/durio" ./cmd/durio)
(cd "$bench" && go build -o "$work/" ./cmd/kvload ./cmd/etcd3)

run_load() { # target endpoints op clients
  "$work/kvload" -target "$1" -endpoints "$2" -op "$3" -clients "$4" -duration "$DUR" -value-size 256 -keys 1000
}

results=$work/results.jsonl
# durio
"$work/durio" dev --dir "$work/durio-data" --persister "$PERSISTER" --client-port 28001 --peer-port 29001 \
  --log-level error >"$work/durio-dev.log" 2>&1 &
pids+=($!)
durio_eps=http://127.0.0.1:28001,http://127.0.0.1:28002,http://127.0.0.1:28003
for _ in $(seq 100); do
  "$work/durio" status --endpoints "$durio_eps" --json 2>/dev/null | grep -q '"role":"leader"' && break
  sleep 0.1
done
for c in $PUT_CLIENTS; do run_load http-json "$durio_eps" put "$c" | tee -a "$results"; done
for c in $GET_CLIENTS; do run_load http-json "$durio_eps" get "$c" | tee -a "$results"; done
rss_durio=$(ps -o rss= -C durio | sort -n | tail -1)
kill -TERM "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=()

# etcd, one process per member
for n in 1 2 3; do "$work/etcd3" -member "$n" >"$work/etcd-$n.log" 2>&1 & pids+=($!); done
for _ in $(seq 300); do grep -q ready "$work"/etcd-*.log 2>/dev/null && break; sleep 0.1; done
sleep 1
etcd_eps=127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793
for c in $PUT_CLIENTS; do run_load etcd "$etcd_eps" put "$c" | tee -a "$results"; done
for c in $GET_CLIENTS; do run_load etcd "$etcd_eps" get "$c" | tee -a "$results"; done
rss_etcd=$(ps -o rss= -C etcd3 | sort -n | tail -1)

echo
printf '%-10s %-4s %8s %12s %9s %9s %7s\n' target op clients ops/s p50_ms p99_ms errors
python3 - "$results" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"{r['target']:<10} {r['op']:<4} {r['clients']:>8} {r['ops_per_sec']:>12.0f} {r['p50_ms']:>9.2f} {r['p99_ms']:>9.2f} {r['errors']:>7}")
PY
echo "largest resident set after the run: durio replica ${rss_durio:-?} KiB, etcd member ${rss_etcd:-?} KiB"
