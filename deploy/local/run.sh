#!/usr/bin/env bash
# The README run command: installs what is missing, builds, generates a
# 4-replica cluster on loopback and shows its configuration.
#
# (The full local demo - four ledgerd processes, a workload through the
# client SDK, balances and a verified chain - lands with ledgerd.)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$(pwd)/build/local-cluster}
BASE_PORT=${BASE_PORT:-7000}

bash deploy/install-deps.sh
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
cmake -S . -B build "${GEN[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target ledgerctl

build/bin/ledgerctl cluster init --replicas 4 --clients 2 --out "$OUT" \
  --base-port "$BASE_PORT" --force
build/bin/ledgerctl --config "$OUT/cluster.json" --key "$OUT/keys/client-1.key" config check
echo
echo "cluster config ($OUT/cluster.json):"
cat "$OUT/cluster.json"
