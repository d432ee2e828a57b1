#!/usr/bin/env bash
# Offline validation of the deployment (ctest: deploy_k8s):
# 1. `ledgerctl cluster init --k8s` + deploy/k8s/gen-dev-tls.sh write the
#    inputs of every overlay (in a scratch copy of deploy/k8s);
# 2. `kubectl kustomize` (the one deploy/install-deps.sh installs) renders
#    every overlay; check_manifests.py validates
#    each object against deploy/k8s/schema and checks the house rules; the
#    overlays' kustomization files are linted;
# 3. every fixture in tests/deploy/broken/ (an overlay on top of dev that
#    breaks one rule, named by its "# expect: RULE" line) must be rejected,
#    for that rule;
# 4. the Dockerfile passes check_dockerfile.py and every broken Dockerfile in
#    tests/deploy/broken-docker/ is rejected; runtime-packages.sh finds the
#    Debian packages of the built binaries.
#   validate_k8s.sh BIN_DIR
set -euo pipefail
BIN=${1:?usage: validate_k8s.sh BIN_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SCHEMA="$ROOT/deploy/k8s/schema/k8s-objects.schema.json"
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok:   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }

# kubectl renders the overlays (kustomize v5: components, labels). The one
# deploy/install-deps.sh installs, never whatever kubectl the PATH has:
# Debian 12's own (1.20) is too old. KUBECTL=PATH picks another.
KUBECTL=${KUBECTL:-/usr/local/libexec/pbft-ledger/kubectl}
if [[ ! -x "$KUBECTL" ]]; then
  echo "FAIL: $KUBECTL not found: run deploy/install-deps.sh (or set KUBECTL to a kubectl >= 1.27)" >&2
  exit 1
fi
minor=$("$KUBECTL" version --client -o json | "$PY" -c 'import json, sys; print(int(json.load(sys.stdin)["clientVersion"]["minor"].rstrip("+")))')
if [[ $minor -lt 27 ]]; then
  echo "FAIL: $KUBECTL is kubectl 1.$minor; the overlays need >= 1.27 (kustomize v5)" >&2
  exit 1
fi
if ! "$PY" -c 'import jsonschema, yaml' 2>/dev/null; then
  echo "FAIL: $PY lacks jsonschema or yaml: run deploy/install-deps.sh" >&2
  exit 1
fi

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cp -r "$ROOT/deploy/k8s" "$T/k8s"
rm -rf "$T"/k8s/overlays/*/generated

# 1. Inputs, as an operator makes them (docs/operations.md).
"$BIN/ledgerctl" cluster init --k8s --namespace pbft-ledger --replicas 4 --clients 2 \
  --out "$T/k8s/overlays/dev/generated" >/dev/null
"$BIN/ledgerctl" cluster init --k8s --namespace bank-c-ledger --replicas 4 --clients 1 \
  --external-domain ledger.consortium.example --own-replicas 2 \
  --out "$T/k8s/overlays/org-example/generated" >/dev/null
for o in "$T"/k8s/overlays/*/; do
  [[ -f "$o/generated/kustomization.yaml" ]] || { bad "overlay $(basename "$o") has no inputs in this test"; continue; }
  bash "$ROOT/deploy/k8s/gen-dev-tls.sh" "$o/generated" >/dev/null
done

# 2. Every overlay renders and passes.
for o in "$T"/k8s/overlays/*/; do
  name=$(basename "$o")
  if ! "$KUBECTL" kustomize "$o" > "$T/$name.yaml" 2> "$T/$name.err"; then
    bad "overlay $name does not render: $(cat "$T/$name.err")"
    continue
  fi
  if "$PY" "$HERE/check_manifests.py" --schema "$SCHEMA" --sources "$T/k8s" "$T/$name.yaml" > "$T/$name.out"; then
    ok "overlay $name: $(tail -1 "$T/$name.out" | sed 's/.*: \([0-9]* objects\)/\1/')"
  else
    bad "overlay $name:"; sed 's/^/      /' "$T/$name.out"
  fi
done

# 3. Every broken fixture is rejected for the rule it breaks.
mkdir -p "$T/k8s/broken"
for d in "$HERE"/broken/*/; do
  name=$(basename "$d")
  cp -r "$d" "$T/k8s/broken/$name"
  want=$(sed -n 's/^# expect: *//p' "$d/kustomization.yaml")
  [[ -n "$want" ]] || { bad "broken/$name: no '# expect: RULE' line"; continue; }
  if ! "$KUBECTL" kustomize "$T/k8s/broken/$name" > "$T/b-$name.yaml" 2> "$T/b-$name.err"; then
    bad "broken/$name does not render (a fixture must render and be rejected by the checker): $(cat "$T/b-$name.err")"
    continue
  fi
  if "$PY" "$HERE/check_manifests.py" --schema "$SCHEMA" --sources "$T/k8s/broken/$name" "$T/b-$name.yaml" > "$T/b-$name.out"; then
    bad "broken/$name was accepted"
  elif grep -q "^\[$want\]" "$T/b-$name.out"; then
    ok "broken/$name rejected: $(grep -m1 "^\[$want\]" "$T/b-$name.out")"
  else
    bad "broken/$name rejected, but not for [$want]:"; sed 's/^/      /' "$T/b-$name.out"
  fi
done

# 4. The container image.
if "$PY" "$HERE/check_dockerfile.py" "$ROOT/deploy/docker/Dockerfile" "$ROOT/.dockerignore" > "$T/docker.out"; then
  ok "deploy/docker/Dockerfile: $(tail -1 "$T/docker.out")"
else
  bad "deploy/docker/Dockerfile:"; sed 's/^/      /' "$T/docker.out"
fi
for f in "$HERE"/broken-docker/*.Dockerfile; do
  want=$(sed -n 's/^# expect: *//p' "$f")
  if "$PY" "$HERE/check_dockerfile.py" "$f" "$ROOT/.dockerignore" > "$T/d.out"; then
    bad "broken-docker/$(basename "$f") was accepted"
  elif grep -q "^\[$want\]" "$T/d.out"; then
    ok "broken-docker/$(basename "$f") rejected: $(grep -m1 "^\[$want\]" "$T/d.out")"
  else
    bad "broken-docker/$(basename "$f") rejected, but not for [$want]:"; sed 's/^/      /' "$T/d.out"
  fi
done
pkgs=$(bash "$ROOT/deploy/docker/runtime-packages.sh" "$BIN/ledgerctl" | tr '\n' ' ')
if [[ " $pkgs " == *" libsodium23 "* && " $pkgs " == *" libprotobuf32 "* ]]; then
  ok "runtime-packages.sh ledgerctl: $pkgs"
else
  bad "runtime-packages.sh ledgerctl gave '$pkgs' (want libsodium23 and libprotobuf32 among them)"
fi

echo "deploy_k8s: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
