# Sourced by deploy/docker/build-image.sh and tests/container/: how this
# project calls podman.
#
# - runc, not crun: crun refuses to start containers on hosts whose cgroups
#   are in hybrid mode (v1 controllers + v2); runc starts them on both.
#   PODMAN_RUNTIME overrides it.
# - Lower default ulimits: podman asks for nofile 1048576, more than many
#   hosts' hard limit (a container then fails to start). We ask for the
#   host's own hard limit.
# shellcheck shell=bash

PODMAN_RUNTIME=${PODMAN_RUNTIME:-$(command -v runc || true)}

# podman_global_args: the arguments before the podman subcommand.
podman_global_args() {
  [[ -n "$PODMAN_RUNTIME" ]] && printf '%s\n' "--runtime=$PODMAN_RUNTIME"
  return 0
}

# podman_ulimit_args: --ulimit for `podman run` and `podman build`.
podman_ulimit_args() {
  local hard
  hard=$(ulimit -Hn)
  [[ "$hard" == unlimited ]] && hard=1048576
  printf '%s\n' "--ulimit=nofile=$hard:$hard"
}

# pod: podman with this project's global arguments.
pod() {
  local g
  mapfile -t g < <(podman_global_args)
  podman "${g[@]}" "$@"
}
