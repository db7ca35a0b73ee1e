#!/usr/bin/env bash
# End-to-end comparison a user would make: the same namespace topology
# (tests/lib/topo.sh: a client, a director, two nginx real servers) with the
# director played in turn by
#   router   the director's kernel routing only, no load balancing: the
#            ceiling of this veth topology (the client talks to rs1 directly)
#   rvs      rvsd on net_af_packet, NAT, rr over both servers
#   nftables the kernel's nftables DNAT (numgen inc mod 2), NAT, conntrack
#   haproxy  Debian's HAProxy in TCP mode, roundrobin (a proxy: two TCP
#            connections per client connection)
# and wrk in the client namespace. Each runs twice: HTTP keep-alive
# (requests over few connections) and `Connection: close` (a new TCP
# connection per request, what a layer-4 balancer mostly does).
#
#   bash bench/e2e.sh [--secs N] [--conns N]     (root; installs what it needs)
#
# Writes bench/out/e2e.json and, with --md FILE, a Markdown section; with
# --chart FILE.png a chart (python3-matplotlib). veth pairs and af_packet
# bound all of these here: every packet crosses several veths and, for rvs,
# two af_packet sockets; see bench/RESULTS.md for what that means.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=10
conns=32
md=""
chart=""
while [ $# -gt 0 ]; do
    case $1 in
        --secs) secs=$2; shift 2 ;;
        --conns) conns=$2; shift 2 ;;
        --md) md=$2; shift 2 ;;
        --chart) chart=$2; shift 2 ;;
        *) echo "usage: $0 [--secs N] [--conns N] [--md FILE] [--chart FILE.png]" >&2; exit 2 ;;
    esac
done

# shellcheck source=tests/lib/setup.sh
source tests/lib/setup.sh >/dev/null || { echo "e2e: setup failed" >&2; exit 1; }
need=()
for p in wrk haproxy nftables python3-matplotlib; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
    echo "e2e: installing ${need[*]}" >&2
    policy=/usr/sbin/policy-rc.d created=0
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null
    [ "$created" -eq 1 ] && rm -f "$policy"
fi
cargo build --release --bin rvsd --bin rvsadm
RVSD=$PWD/target/release/rvsd

