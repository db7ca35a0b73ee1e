#!/usr/bin/env python3
"""Turn rvs-bench's results.json into RESULTS.md and PNG charts."""
import argparse
import os, json, subprocess, datetime


def noop_for(sc, s):
    """The harness's no-op rate to measure scenario `s` against: the one of
    its family at its flow count if the run has it, else at the fewest
    flows (the generator's own cost grows with the flows in its stream)."""
    name = "ring_noop6_64" if s.get("ip") == 6 else "ring_noop_64"
    rows = [x for x in sc if x["name"] == name and x["mpps"]]
    same = [x for x in rows if x["flows"] == s["flows"]]
    if same:
        return same[0]["mpps"]
    return min(rows, key=lambda x: x["flows"])["mpps"] if rows else None


def targets17(r, sc, noop, mw, w):
    """Issue 17's targets, as ns added per frame beyond the no-op (same run)."""
    if not noop:
        return
    def ns(name, pick=min):
        rows = [s for s in sc if s["name"] == name and s["mpps"]]
        if not rows:
            return None, None
        f = pick(x["flows"] for x in rows)
        x = next(x for x in rows if x["flows"] == f)
        return 1e3 / x["mpps"] - 1e3 / noop_for(sc, x), x
    rows = []
    for label, name, pick, goal in (
            ("nat_est_64, fewest flows", "nat_est_64", min, 25),
            ("nat_est_64, most flows", "nat_est_64", max, 40),
            ("dr_est_64", "dr_est_64", min, 15),
            ("nat_new_conn_syn, most flows", "nat_new_conn_syn", max, 100),
            ("synproxy_syn_64 (cookie answers)", "synproxy_syn_64", min, 40)):
        v, x = ns(name, pick)
        if v is not None:
            rows.append((f"{label} ({x['flows']:,})", f"{v:.0f} ns added", f"<= {goal} ns", v <= goal))
    v, x = ns("nat_est_64", min)
    if x is not None:
        p = x["latency"]["p999_ns"]
        meas = f"{p} ns"
        if "noop_p999_same_time_ns" in x:
            # The machine's own tail: see "p99.9 and the machine" below.
            meas += f" (the no-op's, same share of time: {x['noop_p999_same_time_ns']} ns)"
        rows.append((f"p99.9 service time, nat_est_64 ({x['flows']:,})", meas, "<= 150 ns", p <= 150))
    if ("preload_nat_est_64", 2) in mw and ("preload_noop", 2) in mw:
        nat = mw[("preload_nat_est_64", 2)] / mw[("preload_nat_est_64", 1)]
        nop = mw[("preload_noop", 2)] / mw[("preload_noop", 1)]
        rows.append(("2 workers vs 1: NAT's ratio >= 0.9 x the no-op's", f"{nat:.2f}x vs {nop:.2f}x",
                     f">= {0.9 * nop:.2f}x", nat >= 0.9 * nop))
    if not rows:
        return
    w("## Targets (issue 17)\n")
    w("| target | measured | goal | met |")
    w("|---|---:|---:|---|")
    for name, meas, goal, ok in rows:
        w(f"| {name} | {meas} | {goal} | {'yes' if ok else '**no**'} |")
    w("")
    v, x = ns("nat_est_64", min)
    if x is not None and "noop_p999_same_time_ns" in x:
        irq = x.get("worker_timer_irqs_per_s")
        w("**p99.9 and the machine.** A sample is one poll's time divided by its frames, so "
          "anything that stops the worker (a timer interrupt, the hypervisor) delays every frame "
          "of the poll it falls into. At a fixed rate of such stops, the share of frames they "
          "delay is inversely proportional to the frame rate: the no-op, "
          f"{noop / x['mpps']:.1f}x faster, shows them only beyond its p"
          f"{100 * x['noop_p999_same_time_q']:.3f}, which is "
          f"{x['noop_p999_same_time_ns']} ns a frame. That is the tail this machine puts in any "
          f"scenario at nat_est_64's rate, before rvs does anything"
          + (f" (the worker's core took {irq:.0f} local timer interrupts a second during the run)" if irq else "")
          + ". Meeting the target needs a core without the tick (`nohz_full`, `isolcpus`), "
          "which this VM does not have.\n")


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return "?"


