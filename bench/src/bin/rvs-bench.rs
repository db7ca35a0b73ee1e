//! rvs-bench: drives the real rvs data path (`Worker` + `Dataplane` +
//! `DpdkIo`) on DPDK virtual devices and writes JSON figures.
//!
//! Harness: two ring-backed ethdev ports (`rte_eth_from_rings`), client side
//! and server side. A generator thread pinned to core 1 turns mbufs coming
//! back from the worker's TX rings (or fresh ones) into the next frames of a
//! pre-computed, shuffled stream (it rewrites the 54-byte headers only;
//! payloads are zero and checksums stay valid) and enqueues them on the RX
//! rings. The worker runs on core 0. The harness ceiling is the same worker
//! loop with the decision replaced by "send back out of the other port".
//! Multi-worker runs use pre-filled rings instead (no generator; see
//! `preload`). testpmd (5tswap, io) on a net_null pair gives the absolute
//! ceiling on the same core. See bench/RESULTS.md for what each figure means.

#![deny(unsafe_code)]

use rvs::prng::Rng;
use std::net::Ipv4Addr;
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
}

const WORKER_CORE: usize = 0;
const GEN_CORE: usize = 1;
const HDR: usize = 54;
const DIR0_MAC: MacAddr = MacAddr([0x02, 0xd0, 0, 0, 0, 0]);
const DIR1_MAC: MacAddr = MacAddr([0x02, 0xd0, 0, 0, 0, 1]);
const GW_MAC: MacAddr = MacAddr([0x02, 0xc0, 0, 0, 0, 2]);
const N_RS: usize = 4;
/// Frame lengths without FCS: 64/570/1518 bytes on the wire.
const IMIX: [(usize, u32); 3] = [(60, 7), (566, 4), (1514, 1)];
const RX_RING: u32 = 1024;
const TX_RING: u32 = 2048;

fn vip() -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 100)
}
fn gw() -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 2)
}
fn rs_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 1, 11 + i as u8)
}
fn rs_mac(i: usize) -> MacAddr {
    MacAddr([0x02, 0x51, 0, 0, 0, 11 + i as u8])
}
/// Flow `f`'s client: 50 000 source ports per address from 11.0.0.1 on,
/// routed through the gateway 10.0.0.2 on the client side.
fn client(f: usize) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(0x0b00_0001u32 + (f / 50_000) as u32),
        10_000 + (f % 50_000) as u16,
    )
}

/// One frame of a stream: its header, length and the RX port it enters on.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Pkt {
    hdr: [u8; HDR],
    len: u16,
    port: u8,
    flow: u32,
}

/// Header templates; per-flow fields are patched in with RFC 1624 updates.
struct Templates {
    /// client -> VIP, per IMIX size (ACK), and the SYN.
    client: Vec<[u8; HDR]>,
    syn: [u8; HDR],
    /// rs i -> client, per IMIX size.
    reply: Vec<Vec<[u8; HDR]>>,
}

fn hdr_of(frame: &[u8]) -> [u8; HDR] {
    frame[..HDR].try_into().unwrap()
}

fn client_frame(f: usize, len: usize, flags: TcpFlags) -> Vec<u8> {
    let (cip, sport) = client(f);
    PacketBuilder::new()
        .eth(GW_MAC, DIR0_MAC)
        .ipv4(cip, vip())
        .ttl(rvs::wire::ipv4::DEFAULT_TTL)
        .tcp(sport, 80)
        .flags(flags)
        .seq(1)
        .ack(1)
        .payload(&vec![0u8; len - HDR])
        .build()
}

/// A SYN as clients send it: no TCP payload, the 60-byte minimum frame
/// reached with Ethernet padding (the IP length says 40). A SYN with data
/// is refused by the SYN proxy.
fn syn_frame(f: usize) -> Vec<u8> {
    let (cip, sport) = client(f);
    let mut b = PacketBuilder::new()
        .eth(GW_MAC, DIR0_MAC)
        .ipv4(cip, vip())
        .ttl(rvs::wire::ipv4::DEFAULT_TTL)
        .tcp(sport, 80)
        .flags(TcpFlags::SYN)
        .seq(1)
        .build();
    b.resize(60, 0);
    b
}

