#!/usr/bin/env bash
# Planted-bug score of the PBFT core's tests (docs/simulator.md, "Planted
# bugs"). For each patch in tests/mutation/patches/ (one bug of one to three
# lines in one file of replica/core/, first line "# bug: <description>"), in
# a scratch copy of the source tree with its own build dir:
#   1. apply the patch (GNU patch, with context; one that no longer applies
#      is reported "patch stale" and fails the run),
#   2. build core_scenario_test and pbft-sim,
#   3. run the scripted core tests (core_scenario_test without the
#      Simulator.* seed runs), then every pbft-sim seed range ctest
#      registers (read from `ctest -N -V -L sim` of the scratch build, in
#      ctest order), each seed range until its first failing seed,
#   4. stop at the first catch by a scripted test or a rule checker. A
#      liveness failure (requests not completing, views not settling) is
#      noted and the search goes on: the bug counts as caught only by a
#      test or checker of a protocol rule.
# Every catch is replayed on the unpatched build, which must pass it.
# Prints one table row per bug: bug, caught by, message, first seed, seconds
# from the end of the build to the catch. Exit status 0 only if every bug is
# caught by a scripted test or a rule checker; 1 otherwise; 2 on usage or
# set-up errors. The worktree is never modified: the copy and its build live
# in --work (default build/mutation, ignored by git).
#
#   tests/mutation/run.sh [--work DIR] [--only SUBSTRING]... [--jobs N]
#                         [--sim-only] [--patches DIR]
# --sim-only skips the scripted tests: which seed and checker catch a bug.
# --patches takes the patches from DIR instead of tests/mutation/patches.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
PATCH_DIR="$REPO/tests/mutation/patches"
WORK="$REPO/build/mutation"
JOBS=2
ONLY=()
SIM_ONLY=0
RUN_TIMEOUT=300 # Seconds per test binary run, as ctest's TIMEOUT.

usage() {
  sed -n 's/^#   //p' "$0" >&2
  exit 2
}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --work) WORK=$2; shift 2 ;;
    --only) ONLY+=("$2"); shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --sim-only) SIM_ONLY=1; shift ;;
    --patches) PATCH_DIR=$(cd "$2" && pwd); shift 2 ;;
    -h | --help) usage ;;
    *) echo "run.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --jobs: a positive number" >&2; exit 2; }
for tool in git patch cmake ninja ctest timeout; do
  command -v "$tool" > /dev/null || { echo "run.sh: $tool not found" >&2; exit 2; }
done
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
case "$WORK/" in
  "$REPO/build"*/) ;;
  "$REPO"/*) echo "run.sh: --work inside the source tree must be under build/" >&2; exit 2 ;;
esac
TREE="$WORK/tree"
BUILD="$TREE/build"
LOGS="$WORK/logs"
PRISTINE="$WORK/pristine" # Unpatched binaries, to replay each catch.
mkdir -p "$TREE" "$LOGS" "$PRISTINE"
export CCACHE_BASEDIR="$WORK" CCACHE_NOHASHDIR=1

# The tree: the worktree's tracked and untracked (not ignored) files. A file
# is copied only when its content differs, so that ninja rebuilds only what
# changed.
sync_tree() {
  local stage="$WORK/stage"
  rm -rf "$stage" && mkdir -p "$stage"
  # shellcheck disable=SC2016 # $f expands in the inner shell.
  (cd "$REPO" && git ls-files -z --cached --others --exclude-standard |
    xargs -0 -r sh -c 'for f; do [ -f "$f" ] && printf "%s\0" "$f"; done' sh |
    tar --null -T - -cf -) | tar -xf - -C "$stage"
  (cd "$stage" && find . -type f -print0) | while IFS= read -r -d '' f; do
    if ! cmp -s "$stage/$f" "$TREE/$f"; then
      mkdir -p "$(dirname "$TREE/$f")" && cp "$stage/$f" "$TREE/$f"
    fi
  done
  (cd "$TREE" && find . -path ./build -prune -o -type f -print0) |
    while IFS= read -r -d '' f; do
      [[ -e "$stage/$f" ]] || rm -f "$TREE/$f"
    done
}

# Files the patches touch, restored from the worktree (a fresh mtime: ninja
# recompiles them) before and after each bug.
patched_files() {
  sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' "$PATCH_DIR"/*.patch | sort -u
}
restore_tree() {
  local f
  for f in $(patched_files); do
    cmp -s "$REPO/$f" "$TREE/$f" || cp "$REPO/$f" "$TREE/$f"
  done
}

build() {
  nice -n 10 cmake --build "$BUILD" -j "$JOBS" --target core_scenario_test pbft-sim
}

configure() {
  [[ -f "$BUILD/build.ninja" ]] && return 0
  # No debug info: the score needs none, and the per-bug rebuilds are faster.
  cmake -S "$TREE" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -DNDEBUG" \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -DNDEBUG"
}

# "name<TAB>args" of every pbft-sim seed range ctest registers, in order.
sim_ranges() {
  (cd "$BUILD" && ctest -N -V -L '^sim' 2>/dev/null) | awk '
    / Test command: / {
      cmd = $0; sub(/.*Test command: */, "", cmd); gsub(/"/, "", cmd)
      n = split(cmd, a, " "); args = ""
      for (i = 1; i <= n; ++i) if (a[i] ~ /^--/) { args = args " " a[i] " " a[i + 1]; ++i }
      next
    }
    /^ *Test +#[0-9]+: / { name = $NF; if (args != "") print name "\t" args; args = "" }'
}

