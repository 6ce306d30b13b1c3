#!/usr/bin/env bash
# A rolling upgrade with real processes: starts a 3-replica cluster from an
# older commit (default 9fd2a75, the last version without apply levels), writes
# keys, then replaces the replicas one at a time with this tree's binary (same
# data folders, SIGTERM then restart), and checks at every step that
#   - every key written so far reads back, and writes go on;
#   - the cluster stays at the old version's apply level (0 before levels) while any replica runs the old
#     version (the new ones report "0 (supports N)", N this tree's level);
#   - once the last one is upgraded, every replica reaches the new level
#     within 10 s, and a refused compare-and-swap is then remembered: the
#     same request (same session and sequence) sent again after its condition
#     came true gets the first answer and does not apply;
#   - a replica then started from the old version again stops ("upgrade this
#     replica") and the others keep serving.
# Everything listens on 127.0.0.1. Needs git history (a worktree of OLD).
#
# Usage: scripts/upgrade-check.sh [OLD_REF]
# Env:   PORT [18900]  PERSISTER [file]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
old_ref=${1:-9fd2a75}
PORT=${PORT:-18900}
PERSISTER=${PERSISTER:-file}
work=$(mktemp -d -t durio-upgrade.XXXXXX)
declare -a pids=("" "" "")
cleanup() {
  for p in "${pids[@]}"; do
    [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    [ -n "$p" ] && wait "$p" 2>/dev/null || true
  done
  git -C "$root" worktree remove --force "$work/old-src" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; for i in 0 1 2; do echo "--- replica $i log (tail)" >&2; tail -5 "$work/r$i.log" >&2 || true; done; exit 1; }

echo "building the old version ($old_ref) and this tree"
git -C "$root" worktree add -q --detach "$work/old-src" "$old_ref"
(cd "$work/old-src" && go build -o "$work/durio-old" ./cmd/durio)
(cd "$root" && go build -o "$work/durio-new" ./cmd/durio)

peers="http://127.0.0.1:$((PORT + 10)),http://127.0.0.1:$((PORT + 11)),http://127.0.0.1:$((PORT + 12))"
eps="http://127.0.0.1:$PORT,http://127.0.0.1:$((PORT + 1)),http://127.0.0.1:$((PORT + 2))"
start() { # replica binary
  local i=$1 bin=$2
  "$bin" serve --id "$i" --peers "$peers" --client-urls "$eps" --listen-client "127.0.0.1:$((PORT + i))" \
    --data-dir "$work/data$i" --persister "$PERSISTER" --log-level warn >>"$work/r$i.log" 2>&1 &
  pids[i]=$!
}
stop() {
  local i=$1
  kill -TERM "${pids[i]}"
  wait "${pids[i]}" 2>/dev/null || true
  pids[i]=""
}
cli() { # command args...
  local cmd=$1
  shift
  "$work/durio-new" "$cmd" --endpoints "$eps" --timeout 10s "$@"
}
# levels prints each replica's "apply_level/max_apply_level" (0/0 from a
# version without levels), one line.
levels() {
  cli status --json 2>/dev/null | python3 -c '
import json, sys
rows = json.load(sys.stdin)
print(" ".join("%s/%s" % (r.get("apply_level", 0), r.get("max_apply_level", 0)) if r.get("reachable") else "down" for r in rows))'
}
written=0
write_some() { # n
  for _ in $(seq 1 "$1"); do
    written=$((written + 1))
    cli put "k$written" "v$written" >/dev/null || fail "put k$written"
  done
}
check_all() {
  for j in $(seq 1 "$written"); do
    got=$(cli get "k$j") || fail "get k$j"
    [ "$got" = "v$j" ] || fail "k$j = $got, want v$j"
  done
}
wait_caught_up() {
  for _ in $(seq 1 100); do
    if cli status --json 2>/dev/null | python3 -c '
import json, sys
rows = json.load(sys.stdin)
ok = all(r.get("reachable") for r in rows) and any(r.get("role") == "leader" for r in rows)
ok = ok and len({r["applied"] for r in rows}) == 1
sys.exit(0 if ok else 1)'; then return 0; fi
    sleep 0.2
  done
  fail "the cluster did not settle: $(cli status 2>&1)"
}

for i in 0 1 2; do start "$i" "$work/durio-old"; done
wait_caught_up
write_some 20
echo "old cluster up: levels $(levels)"

# The old cluster's level: 0 for a version without levels.
start_level=$(levels | awk '{split($1, a, "/"); print a[1]}')
# only_start_level reports whether every replica that answers is still at
# the old cluster's level.
only_start_level() {
  for x in $1; do
    case $x in "$start_level"/* | down) ;; *) return 1 ;; esac
  done
}
want=""

for i in 0 1 2; do
  stop "$i"
  write_some 5 # while one replica is down
  start "$i" "$work/durio-new"
  wait_caught_up
  write_some 5
  check_all
  lv=$(levels)
  echo "replica $i upgraded: levels $lv"
  if [ -z "$want" ]; then
    # The level this tree supports, as replica 0 (upgraded first) reports it.
    want=$(echo "$lv" | awk '{split($1, a, "/"); print a[2]}')
  fi
  if [ "$i" -lt 2 ]; then
    only_start_level "$lv" || fail "a replica is above level $start_level while replicas still run the old version: $lv"
    sleep 1 # a moment for a leader that would (wrongly) raise the level
    only_start_level "$(levels)" || fail "the level rose with old replicas in the cluster: $(levels)"
  fi
done

full="$want/$want $want/$want $want/$want"
for _ in $(seq 1 50); do
  [ "$(levels)" = "$full" ] && break
  sleep 0.2
done
[ "$(levels)" = "$full" ] || fail "after the upgrade the levels are $(levels), want $want/$want on every replica"
echo "every replica upgraded: levels $(levels)"

# A refused compare-and-swap, then its condition comes true, then the same
# request again: remembered at level 1 (Twirp JSON, explicit session and
# sequence numbers).
ep=http://127.0.0.1:$PORT
twirp() { curl -fsS -XPOST "$ep/twirp/kv.v1.KVService/$1" -H 'Content-Type: application/json' -d "$2"; }
sid=$(twirp OpenSession '{}' | python3 -c 'import json,sys; d = json.load(sys.stdin); print(d.get("client_id", d.get("clientId")))')
twirp Put "{\"key\":\"cas\",\"value\":\"a\",\"write\":{\"clientId\":\"$sid\",\"sequence\":\"1\",\"ack\":\"1\"}}" >/dev/null
req="{\"key\":\"cas\",\"value\":\"b\",\"condition\":{\"kind\":\"CONDITION_KIND_VALUE\",\"value\":\"x\"},\"write\":{\"clientId\":\"$sid\",\"sequence\":\"2\",\"ack\":\"2\"}}"
first=$(twirp Put "$req" 2>&1 || true)
twirp Put "{\"key\":\"cas\",\"value\":\"x\",\"write\":{\"clientId\":\"$sid\",\"sequence\":\"3\",\"ack\":\"2\"}}" >/dev/null
again=$(twirp Put "$req" 2>&1 || true)
now=$(cli get cas)
[ "$now" = "x" ] || fail "the copy of the refused CAS applied: cas = $now (first answer: $first; copy: $again)"
echo "refused CAS sent again after its condition came true: not applied (cas = $now)"
check_all

# A downgrade once the level is raised: the old version cannot apply the
# entry that raised it (or, past a snapshot, the snapshot), so it stops,
# asking to be upgraded, and the others keep serving.
stop 2
: >"$work/r2.log"
start 2 "$work/durio-old"
for _ in $(seq 1 150); do
  kill -0 "${pids[2]}" 2>/dev/null || break
  sleep 0.2
done
if kill -0 "${pids[2]}" 2>/dev/null; then
  fail "the downgraded replica 2 still runs"
fi
wait "${pids[2]}" 2>/dev/null || true
pids[2]=""
grep -q "upgrade this replica" "$work/r2.log" || fail "the downgraded replica stopped without saying why: $(tail -3 "$work/r2.log")"
echo "downgraded replica 2 stopped: $(grep -o 'cannot apply[^;]*\|raises the apply level[^:]*\|snapshot is at apply level[^:]*' "$work/r2.log" | head -1)"
write_some 5
start 2 "$work/durio-new"
wait_caught_up
check_all
[ "$(levels)" = "$full" ] || fail "after upgrading replica 2 again the levels are $(levels)"
echo "PASS: rolling upgrade from $old_ref, a refused downgrade, $written keys intact"
