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
# bound"; tools/bench/bound.py), and the same bound and ratio with Ed25519
# measured just before and just after the cell ("probed"). Last, a "targets"
# line: which of the fast path's targets the cells met (ratio >= 0.7 at 1 x 64
# and 100 x 64, peak RSS <= 300 MB, one client's p50 <= 1.5 x the floor).
#
#   deploy/local/bench.sh [--duration D] [--batches "1 100"] [--clients "1 16 64"]
#                         [--cells "1x1 1x64 100x64"] [--no-bound]
#                         [--perf DIR] [--hops DIR] [--unary] [--send-to-all]
#                         [--hedge F]
#                         [--ids time|client]
#   deploy/local/bench.sh --load70 | --overload [SECONDS] [--duration D]
#                         [--open-clients N] [--queue-max Q] [--no-bound]
#                         [--admission-wait-ms MS]
#                         [--arrivals poisson|fixed] [--seed N]
#                         [--catchup-timeout S] [--retry-refused]
#                         [--throttle-k K]
#
# --cells B1xC1 ...: run exactly these (batch x clients) cells instead of
#   the batches x clients product.
# --load70 / --overload SECONDS: instead of the matrix, one cluster for an
#   open-loop sequence (docs/benchmarks.md, "Open loop"): peak (closed loop,
#   batch 1 x 64 clients), then 70% of that peak open loop for --duration
#   seconds (p50, p99, p99/p50); with --overload, then 2 x peak open loop for
#   SECONDS (default 600) with the replicas' RSS sampled every 5 s, and
#   after it the time until every replica reports the same executed height
#   (at most --catchup-timeout, default 120 s). Options of the sequence:
#   --open-clients N (cap on calls in flight, default 512), --queue-max Q
#   (the cluster's request_queue_max for the run; default: the config's
#   default), --admission-wait-ms MS (the cluster's admission_wait_ms;
#   default: the config's default, 0: off), --arrivals poisson|fixed,
#   --seed N, --retry-refused (the
#   SDK's default: re-send refused requests until the deadline; without it
#   the open loop's clients fail them at once with RESOURCE_EXHAUSTED),
#   --throttle-k K (without --retry-refused: the open loop's clients share
#   one SDK LoadThrottle with this k; default 0: none).
# --ids time|client: ledger-bench's transfer ids (default time: the SDK's
#   NewId, ordered by time; client: client id and a counter, 64 interleaved
#   runs of keys; docs/benchmarks.md "Transfer ids and compaction").
# --unary: the SDK sends each request to each replica as a unary call
#   (ClientOptions::sessions false) instead of on one Session stream per
#   replica; for comparing the two in the same hour.
# --send-to-all: the SDK sends each ordered request to every replica at once
#   (ClientOptions::send_to_all) instead of to f+1 first; for comparing.
# --hedge F: the SDK's ClientOptions::hedge_after_first (default 0: no
#   hedge); for comparing.
# --perf DIR: record `perf record -g` of replica 0 (the primary) during
#   each cell's measured seconds into DIR/perf-B-C.data, and beside it the
#   top symbols (perf-B-C.top.txt) and the CPU shares in the model's terms
#   (perf-B-C.summary.json, tools/bench/perf_summary.py). Needs Debian's
#   linux-perf, which deploy/install-deps.sh does not install.
# --hops DIR: the replicas of each cell write event traces
#   (PBFT_TRACE_EVENTS, common/trace.h) into DIR/B-C/, and after the cell
#   a "hops" line per segment gives where a message's time went between
#   the replicas (tools/bench/hops.py; docs/benchmarks.md, "Where a hop's
#   time goes"). The cell's own figures then include the tracing's cost (a
#   write(2) per event).
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=10
BATCHES="1 100"
CLIENTS="1 16 64"
CELLS=""
BOUND=1
PERF_DIR=""
HOPS_DIR=""
CHECKPOINT=128
LOAD70=0
OVERLOAD=""
OPEN_CLIENTS=512
QUEUE_MAX=""
ADMISSION_WAIT_MS=""
ARRIVALS=poisson
SEED=1
CATCHUP_TIMEOUT=120
RETRY_REFUSED=false
THROTTLE_K=0
SESSIONS=true
SEND_TO_ALL=false
HEDGE=""
IDS=time
while [[ $# -gt 0 ]]; do
  case $1 in
    --load70) LOAD70=1; shift ;;
    --overload)
      LOAD70=1
      if [[ ${2:-} =~ ^[0-9]+$ ]]; then OVERLOAD=$2; shift 2; else OVERLOAD=600; shift; fi ;;
    --open-clients) OPEN_CLIENTS=$2; shift 2 ;;
    --queue-max) QUEUE_MAX=$2; shift 2 ;;
    --admission-wait-ms) ADMISSION_WAIT_MS=$2; shift 2 ;;
    --arrivals) ARRIVALS=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --catchup-timeout) CATCHUP_TIMEOUT=$2; shift 2 ;;
    --retry-refused) RETRY_REFUSED=true; shift ;;
    --throttle-k) THROTTLE_K=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --batches) BATCHES=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --cells) CELLS=$2; shift 2 ;;
    --no-bound) BOUND=0; shift ;;
    --perf) PERF_DIR=$2; shift 2 ;;
    --hops) HOPS_DIR=$2; shift 2 ;;
    --unary) SESSIONS=false; shift ;;
    --send-to-all) SEND_TO_ALL=true; shift ;;
    --hedge) HEDGE="$2"; shift 2 ;;
    --ids) IDS=$2; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