fn reply_frame(f: usize, rs: usize, len: usize) -> Vec<u8> {
    let (cip, sport) = client(f);
    PacketBuilder::new()
        .eth(rs_mac(rs), DIR1_MAC)
        .ipv4(rs_ip(rs), cip)
        .ttl(rvs::wire::ipv4::DEFAULT_TTL)
        .tcp(80, sport)
        .flags(TcpFlags::ACK)
        .seq(1)
        .ack(2)
        .payload(&vec![0u8; len - HDR])
        .build()
}

impl Templates {
    fn new() -> Templates {
        Templates {
            client: IMIX
                .iter()
                .map(|&(l, _)| hdr_of(&client_frame(0, l, TcpFlags::ACK)))
                .collect(),
            syn: hdr_of(&syn_frame(0)),
            reply: (0..N_RS)
                .map(|rs| {
                    IMIX.iter()
                        .map(|&(l, _)| hdr_of(&reply_frame(0, rs, l)))
                        .collect()
                })
                .collect(),
        }
    }

    /// `t` (built for flow 0) rewritten for flow `f`; the client address and
    /// port sit at `ip_at`/`port_at` (source for client frames, destination
    /// for replies).
    fn patch(t: &[u8; HDR], f: usize, ip_at: usize, port_at: usize) -> [u8; HDR] {
        let mut h = *t;
        let (ip0, p0) = client(0);
        let (ip, p) = client(f);
        let rd16 = |h: &[u8; HDR], at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
        let ipc = checksum::update32(rd16(&h, 24), u32::from(ip0), u32::from(ip));
        let mut tc = checksum::l4_update_addr(rd16(&h, 50), ip0, ip);
        tc = checksum::l4_update_port(tc, p0, p);
        h[ip_at..ip_at + 4].copy_from_slice(&ip.octets());
        h[port_at..port_at + 2].copy_from_slice(&p.to_be_bytes());
        h[24..26].copy_from_slice(&ipc.to_be_bytes());
        h[50..52].copy_from_slice(&tc.to_be_bytes());
        h
    }

    fn client(&self, f: usize, size: usize) -> Pkt {
        Pkt {
            hdr: Self::patch(&self.client[size], f, 26, 34),
            len: IMIX[size].0 as u16,
            port: 0,
            flow: f as u32,
        }
    }
    fn syn(&self, f: usize) -> Pkt {
        Pkt {
            hdr: Self::patch(&self.syn, f, 26, 34),
            len: 60,
            port: 0,
            flow: f as u32,
        }
    }
    fn reply(&self, f: usize, rs: usize, size: usize) -> Pkt {
        Pkt {
            hdr: Self::patch(&self.reply[rs][size], f, 30, 36),
            len: IMIX[size].0 as u16,
            port: 1,
            flow: f as u32,
        }
    }

    /// The patched headers equal what the packet builder makes from scratch.
    fn self_check(&self) {
        for f in [1, 49_999, 50_000, 1_234_567, 9_999_999] {
            for (s, &(l, _)) in IMIX.iter().enumerate() {
                assert_eq!(
                    self.client(f, s).hdr,
                    hdr_of(&client_frame(f, l, TcpFlags::ACK))
                );
                assert_eq!(self.reply(f, 2, s).hdr, hdr_of(&reply_frame(f, 2, l)));
            }
            assert_eq!(self.syn(f).hdr, hdr_of(&syn_frame(f)));
        }
    }
}

fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i + 1));
    }
}

fn imix_size(rng: &mut Rng) -> usize {
    let total: u32 = IMIX.iter().map(|x| x.1).sum();
    let mut r = rng.below(total as usize) as u32;
    for (i, &(_, w)) in IMIX.iter().enumerate() {
        if r < w {
            return i;
        }
        r -= w;
    }
    0
}

