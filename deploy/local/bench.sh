#!/usr/bin/env bash
# The benchmark matrix of docs/benchmarks.md: a fresh 4-replica loopback
# cluster per cell, ledger-bench at batch B x clients C for D seconds, and
# each replica's peak RSS (VmHWM). Prints one JSON line per cell.
#   deploy/local/bench.sh [--duration D] [--batches "1 100"] [--clients "1 16 64"]
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=10
BATCHES="1 100"
CLIENTS="1 16 64"
while [[ $# -gt 0 ]]; do
  case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --batches) BATCHES=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
BIN=$(pwd)/build/bin
source tests/integration/lib.sh
for b in $BATCHES; do
  for c in $CLIENTS; do
    DIR=$(mktemp -d)
    CHECKPOINT_INTERVAL=128 cluster_init "$DIR" 4 "$c"
    for i in 0 1 2 3; do start_replica "$DIR" "$i"; done
    wait_ready "$DIR" 4 60 || { echo "cluster not ready" >&2; exit 1; }
    line=$("$BIN/ledger-bench" --config "$DIR/cluster.json" --clients "$c" --batch "$b" \
      --duration "$DURATION" --warmup 1 2>/dev/null | tail -1)
    rss=0
    for i in 0 1 2 3; do
      pid=$(cat "$DIR/pids/$i")
      kb=$(awk '/VmHWM/ {print $2}' "/proc/$(pgrep -P "$pid" ledgerd || echo "$pid")/status" 2>/dev/null || echo 0)
      (( kb > rss )) && rss=$kb
    done
    stop_all "$DIR"
    rm -rf "$DIR"
    echo "${line%\}},\"replica_peak_rss_mb\":$((rss / 1024))}"
  done
done
