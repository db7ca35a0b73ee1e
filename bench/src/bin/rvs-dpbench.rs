//! The data path's own cost, without rings, DPDK or a generator thread:
//! established NAT packets (client to real server) on one thread,
//! `--flows` flows round robin, frames reset from a template before each
//! pass, in bursts of 32 through the worker's stages (`classify`,
//! `prefetch_conns`, `decide`: the established fast path), or with
//! `--path process` one by one through the full decision
//! (`Dataplane::process`, the path every packet took before the fast
//! path). `--fwd` picks the real server's method (NAT, DR or FULLNAT).
//! `--syn` measures new connections instead, with `--threads` workers
//! opening theirs into the one table at once.
//! Prints the best of `--rounds` rounds in ns per packet, as JSON.
//!
//! rvs-bench's end-to-end figures move by ±5 % from run to run on a shared
//! 2-core machine (the generator and the worker compete); this one moves by
//! about 1 %, so it is the tool for comparing two builds of the packet path
//! (`git worktree add`, build both, run them alternately).
#![deny(unsafe_code)]

use std::net::Ipv4Addr;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Parser;
use rvs::conn::Late;
use rvs::dataplane::{Dataplane, Solo, Stages, Verdict};
use rvs::director::Builder;
use rvs::io::{Frame, VecFrame, BURST};
use rvs::neigh::PortAddr;
use rvs::stats::WorkerStats;
use rvs::wire::{MacAddr, PacketBuilder, TcpFlags};
use serde_json::json;

#[derive(Parser)]
struct Cli {
    /// Established flows the passes cycle over (client ports 10000 up, so
    /// at most 55535).
    #[arg(long, default_value_t = 1000,
          value_parser = clap::value_parser!(u16).range(1..=55535))]
    flows: u16,
    /// Passes over all flows per round.
    #[arg(long, default_value_t = 2000)]
    passes: u32,
    /// Rounds; the best is reported.
    #[arg(long, default_value_t = 15)]
    rounds: u32,
    /// `burst`: the worker's stages; `process`: the full per-packet
    /// decision.
    #[arg(long, default_value = "burst", value_parser = ["burst", "process"])]
    path: String,
    /// Measure new connections instead: each round the workers' expiry
    /// ends every connection, then each sends one SYN per flow
    /// (schedule, insert, forward).
    #[arg(long)]
    syn: bool,
    /// With `--syn`: workers inserting at once, each its own client
    /// address and `--flows` flows, into the one table (how new
    /// connections on several workers contend). The figure is wall time
    /// over all their SYNs.
    #[arg(long, default_value_t = 1, requires = "syn",
          value_parser = clap::value_parser!(u16).range(1..=8))]
    threads: u16,
    /// The real server's forwarding method (`fullnat` adds the local
    /// address 10.0.1.200 to the service).
    #[arg(long, default_value = "nat", value_parser = ["nat", "dr", "fullnat"])]
    fwd: String,
}

const DIR0: MacAddr = MacAddr([0x02, 0xd0, 0, 0, 0, 0]);
const DIR1: MacAddr = MacAddr([0x02, 0xd0, 0, 0, 0, 1]);
const CLIENT: MacAddr = MacAddr([0x02, 0xc0, 0, 0, 0, 2]);
const RS: MacAddr = MacAddr([0x02, 0x51, 0, 0, 0, 11]);

