#!/usr/bin/env bash
# Installs, from Debian 12's archive, exactly the packages that pbft-ledger's
# build, tests and tools need. Idempotent: when every package is present it
# changes nothing and does not touch the network. Run as root (or with sudo).
#
#   deploy/install-deps.sh           build + test dependencies
#   deploy/install-deps.sh --check   exit 1 and list what is missing
set -euo pipefail

PACKAGES=(
  # Toolchain.
  build-essential cmake ninja-build pkg-config git ca-certificates
  # Wire format and RPC: protobuf runtime + compiler, gRPC C++ + its plugin.
  libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc
  # Crypto, storage, base library.
  libsodium-dev libssl-dev libleveldb-dev libsnappy-dev libabsl-dev
  # Logging, metrics.
  libspdlog-dev prometheus-cpp-dev
  # Tests and benchmarks.
  libgtest-dev libgmock-dev libbenchmark-dev
  # The fuzz build (tests/fuzz): clang 14 with libFuzzer and the sanitizer
  # runtimes.
  clang-14 libclang-rt-14-dev
  # Tools the test suite uses: openssl (TLS material), python3 + jsonschema
  # + yaml (manifest validation; kubectl, which renders the overlays, comes
  # with the machine image: Debian 12 has only kubectl 1.20, too old).
  openssl python3 python3-jsonschema python3-yaml
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

if [[ "${1:-}" == "--check" ]]; then
  echo "install-deps: missing: ${missing[*]}" >&2
  exit 1
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root" >&2; exit 1; }
  SUDO="sudo"
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