(( LOAD70 )) && CELLS="1x64"
if [[ -z "$CELLS" ]]; then
  for b in $BATCHES; do for c in $CLIENTS; do CELLS+="${b}x${c} "; done; done
fi
if [[ -n "$PERF_DIR" ]]; then
  command -v perf >/dev/null || { echo "--perf needs perf (Debian: linux-perf)" >&2; exit 2; }
  mkdir -p "$PERF_DIR"
  PERF_DIR=$(cd "$PERF_DIR" && pwd)
fi
if [[ -n "$HOPS_DIR" ]]; then
  mkdir -p "$HOPS_DIR"
  HOPS_DIR=$(cd "$HOPS_DIR" && pwd)
fi
BIN=$(pwd)/build/bin
BOUND_PY=$(pwd)/tools/bench/bound.py
OVERLOAD_PY=$(pwd)/tools/bench/overload.py
source tests/integration/lib.sh
NPROC=$(nproc)
TICKS=$(getconf CLK_TCK)
WORK=$(mktemp -d)
OPEN_DIR=""
# On any exit: the open sequence's replicas stopped (by PID), then the files.
trap '[[ -z "$OPEN_DIR" ]] || stop_all "$OPEN_DIR"; rm -rf "$WORK"' EXIT

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

# CPU ticks (user + system) of the given processes' threads so far, summed
# by thread name (docs/architecture.md "Threads of a replica"): one
# "NAME TICKS" line each.
thread_ticks() {
  local p files=()
  for p in "$@"; do files+=(/proc/"$p"/task/*/stat); done
  # One pass over every thread's stat (cat skips a thread that just ended).
  # The name is between the first "(" and the last ")"; utime and stime
  # are the 12th and 13th fields after it.
  cat "${files[@]}" 2>/dev/null | awk '{
    i = index($0, "("); j = i
    for (k = i; k <= length($0); k++) if (substr($0, k, 1) == ")") j = k
    split(substr($0, j + 2), f, " ")
    t[substr($0, i + 1, j - i - 1)] += f[12] + f[13]
  } END {for (n in t) print n "\t" t[n]}'
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

MACHINE_TRANSFERS=$(echo "$CELLS" | tr ' ' '\n' | sed -n 's/x.*//p' | sort -un | paste -sd,)
if (( BOUND )); then
  "$BIN/machine-bench" --dir "$WORK" --transfers "$MACHINE_TRANSFERS" 2>/dev/null \
    >"$WORK/machine.json"
  cat "$WORK/machine.json"
  exec_bench 1 1 16 "$WORK/exec-floor.json"
  python3 "$BOUND_PY" floor --machine "$WORK/machine.json" \
    --exec "$WORK/exec-floor.json" | tee "$WORK/floor.json"
  FLOOR_MS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["latency_floor_ms"])' \
    "$WORK/floor.json")
fi

# protocol.request_queue_max = Q in FILE, and the per-client shares at most Q.
set_queue_max() {
  python3 - "$1" "$2" <<'PY'
import json, sys
path, q = sys.argv[1], int(sys.argv[2])
cfg = json.load(open(path))
p = cfg.setdefault("protocol", {})
p["requestQueueMax" if "requestQueueMax" in p else "request_queue_max"] = q
for k in ("client_calls_max", "client_queue_max"):
    p[k] = min(q, 256)
json.dump(cfg, open(path, "w"), indent=2)
PY
}

# protocol.admission_wait_ms = MS in FILE.
set_admission_wait() {
  python3 - "$1" "$2" <<'PY'
import json, sys
path, ms = sys.argv[1], int(sys.argv[2])
cfg = json.load(open(path))
cfg.setdefault("protocol", {})["admission_wait_ms"] = ms
json.dump(cfg, open(path, "w"), indent=2)
PY
}

# Starts cell DIR's cluster; the ledgerd PIDs into PIDS.
start_cluster() {
  local dir=$1 c=$2 i
  CHECKPOINT_INTERVAL=$CHECKPOINT cluster_init "$dir" 4 "$c"
  [[ -n "$QUEUE_MAX" ]] && set_queue_max "$dir/cluster.json" "$QUEUE_MAX"
  [[ -n "$ADMISSION_WAIT_MS" ]] && set_admission_wait "$dir/cluster.json" "$ADMISSION_WAIT_MS"
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
    --probes "$dir/probe-before.json" "$dir/probe-after.json" \
    --cpu-s "$(cat "$dir/cpu_s")" --wall-s "$(cat "$dir/wall_s")" --nproc "$NPROC" \
    --load "$(cat "$dir/load")" --floor-ms "$FLOOR_MS" --checkpoint-interval "$CHECKPOINT" \
    --ctx-switches "$(cat "$dir/ctx")" --threads-before "$dir/threads-before" \
    --threads-after "$dir/threads-after" --ticks-per-s "$TICKS"
}

# Ed25519's costs now, at the machine line's sizes, into FILE: the host's
# speed moves within minutes, so each cell's bound also gets the figures
# measured just before and just after it (tools/bench/bound.py, "probed").
probe() {
  "$BIN/machine-bench" --probe --transfers "$MACHINE_TRANSFERS" 2>/dev/null >"$1"
}

# ledger-bench against the cell's cluster; with the bound, the replicas'
# counters before and after, and the CPU all processes used meanwhile.
measure_cell() {
  local dir=$1 b=$2 c=$3 cpu0 ctx0 wall0
  shift 3  # The rest: more ledger-bench flags (the open loop's).
  if (( BOUND )); then
    probe "$dir/probe-before.json"
    python3 "$BOUND_PY" scrape "$dir/cluster.json" >"$dir/before.json"
    thread_ticks "${PIDS[@]}" >"$dir/threads-before"
    cpu0=$(cpu_seconds "${PIDS[@]}")
    ctx0=$(ctx_switches "${PIDS[@]}")
    wall0=$(date +%s.%N)
  fi
  TIMEFORMAT='%U %S'
  { time timeout $(( ${BENCH_SECONDS:-$DURATION} + 120 )) "$BIN/ledger-bench" \
      --config "$dir/cluster.json" --clients "$c" --batch "$b" \
      --duration "${BENCH_SECONDS:-$DURATION}" --warmup 1 --sessions="$SESSIONS" \
      --send_to_all="$SEND_TO_ALL" ${HEDGE:+--hedge_after_first="$HEDGE"} \
      --ids="$IDS" "$@" \
      2>"$dir/bench.err" \
      >"$dir/out.json" || echo "ledger-bench exited with $?" >&2; } 2>"$dir/bench-time"
  tail -1 "$dir/out.json" >"$dir/line.json"
  if (( BOUND )); then
    awk -v a="$cpu0" -v z="$(cpu_seconds "${PIDS[@]}")" \
      '{printf "%.3f", z - a + $1 + $2}' "$dir/bench-time" >"$dir/cpu_s"
    awk -v a="$wall0" -v z="$(date +%s.%N)" 'BEGIN {print z - a}' >"$dir/wall_s"
    echo $(( $(ctx_switches "${PIDS[@]}") - ctx0 )) >"$dir/ctx"
    thread_ticks "${PIDS[@]}" >"$dir/threads-after"
    python3 "$BOUND_PY" scrape "$dir/cluster.json" >"$dir/after.json"
    cut -d' ' -f1 /proc/loadavg >"$dir/load"
    probe "$dir/probe-after.json"
  fi
}

# The largest VmHWM of the replicas, in kB.
peak_rss_kb() {
  local rss=0 i kb
  for i in 0 1 2 3; do
    kb=$(awk '/VmHWM/ {print $2}' "/proc/${PIDS[$i]}/status" 2>/dev/null || echo 0)
    (( kb > rss )) && rss=$kb
  done
  echo "$rss"
}

# DIR's result line (ledger-bench's last line and the peak RSS) with its
# bound, printed and left in DIR/bounded.json.
print_cell() {
  local dir=$1 b=$2 c=$3 line
  line=$(cat "$dir/line.json")
  line="${line%\}},\"replica_peak_rss_mb\":$(( $(peak_rss_kb) / 1024 ))}"
  echo "$line" >"$dir/result.json"
  if (( BOUND )); then
    bound_line "$dir" "$b" "$c" | tee "$dir/bounded.json"
  else
    echo "$line" | tee "$dir/bounded.json"
  fi
}

# Every replica's VmRSS (kB) every 5 s into $1, its RssAnon (kB: the
# process's own memory, without the mapped LevelDB tables and libraries
# that VmRSS also counts) into $2 and, in the same round, the heap LevelDB
# holds for its two stores (kB: memtables and block caches, from
# ledger_store_memory_bytes of cluster config $4) into $3; one line per
# sample led by the seconds since the call, until killed.
sample_rss() {
  local t0 i t vm anon v a mem
  t0=$(date +%s.%N)
  while true; do
    t=$(awk -v a="$t0" -v z="$(date +%s.%N)" 'BEGIN {printf "%.1f", z - a}')
    vm=$t
    anon=$t
    for i in 0 1 2 3; do
      # One read of the status file for both figures.
      read -r v a < <(awk '/^VmRSS/ {v = $2} /^RssAnon/ {a = $2}
        END {print v + 0, a + 0}' "/proc/${PIDS[$i]}/status" 2>/dev/null || echo 0 0)
      vm+=" $v"
      anon+=" $a"
    done
    # A failed scrape counts as nothing held: RssAnon less it is then
    # larger, never smaller, than the process's own memory.
    mem=$(python3 "$OVERLOAD_PY" storemem "$4" 2>/dev/null || echo 0 0 0 0)
    echo "$vm" >>"$1"
    echo "$anon" >>"$2"
    echo "$t $mem" >>"$3"
    sleep 5
  done
}

# The open-loop sequence on one cluster: peak, 70% of peak, and with
# --overload 2 x peak for OVERLOAD seconds, then the catch-up.
open_sequence() {
  local dir peak rate70 rate2 interval
  dir=$(mktemp -d -p "$WORK")
  OPEN_DIR=$dir
  DIR=$dir  # ctl (tests/integration/lib.sh) talks to DIR's cluster.
  mkdir -p "$dir/peak" "$dir/load70" "$dir/overload"
  start_cluster "$dir" "$(( OPEN_CLIENTS > 64 ? OPEN_CLIENTS : 64 ))"
  for d in peak load70 overload; do
    ln -s ../cluster.json "$dir/$d/cluster.json"
    ln -s ../keys "$dir/$d/keys"
  done
  measure_cell "$dir/peak" 1 64
  print_cell "$dir/peak" 1 64 >/dev/null
  sed 's/^{/{"kind":"peak",/' "$dir/peak/bounded.json"
  peak=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests_per_s"])' \
    "$dir/peak/line.json")
  rate70=$(awk -v p="$peak" 'BEGIN {printf "%.1f", 0.7 * p}')
  measure_cell "$dir/load70" 1 "$OPEN_CLIENTS" --rate "$rate70" --arrivals "$ARRIVALS" \
    --seed "$SEED" --interval "$DURATION" --retry_refused="$RETRY_REFUSED" \
    --throttle_k="$THROTTLE_K"
  print_cell "$dir/load70" 1 "$OPEN_CLIENTS" >/dev/null
  sed 's/^{/{"kind":"open70",/' "$dir/load70/bounded.json"
  python3 "$OVERLOAD_PY" load70 --peak "$dir/peak/line.json" --result "$dir/load70/line.json"
  [[ -n "$OVERLOAD" ]] || { stop_all "$dir"; return 0; }
  rate2=$(awk -v p="$peak" 'BEGIN {printf "%.1f", 2 * p}')
  interval=$(( OVERLOAD >= 300 ? 60 : 10 ))
  python3 "$OVERLOAD_PY" scrape "$dir/cluster.json" >"$dir/overload/scrape0.json"
  local t0
  t0=$(date +%s.%N)
  sample_rss "$dir/overload/rss.txt" "$dir/overload/rss-anon.txt" \
    "$dir/overload/store-mem.txt" "$dir/cluster.json" &
  local sampler=$!
  BENCH_SECONDS=$OVERLOAD measure_cell "$dir/overload" 1 "$OPEN_CLIENTS" --rate "$rate2" \
    --arrivals "$ARRIVALS" --seed "$SEED" --interval "$interval" --warmup 5 \
    --retry_refused="$RETRY_REFUSED" --throttle_k="$THROTTLE_K"
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  python3 "$OVERLOAD_PY" catchup "$dir/cluster.json" --timeout "$CATCHUP_TIMEOUT" \
    | tee "$dir/overload/catchup.json"
  python3 "$OVERLOAD_PY" scrape "$dir/cluster.json" >"$dir/overload/scrape1.json"
  local wall
  wall=$(awk -v a="$t0" -v z="$(date +%s.%N)" 'BEGIN {printf "%.1f", z - a}')
  print_cell "$dir/overload" 1 "$OPEN_CLIENTS" >/dev/null
  sed 's/^{/{"kind":"open2x",/' "$dir/overload/bounded.json"
  python3 "$OVERLOAD_PY" overload --peak "$dir/peak/line.json" \
    --result "$dir/overload/out.json" --before "$dir/overload/scrape0.json" \
    --after "$dir/overload/scrape1.json" --rss "$dir/overload/rss.txt" \
    --rss-anon "$dir/overload/rss-anon.txt" --store-mem "$dir/overload/store-mem.txt" \
    --catchup "$dir/overload/catchup.json" --warmup 5 --wall-s "$wall"
  [[ -z "${KEEP_DIR:-}" ]] || cp -r "$dir/overload" "$KEEP_DIR/"
  stop_all "$dir"
}

if (( LOAD70 )); then
  open_sequence
  exit 0
fi

for cell in $CELLS; do
  b=${cell%x*}
  c=${cell#*x}
  DIR=$(mktemp -d -p "$WORK")
  if [[ -n "$HOPS_DIR" ]]; then
    rm -rf "${HOPS_DIR:?}/$b-$c"
    mkdir -p "$HOPS_DIR/$b-$c"
    export PBFT_TRACE_EVENTS="$HOPS_DIR/$b-$c/events"
  fi
  start_cluster "$DIR" "$c"
  unset PBFT_TRACE_EVENTS
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
    bound_line "$DIR" "$b" "$c" | tee -a "$WORK/cells.jsonl"
  else
    echo "$line"
  fi
  [[ -n "$PERF_DIR" ]] && summarize_perf "$b-$c"
  if [[ -n "$HOPS_DIR" ]]; then
    python3 tools/bench/hops.py "$HOPS_DIR/$b-$c"/events.* \
      | sed "s/^{/{\"kind\":\"hops\",\"batch\":$b,\"clients\":$c,/"
  fi
  rm -rf "$DIR"
done

# Which of the fast path's targets this matrix met (bound.py targets).
if (( BOUND )) && [[ -s "$WORK/cells.jsonl" ]]; then
  python3 "$BOUND_PY" targets "$WORK/cells.jsonl"
fi