fn main() -> Result<()> {
    let cli = Cli::parse();
    let port = |mac, cidr: &str| -> Result<PortAddr> {
        Ok(PortAddr {
            mac,
            cidr: cidr.parse().map_err(anyhow::Error::msg)?,
            gateway: None,
            mtu: 1500,
            ipv6: None,
            gateway6: None,
        })
    };
    let d = Builder::new()
        .workers(usize::from(cli.threads))
        .max_connections(usize::from(cli.flows) * 2 * usize::from(cli.threads) + 16)
        .ports(vec![port(DIR0, "10.0.0.1/24")?, port(DIR1, "10.0.1.1/24")?])
        .build();
    let laddrs = if cli.fwd == "fullnat" {
        json!(["10.0.1.200"])
    } else {
        json!([])
    };
    for req in [
        json!({"cmd": "add_service", "service": {"proto": "tcp", "vip": "10.0.0.100", "port": 80,
               "sched": "rr", "laddrs": laddrs}}),
        json!({"cmd": "add_dest", "service": {"proto": "tcp", "vip": "10.0.0.100", "port": 80},
               "dest": {"ip": "10.0.1.11", "port": 80, "fwd": cli.fwd}}),
    ] {
        let req = req.to_string();
        let r = d.ctl.handle_line(&req);
        if r.contains("\"error\"") {
            bail!("{req} -> {r}");
        }
    }
    let (client, vip, rs) = (
        Ipv4Addr::new(10, 0, 0, 2),
        Ipv4Addr::new(10, 0, 0, 100),
        Ipv4Addr::new(10, 0, 1, 11),
    );
    d.dp.neigh.learn(rs, RS);
    d.dp.neigh.learn(client, CLIENT);
    let solo = Solo::new(&d.dp);
    let cx = solo.cx(&d.stats()[0], 1);
    let pkt = |sport: u16, flags| {
        PacketBuilder::new()
            .eth(CLIENT, DIR0)
            .ipv4(client, vip)
            .ttl(64)
            .tcp(sport, 80)
            .flags(flags)
            .seq(1000)
            .build()
    };
    let sports = 10_000..10_000 + cli.flows;
    for s in sports.clone() {
        d.dp.process(&cx, 0, &mut VecFrame::from_bytes(&pkt(s, TcpFlags::SYN)));
    }
    let tmpl: Vec<Vec<u8>> = sports.map(|s| pkt(s, TcpFlags::ACK)).collect();
    let mut frames: Vec<VecFrame> = tmpl.iter().map(|b| VecFrame::from_bytes(b)).collect();
    let v = d.dp.process(&cx, 0, &mut VecFrame::from_bytes(&tmpl[0]));
    if v != Verdict::Tx(1) {
        bail!("an established packet was not forwarded: {v:?}");
    }
    let mut stages = Box::<Stages>::default();
    if cli.syn {
        let n = cli.threads;
        let clients: Vec<Ipv4Addr> = (0..n)
            .map(|t| Ipv4Addr::new(10, 0, 0, 2 + t as u8))
            .collect();
        for &c in &clients {
            d.dp.neigh.learn(c, CLIENT);
        }
        let syn = |c: Ipv4Addr, sport: u16| {
            PacketBuilder::new()
                .eth(CLIENT, DIR0)
                .ipv4(c, vip)
                .ttl(64)
                .tcp(sport, 80)
                .flags(TcpFlags::SYN)
                .seq(1000)
                .build()
        };
        let syns: Vec<Vec<Vec<u8>>> = clients
            .iter()
            .map(|&c| (10_000..10_000 + cli.flows).map(|s| syn(c, s)).collect())
            .collect();
        let mut frames: Vec<Vec<VecFrame>> = syns
            .iter()
            .map(|t| t.iter().map(|b| VecFrame::from_bytes(b)).collect())
            .collect();
        let total = f64::from(cli.flows) * f64::from(n);
        let (mut best, mut sent) = (f64::MAX, 0u64);
        // The flows opened before the rounds.
        d.dp.conns.flush();
        for round in 0..cli.rounds {
            // Each round 1,000 s after the last: the workers' expiry ends
            // the last round's connections (half-open for 60 s), as it
            // ends connections in service.
            let now = 1_000_000 * u64::from(round + 1);
            for w in 0..usize::from(n) {
                d.dp.conns.expire(w, now, usize::MAX);
            }
            if !d.dp.conns.is_empty() {
                bail!("round {round}: {} connections left", d.dp.conns.len());
            }
            for (fs, bs) in frames.iter_mut().zip(&syns) {
                for (f, b) in fs.iter_mut().zip(bs) {
                    f.data_mut()[..b.len()].copy_from_slice(b);
                }
            }
            let t = Instant::now();
            sent += std::thread::scope(|sc| {
                let runs: Vec<_> = frames
                    .iter_mut()
                    .enumerate()
                    .map(|(w, fs)| {
                        let (dp, path) = (&d.dp, cli.path.as_str());
                        let stats = &d.stats()[w];
                        sc.spawn(move || syn_run(dp, stats, (w as u16, n), now, path, fs))
                    })
                    .collect();
                runs.into_iter().map(|r| r.join().unwrap_or(0)).sum::<u64>()
            });
            best = best.min(t.elapsed().as_nanos() as f64 / total);
        }
        let want = u64::from(cli.rounds) * total as u64;
        if sent != want {
            bail!("{} of {want} SYNs were not forwarded", want - sent);
        }
        println!(
            "{}",
            json!({"scenario": format!("dp_{}_new_conn_syn", cli.fwd), "path": cli.path, "flows": cli.flows, "threads": n, "ns_per_packet": (best * 10.0).round() / 10.0})
        );
        return Ok(());
    }
    let mut best = f64::MAX;
    let mut sent = 0u64;
    for _ in 0..cli.rounds {
        let t = Instant::now();
        for _ in 0..cli.passes {
            if cli.path == "process" {
                for (f, b) in frames.iter_mut().zip(&tmpl) {
                    f.data_mut()[..b.len()].copy_from_slice(b);
                    sent += u64::from(d.dp.process(&cx, 0, f) == Verdict::Tx(1));
                }
                continue;
            }
            for (fs, bs) in frames.chunks_mut(BURST).zip(tmpl.chunks(BURST)) {
                for (f, b) in fs.iter_mut().zip(bs) {
                    f.data_mut()[..b.len()].copy_from_slice(b);
                }
                d.dp.classify(0, fs, &mut stages);
                d.dp.prefetch_conns(fs.len(), &mut stages);
                for (f, r) in fs.iter_mut().zip(&stages.recs) {
                    sent += u64::from(d.dp.decide(&cx, 0, f, r) == Verdict::Tx(1));
                }
            }
        }
        let per = t.elapsed().as_nanos() as f64 / (f64::from(cli.passes) * f64::from(cli.flows));
        best = best.min(per);
    }
    let want = u64::from(cli.rounds) * u64::from(cli.passes) * u64::from(cli.flows);
    if sent != want {
        bail!("{} of {want} packets were not forwarded", want - sent);
    }
    println!(
        "{}",
        json!({"scenario": format!("dp_{}_est_64", cli.fwd), "path": cli.path, "flows": cli.flows, "ns_per_packet": (best * 10.0).round() / 10.0})
    );
    Ok(())
}

