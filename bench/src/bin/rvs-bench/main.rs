//! rvs-bench: drives the real rvs data path (`Worker` + `Dataplane` +
//! `DpdkIo`) on DPDK virtual devices and writes JSON figures.
//!
//! Harness: two ring-backed ethdev ports (`rte_eth_from_rings`), client side
//! and server side. A generator thread pinned to core 1 turns mbufs coming
//! back from the worker's TX rings (or fresh ones) into the next frames of a
//! pre-computed, shuffled stream (it rewrites the 54-byte headers only;
//! payloads are zero and checksums stay valid; 74-byte Ethernet/IPv6/TCP
//! ones for the IPv6 scenarios, `nat6_*`) and enqueues them on the RX
//! rings. The worker runs on core 0. The harness ceiling is the same worker
//! loop with the decision replaced by "send back out of the other port".
//! Multi-worker runs use pre-filled rings instead (no generator; see
//! `preload`). testpmd (5tswap, io) on a net_null pair gives the absolute
//! ceiling on the same core. See bench/RESULTS.md for what each figure means.

#![deny(unsafe_code)]

use rvs::prng::Rng;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use crossbeam::channel;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use rvs::flow::FlowKey;

use rvs::director::{Builder, Director};
use rvs::dpdk::{self, DpdkIo, Eal, Mbuf, MbufRing, Mempool, Port, MBUF_DEFAULT_DATA_ROOM};
use rvs::flow::Proto;
use rvs::io::{Frame, PortIo, BURST};
use rvs::neigh::{NeighTable, PortAddr};
use rvs::wire::{checksum, MacAddr, PacketBuilder, TcpFlags};
use rvs::worker::Worker;

#[derive(Parser, Debug)]
#[command(about = "Benchmark the rvs data path on DPDK virtual devices")]
struct Args {
    /// A few seconds in total, tiny flow counts (CI smoke run).
    #[arg(long)]
    quick: bool,
    /// Concurrent flow counts for the established-flow scenarios.
    #[arg(long, value_delimiter = ',')]
    flows: Option<Vec<usize>>,
    /// Measured seconds per established-flow scenario.
    #[arg(long)]
    secs: Option<f64>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench/out/results.json")]
    out: String,
    /// testpmd binary ("" skips the testpmd ceiling).
    #[arg(long, default_value = "dpdk-testpmd")]
    testpmd: String,
    /// Run DPDK without hugepages (about half the speed; CI fallback).
    #[arg(long)]
    no_huge: bool,
    /// Also measure the fwmark classifier: new connections (SYN phase) and
    /// established traffic with this many rules before the matching one
    /// (0 = an ordinary <proto, vip, port> service, no rules), e.g. 0,16,256.
    #[arg(long, value_delimiter = ',')]
    fwmark_rules: Option<Vec<usize>>,
    /// Flows of the fwmark scenarios (one SYN each).
    #[arg(long, default_value_t = 1_000_000)]
    fwmark_flows: usize,
    /// Concurrent flow counts of the IPv6 NAT scenarios (nat6_*); default:
    /// those of --flows (in --quick mode the first of them only).
    #[arg(long, value_delimiter = ',')]
    flows6: Option<Vec<usize>>,
    /// Run only the scenarios whose names start with one of these, e.g.
    /// `nat6` or `nat6,testpmd` (the ceilings too are scenarios here).
    /// Scenarios that share a setup run together: `nat_est_64` brings
    /// the rest of the IPv4 NAT group, `nat6_est_64` the IPv6 one.
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
}

impl Args {
    /// Whether any of `names` passes `--only`.
    fn wants(&self, names: &[&str]) -> bool {
        self.only.as_ref().is_none_or(|only| {
            names
                .iter()
                .any(|n| only.iter().any(|p| n.starts_with(p.as_str())))
        })
    }
}

/// The scenarios of each group (one setup each), for `--only`.
const NAT_GROUP: [&str; 6] = [
    "nat_new_conn_syn",
    "nat_est_64",
    "ring_noop_64",
    "nat_est_imix",
    "preload_noop",
    "preload_nat_est_64",
];
const NAT6_GROUP: [&str; 3] = ["nat6_new_conn_syn", "nat6_est_64", "ring_noop6_64"];

mod frames;
mod harness;

use frames::*;
use harness::*;

fn mpps(o: &RunOut) -> f64 {
    if o.secs > 0.0 {
        o.frames as f64 / o.secs / 1e6
    } else {
        0.0
    }
}

