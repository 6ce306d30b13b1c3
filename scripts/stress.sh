#!/usr/bin/env bash
# stress.sh PATTERN N [PKG] — run the tests matching PATTERN N times.
#
# Builds PKG's test binary once (with -race unless STRESS_RACE=0), then runs
# it N times, STRESS_PARALLEL (default 2) runs at a time, each with
# -test.run PATTERN -test.count 1. Prints the pass/fail counts and keeps the
# full log of every failed run (with the rafttest seeds, replayable with
# RAFTTEST_SEED=...) in a folder it prints; passing runs' logs are deleted.
#
# Environment:
#   STRESS_PARALLEL  runs at a time (default 2)
#   STRESS_RACE      0 to build without -race (default 1)
#   STRESS_TIMEOUT   per-run -test.timeout (default 10m)
#   STRESS_DIR       where to keep logs (default: a new temporary folder)
#   STRESS_V         1 to run with -test.v (logs of every test, not only failed)
#   RAFTTEST_LOG     passed through: 1 sends node logs to the test log
#
# Example: scripts/stress.sh '3A|3B|3C' 50 ./raft/rafttest
set -euo pipefail

if [[ $# -lt 2 ]]; then
	echo "usage: $0 PATTERN N [PKG]" >&2
	exit 2
fi
pattern=$1
n=$2
pkg=${3:-./raft/rafttest}
parallel=${STRESS_PARALLEL:-2}
race=${STRESS_RACE:-1}
timeout=${STRESS_TIMEOUT:-10m}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dir=${STRESS_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/stress.XXXXXX")}
mkdir -p "$dir"
# A reused folder: forget the logs of earlier stress runs.
rm -f "$dir"/FAIL-run-*.log "$dir"/run-*.log
bin="$dir/test.bin"

build=(go test -c -o "$bin")
if [[ $race != 0 ]]; then
	build+=(-race)
fi
echo "building $pkg: ${build[*]} $pkg"
"${build[@]}" "$pkg"
# go test runs a package's tests in the package's folder.
pkgdir=$(go list -f '{{.Dir}}' "$pkg")

args=(-test.run "$pattern" -test.count 1 -test.timeout "$timeout")
if [[ ${STRESS_V:-0} != 0 ]]; then
	args+=(-test.v)
fi

echo "running '$pattern' $n times, $parallel at a time; logs in $dir"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s)

run() {
	local i=$1 log="$dir/run-$1.log"
	if (cd "$pkgdir" && "$bin" "${args[@]}") >"$log" 2>&1; then
		rm -f "$log"
		echo "run $i: ok"
	else
		mv "$log" "$dir/FAIL-run-$i.log"
		echo "run $i: FAIL ($(grep -E -- '^\s*--- FAIL' "$dir/FAIL-run-$i.log" | tr -s ' ' | tr '\n' ' '))"
	fi
}

pids=()
for ((i = 1; i <= n; i++)); do
	while (($(jobs -rp | wc -l) >= parallel)); do
		wait -n || true
	done
	run "$i" &
	pids+=($!)
done
wait

fails=$(find "$dir" -name 'FAIL-run-*.log' | wc -l)
passes=$((n - fails))
elapsed=$(($(date +%s) - start))
echo "----"
echo "pattern '$pattern' in $pkg: $passes passed, $fails failed of $n runs in ${elapsed}s (parallel $parallel, race $race)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
if ((fails > 0)); then
	echo "failed runs (seeds in the logs, replay with RAFTTEST_SEED=...):"
	for f in "$dir"/FAIL-run-*.log; do
		echo "  $f: $(grep -E -- '--- FAIL' "$f" | tr -s ' ' | tr '\n' ' ')"
		grep -E 'seed [0-9]+' "$f" | sed 's/^/      /' | head -5 || true
	done
	rm -f "$bin"
	exit 1
fi
rm -f "$bin"
