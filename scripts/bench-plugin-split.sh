#!/usr/bin/env bash
# Per-process CPU and memory of a local 3-replica durio cluster under load:
# for each replica and each persister plugin, CPU ms per 1000 ops
# (utime+stime deltas from /proc/PID/stat), context switches per op (all
# threads), and VmHWM/VmRSS/RssAnon/RssFile (MiB) sampled 2 s before the load
# ends. Uses its own ports (38101-38103, 39101-39103), so it does not collide
# with compare.sh; still, run it when the machine is as quiet as you can get.
#
# Usage: scripts/bench-plugin-split.sh DURIO_BINARY [op put|get] [clients 64] [duration 8s]
# Env:   PERSISTER [badger]  BENCH_DIR [../shared/bench] (for kvload)
set -euo pipefail
bin=$(realpath "${1:?usage: $0 DURIO_BINARY [op] [clients] [duration]}"); op=${2:-put}; c=${3:-64}; dur=${4:-8s}
root=$(cd "$(dirname "$0")/.." && pwd)
bench=${BENCH_DIR:-$root/../shared/bench}
work=$(mktemp -d -t plugin-split.XXXXXX)
(cd "$bench" && go build -o "$work/" ./cmd/kvload)
peers=http://127.0.0.1:39101,http://127.0.0.1:39102,http://127.0.0.1:39103
clients=http://127.0.0.1:38101,http://127.0.0.1:38102,http://127.0.0.1:38103
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait; rm -rf "$work"' EXIT
for i in 0 1 2; do
  "$bin" serve --id $i --peers $peers --client-urls $clients --listen-client 127.0.0.1:$((38101 + i)) \
    --data-dir "$work/$i" --persister "${PERSISTER:-badger}" --log-level error >"$work/log$i" 2>&1 &
  pids+=($!)
done
for _ in $(seq 200); do
  l=; for u in ${clients//,/ }; do curl -fsS --max-time 1 "$u/kvstore/is_leader" 2>/dev/null | grep -q '"leader": *true' && l=$u; done
  [ -n "$l" ] && break; sleep 0.1
done
"$work/kvload" -target http-json -endpoints $clients -op put -clients 16 -duration 2s -keys 1000 >/dev/null
all=(); for p in "${pids[@]}"; do all+=("$p" $(cat /proc/"$p"/task/*/children)); done
ticks() { local s; s=$(sed 's/^.*) //' /proc/"$1"/stat); set -- $s; echo $((${12} + ${13})); }
switches() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'; }
declare -A t0 cs0 mem
for p in "${all[@]}"; do t0[$p]=$(ticks "$p"); cs0[$p]=$(switches "$p"); done
"$work/kvload" -target http-json -endpoints $clients -spread -op "$op" -clients "$c" -duration "$dur" -keys 1000 >"$work/load.json" &
lp=$!
sleep $(( ${dur%s} > 3 ? ${dur%s} - 2 : 1 ))
for p in "${all[@]}"; do mem[$p]=$(awk '/^(VmHWM|VmRSS|RssAnon|RssFile):/ {printf "%s%.1f ", $1, $2 / 1024}' /proc/"$p"/status); done
wait $lp
read -r n rate < <(python3 -c "import json,sys; r=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(r['ops'], r['ops_per_sec'])" "$work/load.json")
hz=$(getconf CLK_TCK)
echo "$op $c clients: $n ops, $rate ops/s, load average $(cut -d' ' -f1 /proc/loadavg)"
total=0
for p in "${all[@]}"; do
  d=$(( $(ticks "$p") - ${t0[$p]} )); total=$((total + d))
  kind=replica; tr '\0' '\n' </proc/"$p"/environ | grep -q '^RUAFT_PERSISTER_BUILTIN=' && kind=plugin
  awk -v k=$kind -v p="$p" -v d=$d -v hz=$hz -v n="$n" -v cs=$(( $(switches "$p") - ${cs0[$p]} )) -v m="${mem[$p]}" \
    'BEGIN {printf "%-7s %-7s cpu ms/kop %6.1f  switches/op %5.2f  %s\n", k, p, d * 1e6 / hz / n, cs / n, m}'
done
awk -v d=$total -v hz=$hz -v n="$n" 'BEGIN {printf "all     cpu ms/kop %6.1f\n", d * 1e6 / hz / n}'