/// Frames in a stream, by bytes: mean length for Gbit/s (wire: +24 bytes of
/// FCS, preamble and gap).
fn mean_len<const H: usize>(s: &[Pkt<H>]) -> f64 {
    s.iter().map(|p| p.len as f64).sum::<f64>() / s.len().max(1) as f64
}

fn scenario(name: &str, flows: usize, o: &RunOut, extra: Value, mean: f64) -> Value {
    let m = mpps(o);
    let mut v = json!({
        "name": name,
        "flows": flows,
        "mpps": m,
        "frames": o.frames,
        "secs": o.secs,
        "mean_frame_bytes": mean,
        "gbps_wire": m * 1e6 * (mean + 4.0 + 20.0) * 8.0 / 1e9,
        "latency": lat_json(&o.hist),
    });
    if let (Some(a), Value::Object(b)) = (v.as_object_mut(), extra) {
        a.extend(b);
    }
    eprintln!(
        "  {name:<24} flows={flows:<9} {m:7.3} Mpps  p50={}ns p99={}ns p99.9={}ns",
        o.hist.value_at_quantile(0.5),
        o.hist.value_at_quantile(0.99),
        o.hist.value_at_quantile(0.999)
    );
    v
}

/// The director's non-zero drop counters, by reason.
fn drops_of(d: &Director) -> serde_json::Map<String, Value> {
    let mut s = rvs::stats::StatsSnapshot::default();
    for x in d.stats().iter() {
        s.add(x);
    }
    s.drops
        .iter()
        .filter(|(_, &v)| v > 0)
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect()
}

fn drops_json(d: &Director, w: &Worker<DpdkIo>) -> Value {
    json!({"drops": drops_of(d), "tx_dropped": w.io.tx_dropped(), "conns": d.dp.conns.len(),
           "active_conns": active_conns(d)})
}

/// ActiveConn summed over the real servers: the connections in
/// ESTABLISHED or still in the handshake (SYN_RECV counts as active, as
/// in Linux since 4.8).
fn active_conns(d: &Director) -> u64 {
    let ids = d.dp.conns.ids();
    (0..ids.dests.len() as u32)
        .filter_map(|i| ids.dests.get(i))
        .map(|x| u64::from(x.active.load(std::sync::atomic::Ordering::Relaxed)))
        .sum()
}

/// The connections in ESTABLISHED, counted in the table (a walk of every
/// slot: only after the first ACKs).
fn established_conns(d: &Director) -> u64 {
    let mut n = 0;
    d.dp.conns
        .for_each(|c| n += u64::from(c.state() == rvs::conn::State::Established));
    n
}

/// Run testpmd on a net_null pair, forwarding on core 0; median of the
/// per-second Tx-pps sums (both ports) after the first two samples.
fn testpmd(bin: &str, mode: &str, secs: u64, no_huge: bool) -> Result<Value> {
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "INT", "-k", "5", &(secs + 3).to_string(), bin]);
    cmd.args([
        "-l",
        "0,1",
        "--main-lcore",
        "1",
        "--no-pci",
        "--no-telemetry",
    ]);
    cmd.args([
        "--file-prefix",
        &format!("rvsbench-tp{}", std::process::id()),
    ]);
    if no_huge {
        cmd.args(["--no-huge", "-m", "512"]);
    } else {
        cmd.arg("--in-memory");
    }
    cmd.args(["--vdev", "net_null0", "--vdev", "net_null1", "--"]);
    cmd.args([
        &format!("--forward-mode={mode}"),
        "--nb-cores=1",
        "--stats-period=1",
        "--total-num-mbufs=16384",
        "--auto-start",
    ]);
    let argv = format!("{:?}", cmd);
    let out = cmd.output().with_context(|| format!("running {bin}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut samples = Vec::new();
    let mut cur = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("Tx-pps:") {
            if let Some(v) = rest
                .split_whitespace()
                .next()
                .and_then(|s| s.parse::<f64>().ok())
            {
                cur.push(v);
                if cur.len() == 2 {
                    samples.push(cur.iter().sum::<f64>() / 1e6);
                    cur.clear();
                }
            }
        }
    }
    let mut s: Vec<f64> = samples.iter().skip(2).copied().collect();
    if s.is_empty() {
        s = samples.clone();
    }
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let med = s.get(s.len() / 2).copied().unwrap_or(0.0);
    eprintln!(
        "  testpmd {mode:<8} {med:7.3} Mpps ({} samples)",
        samples.len()
    );
    Ok(json!({"name": format!("testpmd_{mode}"), "mpps": med, "samples": samples, "command": argv}))
}

