#!/usr/bin/env bash
# Runs `buf lint` (STANDARD rules, proto/buf.yaml) over proto/. buf comes
# from the npm package @bufbuild/buf, installed once into build/tools.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF=build/tools/node_modules/.bin/buf
if [[ ! -x "$BUF" ]]; then
  if ! command -v npm >/dev/null; then
    echo "lint_proto: npm is not installed; cannot run buf lint" >&2
    exit 1
  fi
  mkdir -p build/tools
  (cd build/tools && npm install --silent --no-audit --no-fund @bufbuild/buf@1 >/dev/null)
fi
(cd proto && "../$BUF" lint)
echo "lint_proto: buf lint clean"
