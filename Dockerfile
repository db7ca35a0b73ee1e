# rvs container image: rvsd + rvsadm on Debian 12 with its DPDK 22.11.
# How to build and run it (least privilege per device kind, compose demo,
# smoke test): docs/containers.md.
#
#   docker build -t rvs .                      # or: podman build -t rvs .
#
# Stages: `base` (the Debian base with the suites the toolchain needs),
# `toolchain` (compilers, DPDK headers, Rust), `build` (dependencies, then
# rvs), `runtime` (the slim image: the two binaries, the DPDK libraries they
# link and the virtual-device drivers, no compiler). The layers are ordered
# by how often they change: editing src/ rebuilds only rvs itself, editing
# tests/ or docs/ rebuilds nothing.
#
# Build arguments:
#   BASE                 the Debian 12 image (default debian:12). Without a
#                        registry, import one (docs/containers.md).
#   RUST_TOOLCHAIN       debian (default): Debian's rustc-web/cargo-web from
#                        bookworm-security (1.85 in plain bookworm is too
#                        old); needs only a Debian mirror. rustup: the
#                        upstream installer (needs static.rust-lang.org),
#                        version RUST_VERSION.
#   RUST_MIN             the oldest rustc rvs builds with; must equal
#                        rust-version in Cargo.toml (the smoke test checks).
#   CARGO_NET_OFFLINE    true: take the crates from a registry mounted at
#                        /root/.cargo/registry instead of crates.io (podman/
#                        buildah: -v "$HOME/.cargo/registry:/root/.cargo/registry:ro").
#                        Declared after the toolchain step on purpose: flipping
#                        it does not reinstall the toolchain.

ARG BASE=debian:12

FROM ${BASE} AS base
ARG DEBIAN_MIRROR=http://deb.debian.org/debian
ARG DEBIAN_SECURITY_MIRROR=http://deb.debian.org/debian-security
ENV DEBIAN_FRONTEND=noninteractive
# The official debian:12 image lists bookworm, bookworm-updates and
# bookworm-security; a debootstrapped base lists only bookworm, whose
# rustc-web (1.85) cannot build the locked crates. Add whichever suite is
# missing so every base gets the same packages. No documentation, manual
# pages or translations in either stage (as debian:12-slim does).
RUN set -eu; \
    . /etc/os-release; cn="$VERSION_CODENAME"; \
    srcs=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null || true); \
    for s in "$cn-updates $DEBIAN_MIRROR" "$cn-security $DEBIAN_SECURITY_MIRROR"; do \
      suite=${s% *}; mirror=${s#* }; \
      case "$srcs" in *"$suite"*) ;; \
        *) echo "deb $mirror $suite main" >> /etc/apt/sources.list.d/rvs-suites.list ;; \
      esac; \
    done; \
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
      'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
      'path-exclude /usr/share/locale/*' 'path-exclude /usr/share/lintian/*' \
      > /etc/dpkg/dpkg.cfg.d/rvs-nodoc