/// Established traffic of `flows` flows: each pass holds one client ACK and
/// one server reply per flow in a fresh random order; at least 256k frames.
fn established_stream(t: &Templates, rs_of: &[u8], imix: bool, seed: u64) -> Vec<Pkt> {
    let flows = rs_of.len();
    let passes = (262_144 / (2 * flows)).max(1);
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(passes * 2 * flows);
    for _ in 0..passes {
        let start = out.len();
        for (f, &rs) in rs_of.iter().enumerate() {
            let s1 = if imix { imix_size(&mut rng) } else { 0 };
            let s2 = if imix { imix_size(&mut rng) } else { 0 };
            out.push(t.client(f, s1));
            out.push(t.reply(f, rs as usize, s2));
        }
        shuffle(&mut out[start..], &mut rng);
    }
    out
}

/// A thread pinned to one core, registered with DPDK, running jobs.
struct Core {
    tx: channel::Sender<Box<dyn FnOnce() + Send>>,
}

impl Core {
    fn spawn(core: usize) -> Core {
        let (tx, rx) = channel::unbounded::<Box<dyn FnOnce() + Send>>();
        std::thread::Builder::new()
            .name(format!("bench-core{core}"))
            .spawn(move || {
                core_affinity::set_for_current(core_affinity::CoreId { id: core });
                dpdk::register_thread().expect("rte_thread_register");
                for job in rx {
                    job();
                }
            })
            .expect("spawn");
        Core { tx }
    }

    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> channel::Receiver<T> {
        let (tx, rx) = channel::bounded(1);
        self.tx
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .expect("core thread gone");
        rx
    }
}

/// How the benchmark's service forwards: `fwd` for its real servers, a
/// FULLNAT local address, the SYN proxy.
#[derive(Clone, Copy)]
struct Setup {
    fwd: &'static str,
    synproxy: bool,
}

const NAT: Setup = Setup {
    fwd: "nat",
    synproxy: false,
};

fn director(max_conns: usize, n_workers: usize) -> Result<Director> {
    director_with(max_conns, n_workers, 0)
}

/// [`director`] whose service is, with `fwmark_rules` > 0, the fwmark
/// service 1 selected by the last of that many classifier rules (the
/// others name other /32s: every new flow scans them all first).
fn director_with(max_conns: usize, n_workers: usize, fwmark_rules: usize) -> Result<Director> {
    director_setup(max_conns, n_workers, fwmark_rules, NAT)
}

fn director_setup(
    max_conns: usize,
    n_workers: usize,
    fwmark_rules: usize,
    setup: Setup,
) -> Result<Director> {
    let port = |mac, cidr: &str, gateway| -> Result<PortAddr> {
        Ok(PortAddr {
            mac,
            cidr: cidr.parse().map_err(anyhow::Error::msg)?,
            gateway,
            mtu: 1500,
        })
    };
    let neigh = Arc::new(NeighTable::default());
    neigh.learn(gw(), GW_MAC);
    for i in 0..N_RS {
        neigh.learn(rs_ip(i), rs_mac(i));
    }
    // As rvsd assembles it: one expiry wheel per worker.
    let d = Builder::new()
        .max_connections(max_conns)
        .workers(n_workers)
        .ports(vec![
            port(DIR0_MAC, "10.0.0.1/24", Some(gw()))?,
            port(DIR1_MAC, "10.0.1.1/24", None)?,
        ])
        .neighbours(neigh)
        .syn_key(rvs::synproxy::SynKey::new(1, 2))
        .build();
    let ctl = &d.ctl;
    let (svc, mut reqs) = if fwmark_rules == 0 {
        (
            r#"{"proto":"tcp","vip":"10.0.0.100","port":80}"#,
            vec![
                json!({"cmd": "add_service", "service": {"proto": "tcp", "vip": "10.0.0.100",
                    "port": 80, "sched": "rr", "synproxy": setup.synproxy,
                    "laddrs": if setup.fwd == "fullnat" { json!(["10.0.1.200"]) } else { json!([]) }}})
                .to_string(),
            ],
        )
    } else {
        let mut rules: Vec<Value> = (1..fwmark_rules)
            .map(|i| {
                json!({"mark": 2 + i, "dst": format!("10.200.{}.{}/32", i / 256, i % 256),
                       "proto": "tcp", "ports": "80,443"})
            })
            .collect();
        rules.push(json!({"mark": 1, "dst": "10.0.0.100/32", "proto": "tcp", "ports": "80"}));
        (
            r#"{"fwmark":1}"#,
            vec![
                r#"{"cmd":"add_service","service":{"fwmark":1,"sched":"rr"}}"#.to_string(),
                json!({"cmd": "set_fwmark_rules", "rules": rules}).to_string(),
            ],
        )
    };
    for i in 0..N_RS {
        reqs.push(format!(
            r#"{{"cmd":"add_dest","service":{svc},"dest":{{"ip":"{}","port":80,"weight":1,"fwd":"{}"}}}}"#,
            rs_ip(i),
            setup.fwd
        ));
    }
    for r in reqs {
        let resp: Value = serde_json::from_str(&ctl.handle_line(&r))?;
        if resp.get("error").is_some() {
            bail!("{r} -> {resp}");
        }
    }
    Ok(d)
}

