# Helpers for multi-process tests: a local cluster of ledgerd processes on
# loopback with ports chosen at run time. Source it; set BIN first.
#   cluster_init DIR N CLIENTS     writes DIR/cluster.json + keys
#   start_replica DIR I            starts ledgerd I (pid in DIR/pids/I),
#                                  with $LEDGERD_FLAGS (words) appended
#   stop_replica DIR I [SIG]       SIGTERM (default) or SIGKILL, waits;
#                                  the exit status is left in STOP_RC
#   wait_ready DIR N SECONDS       until N replicas report ready
#   stop_all DIR                   SIGTERM every replica still running
#   view_of I                      the view replica I reports
set -euo pipefail
BIN=$(cd "$BIN" && pwd)  # Absolute: replicas run in their own directories.

fail() { echo "FAIL: $*" >&2; exit 1; }

# A base port P such that P+i, P+100+i, P+200+i (i < 10) are all free.
free_base_port() {
  local tries=0
  while (( tries < 50 )); do
    local base=$(( 20000 + (RANDOM % 400) * 100 ))
    local ok=1
    for off in 0 1 2 3 4 5 6 7 8 9 100 101 102 103 104 105 106 107 108 109 200 201 202 203 204 205 206 207 208 209; do
      if (exec 3<>"/dev/tcp/127.0.0.1/$((base + off))") 2>/dev/null; then ok=0; break; fi
    done
    if (( ok )); then echo "$base"; return 0; fi
    tries=$((tries + 1))
  done
  return 1
}

cluster_init() {
  local dir=$1 n=$2 clients=$3
  local base
  base=$(free_base_port) || fail "no free ports"
  "$BIN/ledgerctl" cluster init --replicas "$n" --clients "$clients" --out "$dir" \
    --base-port "$base" --cluster-id "itest-$$" \
    --checkpoint-interval "${CHECKPOINT_INTERVAL:-16}" >/dev/null
  mkdir -p "$dir/pids" "$dir/logs"
}

start_replica() {
  local dir=$1 i=$2
  mkdir -p "$dir/run-$i"
  # Core dumps land in the replica's own directory ("core" pattern).
  (ulimit -c unlimited 2>/dev/null || true; cd "$dir/run-$i" && exec "$BIN/ledgerd" --config "$dir/cluster.json" --id "$i" --data-dir "$dir/data-$i" \
    --key "$dir/keys/replica-$i.key" --log-level info ${LEDGERD_FLAGS:-} >>"$dir/logs/replica-$i.log" 2>&1) &
  echo $! >"$dir/pids/$i"
}

stop_replica() {
  local dir=$1 i=$2 sig=${3:-TERM}
  local pid
  STOP_RC=
  pid=$(cat "$dir/pids/$i" 2>/dev/null) || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  STOP_RC=0
  wait "$pid" 2>/dev/null || STOP_RC=$?
  rm -f "$dir/pids/$i"
  # A replica that died of a signal we did not send is a bug: say so loudly.
  if [[ "$sig" != KILL && "$STOP_RC" -gt 128 ]]; then
    echo "replica $i died with signal $((STOP_RC - 128)); log tail:" >&2
    tail -n 20 "$dir/logs/replica-$i.log" >&2
    if [[ -f "$dir/run-$i/core" ]] && command -v gdb >/dev/null; then
      # The thread that died first, then every thread.
      gdb -batch -ex "bt 40" -ex "thread apply all bt 15" "$BIN/ledgerd" \
          "$dir/run-$i/core" 2>/dev/null \
        | grep -E "^#|^Thread" | head -160 >&2
    fi
  fi
}

stop_all() {
  local dir=$1
  for p in "$dir"/pids/*; do
    [[ -e "$p" ]] || continue
    stop_replica "$dir" "$(basename "$p")" TERM
    ANY_BAD_EXIT=$(( ${ANY_BAD_EXIT:-0} + (STOP_RC != 0) ))
  done
}

# ledgerctl as client 1 (or CLIENT=<n>).
ctl() {
  "$BIN/ledgerctl" --config "$DIR/cluster.json" --key "$DIR/keys/client-${CLIENT:-1}.key" \
    --deadline 15 "$@"
}

wait_ready() {
  local dir=$1 n=$2 secs=$3
  local until=$(( $(date +%s) + secs ))
  while (( $(date +%s) < until )); do
    local ready
    ready=$(ctl status --json 2>/dev/null | grep -o '"caught_up":true' | wc -l || true)
    if (( ready >= n )); then return 0; fi
    sleep 0.2
  done
  ctl status >&2 || true
  return 1
}

# last_executed_seq of replica I (empty if unreachable).
executed_of() {
  local i=$1
  { ctl status --json 2>/dev/null || true; } | python3 -c '
import json, sys
i = int(sys.argv[1])
try:
    for r in json.load(sys.stdin):
        if int(r.get("replica_id", -1)) == i and "error" not in r:
            print(int(r.get("last_executed_seq", 0)))
except ValueError:
    pass
' "$i"
}

# The view replica I reports (empty if unreachable).
view_of() {
  { ctl status --json 2>/dev/null || true; } | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    if int(r.get("replica_id", -1)) == int(sys.argv[1]) and "error" not in r:
        print(int(r.get("view", 0)))
' "$1"
}

# Waits until replicas 0-3 report the same executed height, with no
# traffic of its own (an idle replica fetches the batches it missed);
# fails after SECONDS.
wait_all_equal() {
  local deadline=$(( $(date +%s) + $1 )) heights=""
  while (( $(date +%s) < deadline )); do
    heights=$(for i in 0 1 2 3; do executed_of "$i"; done | sort -u)
    if [[ $(echo "$heights" | wc -l) -eq 1 && -n "$heights" ]]; then
      echo "all replicas at $heights"
      return 0
    fi
    sleep 0.2
  done
  fail "replicas at different heights: $(echo $heights)"
}