# Liveness failures (and hangs) do not count as catches by a rule.
is_liveness() {
  [[ "$1" =~ ^(liveness|idle\ catch-up|view:\ a\ correct|rejoin:|timeout) ]]
}

# The checker behind a pbft-sim failure message.
checker_of() {
  case "$1" in
    *persist-before-send*) echo "persist-before-send" ;;
    *"entered by a"*NEW-VIEW*) echo "NEW-VIEW O recomputed from V" ;;
    *"VIEW-CHANGEs and no timer expiry"*) echo "joins on f+1 or own timer" ;;
    *"view-change timeout is"*) echo "timeout back at base" ;;
    *"lost its prepared certificate"*) echo "certificates survive restart" ;;
    *"prepared certificates conflict"*) echo "prepared certificates" ;;
    agreement:* | *"executes seq"*) echo "agreement" ;;
    exactly-once:*) echo "exactly-once" ;;
    chain:*) echo "one chain" ;;
    "views: "*) echo "views bounded" ;;
    acknowledged*) echo "no acknowledged request lost" ;;
    *certificate* | *pre-prepare* | *"batch digest"* | *"batch fields"*) echo "certified blocks" ;;
    *"cannot restart"*) echo "restart" ;;
    crash*) echo "core CHECK" ;;
    *) if is_liveness "$1"; then echo "liveness"; else echo "core invariants / other"; fi ;;
  esac
}

# Scripted tests: prints "test<TAB>message" of the first failure, or
# nothing if they all pass.
run_scripted() {
  local bin=$1 log=$2 rc=0
  timeout "$RUN_TIMEOUT" nice -n 10 "$bin" --gtest_filter='-Simulator.*' \
    --gtest_fail_fast > "$log" 2>&1 || rc=$?
  [[ $rc -eq 0 ]] && return 0
  local name msg
  name=$(sed -n 's/^\[  FAILED  \] \([^ ,]*\).*/\1/p' "$log" | head -1)
  # The assertion: up to three lines after "Failure", on one line.
  msg=$(awk '/: Failure$/ { for (i = 0; i < 3 && (getline l) > 0 && l != ""; ++i)
                              m = m (i ? " / " : "") l; print m; exit }' "$log" |
    sed 's/  */ /g' | cut -c1-200)
  if [[ -z "$name" ]]; then
    name=$(sed -n 's/^\[ RUN      \] //p' "$log" | tail -1)
    msg=$([[ $rc -eq 124 ]] && echo "timeout after ${RUN_TIMEOUT}s" ||
      echo "crash (exit $rc): $(grep -m1 -E 'Check failed|CHECK|Assertion' "$log" || true)")
  fi
  printf '%s\t%s\n' "${name:-core_scenario_test}" "${msg:-exit $rc}"
}

