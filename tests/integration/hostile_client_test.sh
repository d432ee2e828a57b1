#!/usr/bin/env bash
# A hostile client speaking the wire protocol (hostile_client_test.cc)
# against a real 4-replica cluster of ledgerd processes on loopback, with
# small per-client shares and answer budgets so that each case is cheap.
#   hostile_client_test.sh BIN_DIR [TESTS_DIR]
set -euo pipefail
BIN=$1
TESTS=${2:-$BIN/../tests}
source "$(dirname "$0")/lib.sh"
DIR=$(mktemp -d)
trap 'stop_all "$DIR"; if [[ -n "${KEEP:-}" ]]; then echo "kept $DIR"; else rm -rf "$DIR"; fi' EXIT

cluster_init "$DIR" 4 2
python3 - "$DIR/cluster.json" <<'PY'
import json, sys
path = sys.argv[1]
c = json.load(open(path))
p = c.setdefault("protocol", {})
p.update({"client_calls_max": 4, "client_queue_max": 4,
          "batch_bytes_max": 1 << 20, "answer_bytes_max": 65536,
          "reply_bytes_max": 100000})
json.dump(c, open(path, "w"), indent=2)
PY
"$BIN/ledgerctl" --config "$DIR/cluster.json" config check >/dev/null || fail "config check"
for i in 0 1 2 3; do start_replica "$DIR" "$i"; done
wait_ready "$DIR" 4 60 || fail "cluster not ready within 60 s"

CLUSTER_DIR="$DIR" timeout 120 "$TESTS/hostile_client_test" >"$DIR/hostile.out" 2>&1 \
  || fail "hostile_client_test: $(grep -v "^\[ *\(RUN\|OK\) " "$DIR/hostile.out" | tail -150)"
grep -q "PASSED.*7 tests" "$DIR/hostile.out" \
  || fail "hostile_client_test did not run its 7 tests: $(tail -5 "$DIR/hostile.out")"
tail -3 "$DIR/hostile.out"

# Every replica survived it.
for i in 0 1 2 3; do
  kill -0 "$(cat "$DIR/pids/$i")" 2>/dev/null || fail "replica $i died"
done
echo "PASS"
