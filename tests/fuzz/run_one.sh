#!/usr/bin/env bash
# One fuzz target, briefly (the ctest label `fuzz`): replays the committed
# corpus (every regression input in it), then fuzzes for SECONDS into a
# scratch copy. Exits non-zero on any crash, leak, timeout or sanitizer
# report; the reproducer is left in the scratch directory and named in the
# output.
#   run_one.sh FUZZER CORPUS_DIR SECONDS
set -euo pipefail
fuzzer=$1 corpus=$2 seconds=$3
# Extra libFuzzer flags of this target, if any (tests/fuzz/flags/<target>).
flags=()
flags_file="$(dirname "$0")/flags/$(basename "$fuzzer")"
[[ -f $flags_file ]] && read -r -a flags <"$flags_file"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/fuzz.XXXXXX")
mkdir "$scratch/corpus" "$scratch/artifacts"
cp -r "$corpus"/. "$scratch/corpus/"
echo "fuzzer $fuzzer: scratch $scratch"
# malloc_context_size: ASan records 10 frames (not 30) of where each block
# was allocated and freed, a little cheaper (docs/fuzzing.md "Speed"). A
# report still has the full stack of the bad access; run a reproducer
# alone without it for all 30.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:malloc_context_size=10}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
"$fuzzer" "${flags[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$scratch/artifacts/" \
  "$scratch/corpus"
rm -rf "$scratch"