# One seed range from `first` until its first failing seed: prints
# "seed<TAB>message" of it, or nothing if every seed passed.
run_range() {
  local bin=$1 log=$2 first=$3 seeds=$4; shift 4
  local rc=0
  timeout "$RUN_TIMEOUT" nice -n 10 "$bin" "$@" --first-seed "$first" \
    --seeds "$seeds" --stop-at-failure > "$log" 2>&1 || rc=$?
  [[ $rc -eq 0 ]] && return 0
  local seed msg
  seed=$(sed -n 's/^seed \([0-9]*\) FAILED.*/\1/p' "$log" | head -1)
  msg=$(sed -n 's/^  failure: //p' "$log" | head -1)
  if [[ -z "$seed" ]]; then
    # Killed or crashed inside a seed: the one after the last printed.
    seed="$first+"
    msg=$([[ $rc -eq 124 ]] && echo "timeout after ${RUN_TIMEOUT}s" ||
      echo "crash (exit $rc): $(grep -m1 -E 'Check failed|CHECK' "$log" || true)")
  fi
  printf '%s\t%s\n' "$seed" "$msg"
}

arg_of() { # arg_of --flag args...
  local flag=$1; shift
  while [[ $# -gt 1 ]]; do [[ "$1" == "$flag" ]] && { echo "$2"; return; }; shift; done
}

# The pbft-sim catch replays on the unpatched binary: it must pass there.
replays_clean() { # args: seed sim-args...
  local seed=$1; shift
  [[ "$seed" =~ ^[0-9]+$ ]] || return 0
  local a=() skip=0 x
  for x in "$@"; do
    if [[ $skip -eq 1 ]]; then skip=0; continue; fi
    case "$x" in --seeds | --first-seed) skip=1 ;; *) a+=("$x") ;; esac
  done
  timeout "$RUN_TIMEOUT" "$PRISTINE/pbft-sim" "${a[@]}" --first-seed "$seed" \
    --seeds 1 > /dev/null 2>&1
}

ROWS=()
FAILED=0
row() { # bug caught-by message first-seed seconds verdict
  ROWS+=("$(printf '| %s | %s | %s | %s | %s |' "$1" "$2" "$3" "$4" "$5")")
  echo "  -> $2: $3 (first: $4, ${5}s)"
}

