#!/usr/bin/env bash
# The benchmark matrix of docs/benchmarks.md: a fresh 4-replica loopback
# cluster per cell, ledger-bench at batch B x clients C for D seconds, and
# each replica's peak RSS (VmHWM). Prints one JSON line per cell.
#
# First, unless --no-bound, it measures this machine (machine-bench: Ed25519,
# SHA-256, gRPC on loopback, fdatasync in the replicas' directory; exec-bench)
# and prints a "machine" line and a "floor" line (the latency floor of one
# request, with its parts). Each cell line then also carries the CPU bound for
# the cell's measured consensus batch size, the ratio measured / bound, the
# CPU the processes actually used per request, and the replicas' received
# message counts per block beside the model's (docs/benchmarks.md, "The
# bound"; tools/bench/bound.py).
#
#   deploy/local/bench.sh [--duration D] [--batches "1 100"] [--clients "1 16 64"]
#                         [--cells "1x1 1x64 100x64"] [--no-bound]
#                         [--perf DIR]
#
# --cells B1xC1 ...: run exactly these (batch x clients) cells instead of
#   the batches x clients product.
# --perf DIR: record `perf record -g` of replica 0 (the primary) during
#   each cell's measured seconds into DIR/perf-B-C.data, and beside it the
#   top symbols (perf-B-C.top.txt) and the CPU shares in the model's terms
#   (perf-B-C.summary.json, tools/bench/perf_summary.py). Needs Debian's
#   linux-perf, which deploy/install-deps.sh does not install.
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=10
BATCHES="1 100"
CLIENTS="1 16 64"
CELLS=""
BOUND=1
PERF_DIR=""
CHECKPOINT=128
while [[ $# -gt 0 ]]; do
  case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --batches) BATCHES=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --cells) CELLS=$2; shift 2 ;;
    --no-bound) BOUND=0; shift ;;
    --perf) PERF_DIR=$2; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
if [[ -z "$CELLS" ]]; then
  for b in $BATCHES; do for c in $CLIENTS; do CELLS+="${b}x${c} "; done; done
fi
if [[ -n "$PERF_DIR" ]]; then
  command -v perf >/dev/null || { echo "--perf needs perf (Debian: linux-perf)" >&2; exit 2; }
  mkdir -p "$PERF_DIR"
  PERF_DIR=$(cd "$PERF_DIR" && pwd)
