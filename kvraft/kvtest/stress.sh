#!/usr/bin/env bash
# stress.sh PATTERN RUNS [PARALLEL] [PKG] — run the tests matching PATTERN
# RUNS times, PARALLEL processes at a time (default 2), from one compiled
# test binary of PKG (default ./kvraft). Prints pass/fail counts and keeps
# the output of failed runs under $TMPDIR/kvraft-stress.*/.
# Set RACE=1 to build with -race, SKIP=REGEXP to skip tests.
set -euo pipefail
pattern=${1:?usage: stress.sh PATTERN RUNS [PARALLEL] [PKG]}
runs=${2:?usage: stress.sh PATTERN RUNS [PARALLEL] [PKG]}
parallel=${3:-2}
pkg=${4:-./kvraft}
out=$(mktemp -d "${TMPDIR:-/tmp}/kvraft-stress.XXXXXX")
bin="$out/test.bin"
flags=()
if [[ "${RACE:-0}" == 1 ]]; then flags+=(-race); fi
go test "${flags[@]}" -c -o "$bin" "$pkg"
echo "stress: $pattern x $runs, $parallel at a time; logs in $out"
start=$(date +%s)
seq 1 "$runs" | xargs -P "$parallel" -I{} sh -c \
  '"$0" -test.run "$1" -test.skip "$3" -test.timeout 30m -test.v > "$2/run-{}.log" 2>&1 && rm "$2/run-{}.log" || echo "run {} FAILED: $2/run-{}.log"' \
  "$bin" "$pattern" "$out" "${SKIP:-^$}"
logs=("$out"/run-*.log)
failed=0
if [[ -e "${logs[0]}" ]]; then failed=${#logs[@]}; fi
echo "stress: $((runs - failed)) passed, $failed failed, in $(( $(date +%s) - start )) s"
for f in "$out"/run-*.log; do
  [[ -e "$f" ]] || continue
  echo "== $f"; grep -E -- '--- FAIL|FAIL:|panic|Error|error|seed' "$f" | head -20
done
[[ "$failed" == 0 ]]