fn hugepages_free_mb() -> u64 {
    let m = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let get = |k: &str| {
        m.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get("HugePages_Free:") * get("Hugepagesize:") / 1024
}

fn main() -> Result<()> {
    env_logger::init();
    let args = Args::parse();
    let t_start = Instant::now();
    let quick = args.quick;
    let flow_list = args.flows.clone().unwrap_or_else(|| {
        if quick {
            vec![1_000, 10_000]
        } else {
            vec![1_000, 10_000, 100_000, 1_000_000, 10_000_000]
        }
    });
    let secs = args.secs.unwrap_or(if quick { 0.3 } else { 3.0 });
    let warm = if quick { 0.1 } else { 0.5 };
    let no_huge = args.no_huge || hugepages_free_mb() < 900;
    let mut eal_args: Vec<String> = [
        "-l",
        "0",
        "--no-pci",
        "--no-telemetry",
        "--log-level",
        "lib.eal:warning",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if no_huge {
        eal_args.extend(["--no-huge", "-m", "1024"].map(String::from));
    } else {
        eal_args.push("--in-memory".into());
    }
    eal_args.extend(["--vdev", "net_null0", "--vdev", "net_null1"].map(String::from));
    let _eal = Eal::init(&eal_args)?;
    let rig = setup(quick)?;
    let t = Templates::new();
    t.self_check();
    let t6 = Templates6::new();
    t6.self_check();

    let mut scen = Vec::new();
    let mut multi = Vec::new();
    let mut notes = Vec::new();
    eprintln!("ceilings:");
    let tp_secs = if quick { 2 } else { 5 };
    let mut ceil = Vec::new();
    if !args.testpmd.is_empty() {
        for m in ["5tswap", "io"] {
            if !args.wants(&[&format!("testpmd_{m}")]) {
                continue;
            }
            match testpmd(&args.testpmd, m, tp_secs, no_huge) {
                Ok(v) => ceil.push(v),
                Err(e) => notes.push(format!("testpmd {m}: {e:#}")),
            }
        }
    }
    if args.wants(&["null_noop_dpdkio"]) {
        let d = director(16, 1)?;
        ceil.push(null_noop(&rig, &d, secs)?);
    }
    let preload_flows = if quick { 1_000 } else { 100_000 };
    // IPv6 NAT at its own flow counts, each right after IPv4 NAT at the
    // same count (the VM's speed drifts: neighbours in time compare best).
    let flows6_list = args.flows6.clone().unwrap_or_else(|| {
        if quick {
            flow_list[..1].to_vec()
        } else {
            flow_list.clone()
        }
    });
    let (want4, want6) = (args.wants(&NAT_GROUP), args.wants(&NAT6_GROUP));
    let mut counts = flow_list.clone();
    counts.extend(flows6_list.iter().filter(|f| !flow_list.contains(f)));
    for &flows in &counts {
        if want4 && flow_list.contains(&flows) {
            eprintln!("{flows} flows:");
            let t0 = Instant::now();
            let d = match std::panic::catch_unwind(|| director(flows + 16, 2)) {
                Ok(d) => d?,
                Err(_) => bail!("director"),
            };
            // SYN phase: every flow opened once, in random order. This is the
            // new-connection figure (schedule + insert into a growing table).
            let mut syns: Vec<Pkt> = (0..flows).map(|f| t.syn(f)).collect();
            shuffle(&mut syns, &mut Rng(flows as u64));
            let syns = Arc::new(syns);
            let w = ring_worker(&rig, &d)?;
            let (w, out, _) = gen_run(&rig, w, Mode::Rvs, syns.clone(), true, 0.0, 600.0);
            drop(syns);
            let conns = d.dp.conns.len();
            scen.push(scenario(
                "nat_new_conn_syn",
                flows,
                &out,
                drops_json(&d, &w),
                60.0,
            ));
            if conns < flows {
                notes.push(format!("{flows} flows: only {conns} connections created"));
            }
            // Each flow's handshake completed: its first ACK, once, in
            // random order. The established scenarios below then see
            // established connections at every count (at 10 M flows a run
            // of a few seconds would otherwise see mostly first ACKs, each
            // a state change the full path makes).
            let acks: Vec<Pkt> = (0..flows).map(|f| t.client(f, 0)).collect();
            let (w, out) = first_acks(&rig, w, acks, flows);
            let est = established_conns(&d);
            let mut after = drops_json(&d, &w);
            after["established"] = json!(est);
            scen.push(scenario("nat_first_ack_64", flows, &out, after, 60.0));
            if est < conns as u64 {
                notes.push(format!(
                    "{flows} flows: only {est} of {conns} connections established"
                ));
            }
            let rs_of = servers_of(&d, flows);
            let setup_secs = t0.elapsed().as_secs_f64();
            let mut w = w;
            for imix in [false, true] {
                let stream = Arc::new(established_stream(&t, &rs_of, imix, 7 + flows as u64));
                let mean = mean_len(&stream);
                let name = if imix { "nat_est_imix" } else { "nat_est_64" };
                let irqs = timer_irqs(WORKER_CORE);
                let (w2, out, _) = gen_run(&rig, w, Mode::Rvs, stream.clone(), false, warm, secs);
                w = w2;
                let mut extra = drops_json(&d, &w);
                if let (Some(a), Some(b), Value::Object(m)) =
                    (irqs, timer_irqs(WORKER_CORE), &mut extra)
                {
                    // Over the warm-up and the measured seconds.
                    let per_s = (b - a) as f64 / (warm + secs).max(1e-3);
                    m.insert("worker_timer_irqs_per_s".into(), json!(per_s.round()));
                }
                scen.push(scenario(name, flows, &out, extra, mean));
                // The harness's no-op at the fewest flows and at the most:
                // the generator's own cost grows with its stream, and what
                // rvs adds is measured against the no-op at the same count.
                if !imix && (flows == flow_list[0] || Some(&flows) == flow_list.last()) {
                    let nat_mpps = mpps(&out);
                    let (w2, out, _) =
                        gen_run(&rig, w, Mode::Noop, stream.clone(), false, warm, secs);
                    w = w2;
                    let (q, ns) = same_share_of_time(&out.hist, mpps(&out), nat_mpps, 0.999);
                    if let Some(Value::Object(m)) = scen.last_mut() {
                        m.insert("noop_p999_same_time_ns".into(), json!(ns));
                        m.insert("noop_p999_same_time_q".into(), json!(q));
                    }
                    scen.push(scenario("ring_noop_64", flows, &out, json!({}), mean));
                }
                if !imix && flows == preload_flows {
                    drop(w);
                    let rounds = if quick { 2 } else { 12 };
                    multi = preload_runs(&rig, &d, &stream, rounds, flows)?;
                    w = ring_worker(&rig, &d)?;
                }
            }
            eprintln!(
                "  (setup {setup_secs:.1}s, scenario {:.1}s, rss {} MB)",
                t0.elapsed().as_secs_f64(),
                rss_mb()
            );
            drop(w);
            drop(rs_of);
            drop(d);
        }
        if want6 && flows6_list.contains(&flows) {
            let noop = flows == flows6_list[0];
            nat6_runs(&rig, &t6, flows, (warm, secs), noop, &mut scen, &mut notes)?;
        }
    }
    // The other forwarding modes and the SYN proxy, at the first flow
    // count, in the same run as NAT: client-to-server traffic of
    // established flows (DR and TUN have no other direction through the
    // director; FULLNAT's replies would need each flow's local port), and
    // SYNs answered with cookies.
    {
        let flows = flow_list[0];
        for (name, setup) in [
            (
                "dr_est_64",
                Setup {
                    fwd: "dr",
                    synproxy: false,
                },
            ),
            (
                "tun_est_64",
                Setup {
                    fwd: "tun",
                    synproxy: false,
                },
            ),
            (
                "fullnat_est_64",
                Setup {
                    fwd: "fullnat",
                    synproxy: false,
                },
            ),
        ] {
            if !args.wants(&[name]) {
                continue;
            }
            eprintln!("{name}, {flows} flows:");
            let d = director_setup(flows + 16, 2, 0, setup)?;
            let syns: Vec<Pkt> = (0..flows).map(|f| t.syn(f)).collect();
            let w = ring_worker(&rig, &d)?;
            let (w, _, _) = gen_run(&rig, w, Mode::Rvs, Arc::new(syns), true, 0.0, 600.0);
            let stream: Vec<Pkt> = (0..(262_144 / flows).max(1))
                .flat_map(|_| (0..flows).map(|f| t.client(f, 0)))
                .collect();
            let mean = mean_len(&stream);
            let (w, out, _) = gen_run(&rig, w, Mode::Rvs, Arc::new(stream), false, warm, secs);
            let mut extra = drops_json(&d, &w);
            extra["direction"] = json!("client to real server");
            scen.push(scenario(name, flows, &out, extra, mean));
        }
        if args.wants(&["synproxy_syn_64"]) {
            eprintln!("synproxy_syn_64, {flows} clients:");
            let d = director_setup(
                flows + 16,
                2,
                0,
                Setup {
                    fwd: "nat",
                    synproxy: true,
                },
            )?;
            let syns: Vec<Pkt> = (0..(262_144 / flows).max(1))
                .flat_map(|_| (0..flows).map(|f| t.syn(f)))
                .collect();
            let mean = mean_len(&syns);
            let w = ring_worker(&rig, &d)?;
            let (w, out, _) = gen_run(&rig, w, Mode::Rvs, Arc::new(syns), false, warm, secs);
            let mut extra = drops_json(&d, &w);
            let answered: u64 = d
                .stats()
                .iter()
                .map(|s| s.synproxy_syn_answered.get())
                .sum();
            extra["syn_answered"] = json!(answered);
            scen.push(scenario("synproxy_syn_64", flows, &out, extra, mean));
        }
    }
    for &n in args.fwmark_rules.as_deref().unwrap_or_default() {
        let flows = if quick { 10_000 } else { args.fwmark_flows };
        eprintln!("fwmark, {n} rules, {flows} flows:");
        let d = director_with(flows + 16, 2, n)?;
        let mut syns: Vec<Pkt> = (0..flows).map(|f| t.syn(f)).collect();
        shuffle(&mut syns, &mut Rng(flows as u64));
        let w = ring_worker(&rig, &d)?;
        let (w, out, _) = gen_run(&rig, w, Mode::Rvs, Arc::new(syns), true, 0.0, 600.0);
        // The classifier alone, on this core: the worst case (the packet
        // matches the last rule, or none) per call.
        let table = d.ctl.table.load_full();
        let classify_ns = rig.cores[0]
            .run(move || {
                let c = table.fwmark_rules();
                let calls = 2_000_000u32;
                let t0 = Instant::now();
                let mut acc = 0u32;
                for i in 0..calls {
                    // The VIP (the last rule) and its neighbour (no rule).
                    let dst = Ipv4Addr::from(u32::from(vip()) ^ (i & 1));
                    acc = acc.wrapping_add(c.classify(Proto::Tcp, std::hint::black_box(dst), 80));
                }
                std::hint::black_box(acc);
                t0.elapsed().as_nanos() as f64 / calls as f64
            })
            .recv()?;
        eprintln!("  classify: {classify_ns:.1} ns/call (matching the last rule or none)");
        let extra = |w: &Worker<DpdkIo>| {
            let mut v = drops_json(&d, w);
            v["fwmark_rules"] = json!(n);
            v["classify_ns"] = json!(classify_ns);
            v
        };
        scen.push(scenario(
            "fwmark_new_conn_syn",
            flows,
            &out,
            extra(&w),
            60.0,
        ));
        let acks: Vec<Pkt> = (0..flows).map(|f| t.client(f, 0)).collect();
        let (w, _) = first_acks(&rig, w, acks, flows);
        let rs_of = servers_of(&d, flows);
        let stream = Arc::new(established_stream(&t, &rs_of, false, 7 + flows as u64));
        let mean = mean_len(&stream);
        let (w, out, _) = gen_run(&rig, w, Mode::Rvs, stream, false, warm, secs);
        scen.push(scenario("fwmark_est_64", flows, &out, extra(&w), mean));
        drop(w);
    }
    let res = json!({
        "mode": if quick { "quick" } else { "full" },
        "hugepages": !no_huge,
        "secs_per_scenario": secs,
        "worker_core": WORKER_CORE,
        "generator_core": GEN_CORE,
        "imix": IMIX.iter().map(|&(l, w)| json!({"frame_bytes_no_fcs": l, "weight": w})).collect::<Vec<_>>(),
        "ceilings": ceil,
        "scenarios": scen,
        "multi_worker": multi,
        "notes": notes,
        "total_secs": t_start.elapsed().as_secs_f64(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
    });
    if let Some(dir) = std::path::Path::new(&args.out).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&res)?)?;
    eprintln!(
        "wrote {} in {:.1}s",
        args.out,
        t_start.elapsed().as_secs_f64()
    );
    // Mbufs may sit in rings that live forever: leave without DPDK cleanup.
    std::process::exit(0);
}

fn rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

/// Every flow's first ACK (`acks`, one per flow), sent once in random
/// order: the handshakes the SYN phase began, completed.
fn first_acks<const H: usize>(
    rig: &Rig,
    w: Worker<DpdkIo>,
    mut acks: Vec<Pkt<H>>,
    flows: usize,
) -> (Worker<DpdkIo>, RunOut) {
    shuffle(&mut acks, &mut Rng(flows as u64 ^ 0xac));
    let (w, out, _) = gen_run(rig, w, Mode::Rvs, Arc::new(acks), true, 0.0, 600.0);
    (w, out)
}

/// Which real server each of the first `flows` flows went to (rr), as a
/// test harness learns it from the wire.
fn servers_of(d: &Director, flows: usize) -> Vec<u8> {
    (0..flows)
        .map(|f| {
            let (cip, sport) = client(f);
            d.dp.conns
                .lookup(&FlowKey::v4(Proto::Tcp, cip, sport, vip(), 80))
                .map_or(0, |(c, _)| c.dip.octets()[3] as usize - 11) as u8
        })
        .collect()
}

/// [`servers_of`] for the IPv6 flows.
fn servers6_of(d: &Director, flows: usize) -> Vec<u8> {
    (0..flows)
        .map(|f| {
            let (cip, sport) = client6(f);
            let key = FlowKey {
                proto: Proto::Tcp,
                src: IpAddr::V6(cip),
                sport,
                dst: IpAddr::V6(vip6()),
                dport: 80,
            };
            d.dp.conns
                .lookup(&key)
                .and_then(|(c, _)| c.v6)
                .map_or(0, |a| a.dip.segments()[7] as usize - 0x11) as u8
        })
        .collect()
}

/// The IPv6 NAT scenarios at `flows` flows, as the IPv4 ones: every flow
/// opened by a SYN (`nat6_new_conn_syn`), then established traffic, client
/// ACKs and real-server replies in random order (`nat6_est_64`), in the
/// smallest IPv6 TCP frames (74 bytes, 78 on the wire). With `noop`, also
/// the harness's no-op on the same stream (`ring_noop6_64`: IPv6 stream
/// records are two cache lines, IPv4 ones one).
fn nat6_runs(
    rig: &Rig,
    t6: &Templates6,
    flows: usize,
    (warm, secs): (f64, f64),
    noop: bool,
    scen: &mut Vec<Value>,
    notes: &mut Vec<String>,
) -> Result<()> {
    eprintln!(
        "{flows} flows, IPv6 ({HDR6}-byte frames, {} on the wire):",
        HDR6 + 4
    );
    let t0 = Instant::now();
    let d = director6(flows + 16, 2)?;
    let extra = |d: &Director, w: &Worker<DpdkIo>| {
        let mut v = drops_json(d, w);
        v["ip"] = json!(6);
        v["frame_bytes_wire"] = json!(HDR6 + 4);
        v
    };
    let mut syns: Vec<Pkt6> = (0..flows).map(|f| t6.syn(f)).collect();
    shuffle(&mut syns, &mut Rng(flows as u64));
    let w = ring_worker(rig, &d)?;
    let (w, out, _) = gen_run(rig, w, Mode::Rvs, Arc::new(syns), true, 0.0, 600.0);
    let conns = d.dp.conns.len();
    scen.push(scenario(
        "nat6_new_conn_syn",
        flows,
        &out,
        extra(&d, &w),
        HDR6 as f64,
    ));
    if conns < flows {
        notes.push(format!(
            "{flows} IPv6 flows: only {conns} connections created"
        ));
    }
    let acks: Vec<Pkt6> = (0..flows).map(|f| t6.client(f)).collect();
    let (w, _) = first_acks(rig, w, acks, flows);
    let rs_of = servers6_of(&d, flows);
    let stream = Arc::new(established_stream6(t6, &rs_of, 7 + flows as u64));
    let mean = mean_len(&stream);
    let (w, out, _) = gen_run(rig, w, Mode::Rvs, stream.clone(), false, warm, secs);
    scen.push(scenario("nat6_est_64", flows, &out, extra(&d, &w), mean));
    if noop {
        let (_, out, _) = gen_run(rig, w, Mode::Noop, stream, false, warm, secs);
        let mut v = json!({"ip": 6, "frame_bytes_wire": HDR6 + 4});
        v["note"] = json!("harness no-op on the IPv6 stream");
        scen.push(scenario("ring_noop6_64", flows, &out, v, mean));
    }
    eprintln!(
        "  (IPv6, {:.1}s, rss {} MB)",
        t0.elapsed().as_secs_f64(),
        rss_mb()
    );
    Ok(())
}