def machine():
    lscpu = sh("lscpu")
    get = lambda k: next((l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith(k)), "?")
    return {
        "cpu": get("Model name"), "cpus": get("CPU(s)"), "threads_per_core": get("Thread(s) per core"),
        "l2": get("L2 cache"), "l3": get("L3 cache"),
        "mem": sh("free -g | awk '/Mem:/{print $2\" GiB\"}'"),
        "kernel": sh("uname -srm"),
        "dpdk": sh("pkg-config --modversion libdpdk") + " (Debian " + sh("dpkg-query -W -f='${Version}' libdpdk-dev") + ")",
        "rustc": sh("rustc --version"),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("--cmd", default="bench/run.sh")
    ap.add_argument("--md")
    ap.add_argument("--charts")
    ap.add_argument("--table", help="rvs-tablebench results (JSON)")
    a = ap.parse_args()
    r = json.load(open(a.json))
    ceil = {c["name"]: c for c in r["ceilings"]}
    tp5 = ceil.get("testpmd_5tswap", {}).get("mpps", 0) or float("nan")
    sc = r["scenarios"]
    by = lambda name: [s for s in sc if s["name"] == name]
    m = machine()
    L = []
    w = L.append
    w("# rvs benchmark results\n")
    w(f"Generated {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC by `{a.cmd}` "
      f"(mode {r['mode']}, {r['secs_per_scenario']} s measured per scenario, total {r['total_secs']:.0f} s, "
      f"hugepages: {'yes' if r['hugepages'] else 'no (--no-huge)'}). Raw figures: `bench/out/results.json`.\n")
    w(f"Machine: {m['cpu']}, {m['cpus']} CPUs ({m['threads_per_core']} thread/core), L2 {m['l2']}, L3 {m['l3']}, "
      f"{m['mem']} RAM, {m['kernel']}, DPDK {m['dpdk']}, {m['rustc']}. No physical NIC: virtual devices only.\n")
    w("## How it is measured\n")
    w("- **Data path**: the real `Worker::poll_once` (rx burst on both ports, the burst's stages: classify, prefetch, the established fast path or `Dataplane::process`; tx, flush, the "
      "bounded timer-wheel expiry of each poll, the 1-ms chores) over `DpdkIo`, on core 0, clock from "
      "`rvs::clock::now_ms()` as in rvsd. Director assembled as rvsd does: `ConnTable` with one expiry wheel per worker, "
      "`Control` JSON (`add_service` tcp 10.0.0.100:80 rr, 4 NAT real servers), neighbours pre-learned (no ARP).")
    w("- **Harness**: two ring-backed ethdev ports (`rte_eth_from_rings`, RX ring 1024, TX ring 2048). A generator "
      "thread on **core 1** (the machine's only other core) recycles the mbufs the worker transmits and rewrites "
      "their 54-byte Ethernet/IPv4/TCP headers from a pre-computed stream (payload stays zero, checksums valid), "
      "then enqueues them on the RX rings. `ring_noop_64` (same loop, frames sent back untouched) shows the "
      "harness is not the limit.")
    w("- **Flows**: client i = 11.0.0.1+i/50000 : 10000+i%50000 -> VIP:80. Each flow is opened by one SYN "
      "(`nat_new_conn_syn`: every SYN a new flow, random order, table grows from 0 to N: schedule + insert), "
      "its handshake completed by one client ACK (`nat_first_ack_64`, random order: SYN_RECV to ESTABLISHED, "
      "a state change the full path makes; before this phase existed, half the frames of a run at 10M flows were "
      "such first ACKs), then established traffic: each pass of the stream holds one client ACK and one real-server reply per "
      "flow, in a fresh random order (passes repeated to >= 256k frames). NAT both directions.")
    imix = ", ".join(f"{x['frame_bytes_no_fcs']+4} B x{x['weight']}" for x in r["imix"])
    w(f"- **Frames**: 64 B on the wire (60 B without FCS) and IMIX {imix} (on the wire, FCS included). The "
      "data path touches headers only, so IMIX costs per packet what 64 B does; Gbit/s adds 24 B/frame "
      "(FCS, preamble, gap).")
    w("- **Latency** (hdrhistogram): wall time (`Instant`) of one `poll_once` divided by the frames it "
      "received, recorded once per frame: the per-packet service time on the worker at saturation, "
      "amortised over its burst. It excludes time waiting in the RX ring (under saturation that is only ring "
      "depth / rate), and includes the per-poll fixed costs, once per ms the chores, and whatever stops the "
      "worker's core (its timer interrupts: on this VM, most of the p99.9; see the targets of issue 17).")
    w("- **Ceilings, same core (core 0), same vdevs**: testpmd `5tswap` and `io` on a net_null pair "
      "(forwarding lcore 0, median of per-second Tx-pps of both ports), and `null_noop_dpdkio` (our `DpdkIo` "
      "rx -> tx between the same net_null pair, in process).")
    w("- **1 vs 2 workers**: the generator needs the second core, so these use pre-filled rings instead: "
      f"{r['multi_worker'][0]['frames'] if r['multi_worker'] else '?'} frames (64 B, 100k established flows "
      "split by flow over 2 RX queues per port) are enqueued up front, the workers start together and the "
      "rate is frames / time of the slowest. Those mbufs are cold in cache (hundreds of MB), so absolute "
      "figures are below the generator-fed ones; only the ratio is meant.")
    if any(s.get("ip") == 6 for s in r["scenarios"]):
        w("- **IPv6** (`nat6_*`, same run, each flow count right after IPv4's): the NAT scenarios above for an "
          "IPv6 service, `add_service` tcp [2001:db8::100]:80 rr, 4 IPv6 NAT real servers 2001:db8:1::11-14; the "
          "ports also have 2001:db8::1/64 (default route via 2001:db8::2) and 2001:db8:1::1/64, IPv6 neighbours "
          "pre-learned (no Neighbor Discovery). Client i = 2001:db8:c1::1+i/50000 : 10000+i%50000. Frames are "
          "the smallest IPv6 TCP frames, **74 B (14+40+20) without FCS, 78 B on the wire, not 64 B** (an "
          "IPv6+TCP header does not fit in 64 B); their Gbit/s counts 78+20 B per frame. TCP checksums are "
          "valid over the IPv6 pseudo-header (checked at start-up; a unit test runs the stream through the "
          "worker). `ring_noop6_64` is the harness's no-op on the IPv6 stream (its records are two cache lines, "
          "IPv4's one); the `nat6_*` rows' *ns added* is against it.")
    w("")
    w("## Figures\n")
    # What rvs adds per packet: the scenario's ns per frame less the
    # harness's own (ring_noop_64, the same generator and rings with the
    # frames sent back untouched, in this run).
    noop = next((x["mpps"] for x in sc if x["name"] == "ring_noop_64"), None)
    def pct(mpps):
        # Blank without a testpmd ceiling (--testpmd "" or an --only run).
        return "" if tp5 != tp5 else f"{mpps / tp5:.0%}"
    noop6 = next((x["mpps"] for x in sc if x["name"] == "ring_noop6_64"), None)
    def added(s):
        base = noop_for(sc, s)
        return f"{1e3 / s['mpps'] - 1e3 / base:.0f}" if base and s["mpps"] else ""
    w("*ns added*: nanoseconds per frame beyond the harness's own no-op (`ring_noop_64`, same run): "
      "1000/Mpps of the scenario less 1000/Mpps of the no-op, the no-op at the same flow count where "
      "the run has one (the fewest and the most flows: the generator's own cost per frame grows with "
      "the flows in its stream), else at the fewest. `dr_est_64`, `tun_est_64` and "
      "`fullnat_est_64` send client-to-server frames of established flows only (DR and TUN replies do "
      "not pass the director; FULLNAT's would need each flow's local port); `synproxy_syn_64` is SYNs "
      "to a SYN-proxy service, each answered with a cookie SYN-ACK (no connection is made)."
      + (" `nat6_*`: IPv6 NAT, as `nat_*`, in 74-byte frames (78 B on the wire); *ns added* against "
         "`ring_noop6_64`." if noop6 is not None or any(s.get("ip") == 6 for s in sc) else "") + "\n")
    w("| scenario | flows | Mpps | ns added | Gbit/s (wire) | vs testpmd 5tswap | p50 ns | p99 ns | p99.9 ns | drops |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for c in r["ceilings"]:
        lat = c.get("latency")
        lt = (f"{lat['p50_ns']} | {lat['p99_ns']} | {lat['p999_ns']}" if lat else " | | ")
        w(f"| {c['name']} (ceiling) | | {c['mpps']:.2f} | | | {pct(c['mpps'])} | {lt} | |")
    for s in sc:
        lat = s["latency"]
        drops = s.get("drops")
        d = "" if drops is None else (json.dumps(drops) if drops else "0") + (f", tx {s['tx_dropped']}" if s.get("tx_dropped") else "")
        ns = "" if s["name"].startswith("ring_noop") else added(s)
        w(f"| {s['name']} | {s['flows']:,} | {s['mpps']:.2f} | {ns} | {s['gbps_wire']:.2f} | {pct(s['mpps'])} | "
          f"{lat['p50_ns']} | {lat['p99_ns']} | {lat['p999_ns']} | {d} |")
    for x in r["multi_worker"]:
        w(f"| {x['name']} ({x['workers']} worker{'s' if x['workers'] > 1 else ''}, pre-filled) | {x['flows']:,} | "
          f"{x['mpps']:.2f} | | | {pct(x['mpps'])} | | | | |")
    w("")
    # Targets from the issue.
    est = {s["flows"]: s["mpps"] for s in by("nat_est_64")}
    new = {s["flows"]: s["mpps"] for s in by("nat_new_conn_syn")}
    t = []
    if est:
        f0, fmax = min(est), max(est)
        best_est = est[f0]
        t.append(("NAT established (64 B, 1k flows) >= 60% of 5tswap", best_est / tp5, 0.60))
        nf = max(new) if new else None
        if nf:
            t.append((f"new connections ({nf:,} SYNs) >= 30% of 5tswap", new[nf] / tp5, 0.30))
        t.append((f"rate at {fmax:,} flows >= 70% of 1k flows", est[fmax] / est[f0], 0.70))
    mw = {(x["name"], x["workers"]): x["mpps"] for x in r["multi_worker"]}
    if ("preload_nat_est_64", 2) in mw:
        t.append(("2 workers >= 1.8x one (NAT, pre-filled rings)",
                  mw[("preload_nat_est_64", 2)] / mw[("preload_nat_est_64", 1)], 1.8))
    w("## Targets (issue 6)\n")
    w("| target | measured | met |")
    w("|---|---:|---|")
    for name, v, goal in t:
        meas = f"{v:.2f}x" if goal > 1 else f"{v:.0%}"
        w(f"| {name} | {meas} | {'yes' if v >= goal else '**no**'} |")
    w("")
    targets17(r, sc, noop, mw, w)
    if a.table and os.path.exists(a.table):
        t = json.load(open(a.table))
        table_section(t, w)
        takeover_section(t, w)
    if r.get("notes"):
        w("Notes from the run: " + "; ".join(r["notes"]) + "\n")
    if a.charts:
        charts(r, a.charts, tp5)
        w("![Mpps vs flows](mpps_vs_flows.png)\n")
        w("![Latency CDF](latency_cdf.png)\n")
    here = os.path.dirname(os.path.abspath(__file__))
    for extra in ("COMPARISONS.md", "HOTSPOTS.md"):
        path = os.path.join(here, extra)
        if os.path.exists(path):
            w(open(path).read())
    if a.md:
        open(a.md, "w").write("\n".join(L) + "\n")


def table_section(t, w):
    """The connection table on its own (rvs-tablebench; issue 5)."""
    w("## Connection table (issue 5)\n")
    w(f"Command: `{t.get('cmd', 'rvs-tablebench')}`. One core (core 0), keys random and looked up in random "
      "order (client i = 11.0.0.0+i/60000 : 1024+i%60000, inserted in a shuffled order; the table's hash is "
      "seeded at random), release build. `insert` is the rate of inserting a further 10 % (at least 1000, at "
      "most 200k) with the given number live; `lookup` hits live keys, `miss` looks up keys never inserted; "
      "*in bursts*: the same lookups as the worker makes them, 32 at a time, every index bucket prefetched, "
      "then every tag-matched slot, then the lookups (the bench's API: each key hashed and its bucket scanned "
      "three times); *worker's path*: the same bursts as the worker's fast path makes them, each key hashed "
      "once, then `lookup_plain_from` (the slot's words, no `Conn` built). *Ceiling*: the same number of bytes on the same pages "
      "and, per lookup, two dependent random line reads (the first names the second, as a bucket names a "
      "slot) and no table logic, one at a time / in bursts of 32 prefetched the same way: what this machine's "
      "memory allows a lookup at that size. *One dependent access*: a pointer chase over those bytes (each line "
      "names the next, one cycle through all of them): the latency of one miss nothing overlaps, page walk "
      "included.\n")
    w("| live connections | lookup Mops/s | ns/lookup | ns/lookup in bursts | worker's path ns | ceiling ns (one / bursts) | one dependent access ns | miss Mops/s | insert Mops/s (at that size) | fill 0..N Mops/s | table bytes |")
    w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for o in t.get("ops", []):
        burst = f"{o['lookup_burst_ns']:.0f}" if "lookup_burst_ns" in o else ""
        plain = f"{o['lookup_plain_burst_ns']:.0f}" if "lookup_plain_burst_ns" in o else ""
        ceil = f"{o['ceiling_ns']:.0f} / {o['ceiling_burst_ns']:.0f}" if "ceiling_ns" in o else ""
        dep = f"{o['dependent_access_ns']:.0f}" if "dependent_access_ns" in o else ""
        w(f"| {o['live']:,} | {o['lookup_mops']:.2f} | {o['lookup_ns']:.0f} | {burst} | {plain} | {ceil} | {dep} | {o['miss_mops']:.2f} | "
          f"{o['insert_mops']:.2f} | {o['fill_mops']:.2f} | {o['footprint_bytes']/2**20:.0f} MiB |")
    m = t.get("memory")
    if m:
        w(f"\n**Memory**: a process holding {m['live']:,} connections: resident {m['rss_full']/2**20:.0f} MiB "
          f"(before the table {m['rss_before']/2**20:.0f} MiB, after allocating and faulting it in "
          f"{m['rss_after_alloc']/2**20:.0f} MiB): **{m['bytes_per_conn']:.0f} bytes per connection** "
          f"(64-byte slot, index, timer-wheel entry).\n")
        w(f"**IPv6 connections** (from the design, not measured: the keys above are IPv4): each takes two "
          f"64-byte lines, its slot and the slot's extension line (`Ext6`: client, virtual, real-server and "
          f"local addresses), **128 bytes of slots against 64** for an IPv4 one. The index is shared and its "
          f"entries are the same for both (8 bytes, two per connection, in 64-byte buckets of seven sized for "
          f"the table's maximum), as is the timer-wheel entry. The extension lines are reserved for every slot "
          f"(max x 64 bytes of address space, not in the *table bytes* column) and faulted in only where an "
          f"IPv6 connection uses one: about {m['bytes_per_conn'] + 64:.0f} bytes per IPv6 connection by the "
          f"figure above.\n")
    for e in t.get("expiry", []):
        f = e["fwd_iter_ns"]
        who = ("the creating core's wheel (each worker expires what it created)" if e["owner"] == "creator"
               else "the forwarding loop's own wheel (worst case: it ends every one of them)")
        w(f"**Expiry, timers in {who}**: {e['created']:,} UDP connections with a {e['timeout_s']} s timeout "
          f"created in {e['created_in_ms']} ms on core 1 while a forwarding loop on core 0 looked up "
          f"{e['fwd_lookups']:,} times (bursts of 32 among 10k established flows, plus its bounded expiry work "
          f"per burst). The last deadline was at {e['last_deadline_ms']} ms; the table was back to the "
          f"established flows only at {e['all_ended_ms']} ms (**{e['late_ms']} ms late**; {e['left']} left). "
          f"Forwarding-loop iteration time: p50 {f['p50']/1000:.1f} us, p99 {f['p99']/1000:.1f} us, "
          f"p99.9 {f['p99_9']/1000:.1f} us, p99.99 {f['p99_99']/1000:.1f} us, **max {f['max']/1000:.0f} us** "
          f"over {f['count']:,} iterations; {e['fwd_iters_over_1ms']} iterations took over 1 ms and the thread "
          f"was preempted by the scheduler {e['fwd_preempted']} times in the run (a shared 2-vCPU VM; there were "
          "more preemptions than stalls over 1 ms, and the table work per iteration is bounded — 64 timer "
          "entries — so we read the millisecond stalls as the scheduler's, not the table's).\n")


def takeover_section(t, w):
    """A restart's or handover's take-over of a table file (rvs-tablebench takeover; issue 20)."""
    rows = t.get("takeover")
    if not rows:
        return
    w("\n**Take-over of a `conn_table_file`** (a restart or a handover of rvsd; tmpfs, `/dev/shm`): N "
      "established NAT connections left in a table file of `max` slots, then the next rvsd's steps. "
      "*prepare* builds the new table's file (a handover does it before the old rvsd stops, so it is not "
      "in the gap), *read* takes the lock and copies the slots the old table ever used, *adopt* inserts "
      "each connection into the new table against the configuration (a table of 64 Ki slots or more is "
      "adopted by one thread per CPU, at most 8, each over a part of the slots). Read + adopt is the "
      "handover's gap in forwarding (plus about a millisecond).\n")
    w("| connections | max | prepare ms | read ms | adopt ms | gap ms (read + adopt) | taken over |")
    w("|---:|---:|---:|---:|---:|---:|---:|")
    for o in rows:
        w(f"| {o['connections']:,} | {o['max']:,} | {o['prepare_ms']:.1f} | {o['read_ms']:.1f} | "
          f"{o['adopt_ms']:.1f} | **{o['gap_ms']:.1f}** | {o['adopted']:,} |")
    w("")


def charts(r, d, tp5):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sc = r["scenarios"]
    fig, ax = plt.subplots(figsize=(8, 5))
    # IPv6 dashed, in the colour of its IPv4 counterpart.
    for name, style, colour in [("nat_est_64", "o-", "C0"), ("nat_est_imix", "s-", "C1"),
                                ("nat_new_conn_syn", "^-", "C2"), ("nat6_est_64", "o--", "C0"),
                                ("nat6_new_conn_syn", "^--", "C2")]:
        pts = sorted((s["flows"], s["mpps"]) for s in sc if s["name"] == name)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=colour, label=name)
    ax.axhline(tp5, color="red", ls="--", label=f"testpmd 5tswap {tp5:.1f} Mpps")
    ax.axhline(0.6 * tp5, color="red", ls=":", label="60% of 5tswap (target)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent flows")
    ax.set_ylabel("Mpps (one worker core)")
    ax.set_title("rvs NAT on one core vs flow count")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(f"{d}/mpps_vs_flows.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 5))
    for s in sc:
        if s["name"] in ("nat_est_64", "nat_new_conn_syn") and s["frames"] > 0:
            qs = [q for q, _ in s["latency"]["cdf"] if q < 1.0]
            vs = [v for q, v in s["latency"]["cdf"] if q < 1.0]
            ax.plot([1 / (1 - q) for q in qs], vs, marker=".",
                    label=f"{s['name']} {s['flows']:,} flows")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000, 100000]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["p0", "p50", "p90", "p99", "p99.9", "p99.99", "p99.999"])
    ax.set_xlabel("percentile")
    ax.set_ylabel("per-packet service time, ns (poll time / frames)")
    ax.set_title("rvs worker per-packet latency distribution")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(f"{d}/latency_cdf.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
