# expect: base
# syntax=docker/dockerfile:1
# pbft-ledger container image: ledgerd (the entrypoint) and ledgerctl on
# Debian 12, running as the non-root user ledger (10001). Nothing else: the
# simulator, benchmarks and examples stay in the build tree.
#
#   docker build -f deploy/docker/Dockerfile -t pbft-ledger:0.1.0 .
#   docker run --rm pbft-ledger:0.1.0 --help
# Without a registry, with podman: deploy/docker/build-image.sh.
#
# The build stage does what CI does (deploy/install-deps.sh, then the same
# CMake build as tests/run.sh, without the tests); the runtime stage gets only
# the binaries and the Debian runtime packages of the shared libraries they
# load (deploy/docker/runtime-packages.sh). Checked by tests/deploy.

FROM debian:bookworm-slim AS build
WORKDIR /src
COPY deploy/install-deps.sh deploy/install-deps.sh
RUN bash deploy/install-deps.sh --build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPBFT_LEDGER_TESTS=OFF \
 && cmake --build build -j"$(nproc)" --target ledgerd ledgerctl \
 && mkdir -p /out/bin \
 && install -m 0755 -s build/bin/ledgerd build/bin/ledgerctl /out/bin/ \
 && bash deploy/docker/runtime-packages.sh /out/bin/* > /out/runtime-packages.txt

FROM ubuntu:24.04
COPY --from=build /out/runtime-packages.txt /tmp/runtime-packages.txt
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive xargs -a /tmp/runtime-packages.txt \
      apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && groupadd --system --gid 10001 ledger \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /var/lib/pbft-ledger --shell /usr/sbin/nologin ledger \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/pbft-ledger
COPY --from=build /out/bin/ledgerd /out/bin/ledgerctl /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/pbft-ledger
VOLUME ["/var/lib/pbft-ledger"]
# API (replicas[i].address), plaintext gRPC health, Prometheus metrics: the
# ports `ledgerctl cluster init --k8s` assigns.
EXPOSE 7000 7100 7200
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ledgerd"]
