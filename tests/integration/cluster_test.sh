#!/usr/bin/env bash
# A real 4-replica cluster of ledgerd processes on loopback, driven through
# ledgerctl and ledger-bench: accounts and transfers with their result
# codes, idempotent retries, a crashed replica, a graceful restart of the
# whole cluster from its data directories, offline verification of every
# replica's chain and their comparison, blocks and receipts from the
# running cluster.
#   cluster_test.sh BIN_DIR [TESTS_DIR]
set -euo pipefail
BIN=$1
TESTS=${2:-$BIN/../tests}
source "$(dirname "$0")/lib.sh"
DIR=$(mktemp -d)
trap 'stop_all "$DIR"; if [[ -n "${KEEP:-}" ]]; then echo "kept $DIR"; else rm -rf "$DIR"; fi' EXIT

cluster_init "$DIR" 4 2
# A negative trim interval is a usage error that names the flag.
set +e
timeout 20 "$BIN/ledgerd" --config "$DIR/cluster.json" --id 0 --data-dir "$DIR/data-x" \
  --memory-trim-s -1 >"$DIR/out" 2>&1; rc=$?
set -e
[[ $rc == 2 ]] && grep -q -- "--memory-trim-s" "$DIR/out" || fail "negative --memory-trim-s: rc=$rc $(cat "$DIR/out")"
# So is a background priority outside 0-19.
set +e
timeout 20 "$BIN/ledgerd" --config "$DIR/cluster.json" --id 0 --data-dir "$DIR/data-x" \
  --storage-nice 20 >"$DIR/out" 2>&1; rc=$?
set -e
[[ $rc == 2 ]] && grep -q -- "--storage-nice" "$DIR/out" || fail "--storage-nice 20: rc=$rc $(cat "$DIR/out")"
# The idle main thread returns free memory every second here (default 10).
export LEDGERD_FLAGS="--memory-trim-s 1"
for i in 0 1 2 3; do start_replica "$DIR" "$i"; done
wait_ready "$DIR" 4 60 || fail "cluster not ready within 60 s"
echo "cluster ready"

# Genesis: client 1 owns account 1, client 2 owns account 2, 1e9 each.
ctl balance --account 1 | grep -q "balance 1000000000" || fail "genesis balance"

# Create an account and move money into it.
ctl create-account --id 100 --ledger 1 | grep -q RESULT_CODE_OK || fail "create-account"
ctl transfer --id 5001 --from 1 --to 100 --amount 250 --memo "first" | grep -q RESULT_CODE_OK \
  || fail "transfer"
ctl balance --account 100 | grep -q "balance 250" || fail "balance after transfer"
ctl balance --account 1 | grep -q "balance 999999750" || fail "debit after transfer"
# A linearizable (ordered) read sees the same.
ctl balance --account 100 --linearizable | grep -q "balance 250" || fail "linearizable read"

# Retrying the same transfer id is idempotent: EXISTS, no second debit.
ctl transfer --id 5001 --from 1 --to 100 --amount 250 --memo "first" | grep -q RESULT_CODE_EXISTS \
  || fail "idempotent retry"
ctl balance --account 100 | grep -q "balance 250" || fail "retry moved money twice"

# Result codes come back per operation, with exit status 3.
set +e
ctl transfer --id 5002 --from 100 --to 1 --amount 1000 >"$DIR/out" 2>&1; rc=$?
set -e
[[ $rc == 3 ]] && grep -q INSUFFICIENT_FUNDS "$DIR/out" || fail "overdraft: rc=$rc $(cat "$DIR/out")"
set +e
CLIENT=2 ctl transfer --id 5003 --from 1 --to 2 --amount 5 >"$DIR/out" 2>&1; rc=$?
set -e
[[ $rc == 3 ]] && grep -q NOT_OWNER "$DIR/out" || fail "not owner: rc=$rc $(cat "$DIR/out")"
ctl get-transfer --id 5001 | grep -q "amount 250" || fail "get-transfer"
ctl history --account 100 --json | grep -q '"amount":"250"' || fail "history"

# Hand-built requests on the wire: tampered signature, unregistered key,
# malformed and oversize requests refused; a retransmission gets the same
# reply and executes once.
CLUSTER_DIR="$DIR" "$TESTS/wire_test" >"$DIR/wire.out" 2>&1 || fail "wire_test: $(tail -30 "$DIR/wire.out")"
grep -q "PASSED.*4 tests" "$DIR/wire.out" || fail "wire_test did not run its 4 tests: $(tail -5 "$DIR/wire.out")"

# A short closed-loop load.
"$BIN/ledger-bench" --config "$DIR/cluster.json" --clients 2 --batch 20 --duration 3 \
  --warmup 0.5 >"$DIR/bench.out" 2>"$DIR/bench.err" || fail "bench: $(tail -5 "$DIR/bench.err")"
