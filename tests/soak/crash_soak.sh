#!/usr/bin/env bash
# Crash soak: a 4-replica ledgerd cluster on loopback under continuous load
# (four writers, requests of 1-20 transfers, tests/soak/soak_driver.cc)
# while a fault schedule runs, never more than f = 1 replica faulty at once:
#   - every ~10 s SIGKILL a replica (every third time the current primary)
#     and restart it 2-5 s later;
#   - every ~2 minutes SIGSTOP one for 8 s.
# After each fault the schedule waits (bounded) until the replica is back in
# the cluster's view and caught up; one that never is fails the soak.
# At the end: every acknowledged transfer accounted for exactly once
# (balances equal genesis + acknowledged credits - debits, a sample and every
# retried transfer looked up by id), money conserved, all replicas in the
# same view, `ledgerctl verify` passes on every data dir and the heads are
# equal (`verify --compare`). The last line is one JSON object of figures.
#
#   crash_soak.sh --bin BUILD/bin --tests-bin BUILD/tests --minutes M
#                 [--short] [--keep]
# --short: a kill every ~20 s and one stall (the ctest soak_crash_short).
set -euo pipefail
MINUTES=10 SHORT=0 KEEP_DIR=0 TESTS_BIN=
while (( $# )); do
  case $1 in
    --bin) BIN=$2; shift 2 ;;
    --tests-bin) TESTS_BIN=$2; shift 2 ;;
    --minutes) MINUTES=$2; shift 2 ;;
    --short) SHORT=1; shift ;;
    --keep) KEEP_DIR=1; shift ;;
    *) echo "crash_soak.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n "${BIN:-}" && -n "$TESTS_BIN" ]] || { echo "crash_soak.sh: --bin and --tests-bin required" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
