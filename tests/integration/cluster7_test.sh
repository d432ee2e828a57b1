#!/usr/bin/env bash
# A 7-replica cluster (f = 2): transfers commit with two backups killed.
#   cluster7_test.sh BIN_DIR
set -euo pipefail
BIN=$1
source "$(dirname "$0")/lib.sh"
DIR=$(mktemp -d)
trap 'stop_all "$DIR"; if [[ -n "${KEEP:-}" ]]; then echo "kept $DIR"; else rm -rf "$DIR"; fi' EXIT
cluster_init "$DIR" 7 1
for i in 0 1 2 3 4 5 6; do start_replica "$DIR" "$i"; done
wait_ready "$DIR" 7 90 || fail "7-replica cluster not ready"
ctl create-account --id 300 | grep -q RESULT_CODE_OK || fail "create-account"
ctl transfer --id 1 --from 1 --to 300 --amount 70 | grep -q RESULT_CODE_OK || fail "transfer"
stop_replica "$DIR" 5 KILL
stop_replica "$DIR" 6 KILL
ctl transfer --id 2 --from 1 --to 300 --amount 7 | grep -q RESULT_CODE_OK \
  || fail "transfer with f = 2 replicas down"
ctl balance --account 300 | grep -q "balance 77" || fail "balance"
echo "cluster7_test: ok"
