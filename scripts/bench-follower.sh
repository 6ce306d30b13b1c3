#!/usr/bin/env bash
# Starts 3 replicas of BINARY on loopback (file persister), runs `durio bench`
# (64 clients, 256-byte puts, 10 s after a 2 s warm-up) against one follower
# (TARGET=leader: against the leader), and prints ops/s, p50 and the CPU
# ticks (user+system) the three replica processes used during the run.
# Compare two binaries back to back:
#   scripts/bench-follower.sh ./durio-old before; PORTBASE=19500 scripts/bench-follower.sh ./durio-new after
# usage: scripts/bench-follower.sh BINARY LABEL
set -euo pipefail
bin=$1; label=$2; base=${PORTBASE:-19300}
dir=$(mktemp -d)
P="http://127.0.0.1:$((base+1)),http://127.0.0.1:$((base+2)),http://127.0.0.1:$((base+3))"
C="http://127.0.0.1:$((base+11)),http://127.0.0.1:$((base+12)),http://127.0.0.1:$((base+13))"
pids=()
for i in 0 1 2; do
  "$bin" serve --id $i --peers $P --client-urls $C --listen-client 127.0.0.1:$((base+11+i)) --data-dir $dir/r$i --persister file --log-level warn >$dir/log$i 2>&1 &
  pids+=($!)
done
trap 'kill ${pids[*]} 2>/dev/null; wait 2>/dev/null; rm -rf $dir' EXIT
follower=""; leader_id=""
for t in $(seq 50); do
  sleep 0.2
  for i in 0 1 2; do
    j=$(curl -s 127.0.0.1:$((base+11+i))/kvstore/is_leader || true)
    if [ "${TARGET:-follower}" = leader ]; then
      if echo "$j" | grep -q '"leader":true'; then follower=$i; fi
    elif echo "$j" | grep -q '"leader":false,"leader_id":[0-9]'; then follower=$i; fi
  done
  [ -n "$follower" ] && break
done
cpu() { local s=0; for p in ${pids[*]}; do read -r -a f < /proc/$p/stat; s=$((s + f[13] + f[14])); done; echo $s; }
"$bin" bench --endpoints http://127.0.0.1:$((base+11+follower)) --clients 64 --duration 2s --warmup 0s --op put >/dev/null
c0=$(cpu)
out=$("$bin" bench --endpoints http://127.0.0.1:$((base+11+follower)) --clients 64 --duration 10s --warmup 0s --op put --json)
c1=$(cpu)
ops=$(echo "$out" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["ops"], round(r["ops_per_sec"]), r["p50_ms"] if "p50_ms" in r else "")')
echo "$label follower=$follower ops,ops/s,p50: $ops cpu_ticks=$((c1-c0)) ($(getconf CLK_TCK)/s)"
echo "$out"