TESTS_BIN=$(cd "$TESTS_BIN" && pwd)
source "$HERE/../integration/lib.sh"
DIR=$(mktemp -d)
MONITOR= LOAD=
cleanup() {
  [[ -n "$MONITOR" ]] && kill "$MONITOR" 2>/dev/null || true
  [[ -n "$LOAD" ]] && kill "$LOAD" 2>/dev/null || true
  for p in "$DIR"/pids/*; do [[ -e "$p" ]] && kill -CONT "$(cat "$p")" 2>/dev/null || true; done
  stop_all "$DIR"
  if (( KEEP_DIR )); then echo "kept $DIR" >&2; else rm -rf "$DIR"; fi
}
trap cleanup EXIT

KILL_PERIOD=10 STALL_PERIOD=120 REJOIN_MAX=60
(( SHORT )) && KILL_PERIOD=20 STALL_PERIOD=$(( MINUTES * 30 )) REJOIN_MAX=90
VIOLATIONS=0 RESTARTS=0 STALLS=0 PRIMARY_KILLS=0 BROKEN=0
violation() { echo "VIOLATION: $*" >&2; VIOLATIONS=$((VIOLATIONS + 1)); }
event() { echo "$(date +%s.%N) $*" >>"$DIR/events"; }
CLIENT=5  # Nudges and status: not one of the writers.

# The highest last_executed_seq any replica reports.
cluster_executed() {
  { ctl status --json 2>/dev/null || true; } | python3 -c '
import json, sys
try:
    print(max([int(r.get("last_executed_seq", 0)) for r in json.load(sys.stdin) if "error" not in r], default=0))
except ValueError:
    print(0)
'
}

# Exit 0 if replica I says it is ready and in the cluster's view, and has
# executed at least TARGET (readiness alone can say "ready" for a moment
# after a restart, before the replica has heard where the cluster is).
is_back() {  # is_back I TARGET
  { ctl status --json 2>/dev/null || true; } | python3 -c '
import json, sys
try:
    for r in json.load(sys.stdin):
        if int(r.get("replica_id", -1)) == int(sys.argv[1]) and "error" not in r:
            sys.exit(0 if r.get("in_cluster_view") and r.get("caught_up")
                     and int(r.get("last_executed_seq", 0)) >= int(sys.argv[2]) else 1)
except ValueError:
    pass
sys.exit(1)
' "$1" "$2"
}

# The highest view any replica reports.
cluster_view() {
  { ctl status --json 2>/dev/null || true; } | python3 -c '
import json, sys
try:
    print(max([int(r.get("view", 0)) for r in json.load(sys.stdin) if "error" not in r], default=0))
except ValueError:
    print(0)
'
}

# Waits until replica I is in the cluster's view and has executed what the
# cluster had when the wait began; records the seconds since SINCE. A
# replica that never rejoins is a violation.
NUDGE=1000000
wait_rejoined() {  # wait_rejoined I SINCE KIND
  local i=$1 since=$2 kind=$3 deadline=$(( $(date +%s) + REJOIN_MAX )) target
  target=$(cluster_executed)
  while (( $(date +%s) < deadline )); do
    if is_back "$i" "$target"; then
      event rejoined "$i" "$(python3 -c "import time; print(round(time.time() - $since, 2))")" "$kind"
      return 0
    fi
    sleep 0.3
  done
  violation "replica $i not back in the cluster's view ${REJOIN_MAX}s after its $kind: $(ctl status 2>&1 | tr '\n' ';')"
  BROKEN=1  # One replica is faulty for good: no more faults (never > f).
}

now() { date +%s.%N; }

kill_one() {  # kill_one PRIMARY(0|1)
  local want_primary=$1 v0 victim
  v0=$(cluster_view)
  if (( want_primary )); then victim=$(( v0 % 4 )); PRIMARY_KILLS=$((PRIMARY_KILLS + 1)); else victim=$(( RANDOM % 4 )); fi
  local kind=backup
  (( victim == v0 % 4 )) && kind=primary
  event kill "$victim" "$kind"
  stop_replica "$DIR" "$victim" KILL
  sleep "$(( 2 + RANDOM % 4 ))"
  start_replica "$DIR" "$victim"
  RESTARTS=$((RESTARTS + 1))
  local t0; t0=$(now)
  wait_rejoined "$victim" "$t0" restart
  event view_changes "$victim" "$kind" "$(( $(cluster_view) - v0 ))"
}

stall_one() {
  local victim=$(( RANDOM % 4 )) v0 pid
  v0=$(cluster_view)
  pid=$(cat "$DIR/pids/$victim")
  event stop "$victim"
  kill -STOP "$pid"
  sleep 8
  kill -CONT "$pid"
  STALLS=$((STALLS + 1))
  local t0; t0=$(now)
  wait_rejoined "$victim" "$t0" stall
  event view_changes "$victim" stall "$(( $(cluster_view) - v0 ))"
}

fault_schedule() {  # until END (unix seconds)
  local end=$1 kills=0 next_stall=$(( $(date +%s) + STALL_PERIOD ))
  while (( BROKEN == 0 && $(date +%s) + KILL_PERIOD < end )); do
    local t0; t0=$(date +%s)
    if (( t0 >= next_stall )); then
      stall_one; next_stall=$(( t0 + STALL_PERIOD ))
    else
      kills=$((kills + 1)); kill_one $(( kills % 3 == 0 ))
    fi
    local rest=$(( t0 + KILL_PERIOD - $(date +%s) ))
    if (( rest > 0 )); then sleep "$rest"; fi
  done
}

# After the load: every replica runs, all reach the same executed seq in the
# same view (create-account nudges by client 5 drive a laggard; they move no
# money).
settle() {
  local deadline=$(( $(date +%s) + 180 ))
  while (( $(date +%s) < deadline )); do
    local s; s=$(ctl status --json 2>/dev/null || true)
    if python3 -c '
import json, sys
rs = json.loads(sys.argv[1])
ok = len(rs) == 4 and all("error" not in r and r.get("caught_up") and r.get("in_cluster_view") for r in rs)
ok = ok and len({(int(r.get("view", 0)), int(r.get("last_executed_seq", 0))) for r in rs}) == 1
sys.exit(0 if ok else 1)' "$s" 2>/dev/null; then
      echo "settled: $(ctl status | tr '\n' ';')"; return 0
    fi
    NUDGE=$((NUDGE + 1))
    ctl create-account --id "$NUDGE" >/dev/null 2>&1 || true
    sleep 1
  done
  violation "replicas did not reach the same view and executed seq: $(ctl status 2>&1 | tr '\n' ';')"
}

# Stops the cluster; one `verify --compare` verifies every data dir against
# the config and compares the chains block hash for block hash; the heads
# (height and hash) must be equal too.
verify_all() {
  ANY_BAD_EXIT=0
  stop_all "$DIR"
  (( ANY_BAD_EXIT == 0 )) || violation "a replica did not exit cleanly on SIGTERM"
  HEADS_EQUAL=false
  "$BIN/ledgerctl" verify --config "$DIR/cluster.json" --json --data-dir "$DIR/data-0" \
    --compare "$DIR/data-1,$DIR/data-2,$DIR/data-3" >"$DIR/verify.json" 2>"$DIR/verify.err" \
    || violation "verify --compare: $(head -c 2000 "$DIR/verify.json") $(tail -5 "$DIR/verify.err")"
  HEADS=$(python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
print(" ".join(sorted({"%s:%s" % (d["head_height"], d["head_hash"]) for d in v["data_dirs"] if d["ok"]})), len(v["data_dirs"]))
' "$DIR/verify.json" 2>/dev/null || echo "unreadable 0")
  if [[ $(wc -w <<<"$HEADS") == 2 && "$HEADS" == *" 4" ]]; then HEADS_EQUAL=true; else violation "heads differ: $HEADS"; fi
  echo "verify: ${HEADS% *} on 4 data dirs" >&2
}

cluster_init "$DIR" 4 5
for i in 0 1 2 3; do start_replica "$DIR" "$i"; done
wait_ready "$DIR" 4 120 || fail "cluster not ready"
CTL=("$BIN/ledgerctl" --config "$DIR/cluster.json" --key "$DIR/keys/client-5.key" --deadline 15)
python3 "$HERE/monitor.py" sample "${CTL[@]}" >"$DIR/samples" 2>/dev/null &
MONITOR=$!
: >"$DIR/events"
SECONDS_LOAD=$(( MINUTES * 60 ))
"$TESTS_BIN/soak-driver" load --config "$DIR/cluster.json" --writers 4 --duration "$SECONDS_LOAD" \
  --out "$DIR" >"$DIR/load.out" 2>"$DIR/load.err" &
LOAD=$!
echo "soak: ${MINUTES} min of load, kill period ${KILL_PERIOD}s, stall period ${STALL_PERIOD}s, dir $DIR" >&2
fault_schedule $(( $(date +%s) + SECONDS_LOAD ))
wait "$LOAD" || violation "load driver: $(tail -3 "$DIR/load.err") $(tail -1 "$DIR/load.out")"
LOAD=
echo "load: $(tail -1 "$DIR/load.out")" >&2
settle
VIEW_END=$(cluster_view)
kill "$MONITOR" 2>/dev/null || true; wait "$MONITOR" 2>/dev/null || true; MONITOR=
timeout 900 "$TESTS_BIN/soak-driver" check --config "$DIR/cluster.json" --writers 4 --out "$DIR" \
  >"$DIR/check.out" 2>"$DIR/check.err" || violation "ledger check: $(head -20 "$DIR/check.err") $(tail -1 "$DIR/check.out")"
echo "check: $(tail -1 "$DIR/check.out")" >&2
verify_all
REPORT=$(python3 "$HERE/monitor.py" report "$DIR/samples" "$DIR/events")
FIGURES=$(python3 - "$DIR" "$REPORT" <<'PY'
import json, sys
d, report = sys.argv[1], json.loads(sys.argv[2])
def last_json(path):
    try:
        return json.loads(open(path).read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return {}
load, check = last_json(f"{d}/load.out"), last_json(f"{d}/check.out")
print(json.dumps({
    "acked_requests": load.get("requests"), "acked_transfers": check.get("acked_transfers"),
    "acked_ok": check.get("acked_ok"), "retried_requests": load.get("retries"),
    "transfers_looked_up": check.get("looked_up"), "longest_gap_ms": load.get("max_gap_ms"),
    **report}))
PY
)
echo "{\"soak_minutes\":$MINUTES,\"restarts\":$RESTARTS,\"stalls\":$STALLS,\"primary_kills\":$PRIMARY_KILLS,\"view_end\":$VIEW_END,\"heads_equal\":$HEADS_EQUAL,\"violations\":$VIOLATIONS,${FIGURES#\{}"
(( VIOLATIONS == 0 )) || fail "$VIOLATIONS violation(s), see above"
