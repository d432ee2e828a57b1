#!/usr/bin/env bash
# Prints, one per line, the Debian packages that provide the shared libraries
# the given binaries load (ldd + dpkg-query -S): what the runtime image
# installs. Used by deploy/docker/Dockerfile and checked by tests/deploy.
#   deploy/docker/runtime-packages.sh BINARY...
set -euo pipefail
[[ $# -gt 0 ]] || { echo "usage: runtime-packages.sh BINARY..." >&2; exit 2; }
mapfile -t libs < <(ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u)
# Debian 12 merges /lib into /usr/lib, but dpkg records the path each package
# ships: ask for every spelling at once (one dpkg-query is much faster than
# one per library) and require one hit per library.
candidates() {
  local lib=$1 real
  real=$(readlink -f "$lib")
  printf '%s\n' "$lib" "$real" "/usr${lib#/usr}" "${lib#/usr}" "/usr${real#/usr}" "${real#/usr}" | sort -u
}
all=()
for lib in "${libs[@]}"; do mapfile -t -O "${#all[@]}" all < <(candidates "$lib"); done
hits=$(dpkg-query -S "${all[@]}" 2>/dev/null || true)
for lib in "${libs[@]}"; do
  pkg=""
  while read -r c; do
    pkg=$(awk -v p="$c" '{ path = $0; sub(/^[^:]*(:[^:]*)?: /, "", path) } path == p { split($1, a, ":"); print a[1]; exit }' <<<"$hits")
    [[ -n "$pkg" ]] && break
  done < <(candidates "$lib")
  [[ -n "$pkg" ]] || { echo "runtime-packages.sh: no Debian package provides $lib" >&2; exit 1; }
  echo "$pkg"
done | sort -u
