//! rvs-tablebench: the connection table on its own (issue #5's figures).
//!
//! - `ops`: lookups and inserts per second on one core with N live
//!   connections (random keys, random order; 1 k to 10 M).
//! - `memory`: resident bytes per connection of a process holding N.
//! - `expiry`: N connections created within seconds by one core, all with a
//!   short timeout, while a forwarding loop on the other core looks up
//!   established flows and does its share of expiry; reports the loop's
//!   iteration-time histogram (its worst stall) and how late the last
//!   connection ended.
//! - `takeover`: what a restart or a handover of rvsd spends on a
//!   `conn_table_file` holding N established connections: building the new
//!   table file (before the lock; a handover does it before the old rvsd
//!   stops), reading the old one, and taking its connections over.
//!
//! Writes one JSON object to stdout. bench/run.sh runs it and
//! bench/report.py puts the figures in RESULTS.md.

#![deny(unsafe_code)]

use rvs::prng::Rng;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use anyhow::Result;
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use rvs::flow::FlowKey;

use rvs::conn::{ConnTable, Dir, Lookup, NewConn, State, TcpEvent, Timeouts};
use rvs::flow::{Forward, Proto};
use rvs::service::{DestState, ServiceState};

#[derive(Parser)]
#[command(about = "Benchmark the rvs connection table")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Lookup and insert rates at each live-connection count.
    Ops {
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "1000,100000,1000000,10000000"
        )]
        sizes: Vec<usize>,
        /// Lookups measured per size.
        #[arg(long, default_value_t = 5_000_000)]
        lookups: usize,
    },
    /// Resident memory per connection with `n` live.
    Memory {
        #[arg(long, default_value_t = 10_000_000)]
        n: usize,
    },
    /// Mass expiry while another core forwards.
    Expiry {
        #[arg(long, default_value_t = 10_000_000)]
        n: usize,
        /// Timeout of the mass-created connections, seconds.
        #[arg(long, default_value_t = 5)]
        timeout: u32,
        /// Established flows the forwarding loop looks up.
        #[arg(long, default_value_t = 10_000)]
        flows: usize,
        /// Whose wheel times the mass-created connections: the creating
        /// core's (as when each worker creates its own connections) or the
        /// forwarding loop's (the worst case: it must end all of them).
        #[arg(long, default_value = "creator")]
        owner: String,
    },
    /// Restart / handover take-over of a table file with N connections.
    Takeover {
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        sizes: Vec<usize>,
        /// Capacity of the tables (`max_connections`).
        #[arg(long, default_value_t = 1 << 20)]
        max: usize,
        /// Directory of the table file (tmpfs, as /run is).
        #[arg(long, default_value = "/dev/shm")]
        dir: std::path::PathBuf,
    },
}

/// Client `i`: source addresses from 11.0.0.0 on, 60 000 ports each, so
/// keys are distinct; their order in memory says nothing about hashes.
fn client(i: usize) -> (IpAddr, u16) {
    (
        IpAddr::V4(Ipv4Addr::from(0x0b00_0000u32 + (i / 60_000) as u32)),
        1024 + (i % 60_000) as u16,
    )
}

struct Env {
    dest: std::sync::Arc<DestState>,
    svc: std::sync::Arc<ServiceState>,
}

fn env(t: &ConnTable) -> Env {
    Env {
        dest: t
            .ids()
            .dests
            .push(|id| DestState {
                id,
                ..Default::default()
            })
            .expect("id"),
        svc: t
            .ids()
            .services
            .push(|id| ServiceState {
                id,
                ..Default::default()
            })
            .expect("id"),
    }
}

fn new_conn(e: &Env, i: usize, proto: Proto) -> NewConn {
    NewConn::new(
        proto,
        client(i),
        (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)), 80),
        (IpAddr::V4(Ipv4Addr::new(10, 0, 1, 11)), 80),
        Forward::Nat,
        &e.dest,
        &e.svc,
    )
}

fn key(i: usize, proto: Proto) -> FlowKey {
    let (c, p) = client(i);
    FlowKey {
        proto,
        src: c,
        sport: p,
        dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)),
        dport: 80,
    }
}