tail -1 "$DIR/bench.out" | grep -q '"transfers_per_s"' || fail "bench JSON"
# Its own CPU over the measured seconds, by thread: the two clients'
# calling threads and their pollers.
python3 - "$DIR/bench.out" <<'PY' || fail "bench CPU by thread: $(tail -1 "$DIR/bench.out")"
import json, sys
line = json.loads(open(sys.argv[1]).read().strip().split("\n")[-1])
by = line["bench_cpu_us_per_request_by_thread"]
assert line["bench_cpu_us_per_request"] > 0, line
assert by["bench-loop"] > 0 and by["sdk-poll"] > 0, by
assert abs(sum(by.values()) - line["bench_cpu_us_per_request"]) <= 0.1 * len(by), line
PY
echo "bench: $(tail -1 "$DIR/bench.out")"
# Each replica has returned its allocator's free pages, timed.
for i in 0 1 2 3; do
  trims=$(python3 - "$DIR/cluster.json" "$i" <<'PY'
import json, sys, urllib.request
addr = json.load(open(sys.argv[1]))["replicas"][int(sys.argv[2])]["metrics_address"]
body = urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()
gauges = {l.split()[0]: float(l.split()[-1]) for l in body.splitlines()
          if l.startswith(("ledger_expected_wait_seconds ",
                           "ledger_admission_refused_share "))}
# Admission is off by default: nothing refused; the wait is measured anyway.
assert gauges.get("ledger_admission_refused_share") == 0.0, gauges
assert gauges.get("ledger_expected_wait_seconds", -1) >= 0, gauges
print(sum(float(l.split()[-1]) for l in body.splitlines()
          if l.startswith("ledger_memory_trim_seconds_count")))
PY
  ) || fail "replica $i metrics"
  python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 1 else 1)" "$trims" \
    || fail "replica $i: ledger_memory_trim_seconds_count $trims after the bench"
done

# A short open-loop load (Poisson arrivals, 2 keys: at most 2 calls in
# flight): every arrival is accounted for (dropped at the cap, completed, or
# unfinished), per-interval lines precede the summary, something is served.
"$BIN/ledger-bench" --config "$DIR/cluster.json" --clients 2 --batch 5 --duration 3 \
  --warmup 0.5 --rate 30 --interval 1 --seed 7 >"$DIR/open.out" 2>"$DIR/open.err" \
  || fail "open-loop bench: $(tail -5 "$DIR/open.err")"
python3 - "$DIR/open.out" <<'PY' || fail "open-loop bench output: $(cat "$DIR/open.out")"
import json, sys
lines = [json.loads(x) for x in open(sys.argv[1])]
s, intervals = lines[-1], lines[:-1]
assert s["mode"] == "open" and s["arrival_process"] == "poisson", s
assert len(intervals) == 3 and all(x["kind"] == "interval" for x in intervals)
a = s["accounting"]
assert a["arrivals"] == a["dropped_at_cap"] + a["completed"] + a["unfinished"], a
assert s["arrivals"] == sum(x["arrivals"] for x in intervals), s
assert s["served"] == sum(x["served"] for x in intervals) and s["served"] > 0, s
assert s["served"] + s["refused"] + s["errors"] <= a["completed"], s
# The whole run's served and refused hold the measured span's.
assert a["served"] >= s["served"] and a["refused"] >= s["refused"], a
assert a["served"] + a["refused"] <= a["completed"], a
# The SDK's counts over the run: every served call sent a number.
assert s["sdk_sends"] >= s["served"], s
assert s["sdk_sent_to_all_first"] <= s["sdk_sends"], s
PY
echo "open-loop bench: $(tail -1 "$DIR/open.out")"

# f = 1: with one backup crashed (SIGKILL), the cluster still commits.
stop_replica "$DIR" 3 KILL
ctl transfer --id 5004 --from 1 --to 100 --amount 5 | grep -q RESULT_CODE_OK \
  || fail "transfer with one replica down"

# The killed backup restarts and catches up within the window while the
# cluster is idle: nothing tells it that it is behind, so it asks a peer
# anyway (an idle probe, at most every 4 s) and adopts the certified blocks
# it missed (docs/protocol.md "Catching up in an idle cluster").
ctl transfer --id 5006 --from 1 --to 100 --amount 1 | grep -q RESULT_CODE_OK || fail "transfer"
start_replica "$DIR" 3
wait_ready "$DIR" 4 60 || fail "restarted replica 3 not ready"
for t in $(seq 5007 5026); do
  ctl transfer --id "$t" --from 1 --to 100 --amount 1 | grep -q RESULT_CODE_OK || fail "transfer $t"
