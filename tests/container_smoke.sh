#!/usr/bin/env bash
# Container smoke test (a step of tests/run.sh; docs/containers.md):
#   bash tests/container_smoke.sh
# 1. builds the image from the Dockerfile (the layer cache makes a rebuild
#    after a source change recompile only rvs, and one without a change
#    cost seconds);
# 2. in the image: `rvsd --check` on every shipped config, rvsd started on
#    net_null, `rvsadm` add + list, SIGTERM, exit status 0;
# 3. where the engine can run containers: least privilege as the docs give
#    it, each permission both granted (rvsd starts) and withheld (rvsd exits
#    1 naming it): net_tap (NET_ADMIN + /dev/net/tun), af_packet (NET_RAW +
#    NET_ADMIN) on a veth inside the container, hugepages (-v /dev/hugepages).
# Skipped, with a message and status 0, when neither podman nor docker is
# installed (tests/lib/setup.sh does not install one: the rest of the suite
# does not need it).
#
# Environment:
#   RVS_CONTAINER_ENGINE  podman or docker (default: podman if installed)
#   RVS_CONTAINER_BASE    base image (default: localhost/debian:12 if the
#                         engine has it, else debian:12 from the registry;
#                         contrib/container/make-base.sh builds the local one)
#   RVS_CONTAINER_ONLINE  1: let cargo download crates in the build (default
#                         with podman: build offline from the host's
#                         ~/.cargo/registry, which the test build has filled)
#   RVS_IMAGE             image name (default localhost/rvs:smoke)
#   RVS_CONTAINER_NO_RUN  1: behave as where `run` fails (buildah run only)
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
say() { printf 'container_smoke: %s\n' "$*"; }
fail() { say "FAILED: $*"; exit 1; }

engine=${RVS_CONTAINER_ENGINE:-}
if [ -z "$engine" ]; then
    for e in podman docker; do
        if command -v "$e" >/dev/null 2>&1; then engine=$e; break; fi
    done
fi
if [ -z "$engine" ]; then
    say "SKIPPED: no container engine (neither podman nor docker is installed;" \
        "apt-get install podman to run this test)"
    exit 0
fi
if ! command -v "$engine" >/dev/null 2>&1; then
    say "SKIPPED: RVS_CONTAINER_ENGINE=$engine is not installed"
    exit 0
fi
if ! "$engine" info >/dev/null 2>&1; then
    say "SKIPPED: $engine is installed but not usable ('$engine info' fails)"
    exit 0
fi

# The Dockerfile's toolchain check must agree with Cargo.toml's rust-version.
msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
dmin=$(sed -n 's/^ARG RUST_MIN=//p' Dockerfile)
[ -n "$msrv" ] && [ "$msrv" = "$dmin" ] ||
    fail "Dockerfile RUST_MIN ($dmin) differs from Cargo.toml rust-version ($msrv)"

image=${RVS_IMAGE:-localhost/rvs:smoke}
base=${RVS_CONTAINER_BASE:-}
if [ -z "$base" ]; then
    if "$engine" image inspect localhost/debian:12 >/dev/null 2>&1; then
        base=localhost/debian:12
    else
        base=debian:12
    fi
fi

build=(build --build-arg "BASE=$base")
if [ "$engine" = podman ]; then
    # chroot isolation and the host network: builds also inside VMs and
    # containers where podman cannot set up its own.
    build+=(--isolation=chroot --network=host)
    registry="${CARGO_HOME:-$HOME/.cargo}/registry"
    if [ "${RVS_CONTAINER_ONLINE:-0}" != 1 ] && [ -d "$registry" ]; then
        build+=(--build-arg CARGO_NET_OFFLINE=true -v "$registry:/root/.cargo/registry:ro")
    fi
fi
say "building $image with $engine from $base"
t0=$SECONDS
nice -n 10 "$engine" "${build[@]}" -t "$image" . >"${TMPDIR:-/tmp}/rvs-container-build.$$.log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
    tail -n 40 "${TMPDIR:-/tmp}/rvs-container-build.$$.log"
    rm -f "${TMPDIR:-/tmp}/rvs-container-build.$$.log"
    fail "image build ($engine ${build[*]})"
fi
rm -f "${TMPDIR:-/tmp}/rvs-container-build.$$.log"
size=$("$engine" image inspect --format '{{.Size}}' "$image" 2>/dev/null)
say "built in $((SECONDS - t0)) s; image size $((size / 1000000)) MB"

