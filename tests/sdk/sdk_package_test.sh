#!/usr/bin/env bash
# The SDK is usable from another CMake project: install it into a scratch
# prefix, then configure and build client/examples as a standalone project
# with find_package(PbftLedger).
#   sdk_package_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
SRC=$1
BUILD=$2
PREFIX=$(mktemp -d)
trap 'rm -rf "$PREFIX"' EXIT
cmake --install "$BUILD" --prefix "$PREFIX" >/dev/null
[[ -f "$PREFIX/include/pbft-ledger/client/client.h" ]] || { echo "FAIL: header not installed"; exit 1; }
[[ -f "$PREFIX/lib/cmake/PbftLedger/PbftLedgerConfig.cmake" ]] || { echo "FAIL: no package config"; exit 1; }
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
cmake -S "$SRC/client/examples" -B "$PREFIX/build" "${GEN[@]}" -DCMAKE_PREFIX_PATH="$PREFIX" >/dev/null
cmake --build "$PREFIX/build" >/dev/null
[[ -x "$PREFIX/build/transfer_example" ]] || { echo "FAIL: example not built"; exit 1; }
# It runs and explains its usage.
set +e
"$PREFIX/build/transfer_example" 2>"$PREFIX/err"; rc=$?
set -e
[[ $rc == 2 ]] && grep -q usage "$PREFIX/err" || { echo "FAIL: example usage rc=$rc"; exit 1; }
echo "sdk_package_test: ok"
