#!/usr/bin/env bash
# rvs in a container, doing its job (docs/containers.md):
#   bash contrib/container/up.sh      # one command up
#   bash contrib/container/down.sh    # one command down
#
#   ns rvsctr-c                 container rvsctr                ns rvsctr-sw (bridge br0)
#   client 10.0.0.2 -- rvs0 ==[net_tap0  rvsd  net_tap1]== rvs1 --+-- ns rvsctr-rs1 nginx 10.0.1.11
#                                                                 `-- ns rvsctr-rs2 nginx 10.0.1.12
#
# rvsd runs in its own container with the least privilege net_tap needs
# (--cap-drop ALL --cap-add NET_ADMIN --device /dev/net/tun, --network none,
# no hugepages: --no-huge). Its two net_tap ports appear as TAP interfaces
# in the container's network namespace; this script moves their kernel ends
# to the client and to the real servers' bridge, so every packet between
# client and nginx goes through rvsd (virtual service 10.0.0.100:80, NAT,
# round robin). It then asks rvsadm for the table and sends six requests.
# The real servers are Debian's nginx in network namespaces.
#
# Needs root, iproute2, nsenter (util-linux), curl, nginx, and podman or
# docker. Environment: RVS_CONTAINER_ENGINE (podman|docker), RVS_IMAGE
# (default localhost/rvs; built from the repository if missing, with
# RVS_BUILD_FLAGS), RVS_RUN_FLAGS (extra `run` flags, e.g. for a VM where
# crun fails: "--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096").
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=contrib/container/common.sh
source "$HERE/common.sh"

for cmd in ip nsenter curl nginx; do
    command -v "$cmd" >/dev/null || die "$cmd is not installed"
done
[ "$(id -u)" = 0 ] || die "run as root (namespaces, nsenter)"

if ! "$ENGINE" image inspect "$IMAGE" >/dev/null 2>&1; then
    say "building $IMAGE"
    # shellcheck disable=SC2086 # RVS_BUILD_FLAGS: several words on purpose
    "$ENGINE" build ${RVS_BUILD_FLAGS:-} -t "$IMAGE" "$ROOT"
fi

bash "$HERE/down.sh" >/dev/null 2>&1 || true
trap 'rc=$?; [ $rc -eq 0 ] || { say "up failed; rvsd log:"; "$ENGINE" logs "$NAME" 2>&1 | tail -n 20; say "cleaning up"; bash "$HERE/down.sh"; }; exit $rc' EXIT
mkdir -p "$STATE/run"

say "namespaces: client, bridge, two nginx real servers"
for role in c sw rs1 rs2; do
    ip netns add "$NAME-$role"
    ip -n "$NAME-$role" link set lo up
    ip netns exec "$NAME-$role" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
        net.ipv6.conf.default.disable_ipv6=1
done
ip -n "$NAME-sw" link add br0 type bridge
ip -n "$NAME-sw" link set br0 up
for n in 1 2; do
    rs=$NAME-rs$n
    ip -n "$rs" link add eth0 type veth peer name "p$n" netns "$NAME-sw"
    ip -n "$NAME-sw" link set "p$n" master br0 up
    ip -n "$rs" addr add "10.0.1.1$n/24" dev eth0
    ip -n "$rs" link set eth0 up
    ip -n "$rs" route add default via 10.0.1.1
    mkdir -p "$STATE/rs$n/tmp"
    cat > "$STATE/rs$n/nginx.conf" <<NGINX
user root;
worker_processes 1;
daemon on;
pid $STATE/rs$n/nginx.pid;
error_log $STATE/rs$n/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $STATE/rs$n/tmp;
    server {
        listen 10.0.1.1$n:80;
        location / { return 200 "rs$n\n"; }
    }
}
NGINX
    ip netns exec "$rs" nginx -q -c "$STATE/rs$n/nginx.conf" -p "$STATE/rs$n"
done

cat > "$STATE/rvsd.json" <<JSON
{
  "eal_args": ["--no-pci", "--no-huge", "-m", "512", "-l", "0",
               "--vdev", "net_tap0,iface=rvs0", "--vdev", "net_tap1,iface=rvs1"],
  "ports": [
    {"device": "net_tap0", "ipv4": "10.0.0.1/24"},
    {"device": "net_tap1", "ipv4": "10.0.1.1/24"}
  ],
  "workers": [1],
  "idle_sleep_us": 100,
  "services": [
    {"proto": "tcp", "vip": "10.0.0.100", "port": 80, "sched": "rr",
     "dests": [
       {"ip": "10.0.1.11", "port": 80, "fwd": "nat"},
       {"ip": "10.0.1.12", "port": 80, "fwd": "nat"}
     ]}
  ]
}
JSON

say "starting rvsd in container $NAME ($ENGINE run --cap-drop ALL --cap-add NET_ADMIN --device /dev/net/tun)"
# shellcheck disable=SC2086 # RVS_RUN_FLAGS: several words on purpose
"$ENGINE" run -d --name "$NAME" ${RVS_RUN_FLAGS:-} \
    --network none --cap-drop ALL --cap-add NET_ADMIN --device /dev/net/tun \
    -v "$STATE/rvsd.json:/etc/rvs/rvsd.json:ro" -v "$STATE/run:/run/rvs" \
    "$IMAGE" --config /etc/rvs/rvsd.json >/dev/null
pid=$("$ENGINE" inspect -f '{{.State.Pid}}' "$NAME")

# Readiness: rvsd answers rvsadm, so its ports are started (moving a TAP
# interface away before then would fail the driver's start).
for ((i = 0; ; i++)); do
    "$ENGINE" exec "$NAME" rvsadm -L -n >/dev/null 2>&1 && break
    if [ "$("$ENGINE" inspect -f '{{.State.Running}}' "$NAME")" != true ] || [ $i -ge 300 ]; then
        die "rvsd did not become ready"
    fi
    sleep 0.1
done
nsenter -t "$pid" -n ip link set rvs0 netns "$NAME-c"
nsenter -t "$pid" -n ip link set rvs1 netns "$NAME-sw"
# net_tap gives the kernel interface the DPDK port's own MAC address; as the
# far end of a wire it needs another one (on the bridge, a port with rvsd's
# MAC would make br0 keep rvsd's frames for itself).
ip -n "$NAME-c" link set rvs0 address 02:00:0a:00:00:02
ip -n "$NAME-sw" link set rvs1 address 02:00:0a:00:01:fe
ip -n "$NAME-c" addr add 10.0.0.2/24 dev rvs0
ip -n "$NAME-c" link set rvs0 up
ip -n "$NAME-c" route add default via 10.0.0.1
ip -n "$NAME-sw" link set rvs1 master br0 up

say "rvsadm -L -n (in the container)"
"$ENGINE" exec "$NAME" rvsadm -L -n

say "six requests from the client to http://10.0.0.100/"
ok=0
for i in 1 2 3 4 5 6; do
    if body=$(ip netns exec "$NAME-c" curl -sS --max-time 5 http://10.0.0.100/); then
        echo "request $i: $body"
        ok=$((ok + 1))
    else
        echo "request $i: failed"
    fi
done
"$ENGINE" exec "$NAME" rvsadm -L -n --stats
[ $ok -eq 6 ] || die "$((6 - ok)) of 6 requests failed"
say "up. Try: ip netns exec $NAME-c curl http://10.0.0.100/ ;" \
    "$ENGINE exec $NAME rvsadm -L -n. Down: bash contrib/container/down.sh"
