#!/usr/bin/env bash
# Runs every fuzz target for long, one after another, niced, growing a
# working corpus outside the repository (seeded from tests/fuzz/corpus) and
# printing each target's executions, coverage and findings.
#
#   tests/fuzz/run_long.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 3600; with RUNS=N in the environment a
# target also stops after N executions (libFuzzer's -runs), whichever comes
# first; TIMEOUT=S sets the per-input timeout (default 120 s, see below).
# Builds build-fuzz/ first (clang).
# Findings land in $WORK/<target>/artifacts (WORK defaults to
# build-fuzz/fuzz-work); add each reproducer to tests/fuzz/corpus/<target>/
# once it is fixed.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-3600}
shift || true
WORK=${WORK:-build-fuzz/fuzz-work}
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
nice -n 19 cmake -S . -B build-fuzz "${GEN[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++-14 -DPBFT_LEDGER_FUZZ=ON >/dev/null
nice -n 19 cmake --build build-fuzz -j "${JOBS:-2}" --target fuzzers
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=()
  for d in tests/fuzz/corpus/*/; do targets+=("$(basename "$d")"); done
fi
# malloc_context_size: ASan records 10 frames (not 30) of where each block
# was allocated and freed, a little cheaper (docs/fuzzing.md "Speed"). A
# report still has the full stack of the bad access; run a reproducer
# alone without it for all 30.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:malloc_context_size=10}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# libFuzzer's per-input timeout is wall-clock time: at nice 19 on a busy
# machine an input that takes 0.3 s alone waited up to 27 s for the CPU
# and was reported as a timeout, so the long runs allow 120 s (TIMEOUT).
# Reproduce a timeout alone before taking it for a hang.
timeout=${TIMEOUT:-120}
status=0
for t in "${targets[@]}"; do
  mkdir -p "$WORK/$t/corpus" "$WORK/$t/artifacts"
  cp -rn "tests/fuzz/corpus/$t"/. "$WORK/$t/corpus/"
  log="$WORK/$t/fuzz.log"
  flags=()
  [[ -f tests/fuzz/flags/$t ]] && read -r -a flags <"tests/fuzz/flags/$t"
  [[ -n ${RUNS:-} ]] && flags+=("-runs=$RUNS")
  echo "== $t: $seconds s, log $log"
  if ! nice -n 19 "build-fuzz/fuzz/$t" "${flags[@]}" -max_total_time="$seconds" -timeout="$timeout" \
      -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$WORK/$t/artifacts/" "$WORK/$t/corpus" >"$log" 2>&1; then
    echo "== $t: FAILED (see $log and $WORK/$t/artifacts)"
    status=1
  fi
  grep -E "^#[0-9]+[[:space:]]+DONE|stat::" "$log" || tail -5 "$log"
done
exit $status