name="e2eb$$"
out=bench/out
mkdir -p "$out"
work=$(mktemp -d)
rvsd_pid=""
cleanup() {
    [ -n "$rvsd_pid" ] && kill "$rvsd_pid" 2>/dev/null || true
    [ -n "$rvsd_pid" ] && wait "$rvsd_pid" 2>/dev/null || true
    bash tests/lib/topo.sh down "$name" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

lb="$name-lb" c="$name-c"
VIP=10.0.0.100

# Turn the director namespace into a kernel host on lb0/lb1 (the topology
# leaves them without addresses and ARP for DPDK).
kernel_director() {
    ip -n "$lb" link set lb0 arp on
    ip -n "$lb" link set lb1 arp on
    ip -n "$lb" addr add 10.0.0.1/24 dev lb0
    ip -n "$lb" addr add 10.0.1.1/24 dev lb1
    ip netns exec "$lb" sysctl -qw net.ipv4.ip_forward="$1"
}

# wrk in the client namespace; prints one JSON object.
run_wrk() {
    local label=$1 url=$2 mode=$3 extra=()
    [ "$mode" = close ] && extra=(-H "Connection: close")
    # A warm-up second (ARP, caches), then the measured run.
    ip netns exec "$c" wrk -t1 -c4 -d1s "${extra[@]}" "$url" >/dev/null 2>&1 || true
    local txt
    txt=$(ip netns exec "$c" wrk -t2 -c"$conns" -d"${secs}s" --latency "${extra[@]}" "$url")
    echo "$txt" > "$work/$label-$mode.txt"
    /usr/bin/python3 - "$label" "$mode" "$work/$label-$mode.txt" <<'PY'
import json, re, sys
label, mode, path = sys.argv[1:]
t = open(path).read()
def dur(s):
    m = re.match(r"([\d.]+)(us|ms|s)", s)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v if u == "ms" else v * 1000
lat = {p: dur(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", t, re.M)}
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
errs = re.search(r"Socket errors: (.*)", t)
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
reqs = int(re.search(r"(\d+) requests in", t).group(1))
print(json.dumps({"director": label, "mode": mode, "rps": rps, "requests": reqs,
                  "p50_ms": lat.get("50"), "p90_ms": lat.get("90"), "p99_ms": lat.get("99"),
                  "socket_errors": errs.group(1) if errs else "", "non_2xx": int(non2xx.group(1)) if non2xx else 0}))
PY
}

results=()
fresh_topo() {
    bash tests/lib/topo.sh down "$name" >/dev/null 2>&1 || true
    bash tests/lib/topo.sh up "$name" nat >/dev/null
}

# 1. the kernel as a plain router: client -> rs1 directly
fresh_topo
kernel_director 1
for m in keepalive close; do results+=("$(run_wrk router "http://10.0.1.11/" "$m")"); done

# 2. rvs: conf/nat.json with this machine's EAL memory flags, rr
fresh_topo
/usr/bin/python3 - "$RVS_EAL_MEM" > "$work/rvs.json" <<'PY'
import json, sys
c = json.load(open("conf/nat.json"))
mem = sys.argv[1].split()
c["eal_args"] = [a for a in c["eal_args"] if a != "--in-memory"] + mem + ["--file-prefix", "e2ebench"] * ("--in-memory" not in mem)
c["services"] = [s for s in c["services"] if s["proto"] == "tcp"]
c["services"][0]["sched"] = "rr"
for d in c["services"][0]["dests"]:
    d["weight"] = 1
print(json.dumps(c))
PY
ip netns exec "$lb" "$RVSD" --config "$work/rvs.json" --socket "$work/rvs.sock" >"$work/rvsd.log" 2>&1 &
rvsd_pid=$!
for _ in $(seq 300); do [ -S "$work/rvs.sock" ] && break; sleep 0.1; done
[ -S "$work/rvs.sock" ] || { cat "$work/rvsd.log" >&2; echo "e2e: rvsd did not start" >&2; exit 1; }
for m in keepalive close; do results+=("$(run_wrk rvs "http://$VIP/" "$m")"); done
kill "$rvsd_pid"; wait "$rvsd_pid" 2>/dev/null || true; rvsd_pid=""

# 3. nftables DNAT
fresh_topo
kernel_director 1
ip -n "$lb" addr add "$VIP/32" dev lb0
ip netns exec "$lb" nft -f - <<EOF
table ip lb {
    chain pre {
        type nat hook prerouting priority dstnat;
        ip daddr $VIP tcp dport 80 dnat to numgen inc mod 2 map { 0 : 10.0.1.11, 1 : 10.0.1.12 }
    }
}
EOF
for m in keepalive close; do results+=("$(run_wrk nftables "http://$VIP/" "$m")"); done

# 4. HAProxy, TCP mode
fresh_topo
kernel_director 0
ip -n "$lb" addr add "$VIP/32" dev lb0
cat > "$work/haproxy.cfg" <<EOF
global
    maxconn 4096
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend vip
    bind $VIP:80
    default_backend rs
backend rs
    balance roundrobin
    server rs1 10.0.1.11:80
    server rs2 10.0.1.12:80
EOF
ip netns exec "$lb" haproxy -f "$work/haproxy.cfg" -D -p "$work/haproxy.pid"
for _ in $(seq 100); do [ -n "$(ip netns exec "$lb" ss -Hltn "sport = :80")" ] && break; sleep 0.1; done
for m in keepalive close; do results+=("$(run_wrk haproxy "http://$VIP/" "$m")"); done
kill "$(cat "$work/haproxy.pid")" 2>/dev/null || true

printf '%s\n' "${results[@]}" | /usr/bin/python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
json.dump(rows, open(sys.argv[1], "w"), indent=1)
' "$out/e2e.json"
cmd="bash bench/e2e.sh --secs $secs --conns $conns"
/usr/bin/python3 - "$out/e2e.json" "$cmd" "$md" "$chart" <<'PY'
import json, os, platform, subprocess, sys
rows = json.load(open(sys.argv[1]))
cmd, md, chart = sys.argv[2:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines = [f"Command: `{cmd}`; machine: {os.cpu_count()} vCPU {cpu}, kernel {platform.release()}.", "",
         "| director | connections | requests/s | p50 ms | p90 ms | p99 ms | errors |",
         "|---|---|---|---|---|---|---|"]
for r in rows:
    err = (r["socket_errors"] or "none") + (f", {r['non_2xx']} non-2xx" if r["non_2xx"] else "")
    lines.append(f"| {r['director']} | {r['mode']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {err} |")
text = "\n".join(lines) + "\n"
print(text)
if md:
    open(md, "w").write(text)
if chart:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    dirs = list(dict.fromkeys(r["director"] for r in rows))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    w = 0.38
    for i, mode in enumerate(["keepalive", "close"]):
        vals = [next((r["rps"] for r in rows if r["director"] == d and r["mode"] == mode), 0) for d in dirs]
        ax.bar([x + (i - 0.5) * w for x in range(len(dirs))], vals, w, label=mode)
    ax.set_xticks(range(len(dirs)), dirs)
    ax.set_ylabel("requests/s (wrk)")
    ax.set_title("HTTP through each director (veth + af_packet, same run)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(chart, dpi=110)
PY
