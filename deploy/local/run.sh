#!/usr/bin/env bash
# The README run command. On a fresh Debian 12 machine, as root:
#   1. installs what is missing and builds (build/),
#   2. starts a 4-replica cluster on loopback (build/local-cluster/),
#   3. runs a demo workload through the C++ SDK and ledgerctl,
#   4. shows balances and the cluster's status, verifies every replica's
#      chain offline, and stops the cluster.
#   deploy/local/run.sh [--keep]   --keep: restart the cluster afterwards and
#                                  leave it running (prints how to use it)
set -euo pipefail
KEEP_RUNNING=""
for a in "$@"; do
  case $a in
    --keep) KEEP_RUNNING=1 ;;
    *) echo "usage: deploy/local/run.sh [--keep]" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
DIR=${OUT:-$ROOT/build/local-cluster}
BIN=$ROOT/build/bin

bash deploy/install-deps.sh --build
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
cmake -S . -B build "${GEN[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target ledgerd ledgerctl ledger-bench transfer_example

source tests/integration/lib.sh
if [[ -d "$DIR/pids" ]]; then stop_all "$DIR"; fi
rm -rf "$DIR"
cluster_init "$DIR" 4 2
echo "== cluster config: $DIR/cluster.json (keys in $DIR/keys, mode 0600)"
for i in 0 1 2 3; do start_replica "$DIR" "$i"; done
trap 'if [[ -z "$KEEP_RUNNING" ]]; then stop_all "$DIR"; fi' EXIT
wait_ready "$DIR" 4 60 || { echo "cluster did not become ready; logs in $DIR/logs" >&2; exit 1; }
echo "== 4 replicas ready"
ctl status

echo "== demo workload"
ctl create-account --id 1000 --ledger 1
ctl transfer --id 1 --from 1 --to 1000 --amount 2500 --memo "rent"
CLIENT=2 ctl transfer --id 2 --from 2 --to 1000 --amount 500 --memo "groceries"
echo "-- retrying transfer 1 is safe (idempotent):"
ctl transfer --id 1 --from 1 --to 1000 --amount 2500 --memo "rent"
echo "-- an overdraft is refused with its own result code:"
ctl transfer --id 3 --from 1000 --to 1 --amount 999999 || true
echo "-- the SDK example program:"
"$BIN/transfer_example" "$DIR/cluster.json" "$DIR/keys/client-1.key"
echo "-- load: 2 clients x 50 transfers per request for 5 s:"
"$BIN/ledger-bench" --config "$DIR/cluster.json" --clients 2 --batch 50 --duration 5 2>/dev/null | tail -1

echo "== balances"
for a in 1 2 1000; do ctl balance --account "$a"; done
ctl history --account 1000 --limit 5
ctl status

echo "== offline verification of every replica's chain"
stop_all "$DIR"
for i in 0 1 2 3; do
  "$BIN/ledgerctl" verify --data-dir "$DIR/data-$i" --config "$DIR/cluster.json"
done
if [[ -n "$KEEP_RUNNING" ]]; then
  for i in 0 1 2 3; do start_replica "$DIR" "$i"; done
  wait_ready "$DIR" 4 60 || { echo "cluster did not become ready" >&2; exit 1; }
  echo "== the cluster is running. Talk to it:"
  echo "   $BIN/ledgerctl --config $DIR/cluster.json --key $DIR/keys/client-1.key status"
  echo "   $BIN/ledgerctl --config $DIR/cluster.json --key $DIR/keys/client-1.key balance --account 1"
  echo "   stop it: kill \$(cat $DIR/pids/*)"
fi
echo "== done"
