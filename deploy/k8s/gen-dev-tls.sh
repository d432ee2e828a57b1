#!/usr/bin/env bash
# Makes throw-away TLS material for a dev or test cluster: a CA and, for every
# replica and client in DIR/cluster.json, a key and a certificate signed by
# it (ECDSA P-256, 90 days). Replica certificates name the host of the
# replica's address in cluster.json plus its in-cluster Service names;
# client certificates are CN=client-<id>. Writes DIR/tls/ca.{crt,key},
# DIR/tls/replica-<i>.{crt,key}, DIR/tls/client-<id>.{crt,key} (keys mode
# 0600). For production use your organisation's PKI instead
# (docs/operations.md); the file names are what DIR/kustomization.yaml reads.
#   deploy/k8s/gen-dev-tls.sh DIR     # DIR written by `ledgerctl cluster init --k8s`
set -euo pipefail
dir=${1:?usage: gen-dev-tls.sh DIR (written by ledgerctl cluster init --k8s)}
[[ -f "$dir/cluster.json" ]] || { echo "gen-dev-tls.sh: $dir/cluster.json: not found" >&2; exit 1; }
command -v openssl >/dev/null || { echo "gen-dev-tls.sh: openssl not found (deploy/install-deps.sh installs it)" >&2; exit 1; }
tls="$dir/tls"
mkdir -p "$tls"
chmod 0700 "$tls"
umask 077

openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -keyout "$tls/ca.key" -out "$tls/ca.crt" -days 90 -subj "/CN=pbft-ledger dev CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>/dev/null

# sign NAME CN SAN...: DIR/tls/NAME.{key,crt}
sign() {
  local name=$1 cn=$2; shift 2
  local ext="$tls/$name.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    if [[ $# -gt 0 ]]; then
      local san="" h
      for h in "$@"; do san+="${san:+,}DNS:$h"; done
      echo "subjectAltName=$san"
    fi
  } > "$ext"
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$tls/$name.key" -out "$tls/$name.csr" -subj "/CN=$cn" 2>/dev/null
  openssl x509 -req -in "$tls/$name.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
    -CAcreateserial -days 90 -extfile "$ext" -out "$tls/$name.crt" 2>/dev/null
  rm -f "$tls/$name.csr" "$ext"
}

# "replica <id> <host>" and "client <id>" lines from cluster.json.
python3 - "$dir/cluster.json" > "$tls/.entries" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
for r in c.get("replicas", []):
    print("replica", r.get("id", 0), r["address"].rsplit(":", 1)[0])
for cl in c.get("clients", []):
    print("client", cl["id"])
PY
while read -r kind id host; do
  if [[ "$kind" == replica ]]; then
    # In-cluster names too: ledger-<i>, ledger-<i>.<ns>, ledger-<i>.<ns>.svc.
    short=${host%%.svc.*}
    sans=("$host" "ledger-$id")
    [[ "$short" != "$host" ]] && sans+=("$short" "$short.svc")
    sign "replica-$id" "ledger-$id" "${sans[@]}"
  else
    sign "client-$id" "client-$id"
  fi
done < "$tls/.entries"
rm -f "$tls/.entries" "$tls/ca.srl"
echo "gen-dev-tls.sh: wrote $(ls "$tls" | wc -l) files to $tls"
