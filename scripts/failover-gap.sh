#!/usr/bin/env bash
# Runs the failover end-to-end test (TestE2EFailoverGap: 3 real durio
# processes, 6 clients writing with a 2 s timeout, the leader killed with
# SIGKILL and, separately, frozen with SIGSTOP) N times (default 10) and
# prints every run's longest stretch with no acknowledged write, and the
# median for each fault.
# Usage: scripts/failover-gap.sh [N]
set -euo pipefail
n=${1:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test -count="$n" -run 'TestE2EFailoverGap$' -v ./durio | tee "$out" | grep -E 'failover gap|^(--- FAIL|FAIL|ok)' || true
for fault in kill stop; do
  grep -o "failover gap $fault: [0-9]* ms" "$out" | awk '{print $4}' | sort -n |
    awk -v f="$fault" '{a[NR]=$1} END {
      if (NR == 0) { print f ": no runs"; exit 1 }
      m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2
      printf "%s: median %d ms over %d runs (min %d, max %d)\n", f, m, NR, a[1], a[NR]
    }'
done