/// The generator's rings: RX rings it fills, TX rings it recycles from.
#[derive(Clone, Copy)]
struct GenRings {
    rx: [MbufRing; 2],
    tx: [MbufRing; 2],
}

/// Write `p` into `m` (header only: the rest of the buffer is zero since
/// `fresh` and nobody writes payloads).
#[inline]
fn load(m: &mut Mbuf, p: &Pkt) {
    // A recycled mbuf may carry an encapsulation (TUN prepends an outer
    // header): give it back the headroom the pool gave it, or every round
    // trip would eat 20 bytes of it until the worker runs out.
    let h = m.headroom();
    if h < dpdk::MBUF_HEADROOM {
        let k = (dpdk::MBUF_HEADROOM - h).min(m.data().len());
        m.adj(k);
    }
    let cur = m.data().len();
    let want = p.len as usize;
    if want < cur {
        m.truncate(want);
    } else if want > cur && !m.append(want - cur) {
        return;
    }
    m.data_mut()[..HDR].copy_from_slice(&p.hdr);
}

/// A zeroed, empty mbuf from `pool`.
fn fresh(pool: &Mempool) -> Option<Mbuf> {
    let mut m = pool.alloc()?;
    let room = m.tailroom();
    if m.append(room) {
        m.data_mut().fill(0);
        m.truncate(0);
    }
    Some(m)
}

/// Feed `stream` (cyclically, or once) into the RX rings until `stop`.
fn generate(
    stream: Arc<Vec<Pkt>>,
    once: bool,
    rings: GenRings,
    pool: Mempool,
    stop: Arc<AtomicBool>,
) -> u64 {
    let mut free: Vec<Mbuf> = Vec::with_capacity(4 * BURST);
    let mut out: [Vec<Mbuf>; 2] = [Vec::with_capacity(BURST), Vec::with_capacity(BURST)];
    let mut idx = 0usize;
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for t in &rings.tx {
            t.dequeue(&mut free);
        }
        if once && idx == stream.len() {
            free.clear();
            std::hint::spin_loop();
            continue;
        }
        while free.len() < BURST {
            match fresh(&pool) {
                Some(m) => free.push(m),
                None => break,
            }
        }
        let mut n = free.len().min(BURST);
        if once {
            n = n.min(stream.len() - idx);
        }
        for mut m in free.drain(free.len() - n..) {
            let p = &stream[idx];
            idx += 1;
            if idx == stream.len() && !once {
                idx = 0;
            }
            load(&mut m, p);
            out[p.port as usize].push(m);
        }
        sent += n as u64;
        for (q, o) in out.iter_mut().enumerate() {
            while !o.is_empty() && !stop.load(Ordering::Relaxed) {
                if rings.rx[q].enqueue(o) == 0 {
                    for t in &rings.tx {
                        t.dequeue(&mut free);
                    }
                }
            }
            o.clear();
        }
    }
    // Leave nothing of ours in the rings for the next scenario.
    for r in rings.rx.iter().chain(rings.tx.iter()) {
        let mut v = Vec::new();
        while r.dequeue(&mut v) > 0 {
            v.clear();
        }
    }
    sent
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Rvs,
    Noop,
}