# ---- how to run a command in the image --------------------------------
# `run` is preferred; where it cannot start containers (some VMs: crun
# cannot set rlimits or cgroups), podman falls back to runc with rlimits no
# higher than the caller's, and finally to `buildah run` (no least-privilege
# checks then: buildah run takes no capability flags in chroot isolation).
run_flags=()
can_run=0
try_run() { "$engine" run --rm "$@" --entrypoint true "$image" >/dev/null 2>&1; }
if [ "${RVS_CONTAINER_NO_RUN:-0}" = 1 ]; then
    say "RVS_CONTAINER_NO_RUN=1: not using '$engine run'"
elif try_run; then
    can_run=1
elif [ "$engine" = podman ] && command -v runc >/dev/null 2>&1 &&
    try_run --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096; then
    run_flags=(--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
    can_run=1
    say "podman run works here only with ${run_flags[*]} (crun failed)"
fi

# in_image [RUN FLAGS...] -- SCRIPT: sh -c SCRIPT in a fresh container.
in_image() {
    local flags=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do flags+=("$1"); shift; done
    shift
    if [ $can_run = 1 ]; then
        timeout 120 "$engine" run --rm "${run_flags[@]}" "${flags[@]}" --entrypoint sh "$image" -c "$1"
    else
        local ctr rc
        ctr=$(buildah from "$image") || return 1
        timeout 120 buildah run --isolation=chroot "$ctr" -- sh -c "$1"
        rc=$?
        buildah rm "$ctr" >/dev/null
        return $rc
    fi
}
if [ $can_run = 0 ]; then
    if [ "$engine" = podman ] && command -v buildah >/dev/null 2>&1; then
        say "'podman run' does not work here: running in the image with buildah run instead"
    else
        fail "'$engine run' does not work here (see the error of: $engine run --rm $image)"
    fi
fi

# The script run inside the container: rvsd with CONFIG (JSON text) in the
# background, ready when `rvsadm -L -n` answers (bounded), then SCRIPT_BODY,
# then SIGTERM and rvsd's exit status.
daemon_script() {
    cat <<EOF
set -u
cat > /tmp/rvsd.json <<'JSON'
$1
JSON
rvsd --config /tmp/rvsd.json --socket /run/rvs/rvsd.sock --log-level warn &
pid=\$!
i=0
until rvsadm -L -n >/dev/null 2>&1; do
    i=\$((i + 1))
    if [ \$i -gt 300 ] || ! kill -0 \$pid 2>/dev/null; then
        echo "rvsd did not become ready" >&2; kill -KILL \$pid 2>/dev/null; exit 1
    fi
    sleep 0.1
done
$2
kill -TERM \$pid
wait \$pid
rc=\$?
echo "rvsd exit status \$rc"
exit \$rc
EOF
}

null_cfg='{"eal_args": ["--no-pci", "--no-huge", "-m", "256", "--file-prefix", "smoke",
             "-l", "0", "--vdev", "net_null0"],
 "ports": [{"device": "net_null0", "ipv4": "10.9.0.1/24"}],
 "workers": [1], "mbufs": 8191, "idle_sleep_us": 1000, "services": []}'
add_list='rvsadm -A -t 10.9.0.100:80 -s rr || exit 1
rvsadm -a -t 10.9.0.100:80 -r 10.9.0.11:80 -m || exit 1
out=$(rvsadm -L -n) || exit 1
echo "$out"
echo "$out" | grep -q "10.9.0.11:80" || { echo "real server not listed" >&2; exit 1; }'

failed=()
check() {
    local name=$1; shift
    if "$@"; then say "ok: $name"; else say "FAILED: $name"; failed+=("$name"); fi
}

# 2. The basic smoke run (as root in the container, default capabilities).
check "rvsd --check on every shipped config" in_image -- \
    'set -e; n=0; for c in /etc/rvs/*.json; do rvsd --check --config "$c"; n=$((n+1)); done; [ $n -ge 1 ]'
check "rvsd on net_null, rvsadm add/list, SIGTERM exit 0" in_image -- \
    "$(daemon_script "$null_cfg" "$add_list")"