fi
BIN=$(pwd)/build/bin
BOUND_PY=$(pwd)/tools/bench/bound.py
source tests/integration/lib.sh
NPROC=$(nproc)
TICKS=$(getconf CLK_TCK)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The ledgerd process of replica I (start_replica's PID, or its child).
replica_pid() {
  local pid
  pid=$(cat "$1/pids/$2")
  pgrep -P "$pid" ledgerd || echo "$pid"
}

# CPU seconds (user + system) of the given processes so far.
cpu_seconds() {
  local total=0 p
  for p in "$@"; do
    total=$(( total + $(awk '{print $14 + $15}' "/proc/$p/stat") ))
  done
  awk -v t="$total" -v hz="$TICKS" 'BEGIN {printf "%.3f", t / hz}'
}

# Context switches (voluntary + involuntary, every thread) of the given
# processes so far.
ctx_switches() {
  local p
  for p in "$@"; do cat /proc/"$p"/task/*/status 2>/dev/null; done \
    | awk '/ctxt_switches/ {t += $2} END {printf "%d", t}'
}

# exec-bench on blocks of R requests of B transfers: its JSON line to FILE.
exec_bench() {
  local r=$1 b=$2 accounts=$3 file=$4
  local blocks=$(( 20000 / (r * b) ))
  (( blocks < 200 )) && blocks=200
  (( blocks > 500 )) && blocks=500
  "$BIN/exec-bench" --blocks "$blocks" --transfers-per-block $(( r * b )) \
    --requests-per-block "$r" --accounts "$accounts" --verify-blocks 0 \
    --data-dir "$WORK/exec" 2>/dev/null | tail -1 >"$file"
}

if (( BOUND )); then
  "$BIN/machine-bench" --dir "$WORK" --transfers "$(echo "$CELLS" | tr ' ' '\n' \
    | sed -n 's/x.*//p' | sort -un | paste -sd,)" 2>/dev/null >"$WORK/machine.json"
  cat "$WORK/machine.json"
  exec_bench 1 1 16 "$WORK/exec-floor.json"
  python3 "$BOUND_PY" floor --machine "$WORK/machine.json" \
    --exec "$WORK/exec-floor.json" | tee "$WORK/floor.json"
  FLOOR_MS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["latency_floor_ms"])' \
    "$WORK/floor.json")
fi

# Starts cell DIR's cluster; the ledgerd PIDs into PIDS.
start_cluster() {
  local dir=$1 c=$2 i
  CHECKPOINT_INTERVAL=$CHECKPOINT cluster_init "$dir" 4 "$c"
  for i in 0 1 2 3; do start_replica "$dir" "$i"; done
  wait_ready "$dir" 4 60 || { echo "cluster not ready" >&2; exit 1; }
  PIDS=()
  for i in 0 1 2 3; do PIDS+=("$(replica_pid "$dir" "$i")"); done
}

# perf of replica 0 after the 1 s warm-up, for the measured seconds.
start_perf() {
  (sleep 1; exec perf record -q -g -F 1999 -p "${PIDS[0]}" \
    -o "$PERF_DIR/perf-$1.data" -- sleep "$DURATION") >/dev/null 2>&1 &
  PERF_PID=$!
}

summarize_perf() {
  local data="$PERF_DIR/perf-$1.data"
  [[ -f "$data" ]] || return 0
  perf report -i "$data" --no-children --sort dso,sym -g none --stdio 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -40 >"$PERF_DIR/perf-$1.top.txt" || true
  perf script -i "$data" 2>/dev/null \
    | python3 tools/bench/perf_summary.py >"$PERF_DIR/perf-$1.summary.json"
}

# The cell's line with its bound, from the files measure_cell left in DIR.
bound_line() {
  local dir=$1 b=$2 c=$3 r
  r=$(python3 "$BOUND_PY" batch --before "$dir/before.json" --after "$dir/after.json")
  exec_bench "$r" "$b" "$c" "$dir/exec.json"
  python3 "$BOUND_PY" cell --machine "$WORK/machine.json" --exec "$dir/exec.json" \
    --result "$dir/result.json" --before "$dir/before.json" --after "$dir/after.json" \
    --cpu-s "$(cat "$dir/cpu_s")" --wall-s "$(cat "$dir/wall_s")" --nproc "$NPROC" \
    --load "$(cat "$dir/load")" --floor-ms "$FLOOR_MS" --checkpoint-interval "$CHECKPOINT" \
    --ctx-switches "$(cat "$dir/ctx")"
}

# ledger-bench against the cell's cluster; with the bound, the replicas'
# counters before and after, and the CPU all processes used meanwhile.
measure_cell() {
  local dir=$1 b=$2 c=$3 cpu0 ctx0 wall0
  if (( BOUND )); then
    python3 "$BOUND_PY" scrape "$dir/cluster.json" >"$dir/before.json"
    cpu0=$(cpu_seconds "${PIDS[@]}")
    ctx0=$(ctx_switches "${PIDS[@]}")
    wall0=$(date +%s.%N)
  fi
  TIMEFORMAT='%U %S'
  { time "$BIN/ledger-bench" --config "$dir/cluster.json" --clients "$c" --batch "$b" \
      --duration "$DURATION" --warmup 1 2>/dev/null | tail -1 >"$dir/line.json"; } \
    2>"$dir/bench-time"
  if (( BOUND )); then
    awk -v a="$cpu0" -v z="$(cpu_seconds "${PIDS[@]}")" \
      '{printf "%.3f", z - a + $1 + $2}' "$dir/bench-time" >"$dir/cpu_s"
    awk -v a="$wall0" -v z="$(date +%s.%N)" 'BEGIN {print z - a}' >"$dir/wall_s"
    echo $(( $(ctx_switches "${PIDS[@]}") - ctx0 )) >"$dir/ctx"
    python3 "$BOUND_PY" scrape "$dir/cluster.json" >"$dir/after.json"
    cut -d' ' -f1 /proc/loadavg >"$dir/load"
  fi
}

for cell in $CELLS; do
  b=${cell%x*}
  c=${cell#*x}
  DIR=$(mktemp -d -p "$WORK")
  start_cluster "$DIR" "$c"
  [[ -n "$PERF_DIR" ]] && start_perf "$b-$c"
  measure_cell "$DIR" "$b" "$c"
  [[ -n "$PERF_DIR" ]] && { wait "$PERF_PID" || true; }
  rss=0
  for i in 0 1 2 3; do
    kb=$(awk '/VmHWM/ {print $2}' "/proc/${PIDS[$i]}/status" 2>/dev/null || echo 0)
    (( kb > rss )) && rss=$kb
  done
  stop_all "$DIR"
  line=$(cat "$DIR/line.json")
  line="${line%\}},\"replica_peak_rss_mb\":$((rss / 1024))}"
  if (( BOUND )); then
    echo "$line" >"$DIR/result.json"
    bound_line "$DIR" "$b" "$c"
  else
    echo "$line"
  fi
  [[ -n "$PERF_DIR" ]] && summarize_perf "$b-$c"
  rm -rf "$DIR"
done