/// The no-op forwarder: every frame straight out of the other port.
#[inline]
fn noop_poll(io: &mut DpdkIo, buf: &mut Vec<Mbuf>) -> usize {
    let mut total = 0;
    for port in 0..2u16 {
        total += io.rx_burst(port, buf);
        for f in buf.drain(..) {
            io.tx(1 - port, f);
        }
    }
    io.flush();
    total
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("histogram")
}

struct RunOut {
    frames: u64,
    secs: f64,
    hist: Histogram<u64>,
}

/// Poll until `deadline` (or until `target` frames arrived), measuring from
/// `measure_from` on. Latency sample: wall time of one `poll_once` divided
/// by the frames it received, recorded once per frame.
fn drive(
    w: &mut Worker<DpdkIo>,
    mode: Mode,
    measure_from: Instant,
    deadline: Instant,
    target: Option<u64>,
) -> RunOut {
    let mut hist = new_hist();
    let mut buf = Vec::with_capacity(BURST);
    let (mut frames, mut started) = (0u64, None::<Instant>);
    let mut last = Instant::now();
    let mut total = 0u64;
    loop {
        let t0 = Instant::now();
        if t0 >= deadline || target.is_some_and(|t| total >= t) {
            break;
        }
        let n = match mode {
            Mode::Rvs => w.poll_once(rvs::clock::now_ms()),
            Mode::Noop => noop_poll(&mut w.io, &mut buf),
        } as u64;
        let t1 = Instant::now();
        if n == 0 {
            continue;
        }
        total += n;
        if t0 >= measure_from {
            started.get_or_insert(t0);
            frames += n;
            last = t1;
            let per = ((t1 - t0).as_nanos() as u64 / n).clamp(1, hist.high());
            let _ = hist.record_n(per, n);
        }
    }
    let secs = started.map(|s| (last - s).as_secs_f64()).unwrap_or(0.0);
    RunOut { frames, secs, hist }
}

fn lat_json(h: &Histogram<u64>) -> Value {
    let qs = [
        0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99999, 1.0,
    ];
    json!({
        "p50_ns": h.value_at_quantile(0.5),
        "p99_ns": h.value_at_quantile(0.99),
        "p999_ns": h.value_at_quantile(0.999),
        "max_ns": h.max(),
        "mean_ns": h.mean(),
        "cdf": qs.iter().map(|&q| json!([q, h.value_at_quantile(q)])).collect::<Vec<_>>(),
    })
}

/// Everything that lives for the whole run.
struct Rig {
    pool: Mempool,
    rings: GenRings,
    ports: [Port; 2],
    pre: Preload,
    null_ports: [Port; 2],
    null_pool: Mempool,
    cores: [Core; 2],
}

struct Preload {
    pool: Mempool,
    k: usize,
    rx: [[MbufRing; 2]; 2],
    tx: [[MbufRing; 2]; 2],
    ports: [Port; 2],
}

