#!/usr/bin/env bash
# The README's promise, checked: on a fresh Debian 12 machine, from a clone,
# the run command and the test command pass with nothing but what the
# project's own scripts install. The "machine" is a container of the plain
# Debian 12 base (deploy/docker/build-image.sh bootstraps it from Debian's
# archive), run as root with the host's network for apt and npm.
#
#   deploy/docker/fresh-debian-test.sh [--skip-run] [-- ENV=VALUE...]
#     e.g. -- SANITIZE=0   (passed to tests/run.sh)
#
# Inside, the container test is skipped with its reason (podman does not
# nest here); everything else runs. Not part of tests/run.sh: it rebuilds
# everything from nothing (tens of minutes on 2 cores). The transcript goes
# to build/fresh-debian/transcript.log. The container runs under nice -n 10
# already: run the script itself without nice (niceness adds up).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/deploy/docker/podman-lib.sh"
BASE=docker.io/library/debian:bookworm-slim
RUN_CMD=1
ENVS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --skip-run) RUN_CMD=""; shift ;;
    --) shift; ENVS=("$@"); break ;;
    *) echo "usage: fresh-debian-test.sh [--skip-run] [-- ENV=VALUE...]" >&2; exit 2 ;;
  esac
done
pod image exists "$BASE" || { echo "fresh-debian-test.sh: no $BASE: run deploy/docker/build-image.sh first" >&2; exit 1; }

OUT=$ROOT/build/fresh-debian
mkdir -p "$OUT"
# A clone of the committed tree, as a user would get it.
rm -rf "$OUT/src.git"
git -C "$ROOT" clone --quiet --bare --no-local "$ROOT" "$OUT/src.git"
env_args=(--env=PBFT_LEDGER_SKIP_CONTAINER_TESTS="podman does not run nested in the fresh-Debian test container")
# The host's trust store, for npm only (NODE_EXTRA_CA_CERTS adds to Debian's
# CAs): where HTTPS goes through a proxy that the host trusts, the fresh
# machine would be set up to trust it too. Nothing else of the host's goes in.
ca_args=()
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  ca_args=(--mount=type=bind,src=/etc/ssl/certs/ca-certificates.crt,dst=/etc/host-ca.crt,ro=true
           --env=NODE_EXTRA_CA_CERTS=/etc/host-ca.crt)
fi
for e in "${ENVS[@]}"; do env_args+=(--env="$e"); done
mapfile -t ulimits < <(podman_ulimit_args)
mapfile -t global < <(podman_global_args)
script='set -euo pipefail
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends git ca-certificates >/dev/null
git clone --quiet /src.git /root/pbft-ledger && cd /root/pbft-ledger
echo "== fresh Debian $(cat /etc/debian_version): $(git log --oneline -1)"
if [[ -n "${RUN_CMD:-}" ]]; then
  s=$(date +%s); echo "== deploy/local/run.sh"; bash deploy/local/run.sh
  echo "== deploy/local/run.sh passed in $(( $(date +%s) - s )) s"
fi
s=$(date +%s); echo "== tests/run.sh"; bash tests/run.sh
echo "== tests/run.sh passed in $(( $(date +%s) - s )) s"'
name=pbft-ledger-fresh-$$
trap 'pod rm --force --time=5 "$name" >/dev/null 2>&1 || true' EXIT
nice -n 10 podman "${global[@]}" run --rm --name="$name" --network=host "${ulimits[@]}" \
  --mount=type=bind,src="$OUT/src.git",dst=/src.git,ro=true --env=RUN_CMD="$RUN_CMD" \
  "${env_args[@]}" "${ca_args[@]}" "$BASE" bash -c "$script" 2>&1 | tee "$OUT/transcript.log"
