# Sourced by deploy/docker/build-image.sh and tests/container/: how this
# project calls podman.
#
# - runc, not crun: crun refuses to start containers on hosts whose cgroups
#   are in hybrid mode (v1 controllers + v2); runc starts them on both.
#   PODMAN_RUNTIME overrides it.
# - Lower default ulimits: podman asks for nofile 1048576 and a large nproc,
#   more than many hosts' hard limits (runc then fails with "error setting
#   rlimit ... operation not permitted"). We ask for the host's own hard
#   nofile, and for nproc no more than 32768, the hard limit podman 4.3
#   gives its own process (runc cannot raise it beyond that).
# shellcheck shell=bash

PODMAN_RUNTIME=${PODMAN_RUNTIME:-$(command -v runc || true)}

# podman_global_args: the arguments before the podman subcommand.
podman_global_args() {
  [[ -n "$PODMAN_RUNTIME" ]] && printf '%s\n' "--runtime=$PODMAN_RUNTIME"
  return 0
}

# podman_ulimit_args: --ulimit for `podman run` and `podman build`.
podman_ulimit_args() {
  local nofile nproc
  nofile=$(ulimit -Hn)
  [[ "$nofile" == unlimited ]] && nofile=1048576
  nproc=$(ulimit -Hu)
  [[ "$nproc" == unlimited || "$nproc" -gt 32768 ]] && nproc=32768
  printf '%s\n' "--ulimit=nofile=$nofile:$nofile" "--ulimit=nproc=$nproc:$nproc"
}

# pod: podman with this project's global arguments.
pod() {
  local g
  mapfile -t g < <(podman_global_args)
  podman "${g[@]}" "$@"
}