fn setup(quick: bool) -> Result<Rig> {
    let pool = Mempool::new("bench_gen", 16_383, 256, MBUF_DEFAULT_DATA_ROOM)?;
    let mk = |n: &str, s| MbufRing::new(n, s);
    let rings = GenRings {
        rx: [mk("g_rx0", RX_RING)?, mk("g_rx1", RX_RING)?],
        tx: [mk("g_tx0", TX_RING)?, mk("g_tx1", TX_RING)?],
    };
    let mut ports = Vec::new();
    for i in 0..2 {
        let id = MbufRing::port(&format!("bench_ring{i}"), &[rings.rx[i]], &[rings.tx[i]])?;
        let mut p = Port::configure(id, 1, 1, 1024, 1024, &pool)?;
        p.start()?;
        ports.push(p);
    }
    // Pre-filled rings for the 1-vs-2 worker runs: two queues per port.
    let k = if quick { 8_192 } else { 262_144 };
    let psize = (k as u32 + 1).next_power_of_two();
    let ppool = Mempool::new("bench_pre", (k + 8_192) as u32, 256, 128 + 64)?;
    let mut rx = Vec::new();
    let mut tx = Vec::new();
    let mut pports = Vec::new();
    for p in 0..2 {
        let r = [
            mk(&format!("p_rx{p}0"), psize)?,
            mk(&format!("p_rx{p}1"), psize)?,
        ];
        let t = [
            mk(&format!("p_tx{p}0"), psize)?,
            mk(&format!("p_tx{p}1"), psize)?,
        ];
        let id = MbufRing::port(&format!("bench_pre{p}"), &r, &t)?;
        let mut port = Port::configure(id, 2, 2, 1024, 1024, &ppool)?;
        port.start()?;
        pports.push(port);
        rx.push(r);
        tx.push(t);
    }
    let null_pool = Mempool::new("bench_null", 8_191, 256, MBUF_DEFAULT_DATA_ROOM)?;
    let mut nulls = Vec::new();
    for i in 0..2 {
        let id = Port::by_name(&format!("net_null{i}"))?;
        let mut p = Port::configure(id, 1, 1, 1024, 1024, &null_pool)?;
        p.start()?;
        nulls.push(p);
    }
    let two = |v: Vec<Port>| -> [Port; 2] { v.try_into().map_err(|_| ()).expect("two ports") };
    Ok(Rig {
        pool,
        rings,
        ports: two(ports),
        pre: Preload {
            pool: ppool,
            k,
            rx: [rx[0], rx[1]],
            tx: [tx[0], tx[1]],
            ports: two(pports),
        },
        null_ports: two(nulls),
        null_pool,
        cores: [Core::spawn(WORKER_CORE), Core::spawn(GEN_CORE)],
    })
}

fn ring_worker(rig: &Rig, d: &Director) -> Result<Worker<DpdkIo>> {
    let io = DpdkIo::new(&rig.pool, &[(&rig.ports[0], 0, 0), (&rig.ports[1], 0, 0)])?;
    Ok(Worker::new(
        0,
        1,
        io,
        d.dp.clone(),
        d.stats().clone(),
        Duration::ZERO,
    ))
}

/// One generator-fed run on core 0 with the generator on core 1.
fn gen_run(
    rig: &Rig,
    w: Worker<DpdkIo>,
    mode: Mode,
    stream: Arc<Vec<Pkt>>,
    once: bool,
    warm: f64,
    secs: f64,
) -> (Worker<DpdkIo>, RunOut, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let (rings, pool, s2) = (rig.rings, rig.pool.clone(), stop.clone());
    let target = once.then_some(stream.len() as u64);
    let gen = rig.cores[1].run(move || generate(stream, once, rings, pool, s2));
    let res = rig.cores[0].run(move || {
        let mut w = w;
        let now = Instant::now();
        let from = if once {
            now
        } else {
            now + Duration::from_secs_f64(warm)
        };
        let out = drive(
            &mut w,
            mode,
            from,
            from + Duration::from_secs_f64(secs),
            target,
        );
        w.io.flush();
        (w, out)
    });
    let (w, out) = res.recv().expect("worker");
    stop.store(true, Ordering::Relaxed);
    let sent = gen.recv().expect("generator");
    (w, out, sent)
}

fn mpps(o: &RunOut) -> f64 {
    if o.secs > 0.0 {
        o.frames as f64 / o.secs / 1e6
    } else {
        0.0
    }
}

