# rvs container image: rvsd + rvsadm on Debian 12's DPDK 22.11.
#
#   podman build --isolation=chroot --network=host \
#       --build-arg BASE=localhost/debian:12 -t localhost/rvs .
#
# BASE defaults to debian:12; on a machine without a registry, import a local
# base first (TESTBED.md: debootstrap --variant=minbase
# bookworm DIR; tar -C DIR -c . | podman import - localhost/debian:12).
#
# Rust toolchain (RUST_TOOLCHAIN build arg):
#   debian  (default) Debian 12's rustc-web/cargo-web packages: a current Rust
#           (1.85 in bookworm, newer in bookworm-security) that Debian ships
#           for Firefox/Chromium builds, installed as /usr/bin/{rustc,cargo}.
#           Needs only a Debian mirror and crates.io, so it builds on machines
#           that cannot reach static.rust-lang.org (like our test machines).
#           bookworm's plain `rustc` (1.63) is too old for our dependencies.
#   rustup  the upstream installer (needs https://sh.rustup.rs and
#           static.rust-lang.org); pick the version with RUST_VERSION.
#
# Crates: by default cargo downloads them from crates.io inside the build. On
# the test machines TLS from inside a build container is not trusted, so reuse
# the host's crate cache instead (the host has built the workspace once):
#   podman build ... --build-arg CARGO_NET_OFFLINE=true \
#       -v "$HOME/.cargo/registry:/root/.cargo/registry" -t localhost/rvs .
# (`-v` on build is a podman/buildah feature; it is not baked into the image.)
#
# Running: rvsd needs the host's network interfaces and hugepages, e.g.
#   podman run --rm --privileged --network=host -v /dev/hugepages:/dev/hugepages \
#       -v /run/rvs:/run/rvs localhost/rvs --config /etc/rvs/CONFIG.json
# (on the test machines `podman run` fails in crun; use
#  `buildah from localhost/rvs` + `buildah run --isolation=chroot CTR -- rvsd --help`).

ARG BASE=debian:12

FROM ${BASE} AS build
ARG RUST_TOOLCHAIN=debian
ARG RUST_VERSION=stable
# cargo reads CARGO_NET_OFFLINE from the environment, where ARGs appear in RUN.
ARG CARGO_NET_OFFLINE=false
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        dpdk-dev pkg-config build-essential libclang-dev curl ca-certificates \
 && case "$RUST_TOOLCHAIN" in \
      debian) apt-get install -y --no-install-recommends rustc-web cargo-web ;; \
      rustup) curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
                | sh -s -- -y --profile minimal --default-toolchain "$RUST_VERSION" \
              && ln -s /root/.cargo/bin/cargo /root/.cargo/bin/rustc /usr/local/bin/ ;; \
      *) echo "RUST_TOOLCHAIN must be debian or rustup" >&2; exit 1 ;; \
    esac \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && cargo --version && rustc --version
WORKDIR /src
COPY . .
# /out/runtime-packages: the Debian packages of the shared libraries the
# binaries link (librte_*, ...), installed by the runtime stage, which thus
# follows whatever DPDK libraries rvs comes to use.
RUN cargo build --release --locked --bins \
 && mkdir -p /out/bin /out/conf \
 && cp target/release/rvsd target/release/rvsadm /out/bin/ \
 && if [ -d conf ]; then cp -r conf/. /out/conf/; fi \
 && for b in /out/bin/*; do ldd "$b"; done \
      | awk '$3 ~ /^\// {print $3}' | xargs -r realpath | sort -u \
      | while read -r p; do dpkg -S "$p" 2>/dev/null || dpkg -S "${p#/usr}" 2>/dev/null; done \
      | cut -d: -f1 | sort -u > /out/runtime-packages \
 && cat /out/runtime-packages

FROM ${BASE} AS runtime
# DPDK loads every PMD in its plugin directory at start; the Debian packages
# below put just these drivers there: the virtual devices rvs uses
# (af_packet, tap, null, ring, pcap), the vdev bus and the ring mempool.
ARG DPDK_DRIVERS="librte-bus-vdev23 librte-mempool-ring23 librte-net-af-packet23 librte-net-tap23 librte-net-null23 librte-net-ring23 librte-net-pcap23"
ENV DEBIAN_FRONTEND=noninteractive
COPY --from=build /out/runtime-packages /tmp/runtime-packages
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 ethtool $DPDK_DRIVERS \
        $(cat /tmp/runtime-packages) \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /tmp/runtime-packages \
 && mkdir -p /run/rvs
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build /out/conf/ /etc/rvs/
ENTRYPOINT ["rvsd"]
CMD ["--help"]
