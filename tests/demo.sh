#!/usr/bin/env bash
# rvs in action (the README's main command):  bash tests/demo.sh
#
# Builds rvs, builds the NAT topology of tests/lib/topo.sh (name "rvsdemo"),
# starts rvsd in rvsdemo-lb on its two af_packet ports, configures a
# round-robin virtual service 10.0.0.100:80 over two nginx real servers, and
# sends 10 HTTP requests and 3 pings from the client namespace. Everything is
# torn down at the end, also on failure or Ctrl-C. Exits non-zero if any
# request failed. Needs root.
#
# Overrides: RVS_DEMO_NAME (topology name), RVSD_BIN / RVSADM_BIN (binaries,
# default target/release/*), RVS_EAL_MEM (see tests/lib/setup.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

NAME=${RVS_DEMO_NAME:-rvsdemo}
STATE=/tmp/rvs-topo/$NAME
RVSD=${RVSD_BIN:-$ROOT/target/release/rvsd}
RVSADM=${RVSADM_BIN:-$ROOT/target/release/rvsadm}
SOCK=$STATE/rvsd.sock
LOG=$STATE/rvsd.log
KEPT_LOG=/tmp/$NAME-rvsd.log
rvsd_pid=

say() { printf '\n### %s\n' "$*"; }

cleanup() {
    local rc=$? i
    set +e
    trap - EXIT INT TERM
    if [ -n "$rvsd_pid" ] && kill -0 "$rvsd_pid" 2>/dev/null; then
        say "stopping rvsd (SIGTERM)"
        kill -TERM "$rvsd_pid"
        for ((i = 0; i < 100; i++)); do   # up to 10 s
            kill -0 "$rvsd_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$rvsd_pid" 2>/dev/null; then
            echo "rvsd ignored SIGTERM for 10 s; sending SIGKILL"
            kill -KILL "$rvsd_pid"
        fi
        wait "$rvsd_pid" 2>/dev/null
        echo "rvsd exited with status $?"
    fi
    [ -f "$LOG" ] && cp "$LOG" "$KEPT_LOG" && echo "rvsd log kept in $KEPT_LOG"
    bash "$ROOT/tests/lib/topo.sh" down "$NAME"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rvsadm() { timeout 10 "$RVSADM" --socket "$SOCK" "$@"; }

say "setup"
# shellcheck source=tests/lib/setup.sh
source tests/lib/setup.sh

say "cargo build --release"
cargo build --release

say "topology $NAME"
bash tests/lib/topo.sh up "$NAME" >/dev/null
# shellcheck disable=SC1091 # written by topo.sh up
source "$STATE/env"
echo "client $CLIENT_IP in $CLIENT_NS; director $LB_NS (lb0 $LB0_IP, lb1 $LB1_IP);"
echo "real servers $RS1_IP ($RS1_NS), $RS2_IP ($RS2_NS); VIP $VIP"

# EAL memory: --in-memory with hugepages, else --no-huge plus a file prefix of
# our own so the runtime files do not collide with another DPDK process.
read -r -a mem <<<"$RVS_EAL_MEM"
eal=(--no-pci "${mem[@]}")
[[ " ${mem[*]} " == *" --in-memory "* ]] || eal+=(--file-prefix "$NAME")
eal+=(-l 0 --vdev "net_af_packet0,iface=$LB0_IF" --vdev "net_af_packet1,iface=$LB1_IF")
eal_json=$(printf '"%s", ' "${eal[@]}")
cat > "$STATE/rvsd.json" <<EOF
{
  "eal_args": [${eal_json%, }],
  "ports": [ {"device": "net_af_packet0", "ipv4": "$LB0_IP/24"},
             {"device": "net_af_packet1", "ipv4": "$LB1_IP/24"} ],
  "workers": [1],
  "idle_sleep_us": 50,
  "services": []
}
EOF
say "rvsd config ($STATE/rvsd.json)"
cat "$STATE/rvsd.json"

say "starting rvsd in $LB_NS"
# `ip netns exec` execs rvsd, so $! is rvsd's own pid.
ip netns exec "$LB_NS" "$RVSD" --config "$STATE/rvsd.json" --socket "$SOCK" \
    --log-level info </dev/null >"$LOG" 2>&1 &
rvsd_pid=$!
ready=0
for ((i = 0; i < 300; i++)); do   # up to 30 s
    if ! kill -0 "$rvsd_pid" 2>/dev/null; then
        wait "$rvsd_pid" && st=0 || st=$?
        rvsd_pid=
        echo "rvsd exited (status $st) before it was ready; its log:"
        cat "$LOG"
        exit 1
    fi
    if [ -S "$SOCK" ] && rvsadm -L -n >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 0.1
done
if [ "$ready" -ne 1 ]; then
    echo "rvsd not ready after 30 s (no answer to rvsadm -L -n); its log:"
    cat "$LOG"
    exit 1
fi
echo "rvsd ready (pid $rvsd_pid, socket $SOCK)"

say "configuring the virtual service"
for args in "-A -t $VIP:80 -s rr" "-a -t $VIP:80 -r $RS1_IP:80 -m -w 1" \
            "-a -t $VIP:80 -r $RS2_IP:80 -m -w 1"; do
    echo "+ rvsadm $args"
    # shellcheck disable=SC2086 # split into arguments on purpose
    rvsadm $args
done

say "10 requests from $CLIENT_NS to http://$VIP/"
failed=0
for i in $(seq 1 10); do
    if body=$(ip netns exec "$CLIENT_NS" curl -s --max-time 5 "http://$VIP/"); then
        echo "request $i answered by ${body%$'\n'}"
    else
        echo "request $i FAILED (curl exit $?)"
        failed=$((failed + 1))
    fi
done

say "ping -c 3 $VIP from $CLIENT_NS"
if ! ip netns exec "$CLIENT_NS" ping -c 3 -W 1 "$VIP"; then
    echo "(ping got no answer)"
fi

say "rvsadm -L -n"
rvsadm -L -n || echo "(rvsadm -L -n failed)"
say "rvsadm -L -n --stats"
rvsadm -L -n --stats || echo "(rvsadm -L -n --stats failed; may not be implemented yet)"

if [ "$failed" -ne 0 ]; then
    say "$failed of 10 requests failed"
    exit 1
fi
say "all 10 requests answered"
