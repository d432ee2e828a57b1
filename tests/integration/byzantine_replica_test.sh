#!/usr/bin/env bash
# One faulty replica must not stop, stall or exhaust the correct ones.
# Replica 3's slot is played by tests/integration/byzantine_replica.cc with
# replica 3's real key, while ledger-bench drives load through the cluster:
#   0. baseline: four correct replicas;
#   1. replica 2 is down (so the attacker's votes are needed for a quorum);
#      the attacker sends every vote and checkpoint padded, then plain;
#   2. replica 2 comes back and must catch up from the two correct peers
#      that now hold the certificates formed during the attack; then the
#      attacker is gone and the three correct replicas must keep ordering
#      without it;
#   3. the attacker floods FETCH requests and out-of-window votes while
#      the three correct replicas order;
#   4. the attacker stops reading its streams (the others' send queues to
#      it fill up) while load runs;
#   5. the real replica 3 returns; every replica ends with the same head
#      hash and state digest, every chain verifies, and each correct
#      replica's peak RSS stayed under the budget.
#   byzantine_replica_test.sh BIN_DIR TESTS_DIR
set -euo pipefail
BIN=$1
TESTS=$(cd "$2" && pwd)
source "$(dirname "$0")/lib.sh"
DIR=$(mktemp -d)
ATTACKER=
cleanup() {
  [[ -n "$ATTACKER" ]] && kill -KILL "$ATTACKER" 2>/dev/null || true
  stop_all "$DIR"
  if [[ -n "${KEEP:-}" ]]; then echo "kept $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
RSS_BUDGET_MB=${RSS_BUDGET_MB:-512}
# Longest time without a completed request once the attacker is silent:
# one view change (its timeout doubles at most a few times) plus catch-up.
GAP_MAX_MS=${GAP_MAX_MS:-10000}

bench() {  # bench SECONDS NAME -> prints the JSON line, saves it
  "$BIN/ledger-bench" --config "$DIR/cluster.json" --clients 4 --batch 10 \
    --duration "$1" --warmup 0 --deadline 20 >"$DIR/bench-$2.out" 2>"$DIR/bench-$2.err" || true
  tail -1 "$DIR/bench-$2.out"
}
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], ""))' "$1" "$2"; }
attack() {  # attack ATTACKS ATTACK_S SILENT_S
  "$TESTS/byzantine-replica" --config "$DIR/cluster.json" --id 3 \
    --key "$DIR/keys/replica-3.key" --attack "$1" --attack-seconds "$2" \
    --silent-seconds "$3" --pad-bytes "${PAD_BYTES:-200000}" --rate 4000 \
    >"$DIR/attacker-$1.out" 2>"$DIR/attacker-$1.err" &
  ATTACKER=$!
}
peak_rss_mb() { awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$(cat "$DIR/pids/$1")/status"; }

cluster_init "$DIR" 4 4
for i in 0 1 2 3; do start_replica "$DIR" "$i"; done
wait_ready "$DIR" 4 60 || fail "cluster not ready"

# 0. Baseline.
base=$(bench 5 baseline)
echo "baseline: $base"
base_rps=$(field "$base" requests_per_s)

# 1. The attacker takes replica 3's slot and votes on what it sees; then
#    replica 2 goes down, so the attacker's votes are needed for every
#    quorum, and each of them arrives padded first, plain second.
stop_replica "$DIR" 3 TERM
attack pad 120 10
sleep 3
stop_replica "$DIR" 2 TERM
during=$(bench 6 pad)
echo "attacker padding (replica 2 down): $during"
[[ "$(field "$during" requests)" -gt 0 ]] || fail "no request completed while the attacker padded: $during"

# 2. Replica 2 returns while the attacker still votes: it must catch up
#    from the two correct peers that hold what was certified during the
#    attack. Then the attacker is gone, and the three correct replicas
#    must order without it.
start_replica "$DIR" 2
wait_caught_up_to() {  # WHO REF SECONDS
  local target got deadline
  target=$(executed_of "$2"); deadline=$(( $(date +%s) + $3 ))
  while (( $(date +%s) < deadline )); do
    got=$(executed_of "$1")
    if [[ -n "$got" && "$got" -ge "$target" ]]; then echo "replica $1 caught up to $target"; return 0; fi
    sleep 0.5
  done
  fail "replica $1 did not catch up to $target (at ${got:-?})"
}
wait_caught_up_to 2 0 60
kill -KILL "$ATTACKER" 2>/dev/null || true; wait "$ATTACKER" 2>/dev/null || true; ATTACKER=
after=$(bench 10 after-pad)
echo "after the padding attack, attacker gone: $after"
[[ "$(field "$after" requests)" -gt 0 ]] || fail "no request completed after the attack: $after"
gap=$(field "$after" max_gap_ms)
(( ${gap%.*} <= GAP_MAX_MS )) || fail "stalled ${gap} ms after the attack (max ${GAP_MAX_MS}): $after"

# 3. FETCH and vote floods while the three correct replicas order: they
#    must not slow the primary into a view change.
view_before=$(view_of 0)
attack fetch-flood,vote-flood 10 2
flood=$(bench 10 flood)
echo "attacker flooding FETCH and votes: $flood"
[[ "$(field "$flood" requests)" -gt 0 ]] || fail "no request completed under the flood: $flood"
gap=$(field "$flood" max_gap_ms)
(( ${gap%.*} <= GAP_MAX_MS )) || fail "stalled ${gap} ms under the flood (max ${GAP_MAX_MS}): $flood"
wait "$ATTACKER" 2>/dev/null || true; ATTACKER=
view_after=$(view_of 0)
[[ "$view_before" == "$view_after" ]] || fail "the flood forced a view change (view $view_before -> $view_after)"

# 4. A peer that stops reading.
attack no-read 10 2
noread=$(bench 10 no-read)
echo "attacker not reading: $noread"
[[ "$(field "$noread" requests)" -gt 0 ]] || fail "no request completed while a peer did not read: $noread"
wait "$ATTACKER" 2>/dev/null || true; ATTACKER=
[[ "$(view_of 0)" == "$view_after" ]] || fail "a peer that did not read forced a view change"

# 5. The real replica 3 returns; same chain everywhere; memory stayed bounded.
start_replica "$DIR" 3
wait_caught_up_to 3 0 90
for i in 0 1 2; do
  rss=$(peak_rss_mb "$i")
  echo "replica $i peak RSS ${rss} MB (budget ${RSS_BUDGET_MB} MB)"
  (( rss <= RSS_BUDGET_MB )) || fail "replica $i peak RSS ${rss} MB over budget"
done
for i in 0 1 2; do  # Which refusals moved, per correct replica.
  python3 - "$DIR/cluster.json" "$i" <<'PY' || true
import json, sys, urllib.request
addr = json.load(open(sys.argv[1]))["replicas"][int(sys.argv[2])]["metrics_address"]
body = urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()
moved = [l for l in body.splitlines()
         if l.startswith(("ledger_messages_dropped_total", "ledger_peer_messages_refused_total")) and not l.endswith(" 0")]
print(f"replica {sys.argv[2]} drops:", "; ".join(moved) or "none")
PY
done
echo "requests/s: baseline ${base_rps}; after padding $(field "$after" requests_per_s) (longest gap $(field "$after" max_gap_ms) ms); under floods $(field "$flood" requests_per_s) (longest gap $(field "$flood" max_gap_ms) ms); peer not reading $(field "$noread" requests_per_s) (longest gap $(field "$noread" max_gap_ms) ms)"
ANY_BAD_EXIT=0
stop_all "$DIR"
(( ANY_BAD_EXIT == 0 )) || fail "a replica did not exit cleanly on SIGTERM"
# Every chain verifies, and all four agree (ledgerctl verify --compare).
"$BIN/ledgerctl" verify --data-dir "$DIR/data-0" \
  --compare "$DIR/data-1,$DIR/data-2,$DIR/data-3" >"$DIR/verify" 2>&1 \
  || fail "verify/compare: $(tail -5 "$DIR/verify")"
grep -q "compare: ok: 4 chains agree" "$DIR/verify" || fail "chains differ: $(tail -5 "$DIR/verify")"
tail -1 "$DIR/verify"
echo "byzantine_replica_test: ok"
