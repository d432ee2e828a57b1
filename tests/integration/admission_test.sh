#!/usr/bin/env bash
# Admission by expected wait on a real 4-replica cluster, far over its
# bound: an open loop of 512 clients at several times what the cluster
# orders, with protocol.admission_wait_ms 1 and the SDK failing refused
# calls (retry_refused false). The replicas refuse most calls, and
# verdicts differ between them (a call one refuses another admits). What
# must hold: no request executes after its client was told RESOURCE_EXHAUSTED,
# so the requests the cluster executed are exactly the calls that
# succeeded plus, at most, those that ended without an outcome for
# another reason (deadline). The replicas stay equal and no view changes.
# Among those calls are the ones the primary refused while the backup asked
# with it held the request on the word that the primary had it: the SDK
# sends that backup a copy without the word, and a refusal of either copy
# must not end the call while the other may be ordered (the first run must
# have sent some).
# Run twice: the second time the clients share a throttle (the SDK's
# ClientOptions::throttle, k = 1.5), whose refusals must be counted as
# refused and never execute either.
#   admission_test.sh BIN_DIR
set -euo pipefail
BIN=$1
source "$(dirname "$0")/lib.sh"
DIR=$(mktemp -d)
trap 'stop_all "$DIR"; if [[ -n "${KEEP:-}" ]]; then echo "kept $DIR"; else rm -rf "$DIR"; fi' EXIT
TOOLS=$(cd "$(dirname "$0")/../../tools/bench" && pwd)

cluster_init "$DIR" 4 512
python3 - "$DIR/cluster.json" <<'PY'
import json, sys
path = sys.argv[1]
cfg = json.load(open(path))
cfg.setdefault("protocol", {})["admission_wait_ms"] = 1
json.dump(cfg, open(path, "w"), indent=2)
PY
for i in 0 1 2 3; do start_replica "$DIR" "$i"; done
wait_ready "$DIR" 4 60 || fail "cluster not ready within 60 s"

scrape() { python3 "$TOOLS/overload.py" scrape "$DIR/cluster.json"; }
for k in 0 1.5; do
  scrape >"$DIR/before-$k.json"
  timeout 120 "$BIN/ledger-bench" --config "$DIR/cluster.json" --clients 512 \
    --batch 1 --duration 6 --warmup 0 --rate 6000 --deadline 20 \
    --retry_refused=false --throttle_k="$k" >"$DIR/bench-$k.json" 2>"$DIR/bench.err" \
    || fail "ledger-bench: $(tail -3 "$DIR/bench.err")"
  wait_all_equal 60
  scrape >"$DIR/after-$k.json"

  python3 - "$k" "$DIR/bench-$k.json" "$DIR/before-$k.json" "$DIR/after-$k.json" <<'PY'
import json, sys
throttle_k = float(sys.argv[1])
bench = [json.loads(l) for l in open(sys.argv[2]) if l.startswith("{")][-1]
before, after = (json.load(open(p))["replicas"] for p in sys.argv[3:5])
executed = [a["executed_requests"] - b["executed_requests"]
            for a, b in zip(after, before)]
views = [a["view_changes"] - b["view_changes"] for a, b in zip(after, before)]
refusals = sum(a["admission_wait"] - b["admission_wait"]
               for a, b in zip(after, before))
# Warm-up and drain included.
acc = bench["accounting"]
served, refused = acc["served"], acc["refused"]
other = acc["completed"] - served - refused  # No outcome, another reason.
print(f"throttle k {throttle_k}: throttled {bench['sdk_throttled']}, "
      f"words withdrawn {bench['sdk_words_withdrawn']}, "
      f"served {served}, refused {refused}, other errors {other}, "
      f"executed {executed}, refusals for the wait {refusals}, "
      f"accounting {acc}, by status (measured span) {bench['by_status']}")
def fail(why):
    print("FAIL: " + why, file=sys.stderr)
    sys.exit(1)
if acc["unfinished"] != 0:
    fail(f"calls still in flight after the drain: {acc}")
if refused == 0 or refusals == 0:
    fail("nothing was refused: the load did not reach the bound")
if served == 0:
    fail("nothing was served")
if throttle_k > 0 and not 0 < bench["sdk_throttled"] <= refused:
    fail(f"throttled {bench['sdk_throttled']} of {refused} refused")
if throttle_k == 0 and bench["sdk_throttled"] != 0:
    fail("throttled without a throttle")
if throttle_k == 0 and bench["sdk_words_withdrawn"] == 0:
    fail("no copy without the word was sent: that case was not exercised")
# Replica 0's count (the others may have fetched some blocks instead).
if not served <= executed[0] <= served + other:
    fail(f"{executed[0]} requests executed for {served} calls served and "
         f"{other} without an outcome: {executed[0] - served - other} of the "
         f"{refused} calls told RESOURCE_EXHAUSTED executed")
if any(views):
    fail(f"view changes: {views}")
PY
done
echo "PASS"