# Sets CAUGHT_BY (test or seed range), KIND (scripted test or checker), MSG,
# SEED and VERDICT (caught | liveness only | escaped | not the bug).
hunt() {
  local name=$1 out
  local bin_test="$BUILD/tests/core_scenario_test" bin_sim="$BUILD/bin/pbft-sim"
  LIVE="" LIVE_SEED="-" out=""
  [[ $SIM_ONLY -eq 1 ]] || out=$(run_scripted "$bin_test" "$LOGS/$name.scripted.log")
  if [[ -n "$out" ]]; then
    CAUGHT_BY="${out%%$'\t'*}"; MSG=${out#*$'\t'}; SEED="-"; KIND="scripted test"
    if is_liveness "$MSG"; then LIVE="$CAUGHT_BY: $MSG"; else VERDICT=caught; return; fi
  fi
  local range args first seeds end
  while IFS=$'\t' read -r range args; do
    [[ -z "$range" ]] && continue
    # shellcheck disable=SC2206
    local argv=($args)
    first=$(arg_of --first-seed "${argv[@]}")
    seeds=$(arg_of --seeds "${argv[@]}")
    end=$((first + seeds))
    while [[ $first -lt $end ]]; do
      out=$(run_range "$bin_sim" "$LOGS/$name.sim.log" "$first" $((end - first)) "${argv[@]}")
      [[ -z "$out" ]] && break
      SEED=${out%%$'\t'*}; MSG=${out#*$'\t'}
      CAUGHT_BY="$range"; KIND=$(checker_of "$MSG")
      if ! replays_clean "$SEED" "${argv[@]}"; then
        CAUGHT_BY="$range (seed fails unpatched too)"; VERDICT="not the bug"; return
      fi
      if ! is_liveness "$MSG"; then VERDICT=caught; return; fi
      [[ -z "$LIVE" ]] && LIVE="$CAUGHT_BY: $MSG" && LIVE_SEED=$SEED
      [[ "$SEED" =~ ^[0-9]+$ ]] || break
      first=$((SEED + 1))
    done
  done < <(sim_ranges)
  if [[ -n "$LIVE" ]]; then
    VERDICT="liveness only"; CAUGHT_BY="${LIVE%%: *}"; MSG="${LIVE#*: }"
    SEED=$LIVE_SEED
  else
    VERDICT=escaped; CAUGHT_BY="nothing"; MSG="-"; SEED="-"
  fi
}

START=$(date +%s)
echo "== scratch tree: $TREE"
sync_tree
restore_tree
configure > "$LOGS/configure.log" 2>&1 || { echo "configure failed: $LOGS/configure.log" >&2; exit 2; }
echo "== build, unpatched"
build > "$LOGS/pristine.build.log" 2>&1 || { echo "build failed: $LOGS/pristine.build.log" >&2; exit 2; }
cp "$BUILD/bin/pbft-sim" "$PRISTINE/pbft-sim"
if [[ -n "$(run_scripted "$BUILD/tests/core_scenario_test" "$LOGS/pristine.scripted.log")" ]]; then
  echo "the scripted tests fail without any bug: $LOGS/pristine.scripted.log" >&2
  exit 2
fi
[[ -n "$(sim_ranges)" ]] || { echo "ctest lists no pbft-sim seed range" >&2; exit 2; }
echo "   $(sim_ranges | wc -l) seed ranges"

shopt -s nullglob
patches=("$PATCH_DIR"/*.patch)
[[ ${#patches[@]} -gt 0 ]] || { echo "no patches in $PATCH_DIR" >&2; exit 2; }
for p in "${patches[@]}"; do
  name=$(basename "$p" .patch)
  if [[ ${#ONLY[@]} -gt 0 ]]; then
    keep=0
    for o in "${ONLY[@]}"; do [[ "$name" == *"$o"* ]] && keep=1; done
    [[ $keep -eq 1 ]] || continue
  fi
  desc=$(sed -n '1s/^# bug: //p' "$p")
  echo "== $name: ${desc:-(no '# bug:' header)}"
  restore_tree
  if ! patch -d "$TREE" -p1 --batch --forward --dry-run -F1 < "$p" > "$LOGS/$name.patch.log" 2>&1 ||
    ! patch -d "$TREE" -p1 --batch --forward -F1 --no-backup-if-mismatch < "$p" >> "$LOGS/$name.patch.log" 2>&1; then
    restore_tree
    row "$name" "PATCH STALE" "does not apply: $LOGS/$name.patch.log" "-" "-"
    FAILED=1
    continue
  fi
  if ! build > "$LOGS/$name.build.log" 2>&1; then
    restore_tree
    row "$name" "BUILD FAILED" "$LOGS/$name.build.log" "-" "-"
    FAILED=1
    continue
  fi
  t0=$(date +%s)
  hunt "$name"
  secs=$(($(date +%s) - t0))
  case "$VERDICT" in
    caught) row "$name" "$CAUGHT_BY" "$KIND: $MSG" "$SEED" "$secs" ;;
    *) row "$name" "${VERDICT^^}: $CAUGHT_BY" "$MSG" "$SEED" "$secs"; FAILED=1 ;;
  esac
done
restore_tree
build > "$LOGS/restore.build.log" 2>&1 || true
[[ ${#ROWS[@]} -gt 0 ]] || { echo "no patch matches --only" >&2; exit 2; }

echo
echo "| bug | caught by | checker: message | first seed | s |"
echo "|---|---|---|---:|---:|"
printf '%s\n' "${ROWS[@]}"
echo
echo "total: $(($(date +%s) - START)) s; logs in $LOGS"
exit "$FAILED"
