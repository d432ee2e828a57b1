#!/usr/bin/env bash
# Builds the container image with podman, without a registry:
#   1. the base image debian:bookworm-slim (the Dockerfile's FROM) from
#      Debian's archive with mmdebstrap, imported into podman's local store.
#      It is cached: the tarball under $CACHE and the imported image carry a
#      key over the mmdebstrap command (suite, variant, mirrors, packages),
#      so a rerun with the same key takes seconds. A debian:bookworm-slim
#      that came from a registry (no key label) is used as it is.
#   2. the image from deploy/docker/Dockerfile (podman build --network=host:
#      the build stage runs apt-get against Debian's archive).
#
#   deploy/docker/build-image.sh [--tag NAME:TAG] [--rebuild-base]
#     --tag           image name (default pbft-ledger:<project version>)
#     --rebuild-base  bootstrap the base again (e.g. for security updates)
#   env: PBFT_LEDGER_CACHE (default /var/cache/pbft-ledger), PODMAN_RUNTIME
#
# Needs podman, runc and mmdebstrap (deploy/install-deps.sh --container).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/deploy/docker/podman-lib.sh"

BASE=docker.io/library/debian:bookworm-slim
KEY_LABEL=org.pbft-ledger.base-key
CACHE=${PBFT_LEDGER_CACHE:-/var/cache/pbft-ledger}
VERSION=$(sed -n 's/^project(pbft_ledger VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")
TAG=pbft-ledger:$VERSION
REBUILD_BASE=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --tag) TAG=${2:?--tag needs NAME:TAG}; shift 2 ;;
    --rebuild-base) REBUILD_BASE=1; shift ;;
    *) echo "usage: build-image.sh [--tag NAME:TAG] [--rebuild-base]" >&2; exit 2 ;;
  esac
done
for tool in podman mmdebstrap; do
  command -v "$tool" >/dev/null || { echo "build-image.sh: $tool not found: run deploy/install-deps.sh --container" >&2; exit 1; }
done

# What debian:bookworm-slim is: the minbase variant (Essential + apt), with
# the security and point-release updates, without manuals, docs (the
# copyright files stay) and translations, as Debian's own slim images are.
SLIM=()
for d in doc man info locale groff lintian linda; do
  SLIM+=("--dpkgopt=path-exclude=/usr/share/$d/*")
done
SLIM+=("--dpkgopt=path-include=/usr/share/doc/*/copyright")
MMDEBSTRAP_ARGS=(--variant=minbase --components=main "${SLIM[@]}" bookworm)
MIRRORS=(
  "deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main"
)
KEY=$(printf '%s\n' "${MMDEBSTRAP_ARGS[@]}" "${MIRRORS[@]}" | sha256sum | cut -c1-16)

base_key() { pod image inspect --format "{{index .Labels \"$KEY_LABEL\"}}" "$BASE" 2>/dev/null; }

build_base() {
  local tar=$CACHE/debian-bookworm-minbase-$KEY.tar
  if [[ -n "$REBUILD_BASE" || ! -s "$tar" ]]; then
    echo "build-image.sh: bootstrapping $BASE from Debian's archive (mmdebstrap, about a minute)"
    mkdir -p "$CACHE"
    rm -f "$tar.part"
    nice -n 10 mmdebstrap --quiet --format=tar "${MMDEBSTRAP_ARGS[@]}" "$tar.part" "${MIRRORS[@]}"
    mv "$tar.part" "$tar"
  fi
  pod import --change "LABEL $KEY_LABEL=$KEY" --change 'CMD ["bash"]' "$tar" "$BASE" >/dev/null
  echo "build-image.sh: imported $BASE (key $KEY) from $tar"
}

have=$(base_key || true)
if [[ -n "$REBUILD_BASE" ]]; then
  build_base
elif [[ "$have" == "$KEY" ]]; then
  echo "build-image.sh: $BASE is cached (key $KEY)"
elif [[ -n "$have" ]]; then
  echo "build-image.sh: $BASE has key $have, want $KEY"
  build_base
elif pod image exists "$BASE"; then
  echo "build-image.sh: using $BASE as found in podman's store (not built here)"
else
  build_base
fi

mapfile -t ulimits < <(podman_ulimit_args)
mapfile -t global < <(podman_global_args)
start=$(date +%s)
nice -n 10 podman "${global[@]}" build --network=host "${ulimits[@]}" \
  -f "$ROOT/deploy/docker/Dockerfile" -t "$TAG" "$ROOT"
# Build-stage images of earlier builds (untagged, about 1 GB each) are the
# layer cache; keep a day of them.
pod image prune --force --filter until=24h >/dev/null || true
size=$(pod image inspect --format '{{.Size}}' "$TAG")
echo "build-image.sh: built $TAG in $(($(date +%s) - start)) s, $((size / 1000000)) MB"
