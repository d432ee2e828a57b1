#!/usr/bin/env bash
# End-to-end checks of the ledgerctl command line: cluster init, config
# check, keygen, and the exit codes and messages of failures.
#   ledgerctl_test.sh BIN_DIR
set -euo pipefail
BIN=$1/ledgerctl
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# cluster init (the contract in docs/operations.md) writes a loadable config + keys.
"$BIN" cluster init --replicas 4 --clients 2 --out "$DIR/c" --base-port 9300 >/dev/null
[[ -f "$DIR/c/cluster.json" ]] || fail "no cluster.json"
for k in replica-0 replica-1 replica-2 replica-3 client-1 client-2; do
  mode=$(stat -c %a "$DIR/c/keys/$k.key")
  [[ "$mode" == "600" ]] || fail "$k.key has mode $mode"
done
out=$("$BIN" --config "$DIR/c/cluster.json" --key "$DIR/c/keys/client-1.key" config check --json)
[[ "$out" == *'"ok":true'* && "$out" == *'"replicas":4'* && "$out" == *'"quorum":3'* ]] \
  || fail "config check: $out"
grep -q '"address": "127.0.0.1:9303"' "$DIR/c/cluster.json" || fail "base port not applied"

# Refuses to overwrite; --force does.
if "$BIN" cluster init --replicas 4 --clients 2 --out "$DIR/c" 2>"$DIR/err"; then
  fail "overwrote an existing cluster"
fi
grep -q -- "--force" "$DIR/err" || fail "overwrite message: $(cat "$DIR/err")"
"$BIN" cluster init --replicas 7 --clients 1 --out "$DIR/c" --force --json | grep -q '"f":2' \
  || fail "7 replicas should give f=2"

# keygen: 0600, refuses world-readable keys on load.
"$BIN" keygen --out "$DIR/k.key" --json | grep -q '"public_key"' || fail "keygen json"
[[ $(stat -c %a "$DIR/k.key") == 600 ]] || fail "keygen mode"
chmod 644 "$DIR/c/keys/client-1.key"
if "$BIN" --config "$DIR/c/cluster.json" --key "$DIR/c/keys/client-1.key" config check 2>"$DIR/err"; then
  fail "accepted a world-readable key"
fi
grep -q "chmod 600" "$DIR/err" || fail "world-readable message: $(cat "$DIR/err")"
# A key that is not in the config is refused.
if "$BIN" --config "$DIR/c/cluster.json" --key "$DIR/k.key" config check 2>"$DIR/err"; then
  fail "accepted an unregistered key"
fi

# A broken config names the file and the field; exit code 1.
sed 's/"f": 2/"f": 3/' "$DIR/c/cluster.json" > "$DIR/bad.json"
set +e
"$BIN" --config "$DIR/bad.json" config check 2>"$DIR/err"; rc=$?
set -e
[[ $rc == 1 ]] || fail "bad config exit code $rc"
grep -q "bad.json: f:" "$DIR/err" || fail "bad config message: $(cat "$DIR/err")"

# Usage errors exit 2.
set +e; "$BIN" frobnicate 2>/dev/null; rc=$?; set -e
[[ $rc == 2 ]] || fail "unknown command exit code $rc"
echo "ledgerctl_test: ok"