FROM base AS toolchain
ARG RUST_TOOLCHAIN=debian
ARG RUST_VERSION=1.88.0
ARG RUST_MIN=1.88
RUN set -eu; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
        dpdk-dev pkg-config build-essential libclang-dev ca-certificates; \
    case "$RUST_TOOLCHAIN" in \
      debian) apt-get install -y --no-install-recommends rustc-web cargo-web ;; \
      rustup) apt-get install -y --no-install-recommends curl; \
              curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
                | sh -s -- -y --profile minimal --default-toolchain "$RUST_VERSION"; \
              ln -s /root/.cargo/bin/cargo /root/.cargo/bin/rustc /usr/local/bin/ ;; \
      *) echo "RUST_TOOLCHAIN must be debian or rustup" >&2; exit 1 ;; \
    esac; \
    apt-get clean; rm -rf /var/lib/apt/lists/*; \
    have=$(rustc --version | cut -d' ' -f2); \
    if [ "$(printf '%s\n' "$RUST_MIN" "$have" | sort -V | head -n1)" != "$RUST_MIN" ]; then \
      echo "rustc $have is older than $RUST_MIN, the oldest that builds rvs's locked" \
           "crates. RUST_TOOLCHAIN=debian needs the bookworm-security suite" \
           "(rustc-web); or use --build-arg RUST_TOOLCHAIN=rustup." >&2; \
      exit 1; \
    fi; \
    cargo --version; rustc --version

FROM toolchain AS build
WORKDIR /src
ARG CARGO_NET_OFFLINE=false
# No debug info in the image's binaries (the repository's release profile
# keeps line tables for perf on the host): a smaller image, a faster build.
ENV CARGO_PROFILE_RELEASE_DEBUG=0
# Dependencies first, built against stub sources: they change only with
# Cargo.lock, so a source change reuses this layer. The stubs' fingerprints
# are removed so that the real sources (whose copied mtimes may be older)
# are compiled for sure.
COPY Cargo.toml Cargo.lock build.rs ./
COPY dpdk-bindings dpdk-bindings
# A workspace member (librvs_ipvs.so, the preload library for unmodified
# ipvsadm/keepalived): small and rarely changed, so it joins this layer.
COPY preload preload
# The benchmarks' crate is a workspace member too: only its manifest is
# needed (with stub binaries) for cargo to load the workspace.
COPY bench/Cargo.toml bench/Cargo.toml
RUN set -eu; \
    mkdir -p src/bin bench/src/bin; : > src/lib.rs; \
    for b in rvsd rvsadm; do echo 'fn main() {}' > "src/bin/$b.rs"; done; \
    for b in rvs-bench rvs-tablebench rvs-healthbench; do echo 'fn main() {}' > "bench/src/bin/$b.rs"; done; \
    cargo build --release --locked --bin rvsd --bin rvsadm; \
    rm -rf src target/release/.fingerprint/rvs-* target/release/rvsd target/release/rvsadm
COPY src src
COPY conf conf
# /out/runtime-packages: the Debian packages of the shared libraries the
# binaries link (librte_*, ...), installed by the runtime stage, which thus
# follows whatever DPDK libraries rvs comes to use. target/release goes at
# the end: nothing builds on this layer, and each rebuild leaves a cache
# layer of a few MB instead of hundreds.
RUN set -eu; \
    cargo build --release --locked --bin rvsd --bin rvsadm; \
    cargo build --release --locked -p rvs-ipvs-preload; \
    mkdir -p /out/bin /out/conf /out/lib; \
    cp target/release/rvsd target/release/rvsadm /out/bin/; \
    cp target/release/librvs_ipvs.so /out/lib/; \
    strip --strip-debug /out/bin/* /out/lib/*; \
    cp conf/*.json /out/conf/; \
    for b in /out/bin/*; do ldd "$b"; done \
      | awk '$3 ~ /^\// {print $3}' | xargs -r realpath | sort -u \
      | while read -r p; do dpkg -S "$p" 2>/dev/null || dpkg -S "${p#/usr}" || true; done \
      | cut -d: -f1 | sort -u > /out/runtime-packages; \
    cat /out/runtime-packages; ls -l /out/bin; \
    rm -rf target/release

FROM base AS runtime
# DPDK loads every PMD in its plugin directory at start; the packages below
# put just these drivers there: the virtual devices rvs uses (af_packet,
# tap, null, ring, pcap), the vdev bus and the ring mempool. iproute2 is for
# configuring a net_tap interface inside the container.
ARG DPDK_DRIVERS="librte-bus-vdev23 librte-mempool-ring23 librte-net-af-packet23 librte-net-tap23 librte-net-null23 librte-net-ring23 librte-net-pcap23"
COPY --from=build /out/runtime-packages /tmp/runtime-packages
RUN set -eu; \
    apt-get update; \
    apt-get install -y --no-install-recommends iproute2 $DPDK_DRIVERS $(cat /tmp/runtime-packages); \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log /tmp/runtime-packages; \
    mkdir -p /run/rvs
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build /out/lib/ /usr/local/lib/
COPY --from=build /out/conf/ /etc/rvs/
ENTRYPOINT ["rvsd"]
CMD ["--help"]