/// One worker's SYNs (worker `w.0` of `w.1`, at `now_ms`) through the
/// stages or `process`; how many were forwarded.
fn syn_run(
    dp: &Dataplane,
    stats: &WorkerStats,
    w: (u16, u16),
    now_ms: u64,
    path: &str,
    frames: &mut [VecFrame],
) -> u64 {
    let solo = Solo::new(dp);
    // As a worker: the burst's reply entries go in at its end.
    let late = std::cell::RefCell::new(Late::default());
    let mut cx = solo.cx(stats, now_ms);
    (cx.worker, cx.n_workers) = w;
    if path != "process" {
        cx.late = Some(&late);
    }
    let mut stages = Box::<Stages>::default();
    let mut sent = 0;
    for fs in frames.chunks_mut(BURST) {
        if path == "process" {
            for f in fs.iter_mut() {
                sent += u64::from(dp.process(&cx, 0, f) == Verdict::Tx(1));
            }
            continue;
        }
        dp.classify(0, fs, &mut stages);
        dp.prefetch_conns(fs.len(), &mut stages);
        for (f, r) in fs.iter_mut().zip(&stages.recs) {
            sent += u64::from(dp.decide(&cx, 0, f, r) == Verdict::Tx(1));
        }
        dp.finish_burst(&cx);
    }
    sent
}