/// Frames in a stream, by bytes: mean length for Gbit/s (wire: +24 bytes of
/// FCS, preamble and gap).
fn mean_len(s: &[Pkt]) -> f64 {
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

fn drops_json(d: &Director, w: &Worker<DpdkIo>) -> Value {
    let mut s = rvs::stats::StatsSnapshot::default();
    for x in d.stats().iter() {
        s.add(x);
    }
    let nz: serde_json::Map<String, Value> = s
        .drops
        .iter()
        .filter(|(_, &v)| v > 0)
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({"drops": nz, "tx_dropped": w.io.tx_dropped(), "conns": d.dp.conns.len()})
}

/// Pre-fill the preload rings with `k` frames of `stream` split over
/// `n` workers by flow, run the workers at once, return (frames, secs).
fn preload_round(
    rig: &Rig,
    workers: Vec<Worker<DpdkIo>>,
    mode: Mode,
    stream: &[Pkt],
) -> (Vec<Worker<DpdkIo>>, u64, f64) {
    let n = workers.len();
    let pre = &rig.pre;
    let mut counts = vec![0u64; n];
    let mut bufs: Vec<Vec<Mbuf>> = (0..4).map(|_| Vec::new()).collect();
    let mut i = 0usize;
    let per = pre.k / n;
    let mut filled = 0usize;
    while filled < per * n {
        let p = &stream[i % stream.len()];
        i += 1;
        let q = p.flow as usize % n;
        if counts[q] >= per as u64 {
            continue;
        }
        let Some(mut m) = fresh(&pre.pool) else { break };
        let mut p60 = *p;
        p60.len = 60;
        load(&mut m, &p60);
        let b = &mut bufs[p.port as usize * 2 + q];
        b.push(m);
        if b.len() == BURST {
            while !b.is_empty() {
                pre.rx[p.port as usize][q].enqueue(b);
            }
        }
        counts[q] += 1;
        filled += 1;
    }
    for (j, b) in bufs.iter_mut().enumerate() {
        while !b.is_empty() {
            pre.rx[j / 2][j % 2].enqueue(b);
        }
    }
    let barrier = Arc::new(Barrier::new(n));
    let mut rxs = Vec::new();
    for (q, w) in workers.into_iter().enumerate() {
        let b = barrier.clone();
        let target = counts[q];
        rxs.push(rig.cores[q].run(move || {
            let mut w = w;
            let mut buf = Vec::with_capacity(BURST);
            b.wait();
            let t0 = Instant::now();
            let mut got = 0u64;
            let limit = t0 + Duration::from_secs(30);
            while got < target && Instant::now() < limit {
                got += match mode {
                    Mode::Rvs => w.poll_once(rvs::clock::now_ms()),
                    Mode::Noop => noop_poll(&mut w.io, &mut buf),
                } as u64;
            }
            w.io.flush();
            (w, got, t0.elapsed().as_secs_f64())
        }));
    }
    let mut ws = Vec::new();
    let (mut frames, mut secs) = (0u64, 0f64);
    for r in rxs {
        let (w, got, s) = r.recv().expect("preload worker");
        ws.push(w);
        frames += got;
        secs = secs.max(s);
    }
    for r in pre.tx.iter().flatten().chain(pre.rx.iter().flatten()) {
        let mut v = Vec::new();
        while r.dequeue(&mut v) > 0 {
            v.clear();
        }
    }
    (ws, frames, secs)
}

fn preload_runs(
    rig: &Rig,
    d: &Director,
    stream: &[Pkt],
    rounds: usize,
    flows: usize,
) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for mode in [Mode::Noop, Mode::Rvs] {
        for n in [1usize, 2] {
            let mut ws = Vec::new();
            for q in 0..n {
                let io = DpdkIo::new(
                    &rig.pool,
                    &[
                        (&rig.pre.ports[0], q as u16, q as u16),
                        (&rig.pre.ports[1], q as u16, q as u16),
                    ],
                )?;
                ws.push(Worker::new(
                    q,
                    n,
                    io,
                    d.dp.clone(),
                    d.stats().clone(),
                    Duration::ZERO,
                ));
            }
            let (mut frames, mut secs) = (0u64, 0f64);
            for _ in 0..rounds {
                let (w2, f, s) = preload_round(rig, ws, mode, stream);
                ws = w2;
                frames += f;
                secs += s;
            }
            let m = frames as f64 / secs / 1e6;
            let name = match mode {
                Mode::Noop => "preload_noop",
                Mode::Rvs => "preload_nat_est_64",
            };
            eprintln!("  {name:<24} workers={n} {m:7.3} Mpps ({frames} frames)");
            out.push(json!({"name": name, "workers": n, "flows": flows, "mpps": m, "frames": frames, "secs": secs}));
        }
    }
    Ok(out)
}

