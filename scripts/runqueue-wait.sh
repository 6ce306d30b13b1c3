#!/usr/bin/env bash
# runqueue-wait.sh CMD [ARG...] — run CMD and report, besides its output, the
# CPU time its threads got and the time they waited in the kernel's run
# queue for a CPU (/proc/PID/task/*/schedstat, sampled every 0.1 s). A wait
# of the order of the CPU time means the machine's other work, not the
# program, decided the latencies measured.
set -uo pipefail
"$@" &
pid=$!
declare -A run wait
while kill -0 "$pid" 2>/dev/null; do
	for f in /proc/"$pid"/task/*/schedstat; do
		read -r r w _ <"$f" 2>/dev/null || continue
		t=${f%/schedstat}
		t=${t##*/}
		run[$t]=$r
		wait[$t]=$w
	done
	sleep 0.1
done
wait "$pid"
rc=$?
R=0
W=0
for t in "${!run[@]}"; do
	R=$((R + run[$t]))
	W=$((W + wait[$t]))
done
echo "runqueue-wait: threads=${#run[@]} cpu=$((R / 1000000))ms waited-for-cpu=$((W / 1000000))ms" >&2
exit $rc