done
target=$(executed_of 0)
[[ -n "$target" ]] || fail "no status from replica 0"
caught=0
deadline=$(( $(date +%s) + 60 ))
while (( $(date +%s) < deadline )); do
  got=$(executed_of 3)
  if [[ -n "$got" && "$got" -ge "$target" ]]; then caught=1; break; fi
  sleep 0.5
done
(( caught )) || fail "restarted replica 3 did not catch up to $target in an idle cluster (at ${got:-?})"
echo "replica 3 caught up to $target with no traffic"
# The transfers needed only f+1 replies: every replica at one height before
# the chains are compared.
wait_all_equal 60

# Graceful stop of everyone: SIGTERM exits 0.
for i in 0 1 2 3; do
  stop_replica "$DIR" "$i" TERM
  [[ "$STOP_RC" == 0 ]] || fail "replica $i exited $STOP_RC on SIGTERM"
done

# Every replica's chain verifies offline, and they agree on the head.
for i in 0 1 2 3; do
  "$BIN/ledgerctl" verify --data-dir "$DIR/data-$i" --json >"$DIR/verify-$i" 2>&1 \
    || fail "verify replica $i: $(cat "$DIR/verify-$i")"
done
h0=$(grep -o '"head_hash":"[0-9a-f]*"' "$DIR/verify-0") || fail "verify output: $(cat "$DIR/verify-0")"
for i in 1 2 3; do
  [[ "$(grep -o '"head_hash":"[0-9a-f]*"' "$DIR/verify-$i")" == "$h0" ]] || fail "replica $i head differs"
done

# Restart the whole cluster from its data directories: same ledger.
for i in 0 1 2 3; do start_replica "$DIR" "$i"; done
wait_ready "$DIR" 4 60 || fail "restarted cluster not ready"
ctl balance --account 100 | grep -q "balance 276" || fail "balance after restart"
ctl transfer --id 5005 --from 1 --to 100 --amount 1 | grep -q RESULT_CODE_OK \
  || fail "transfer after restart"
ctl transfer --id 5001 --from 1 --to 100 --amount 250 --memo "first" | grep -q RESULT_CODE_EXISTS \
  || fail "exactly-once across restart"

# History pages: newest first; the cursor a page prints continues it.
ctl history --account 100 --limit 2 >"$DIR/page1" || fail "history page 1"
grep -q "^more: --cursor " "$DIR/page1" || fail "history page 1 has no cursor: $(cat "$DIR/page1")"
cursor=$(sed -n 's/^more: --cursor //p' "$DIR/page1")
ctl history --account 100 --limit 1000 --cursor "$cursor" --json >"$DIR/page2" || fail "history page 2"
grep -q '"low":"5001"' "$DIR/page2" || fail "oldest entry not on the last page: $(head -c 300 "$DIR/page2")"
grep -q '"next_cursor"' "$DIR/page2" && fail "last history page has a cursor"
set +e
ctl history --account 2 --cursor 5001 >"$DIR/out" 2>&1; rc=$?
set -e
[[ $rc != 0 ]] && grep -q "not in the history" "$DIR/out" || fail "foreign cursor: rc=$rc $(cat "$DIR/out")"
# A block from the running cluster: read-only answers match across replicas
# (the header holds no view), so it completes on 2f+1 of them, with a
# commit certificate the SDK verified; the ordered fallback carries none.
start=$(date +%s%N)
ctl block --height 3 >"$DIR/block" || fail "block: $(cat "$DIR/block")"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
grep -Eq "commits +[34] signatures" "$DIR/block" || fail "block without a verified certificate: $(cat "$DIR/block")"
echo "read-only block 3 in $ms ms"
# A receipt from the running cluster (2f+1 matching answers, verified).
ctl receipt --transfer 5005 --out "$DIR/receipt.json" >"$DIR/out" 2>&1 || fail "receipt: $(cat "$DIR/out")"

# Every replica's chain has the same block hashes, and the receipt's
# header is a block of each of them (its outcome proven against any).
for i in 0 1 2 3; do stop_replica "$DIR" "$i" TERM; done
"$BIN/ledgerctl" verify --data-dir "$DIR/data-0" --compare "$DIR/data-1,$DIR/data-2,$DIR/data-3" \
  >"$DIR/compare" 2>&1 || fail "verify --compare: $(cat "$DIR/compare")"
grep -q "compare: ok: 4 chains agree" "$DIR/compare" || fail "compare: $(cat "$DIR/compare")"
for i in 0 1 2 3; do
  "$BIN/ledgerctl" verify-receipt "$DIR/receipt.json" --config "$DIR/cluster.json" \
    --data-dir "$DIR/data-$i" >"$DIR/out" 2>&1 || fail "verify-receipt against replica $i: $(cat "$DIR/out")"
  grep -q "result RESULT_CODE_OK in block" "$DIR/out" || fail "verify-receipt: $(cat "$DIR/out")"
done
echo "cluster_test: ok"