/// Noop forwarder between the two net_null ports (no generator): the DpdkIo
/// ceiling, comparable with testpmd io.
fn null_noop(rig: &Rig, d: &Director, secs: f64) -> Result<Value> {
    let io = DpdkIo::new(
        &rig.null_pool,
        &[(&rig.null_ports[0], 0, 0), (&rig.null_ports[1], 0, 0)],
    )?;
    let w = Worker::new(0, 1, io, d.dp.clone(), d.stats().clone(), Duration::ZERO);
    let out = rig.cores[0]
        .run(move || {
            let mut w = w;
            let now = Instant::now();
            let from = now + Duration::from_millis(200);
            let o = drive(
                &mut w,
                Mode::Noop,
                from,
                from + Duration::from_secs_f64(secs),
                None,
            );
            w.io.flush();
            o
        })
        .recv()?;
    Ok(scenario("null_noop_dpdkio", 0, &out, json!({}), 64.0))
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

    let mut scen = Vec::new();
    let mut multi = Vec::new();
    let mut notes = Vec::new();
    eprintln!("ceilings:");
    let tp_secs = if quick { 2 } else { 5 };
    let mut ceil = Vec::new();
    if !args.testpmd.is_empty() {
        for m in ["5tswap", "io"] {
            match testpmd(&args.testpmd, m, tp_secs, no_huge) {
                Ok(v) => ceil.push(v),
                Err(e) => notes.push(format!("testpmd {m}: {e:#}")),
            }
        }
    }
    {
        let d = director(16, 1)?;
        ceil.push(null_noop(&rig, &d, secs)?);
    }
    let preload_flows = if quick { 1_000 } else { 100_000 };
    for &flows in &flow_list {
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
        // Which real server each flow went to (rr), as a test harness learns
        // it from the wire.
        let rs_of: Vec<u8> = (0..flows)
            .map(|f| {
                let (cip, sport) = client(f);
                d.dp.conns
                    .lookup(&FlowKey::v4(Proto::Tcp, cip, sport, vip(), 80))
                    .map_or(0, |(c, _)| c.dip.octets()[3] as usize - 11) as u8
            })
            .collect();
        let setup_secs = t0.elapsed().as_secs_f64();
        let mut w = w;
        for imix in [false, true] {
            let stream = Arc::new(established_stream(&t, &rs_of, imix, 7 + flows as u64));
            let mean = mean_len(&stream);
            let name = if imix { "nat_est_imix" } else { "nat_est_64" };
            let (w2, out, _) = gen_run(&rig, w, Mode::Rvs, stream.clone(), false, warm, secs);
            w = w2;
            scen.push(scenario(name, flows, &out, drops_json(&d, &w), mean));
            if !imix && flows == flow_list[0] {
                let (w2, out, _) = gen_run(&rig, w, Mode::Noop, stream.clone(), false, warm, secs);
                w = w2;
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
        let rs_of: Vec<u8> = (0..flows)
            .map(|f| {
                let (cip, sport) = client(f);
                d.dp.conns
                    .lookup(&FlowKey::v4(Proto::Tcp, cip, sport, vip(), 80))
                    .map_or(0, |(c, _)| c.dip.octets()[3] as usize - 11) as u8
            })
            .collect();
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
