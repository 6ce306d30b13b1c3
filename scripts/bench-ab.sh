#!/usr/bin/env bash
# A/B comparison of durio binaries on a shared, noisy machine: for each round
# and each load, runs the shared harness's compare.sh once per binary, one
# after the other, so that every binary meets the same moments of the
# machine's load (A, B, A, B, ...). compare.sh measures etcd next to each run
# as well, which gives each window its own reference. Prints one line per run
# (binary, load, ops/s, p50, server CPU per 1000 ops, replica + plugin MiB,
# load average) and the medians per binary and load.
#
# Usage: scripts/bench-ab.sh BINARY_A BINARY_B [...]
#   (a "binary" may be a wrapper script that adds flags or environment and
#   execs durio, e.g. to compare --snapshot-bytes values or GOMEMLIMIT)
# Env:   DUR [8s]  LOADS ["put:64 put:256 get:64"]  ROUNDS [2]  PERSISTER [badger]
#        BENCH_DIR [../shared/bench]  OUT [a fresh temp dir]
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 BINARY_A BINARY_B [...]" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
bench=${BENCH_DIR:-$root/../shared/bench}
export DUR=${DUR:-8s} PERSISTER=${PERSISTER:-badger}
LOADS=${LOADS:-"put:64 put:256 get:64"}
ROUNDS=${ROUNDS:-2}
OUT=${OUT:-$(mktemp -d -t bench-ab.XXXXXX)}
mkdir -p "$OUT"; : >"$OUT/ab.jsonl"
for _ in $(seq "$ROUNDS"); do
  for l in $LOADS; do
    for b in "$@"; do
      la=$(cut -d' ' -f1 /proc/loadavg)
      o=$(mktemp -d "$OUT/run.XXXXXX")
      LOADS=$l OUT=$o "$bench/compare.sh" "$b" >/dev/null
      python3 - "$o/compare.jsonl" "$b" "$la" >>"$OUT/ab.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["system"] == "durio":
        r.update(binary=sys.argv[2], loadavg=float(sys.argv[3]))
        print(json.dumps(r))
PY
      tail -1 "$OUT/ab.jsonl"
    done
  done
done
python3 - "$OUT/ab.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault((r["op"], r["clients"], r["binary"]), []).append(r)
print(f"\n{'op':<4} {'clients':>7} {'binary':<40} {'runs':>4} {'ops/s':>8} {'cpu/kop':>8} {'MiB':>6}")
for (op, c, b), rs in by.items():
    med = lambda k: statistics.median(x[k] for x in rs)
    print(f"{op:<4} {c:>7} {b[-40:]:<40} {len(rs):>4} {med('ops_per_sec'):>8.0f} {med('server_cpu_ms_per_kop'):>8.1f} {med('replica_rss_mib'):>6.1f}")
PY