fn shuffled(n: usize, rng: &mut Rng) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.below(i + 1));
    }
    v
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// Involuntary context switches of the calling thread so far: a stall
/// that coincides with one was the scheduler's, not the table's.
fn preemptions() -> u64 {
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("nonvoluntary_ctxt_switches:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn pin(core: usize) {
    core_affinity::set_for_current(core_affinity::CoreId { id: core });
}

fn ops(sizes: &[usize], lookups: usize) -> Value {
    pin(0);
    let mut out = Vec::new();
    for &n in sizes {
        // Room for n live plus the inserts measured at that size.
        let extra = (n / 10).clamp(1_000, 200_000);
        let t = ConnTable::new(n + extra, 1);
        let e = env(&t);
        let mut rng = Rng(n as u64);
        let order = shuffled(n + extra, &mut rng);
        let t0 = Instant::now();
        for &i in &order[..n] {
            t.insert(new_conn(&e, i as usize, Proto::Tcp), 0, 0)
                .expect("room");
        }
        let fill_s = t0.elapsed().as_secs_f64();
        // Inserts with n live.
        let t1 = Instant::now();
        for &i in &order[n..] {
            t.insert(new_conn(&e, i as usize, Proto::Tcp), 0, 0)
                .expect("room");
        }
        let ins_s = t1.elapsed().as_secs_f64();
        // Random lookups of live keys (both directions' hit path).
        let probes: Vec<FlowKey> = (0..lookups.min(4_000_000))
            .map(|_| key(order[rng.below(n)] as usize, Proto::Tcp))
            .collect();
        let mut found = 0usize;
        let t2 = Instant::now();
        let mut done = 0;
        while done < lookups {
            for k in &probes {
                found += t.lookup(k).is_some() as usize;
            }
            done += probes.len();
        }
        let look_s = t2.elapsed().as_secs_f64();
        assert_eq!(found, done, "every live key is found");
        // The same lookups as the worker's stages make them: a burst of 32
        // at a time, every index bucket prefetched, then every tag-matched
        // slot, then the lookups (how far the misses overlap).
        let t2b = Instant::now();
        let mut done_b = 0;
        while done_b < lookups {
            for b in probes.chunks(32) {
                b.iter().for_each(|k| t.prefetch_bucket(k));
                b.iter().for_each(|k| t.prefetch_conn(k));
                for k in b {
                    found += t.lookup(k).is_some() as usize;
                }
            }
            done_b += probes.len();
        }
        let burst_s = t2b.elapsed().as_secs_f64();
        assert_eq!(found, done + done_b, "every live key is found");
        // The worker's own fast path: each key hashed once, its bucket
        // then its slot prefetched for the burst, then read as a plain
        // connection from the entry stage 2 found (`lookup_plain_from`,
        // no `Conn` built).
        let plain_keys: Vec<(u32, u16)> = probes
            .iter()
            .map(|k| match k.src {
                IpAddr::V4(a) => (u32::from(a), k.sport),
                IpAddr::V6(_) => unreachable!("IPv4 keys"),
            })
            .collect();
        let vip = u32::from(Ipv4Addr::new(10, 0, 0, 100));
        let t2p = Instant::now();
        let (mut done_p, mut found_p) = (0, 0usize);
        let (mut hs, mut hints) = ([0u64; 32], [0u64; 32]);
        while done_p < lookups {
            for b in plain_keys.chunks(32) {
                for (h, &(src, sport)) in hs.iter_mut().zip(b) {
                    *h = t.hash4(Proto::Tcp, src, sport, vip, 80);
                    t.prefetch_hashed(*h);
                }
                for (hint, &h) in hints.iter_mut().zip(&hs).take(b.len()) {
                    *hint = t.prefetch_slots_hashed(h);
                }
                for ((&h, &hint), &(src, sport)) in hs.iter().zip(&hints).zip(b) {
                    let l = t.lookup_plain_from(hint, h, Proto::Tcp, (src, sport), (vip, 80));
                    found_p += matches!(l, Lookup::Plain(_)) as usize;
                }
            }
            done_p += plain_keys.len();
        }
        let plain_s = t2p.elapsed().as_secs_f64();
        assert_eq!(found_p, done_p, "every live key is found plain");
        // Misses: keys never inserted.
        let misses: Vec<FlowKey> = (0..probes.len())
            .map(|i| key(n + extra + i, Proto::Tcp))
            .collect();
        let t3 = Instant::now();
        let mut hits = 0usize;
        for k in &misses {
            hits += t.lookup(k).is_some() as usize;
        }
        let miss_s = t3.elapsed().as_secs_f64();
        assert_eq!(hits, 0);
        let r = json!({
            "live": n,
            "fill_mops": n as f64 / fill_s / 1e6,
            "insert_mops": extra as f64 / ins_s / 1e6,
            "inserts_measured": extra,
            "lookup_mops": done as f64 / look_s / 1e6,
            "lookup_ns": look_s * 1e9 / done as f64,
            "lookup_burst_ns": burst_s * 1e9 / done_b as f64,
            "lookup_plain_burst_ns": plain_s * 1e9 / done_p as f64,
            "miss_mops": misses.len() as f64 / miss_s / 1e6,
            "footprint_bytes": t.footprint(),
        });
        let footprint = t.footprint();
        drop(t);
        let mut r = r;
        let (one, burst, dep) = gather(footprint, lookups, &mut rng);
        r["ceiling_ns"] = json!(one);
        r["ceiling_burst_ns"] = json!(burst);
        r["dependent_access_ns"] = json!(dep);
        eprintln!("{r}");
        out.push(r);
    }
    json!({"ops": out})
}

/// One cache line of [`gather`]'s memory.
#[derive(Clone, Copy, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line([u64; 8]);

/// The machine's ceiling for a lookup at this table size: as many bytes as
/// the table, on the same (transparent huge) pages, and per lookup two
/// dependent random line reads (the first line names the second, as an
/// index bucket names a slot), with no table logic at all. Returns ns per
/// lookup one at a time, and 32 at a time with both rounds prefetched as
/// the worker's stages do, and the latency of one access that nothing
/// overlaps ([`chase`]). The table's lookups cannot beat these here:
/// what they add to them is the table's, the rest is the memory's (and, on
/// a VM, its nested page walks).
fn gather(bytes: usize, lookups: usize, rng: &mut Rng) -> (f64, f64, f64) {
    use rvs::dpdk::prefetch;
    let lines = (bytes / 64).max(64);
    // On huge pages, as the table's index is.
    let mut mem: Box<[Line]> = rvs::dpdk::zeroed_on_hugepages(lines);
    for l in mem.iter_mut() {
        l.0[0] = rng.below(lines) as u64;
        l.0[1] = 1;
    }
    let starts: Vec<u32> = (0..lookups.min(4_000_000))
        .map(|_| rng.below(lines) as u32)
        .collect();
    let mut sum = 0u64;
    let t = Instant::now();
    let mut done = 0;
    while done < lookups {
        for &s in &starts {
            let next = mem[s as usize].0[0] as usize;
            sum += mem[next].0[1];
        }
        done += starts.len();
    }
    let one = t.elapsed().as_secs_f64() * 1e9 / done as f64;
    let t = Instant::now();
    let mut done_b = 0;
    let mut next = [0usize; 32];
    while done_b < lookups {
        for b in starts.chunks(32) {
            b.iter().for_each(|&s| prefetch(&mem[s as usize]));
            for (n, &s) in next.iter_mut().zip(b) {
                *n = mem[s as usize].0[0] as usize;
                prefetch(&mem[*n]);
            }
            for &n in &next[..b.len()] {
                sum += mem[n].0[1];
            }
        }
        done_b += starts.len();
    }
    let burst = t.elapsed().as_secs_f64() * 1e9 / done_b as f64;
    assert_eq!(sum as usize, done + done_b, "every line read");
    (one, burst, chase(&mut mem, rng))
}

/// The latency of one random access to `mem`: a pointer chase (each line
/// names the next, all in one cycle, Sattolo's shuffle) where nothing
/// overlaps. What one miss costs here: the memory's latency and, once
/// the lines spread over more pages than the TLB maps, the page walk.
fn chase(mem: &mut [Line], rng: &mut Rng) -> f64 {
    for (i, l) in mem.iter_mut().enumerate() {
        l.0[2] = i as u64;
    }
    for i in (1..mem.len()).rev() {
        let j = rng.below(i);
        let (a, b) = (mem[i].0[2], mem[j].0[2]);
        mem[i].0[2] = b;
        mem[j].0[2] = a;
    }
    let steps = 2_000_000;
    let mut at = 0usize;
    let t = Instant::now();
    for _ in 0..steps {
        at = mem[at].0[2] as usize;
    }
    let ns = t.elapsed().as_secs_f64() * 1e9 / steps as f64;
    std::hint::black_box(at);
    ns
}

fn memory(n: usize) -> Value {
    let before = rss_bytes();
    let t = ConnTable::new(n, 1);
    let after_alloc = rss_bytes();
    let e = env(&t);
    for i in 0..n {
        t.insert(new_conn(&e, i, Proto::Tcp), 0, 0).expect("room");
    }
    let after = rss_bytes();
    let r = json!({
        "live": t.len(),
        "rss_before": before,
        "rss_after_alloc": after_alloc,
        "rss_full": after,
        "bytes_per_conn": (after - before) as f64 / n as f64,
        "footprint_bytes": t.footprint(),
        "slot_bytes": 64,
    });
    eprintln!("{r}");
    json!({"memory": r})
}

fn expiry(n: usize, timeout: u32, flows: usize, owner: &str) -> Value {
    let wheel = if owner == "fwd" { 0 } else { 1 };
    let t = ConnTable::new(n + flows, 2);
    let e = env(&t);
    let mut to = Timeouts::default();
    to.0[State::Udp as usize] = timeout;
    t.set_timeouts(to);
    let start = Instant::now();
    let now = || start.elapsed().as_millis() as u64;
    // The forwarding loop's established flows (TCP, 900 s), in wheel 0.
    let fkeys: Vec<FlowKey> = (0..flows).map(|i| key(n + i, Proto::Tcp)).collect();
    for i in 0..flows {
        let c = t
            .insert(new_conn(&e, n + i, Proto::Tcp), now(), 0)
            .expect("room");
        let ev = |syn, ack| TcpEvent {
            syn,
            ack,
            ..Default::default()
        };
        c.on_packet(Dir::In, ev(true, false), now(), &to);
        c.on_packet(Dir::In, ev(false, true), now(), &to);
    }
    let created_done = AtomicU64::new(0);
    let last_deadline = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let mut hist = Histogram::<u64>::new_with_bounds(10, 10_000_000_000, 3).expect("histogram");
    let mut ended = 0usize;
    let mut empty_at = 0u64;
    let mut lookups = 0u64;
    let (mut preempted, mut over_1ms) = (0, 0);
    std::thread::scope(|s| {
        // The creator: n UDP connections as fast as it can, on core 1,
        // in wheel 1 (as a second worker would).
        s.spawn(|| {
            pin(1);
            for i in 0..n {
                let ms = now();
                if t.insert(new_conn(&e, i, Proto::Udp), ms, wheel).is_err() {
                    break;
                }
                last_deadline.store(ms + timeout as u64 * 1000, Relaxed);
            }
            created_done.store(now().max(1), Relaxed);
            // Wheel 1 is this "worker's": it does its own expiry, in the
            // same bounded slices the real worker uses.
            while !stop.load(Relaxed) {
                let ended1 = t.expire(1, now(), rvs::worker::EXPIRE_BUDGET_IDLE);
                if ended1 == 0 {
                    std::hint::spin_loop();
                }
            }
        });
        // The forwarding loop on core 0: bursts of 32 lookups plus its own
        // expiry share, timed per iteration.
        pin(0);
        let mut rng = Rng(7);
        let deadline_guard = Instant::now();
        let pre0 = preemptions();
        loop {
            let it = Instant::now();
            for _ in 0..32 {
                let k = &fkeys[rng.below(flows)];
                if let Some((c, _)) = t.lookup(k) {
                    c.on_packet(Dir::In, TcpEvent::default(), now(), &to);
                    lookups += 1;
                }
            }
            ended += t.expire(0, now(), rvs::worker::EXPIRE_BUDGET);
            hist.record(it.elapsed().as_nanos() as u64).ok();
            let created = created_done.load(Relaxed);
            if created > 0 && t.len() <= flows && empty_at == 0 {
                empty_at = now();
            }
            if empty_at != 0 || deadline_guard.elapsed().as_secs() > 120 {
                break;
            }
        }
        stop.store(true, Relaxed);
        preempted = preemptions() - pre0;
        over_1ms = hist.count_between(1_000_000, u64::MAX);
    });
    let created_ms = created_done.load(Relaxed);
    let last = last_deadline.load(Relaxed);
    let r = json!({
        "created": n,
        "owner": owner,
        "created_in_ms": created_ms,
        "timeout_s": timeout,
        "last_deadline_ms": last,
        "all_ended_ms": empty_at,
        "late_ms": empty_at as i64 - last as i64,
        "left": t.len() - flows,
        "fwd_lookups": lookups,
        "fwd_iter_ns": {
            "p50": hist.value_at_quantile(0.5), "p99": hist.value_at_quantile(0.99),
            "p99_9": hist.value_at_quantile(0.999), "p99_99": hist.value_at_quantile(0.9999),
            "max": hist.max(), "count": hist.len(),
        },
        "fwd_ended": ended,
        "fwd_preempted": preempted,
        "fwd_iters_over_1ms": over_1ms,
    });
    eprintln!("{r}");
    json!({"expiry": r})
}

/// One table file with `n` established NAT connections, left as a killed
/// rvsd leaves it; then the successor's three steps, timed.
fn takeover(sizes: &[usize], max: usize, dir: &std::path::Path) -> Value {
    use rvs::control::Control;
    use rvs::stats::WorkerStats;
    let path = dir.join(format!("rvs-tablebench-takeover-{}", std::process::id()));
    let director = |t: ConnTable| {
        let workers: std::sync::Arc<[crossbeam_utils::CachePadded<WorkerStats>]> =
            std::sync::Arc::from(vec![crossbeam_utils::CachePadded::new(
                WorkerStats::default(),
            )]);
        let c = Control::new(
            std::sync::Arc::new(t),
            workers,
            vec!["10.0.1.1".parse().unwrap()],
        );
        for line in [
            r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr"}}"#,
            r#"{"cmd":"add_dest","service":{"proto":"tcp","vip":"10.0.0.100","port":80},"dest":{"ip":"10.0.2.10","fwd":"nat"}}"#,
            r#"{"cmd":"add_dest","service":{"proto":"tcp","vip":"10.0.0.100","port":80},"dest":{"ip":"10.0.2.11","fwd":"nat"}}"#,
        ] {
            let r: Value = serde_json::from_str(&c.handle_line(line)).unwrap();
            assert_eq!(r["ok"], true, "{line}: {r}");
        }
        c
    };
    let mut out = Vec::new();
    for &n in sizes {
        let n = n.min(max);
        let (t, mut k) =
            ConnTable::open_file(&path, max, 1, Default::default(), true).expect("table file");
        k.commit().expect("commit");
        let a = director(t);
        {
            let snap = a.table.load();
            let svc = snap
                .find(Proto::Tcp, "10.0.0.100".parse().unwrap(), 80)
                .unwrap();
            let to = a.conns.timeouts();
            let now = rvs::clock::now_ms();
            for i in 0..n {
                let d = &svc.dests[i % 2];
                let c = a
                    .conns
                    .insert(
                        NewConn::new(
                            Proto::Tcp,
                            client(i),
                            ("10.0.0.100".parse().unwrap(), 80),
                            (d.ip, 80),
                            Forward::Nat,
                            &d.state,
                            &svc.state,
                        ),
                        now,
                        0,
                    )
                    .expect("room");
                c.on_packet(
                    Dir::In,
                    TcpEvent {
                        syn: true,
                        fin: false,
                        ack: false,
                        rst: false,
                    },
                    now,
                    &to,
                );
                c.on_packet(
                    Dir::Out,
                    TcpEvent {
                        syn: true,
                        fin: false,
                        ack: true,
                        rst: false,
                    },
                    now,
                    &to,
                );
                c.on_packet(
                    Dir::In,
                    TcpEvent {
                        syn: false,
                        fin: false,
                        ack: true,
                        rst: false,
                    },
                    now,
                    &to,
                );
            }
        }
        drop((a, k));
        let t0 = Instant::now();
        let prepared =
            rvs::conn::Prepared::new(&path, max, 1, Default::default(), false).expect("prepare");
        let prepare_ms = t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();
        let (t, mut k) = prepared.take_over(false).expect("take over");
        let read_ms = t1.elapsed().as_secs_f64() * 1e3;
        let b = director(t);
        let t2 = Instant::now();
        let r = b.adopt(k.previous.as_ref().expect("previous table"));
        let adopt_ms = t2.elapsed().as_secs_f64() * 1e3;
        k.commit().expect("commit");
        let row = json!({
            "connections": n,
            "max": max,
            "prepare_ms": prepare_ms,
            "read_ms": read_ms,
            "adopt_ms": adopt_ms,
            "adopted": r.adopted,
            "gap_ms": read_ms + adopt_ms,
        });
        eprintln!("{row}");
        out.push(row);
        drop((b, k));
    }
    for ext in ["", ".lock"] {
        let mut p = path.as_os_str().to_owned();
        p.push(ext);
        let _ = std::fs::remove_file(p);
    }
    json!({ "takeover": out })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let v = match args.cmd {
        Cmd::Ops { sizes, lookups } => ops(&sizes, lookups),
        Cmd::Memory { n } => memory(n),
        Cmd::Expiry {
            n,
            timeout,
            flows,
            owner,
        } => expiry(n, timeout, flows, &owner),
        Cmd::Takeover { sizes, max, dir } => takeover(&sizes, max, &dir),
    };
    println!("{v}");
    Ok(())
}
