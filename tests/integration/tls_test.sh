#!/usr/bin/env bash
# mTLS: with TLS material in the config, replicas talk to each other and to
# clients over TLS with client certificates required. Certificates are made
# by openssl at test time. A plaintext client and a client whose
# certificate comes from another CA are refused.
#   tls_test.sh BIN_DIR
set -euo pipefail
BIN=$1
source "$(dirname "$0")/lib.sh"
DIR=$(mktemp -d)
trap 'stop_all "$DIR"; if [[ -n "${KEEP:-}" ]]; then echo "kept $DIR"; else rm -rf "$DIR"; fi' EXIT
command -v openssl >/dev/null || fail "openssl is required (deploy/install-deps.sh installs it)"

cluster_init "$DIR" 4 1
T="$DIR/tls"
mkdir -p "$T" "$T/other"
mkcert() {  # mkcert DIR NAME CA_DIR: key + cert signed by CA_DIR/ca
  local d=$1 name=$2 ca=$3
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$d/$name.key" -subj "/CN=$name" -out "$d/$name.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$d/$name.ext"
  openssl x509 -req -in "$d/$name.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" -CAcreateserial \
    -days 2 -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null
}
for d in "$T" "$T/other"; do
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=test-ca" -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
done
mkcert "$T" node "$T"
mkcert "$T/other" intruder "$T/other"

# Keep a plaintext copy of the config, then add the tls section.
cp "$DIR/cluster.json" "$DIR/plain.json"
python3 - "$DIR/cluster.json" "$T" <<'PY'
import json, sys
path, t = sys.argv[1], sys.argv[2]
c = json.load(open(path))
c["tls"] = {"ca_file": t + "/ca.crt", "cert_file": t + "/node.crt", "key_file": t + "/node.key"}
json.dump(c, open(path, "w"), indent=1)
PY

for i in 0 1 2 3; do start_replica "$DIR" "$i"; done
wait_ready "$DIR" 4 60 || fail "TLS cluster not ready (replicas could not reach each other)"
grep -q "with mTLS" "$DIR/logs/replica-0.log" || fail "replica did not report mTLS"

ctl create-account --id 77 | grep -q RESULT_CODE_OK || fail "create-account over mTLS"
ctl transfer --id 2 --from 1 --to 77 --amount 9 | grep -q RESULT_CODE_OK || fail "transfer over mTLS"

# A plaintext client cannot talk to a TLS replica.
set +e
"$BIN/ledgerctl" --config "$DIR/plain.json" --key "$DIR/keys/client-1.key" --deadline 3 \
  balance --account 77 >"$DIR/out" 2>&1; rc=$?
set -e
[[ $rc != 0 ]] || fail "plaintext client was served"

# A certificate from another CA is refused.
set +e
ctl --deadline 3 --tls-cert "$T/other/intruder.crt" --tls-key "$T/other/intruder.key" \
  balance --account 77 >"$DIR/out" 2>&1; rc=$?
set -e
[[ $rc != 0 ]] || fail "client with a foreign certificate was served"

# And the legitimate client still is.
ctl balance --account 77 | grep -q "balance 9" || fail "balance over mTLS"
echo "tls_test: ok"
