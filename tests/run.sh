#!/usr/bin/env bash
# The test command: installs what is missing, builds into build/, runs every
# test. Exits non-zero on any failure. `.ci/run` calls exactly this.
#
#   tests/run.sh                  everything (CI)
#   SANITIZE=0 tests/run.sh       skip the ASan+UBSan build
#   FUZZ=0 tests/run.sh           skip the libFuzzer build and its brief runs
#   JOBS=N tests/run.sh           build parallelism (default: nproc)
#   SOAK=0 tests/run.sh           skip the 2-minute crash soak (ctest -L soak)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=${JOBS:-$(nproc)}
SANITIZE=${SANITIZE:-1}
FUZZ=${FUZZ:-1}
start=$(date +%s)

log() { echo "== tests/run.sh: $*"; }

log "dependencies"
bash deploy/install-deps.sh

GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)

log "configure + build (build/)"
cmake -S . -B build "${GEN[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$JOBS"
built=$(date +%s)
log "build took $((built - start)) s"

log "unit, simulation, integration tests and source checks (ctest)"
# The 2-minute crash soak (label soak) runs with everything else; SOAK=0
# leaves it out (a quicker local run). The source checks (label lint,
# tests/lint) run here only, not in the sanitizer pass (no_sanitize).
# tests/tsan.sh, the ThreadSanitizer pass, is separate: its build is long.
SOAK_FILTER=()
[[ "${SOAK:-1}" == "0" ]] && SOAK_FILTER=(-LE soak)
# ctest shows no output of a skipped test: say here why container_pods skips.
[[ -z "${PBFT_LEDGER_SKIP_CONTAINER_TESTS:-}" ]] ||
  log "container_pods skips itself: $PBFT_LEDGER_SKIP_CONTAINER_TESTS"
(cd build && ctest --output-on-failure -j "$JOBS" --timeout 600 "${SOAK_FILTER[@]}")

log "proto lint (buf)"
bash tests/lint_proto.sh

# The sanitizer pass leaves out the multi-process tests (label
# multiprocess: real ledgerd clusters, the soak, the containers): they ran
# above, and the replica loop they drive (ReplicaNode: persist, send,
# execute on the real ledger, serve fetches, reply) runs under the
# sanitizers in the pbft-sim smoke ranges and replica_node_test.
if [[ "$SANITIZE" == "1" ]]; then
  log "ASan + UBSan build (build-asan/) and tests"
  cmake -S . -B build-asan "${GEN[@]}" -DCMAKE_BUILD_TYPE=Debug -DPBFT_LEDGER_SANITIZE=ON >/dev/null
  cmake --build build-asan -j "$JOBS"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest --output-on-failure -j "$JOBS" --timeout 900 -LE 'no_sanitize|multiprocess')
fi

if [[ "$FUZZ" == "1" ]]; then
  # Only the fuzz targets and what they link are built here (clang).
  log "libFuzzer build (build-fuzz/) and a brief run of every target"
  cmake -S . -B build-fuzz "${GEN[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++-14 -DPBFT_LEDGER_FUZZ=ON >/dev/null
  cmake --build build-fuzz -j "$JOBS" --target fuzzers
  (cd build-fuzz && ctest --output-on-failure -L fuzz)
fi

log "all tests passed in $(( $(date +%s) - start )) s"
