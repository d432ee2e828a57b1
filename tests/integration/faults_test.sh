#!/usr/bin/env bash
# Faults with real processes (issue: view change, recovery, state transfer):
#   1. kill -9 the primary under load: the clients' requests complete in a
#      new view (the load generator sees no failed request);
#   2. restart it: it rejoins and catches up;
#   3. wipe one replica's data dir and restart it: it rebuilds the whole
#      ledger by state transfer, and `ledgerctl verify` passes on it;
#   4. all replicas end with the same head hash and state digest.
#   faults_test.sh BIN_DIR
# LEDGERD_FLAGS (lib.sh) is passed to every replica, e.g. an execution
# thread (integration_faults_execution_thread).
set -euo pipefail
BIN=$1
source "$(dirname "$0")/lib.sh"
DIR=$(mktemp -d)
trap 'stop_all "$DIR"; if [[ -n "${KEEP:-}" ]]; then echo "kept $DIR"; else rm -rf "$DIR"; fi' EXIT

# Waits until replica WHO has executed what REF had executed when the wait
# began. Transfers keep flowing meanwhile: a lagging replica catching up in
# a busy cluster (cluster_test.sh checks the idle case).
NEXT_ID=20000
wait_caught_up() {  # wait_caught_up WHO REF SECONDS
  local who=$1 ref=$2 secs=$3
  local target got
  target=$(executed_of "$ref")
  [[ -n "$target" ]] || fail "no status from replica $ref"
  local deadline=$(( $(date +%s) + secs ))
  while (( $(date +%s) < deadline )); do
    got=$(executed_of "$who")
    if [[ -n "$got" && "$got" -ge "$target" ]]; then echo "replica $who caught up to $target"; return 0; fi
    NEXT_ID=$((NEXT_ID + 1))
    ctl transfer --id "$NEXT_ID" --from 1 --to 2 --amount 1 >/dev/null 2>&1 || true
  done
  fail "replica $who did not catch up to $target (at ${got:-?})"
}

cluster_init "$DIR" 4 4
for i in 0 1 2 3; do start_replica "$DIR" "$i"; done
wait_ready "$DIR" 4 60 || fail "cluster not ready"

# 1. The primary of view 0 dies under load.
"$BIN/ledger-bench" --config "$DIR/cluster.json" --clients 4 --batch 10 --duration 12 \
  --warmup 0 --deadline 30 >"$DIR/bench.out" 2>"$DIR/bench.err" &
bench=$!
sleep 3
stop_replica "$DIR" 0 KILL
wait "$bench" || fail "bench failed: $(tail -5 "$DIR/bench.err")"
result=$(tail -1 "$DIR/bench.out")
echo "bench across the view change: $result"
[[ "$result" == *'"errors":0,'* ]] || fail "requests failed across the view change: $result"
[[ "$result" != *'"requests":0,'* ]] || fail "no request completed"
v=$(view_of 1)
[[ -n "$v" && "$v" -ge 1 ]] || fail "no view change happened (replica 1 in view ${v:-?})"
echo "new view: $v"

# 2. The old primary restarts and catches up.
start_replica "$DIR" 0
for t in $(seq 1 40); do
  ctl transfer --id "$((9000 + t))" --from 1 --to 2 --amount 1 | grep -q RESULT_CODE_OK \
    || fail "transfer $t after restart"
done
wait_caught_up 0 1 60

# 3. A replica loses its disk: it rebuilds everything by state transfer.
stop_replica "$DIR" 2 KILL
rm -rf "$DIR/data-2"
start_replica "$DIR" 2
for t in $(seq 41 80); do
  ctl transfer --id "$((9000 + t))" --from 1 --to 2 --amount 1 | grep -q RESULT_CODE_OK \
    || fail "transfer $t after wipe"
done
wait_caught_up 2 1 90

# Run with LEDGERD_FLAGS="--inline-execution-bytes N" (ctest
# integration_faults_execution_thread): the blocks went through the
# execution thread, which every replica runs.
if [[ "${LEDGERD_FLAGS:-}" == *--inline-execution-bytes* ]]; then
  for i in 0 1 2 3; do
    grep -qx execute /proc/"$(cat "$DIR/pids/$i")"/task/*/comm \
      || fail "replica $i has no execution thread with $LEDGERD_FLAGS"
  done
  echo "every replica runs an execution thread"
fi

# 4. Same chain everywhere, and it verifies offline. The last transfers
# needed only f+1 replies: every replica executes up to the same height
# first (an idle replica fetches what it missed).
wait_all_equal 90
ANY_BAD_EXIT=0
stop_all "$DIR"
(( ANY_BAD_EXIT == 0 )) || fail "a replica did not exit cleanly on SIGTERM"
for i in 0 1 2 3; do
  "$BIN/ledgerctl" verify --data-dir "$DIR/data-$i" --json >"$DIR/verify-$i" 2>&1 \
    || fail "verify replica $i: $(cat "$DIR/verify-$i")"
done
h0=$(grep -o '"head_hash":"[0-9a-f]*"' "$DIR/verify-1")
d0=$(grep -o '"state_digest":"[0-9a-f]*"' "$DIR/verify-1")
for i in 0 2 3; do
  [[ "$(grep -o '"head_hash":"[0-9a-f]*"' "$DIR/verify-$i")" == "$h0" ]] || fail "replica $i head differs: $(cat "$DIR/verify-$i")"
  [[ "$(grep -o '"state_digest":"[0-9a-f]*"' "$DIR/verify-$i")" == "$d0" ]] || fail "replica $i state differs"
done
echo "faults_test: ok"