# 3. Least privilege, each permission granted and withheld.
# refused EXPECTED [FLAGS...]: rvsd on the config in $cfg must exit 1 before
# DPDK starts, saying EXPECTED.
refused() {
    local expected=$1; shift
    local out
    out=$(in_image "$@" -- "$(daemon_script "$cfg" 'echo "rvsd started" >&2; exit 3')" 2>&1)
    if [ $? -eq 1 ] && printf '%s' "$out" | grep -qF -- "$expected" &&
        ! printf '%s' "$out" | grep -q 'no DPDK port named'; then
        return 0
    fi
    printf '%s\n' "$out" | tail -n 20
    return 1
}
if [ $can_run = 1 ]; then
    drop=(--cap-drop ALL --network none)
    cfg='{"eal_args": ["--no-pci", "--no-huge", "-m", "256", "--file-prefix", "tap",
           "-l", "0", "--vdev", "net_tap0,iface=rvs0"],
     "ports": [{"device": "net_tap0", "ipv4": "10.9.0.1/24"}],
     "workers": [1], "mbufs": 8191, "idle_sleep_us": 1000, "services": []}'
    check "net_tap with NET_ADMIN + /dev/net/tun only" in_image "${drop[@]}" \
        --cap-add NET_ADMIN --device /dev/net/tun -- \
        "$(daemon_script "$cfg" "$add_list
ip link show rvs0 || exit 1")"
    check "net_tap without NET_ADMIN is refused, naming it" \
        refused "CAP_NET_ADMIN" "${drop[@]}" --device /dev/net/tun
    check "net_tap without /dev/net/tun is refused, naming it" \
        refused "/dev/net/tun" "${drop[@]}" --cap-add NET_ADMIN

    # af_packet binds an interface of the container's network namespace: a
    # veth pair made inside it (so the test touches no host interface).
    cfg='{"eal_args": ["--no-pci", "--no-huge", "-m", "256", "--file-prefix", "afp",
           "-l", "0", "--vdev", "net_af_packet0,iface=va"],
     "ports": [{"device": "net_af_packet0", "ipv4": "10.9.0.1/24"}],
     "workers": [1], "mbufs": 8191, "idle_sleep_us": 1000, "services": []}'
    veth='ip link add va type veth peer name vb && ip link set va up && ip link set vb up || exit 1
'
    check "af_packet with NET_RAW + NET_ADMIN only" in_image "${drop[@]}" \
        --cap-add NET_RAW --cap-add NET_ADMIN -- "$veth$(daemon_script "$cfg" "$add_list")"
    # (CAP_NET_ADMIN stays, to make the veth; the refusal is about NET_RAW.)
    refused_afp() {
        local out
        out=$(in_image "${drop[@]}" --cap-add NET_ADMIN -- \
            "$veth$(daemon_script "$cfg" 'echo "rvsd started" >&2; exit 3')" 2>&1)
        if [ $? -eq 1 ] && printf '%s' "$out" | grep -qF -- "--cap-add NET_RAW" &&
            ! printf '%s' "$out" | grep -q 'no DPDK port named'; then
            return 0
        fi
        printf '%s\n' "$out" | tail -n 20
        return 1
    }
    check "af_packet without NET_RAW is refused, naming it" refused_afp

    # Hugepages from the host's hugetlbfs (needs free ones there).
    free=$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages 2>/dev/null || echo 0)
    if [ "$free" -ge 64 ] && grep -q ' /dev/hugepages hugetlbfs ' /proc/mounts; then
        cfg='{"eal_args": ["--no-pci", "--huge-unlink", "-m", "64", "--file-prefix", "smokehp",
               "-l", "0", "--vdev", "net_null0"],
         "ports": [{"device": "net_null0", "ipv4": "10.9.0.1/24"}],
         "workers": [1], "mbufs": 8191, "idle_sleep_us": 1000, "services": []}'
        check "hugepages with -v /dev/hugepages only" in_image "${drop[@]}" \
            -v /dev/hugepages:/dev/hugepages -- "$(daemon_script "$cfg" "$add_list")"
        check "hugepages without the mount are refused, naming it" \
            refused "-v /dev/hugepages:/dev/hugepages" "${drop[@]}"
        # --in-memory takes hugepages without any mount or privilege.
        cfg='{"eal_args": ["--no-pci", "--in-memory", "-m", "64", "-l", "0", "--vdev", "net_null0"],
         "ports": [{"device": "net_null0", "ipv4": "10.9.0.1/24"}],
         "workers": [1], "mbufs": 8191, "idle_sleep_us": 1000, "services": []}'
        check "hugepages with --in-memory and no mount" in_image "${drop[@]}" -- \
            "$(daemon_script "$cfg" "$add_list")"
    else
        say "skipped the hugepage checks: fewer than 64 free 2 MB hugepages or no /dev/hugepages"
    fi
else
    say "SKIPPED the least-privilege checks: they need '$engine run'" \
        "(tests/e2e_permissions.rs checks the same diagnostics without an engine)"
fi

say "done in $((SECONDS - t0)) s"
if [ ${#failed[@]} -ne 0 ]; then
    fail "${failed[*]}"
fi
say "all passed"
