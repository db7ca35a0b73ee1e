#!/usr/bin/env bash
# Prepares a Debian 12 machine (as root) to build and test rvs. Idempotent and
# quick on reruns: it installs only what is missing.
#
#   bash tests/lib/setup.sh          # run: prints what it did and RVS_EAL_MEM=...
#   source tests/lib/setup.sh        # source: the same, and exports RVS_EAL_MEM
#
# RVS_EAL_MEM is the EAL memory flag the tests and the demo pass to rvsd:
# "--in-memory" when enough 2 MB hugepages are free, else "--no-huge -m 512"
# (DPDK rejects the two together). A preset RVS_EAL_MEM is kept as it is.
#
# Written to be sourced too: no `set -e`, no `exit`; it never changes the
# caller's shell options and returns non-zero on failure.

rvs_setup_log() { printf 'setup: %s\n' "$*" >&2; }

rvs_setup_packages() {
    local pkgs=(dpdk-dev pkg-config build-essential libclang-dev iproute2 ethtool
                nginx curl wrk iputils-ping tcpdump procps python3
                ipvsadm keepalived bird2
                systemd)  # systemd-analyze verify (tests/deb_package.sh)
    local missing=() p
    for p in "${pkgs[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        rvs_setup_log "packages: all present"
        return 0
    fi
    rvs_setup_log "packages: installing ${missing[*]}"
    # The nginx package would start a system nginx on :80 in the root
    # namespace; the tests run their own nginx inside namespaces, so keep
    # package scripts from starting services (policy-rc.d exit 101).
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=1
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null || rc=$?
    if [ "$rc" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" </dev/null || rc=$?
    fi
    [ "$created_policy" -eq 1 ] && rm -f "$policy"
    if [ "$rc" -ne 0 ]; then
        rvs_setup_log "packages: apt-get failed (rc=$rc)"
        return "$rc"
    fi
}

rvs_setup_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        rvs_setup_log "rust: cargo missing, installing with rustup"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
            | sh -s -- -y --profile default || return 1
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env" || return 1
    fi
    rvs_setup_log "rust: $(cargo --version 2>/dev/null)"
    if cargo nextest --version >/dev/null 2>&1; then
        rvs_setup_log "rust: cargo-nextest present"
    else
        rvs_setup_log "rust: cargo-nextest absent (optional; cargo test is used)"
    fi
}

# cargo-fuzz runs the bounded fuzz step (tests/fuzz/run.sh) on the stable
# toolchain. A failed install does not stop the setup: the fuzz step then
# fails on its own and the other steps still run.
rvs_setup_cargo_fuzz() {
    if cargo fuzz --version >/dev/null 2>&1; then
        rvs_setup_log "rust: $(cargo fuzz --version 2>/dev/null) present"
        return 0
    fi
    rvs_setup_log "rust: installing cargo-fuzz"
    if ! cargo install --quiet --locked cargo-fuzz --version '^0.13' </dev/null; then
        rvs_setup_log "rust: cargo-fuzz could not be installed (the fuzz step will fail)"
    fi
    return 0
}

# prometheus_client's text parser checks the /metrics output in the e2e tests.
rvs_setup_python() {
    if python3 -c 'import prometheus_client.parser' >/dev/null 2>&1; then
        rvs_setup_log "python: prometheus_client present"
        return 0
    fi
    rvs_setup_log "python: installing prometheus-client"
    # Debian's python3 is "externally managed" (PEP 668): pip needs
    # --break-system-packages there; older pips do not know the flag.
    python3 -m pip install --quiet --break-system-packages prometheus-client </dev/null \
        || python3 -m pip install --quiet prometheus-client </dev/null \
        || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            python3-prometheus-client </dev/null
    if ! python3 -c 'import prometheus_client.parser' >/dev/null 2>&1; then
        rvs_setup_log "python: prometheus_client could not be installed"
        return 1
    fi
}

rvs_setup_hugepages() {
    local hp=/sys/kernel/mm/hugepages/hugepages-2048kB want=512 have free
    if [ -n "${RVS_EAL_MEM:-}" ]; then
        rvs_setup_log "hugepages: RVS_EAL_MEM preset, not touching hugepages"
        return 0
    fi
    if [ -d "$hp" ]; then
        have=$(cat "$hp/nr_hugepages" 2>/dev/null || echo 0)
        if [ "$have" -lt "$want" ]; then
            echo "$want" > "$hp/nr_hugepages" 2>/dev/null \
                || rvs_setup_log "hugepages: cannot write $hp/nr_hugepages"
        fi
        if ! grep -qs ' /dev/hugepages hugetlbfs ' /proc/mounts; then
            mkdir -p /dev/hugepages 2>/dev/null
            mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null \
                || rvs_setup_log "hugepages: cannot mount hugetlbfs at /dev/hugepages"
        fi
    fi
    free=$(cat "$hp/free_hugepages" 2>/dev/null || echo 0)
    # DPDK finds hugepages through a mounted hugetlbfs, even with --in-memory.
    if [ "$free" -ge 256 ] && grep -qs ' hugetlbfs ' /proc/mounts; then
        RVS_EAL_MEM="--in-memory"
    else
        RVS_EAL_MEM="--no-huge -m 512"
    fi
    rvs_setup_log "hugepages: $free free 2 MB pages"
}

rvs_setup() {
    if [ "$(id -u)" -ne 0 ]; then
        rvs_setup_log "must run as root (namespaces, hugepages, apt-get)"
        return 1
    fi
    rvs_setup_packages || return 1
    rvs_setup_rust || return 1
    rvs_setup_cargo_fuzz
    rvs_setup_python || return 1
    rvs_setup_hugepages
    export RVS_EAL_MEM
    rvs_setup_log "RVS_EAL_MEM=\"$RVS_EAL_MEM\""
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    rvs_setup
    rc=$?
    [ "$rc" -eq 0 ] && printf 'RVS_EAL_MEM="%s"\n' "$RVS_EAL_MEM"
    exit "$rc"
else
    rvs_setup
fi
