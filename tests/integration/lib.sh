# Helpers for multi-process tests: a local cluster of ledgerd processes on
# loopback with ports chosen at run time. Source it; set BIN first.
#   cluster_init DIR N CLIENTS     writes DIR/cluster.json + keys
#   start_replica DIR I            starts ledgerd I (pid in DIR/pids/I)
#   stop_replica DIR I [SIG]       SIGTERM (default) or SIGKILL, waits;
#                                  the exit status is left in STOP_RC
#   wait_ready DIR N SECONDS       until N replicas report ready
#   stop_all DIR                   SIGTERM every replica still running
set -euo pipefail

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
    --base-port "$base" --cluster-id "itest-$$" >/dev/null
  mkdir -p "$dir/pids" "$dir/logs"
}

start_replica() {
  local dir=$1 i=$2
  "$BIN/ledgerd" --config "$dir/cluster.json" --id "$i" --data-dir "$dir/data-$i" \
    --key "$dir/keys/replica-$i.key" --log-level info >>"$dir/logs/replica-$i.log" 2>&1 &
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
}

stop_all() {
  local dir=$1
  for p in "$dir"/pids/*; do
    [[ -e "$p" ]] || continue
    stop_replica "$dir" "$(basename "$p")" TERM
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
