//! Health-checker benchmark: N real servers (TCP_CHECK) on addresses of a
//! network namespace this program creates, a fraction of them blackholed by
//! nftables at a known moment. Reports each dead server's detection latency
//! against keepalived's bound, the period accuracy of healthy servers'
//! checks, and how quickly a re-import drops the old configuration's probes.
//!
//! Run as root: `rvs-healthbench [--servers 3000] [--dead-pct 10]
//! [--delay-loop-ms 5000] [--timeout-ms 2000] [--retry 1]
//! [--retry-delay-ms 1000]`. It re-executes itself inside
//! `ip netns exec rvshb-PID`, routes 10.77.0.0/20 locally on that
//! namespace's loopback, accepts on 0.0.0.0:8080, and deletes the namespace
//! at the end (also on failure).

#![deny(unsafe_code)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rvs::flow::{Proto, ServiceKey};
use rvs::health::{HealthChecker, HealthEvent, HealthSource, HealthTarget};
use rvs::service::{CheckKind, HealthCheck};

const PORT: u16 = 8080;

struct Opts {
    servers: usize,
    dead_pct: usize,
    delay_loop_ms: u32,
    timeout_ms: u32,
    retry: u32,
    retry_delay_ms: u32,
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str, d: usize| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    Opts {
        servers: get("--servers", 3000).clamp(1, 4000),
        dead_pct: get("--dead-pct", 10).min(100),
        delay_loop_ms: get("--delay-loop-ms", 5000) as u32,
        timeout_ms: get("--timeout-ms", 2000) as u32,
        retry: get("--retry", 1) as u32,
        retry_delay_ms: get("--retry-delay-ms", 1000) as u32,
    }
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn addr(i: usize) -> Ipv4Addr {
    let n = 1 + i as u32;
    Ipv4Addr::new(10, 77, (n >> 8) as u8, n as u8)
}

struct Src {
    targets: Mutex<Vec<HealthTarget>>,
    generation: AtomicU64,
    events: Mutex<Vec<(Instant, HealthEvent)>>,
}

impl HealthSource for Src {
    fn health_generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }
    fn health_targets(&self) -> Vec<HealthTarget> {
        self.targets.lock().clone()
    }
    fn health_event(&self, ev: HealthEvent) {
        self.events.lock().push((Instant::now(), ev));
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i]
}

fn dist(name: &str, v: &mut [f64]) {
    println!(
        "{name}: n={} min={:.0} p50={:.0} p90={:.0} p99={:.0} max={:.0} ms",
        v.len(),
        pct(v, 0.0),
        pct(v, 0.5),
        pct(v, 0.9),
        pct(v, 0.99),
        pct(v, 1.0)
    );
}

fn inner(o: &Opts) -> Result<(), String> {
    sh(&["ip", "link", "set", "lo", "up"])?;
    sh(&["ip", "route", "add", "local", "10.77.0.0/20", "dev", "lo"])?;
    for cmd in [
        "add table ip rvshb",
        "add set ip rvshb dead { type ipv4_addr; }",
        "add chain ip rvshb out { type filter hook output priority 0; }",
        "add rule ip rvshb out ip daddr @dead tcp dport 8080 drop",
    ] {
        sh(&["nft", cmd])?;
    }
    let l = TcpListener::bind(("0.0.0.0", PORT)).map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    });
    let svc = ServiceKey {
        proto: Proto::Tcp,
        vip: "10.0.0.100".parse().unwrap(),
        port: 80,
        fwmark: 0,
    };
    let mut check = HealthCheck::new(CheckKind::Tcp);
    check.interval_ms = o.delay_loop_ms;
    check.timeout_ms = o.timeout_ms;
    check.retries = o.retry + 1;
    check.retry_delay_ms = o.retry_delay_ms;
    let targets: Vec<HealthTarget> = (0..o.servers)
        .map(|i| {
            let ip = IpAddr::V4(addr(i));
            HealthTarget {
                dest: (svc, ip, PORT),
                addr: SocketAddr::new(ip, PORT),
                check: check.clone(),
                up: true,
            }
        })
        .collect();
    let src = Arc::new(Src {
        targets: Mutex::new(targets),
        generation: AtomicU64::new(1),
        events: Mutex::new(Vec::new()),
    });
    let start = Instant::now();
    let hc = HealthChecker::start(src.clone()).map_err(|e| e.to_string())?;
    // Phase 1: all up for three periods.
    let p1 = Duration::from_millis(3 * o.delay_loop_ms as u64 + 500);
    std::thread::sleep(p1);
    let ndead = o.servers * o.dead_pct / 100;
    // Servers spread evenly over the range (every 10th at 10 %) die at once.
    let step = o.servers.checked_div(ndead).unwrap_or(usize::MAX);
    let dead: Vec<usize> = (0..o.servers).step_by(step.max(1)).take(ndead).collect();
    let elems: Vec<String> = dead.iter().map(|&i| addr(i).to_string()).collect();
    for chunk in elems.chunks(500) {
        sh(&[
            "nft",
            &format!("add element ip rvshb dead {{ {} }}", chunk.join(", ")),
        ])?;
    }
    let killed = Instant::now();
    let bound = o.delay_loop_ms as u64
        + o.timeout_ms as u64 * (o.retry as u64 + 1)
        + o.retry_delay_ms as u64 * o.retry as u64;
    // Phase 2: wait for every dead server's down transition (bounded).
    let end = killed + Duration::from_millis(2 * bound + 5000);
    let dead_ips: std::collections::HashSet<IpAddr> =
        dead.iter().map(|&i| IpAddr::V4(addr(i))).collect();
    loop {
        let n = src
            .events
            .lock()
            .iter()
            .filter(|(t, e)| *t >= killed && e.transition == Some(false))
            .count();
        if n >= dead.len() || Instant::now() >= end {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Re-import while many dead servers' probes are in flight (each waits
    // for its connect timeout).
    let wend = Instant::now() + Duration::from_millis(2 * o.delay_loop_ms as u64);
    while Instant::now() < wend {
        let s = hc.stats();
        if s.started - s.finished - s.dropped >= (dead.len() as u64 / 4).max(1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let before = hc.stats();
    // Phase 3: re-import a configuration without any of these servers while
    // the dead ones' probes are in flight.
    let in_flight = before.started - before.finished - before.dropped;
    src.targets.lock().clear();
    let reimport = Instant::now();
    src.generation.store(2, Ordering::Relaxed);
    let mut dropped_after = None;
    let dend = Instant::now() + Duration::from_secs(5);
    while Instant::now() < dend {
        let s = hc.stats();
        if s.started == s.finished + s.dropped {
            dropped_after = Some(reimport.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let late_events = {
        std::thread::sleep(Duration::from_millis(200));
        let t = reimport + dropped_after.unwrap_or_default();
        src.events.lock().iter().filter(|(at, _)| *at > t).count()
    };
    let stats = hc.stats();
    hc.stop();

    let ev = src.events.lock();
    // Detection latency of each dead server.
    let mut det: Vec<f64> = Vec::new();
    let mut missed = 0;
    for ip in &dead_ips {
        match ev
            .iter()
            .find(|(t, e)| *t >= killed && e.dest.1 == *ip && e.transition == Some(false))
        {
            Some((t, _)) => det.push(t.duration_since(killed).as_secs_f64() * 1000.0),
            None => missed += 1,
        }
    }
    // Period accuracy: time between consecutive successful checks of a
    // healthy server, minus delay_loop (phase 1 and the living in phase 2).
    let mut last: HashMap<IpAddr, Instant> = HashMap::new();
    let mut err: Vec<f64> = Vec::new();
    let mut false_down = 0;
    for (t, e) in ev.iter() {
        if e.transition == Some(false) && !(dead_ips.contains(&e.dest.1) && *t >= killed) {
            false_down += 1;
        }
        if !e.ok || (dead_ips.contains(&e.dest.1) && *t >= killed) {
            continue;
        }
        if let Some(p) = last.insert(e.dest.1, *t) {
            err.push(t.duration_since(p).as_secs_f64() * 1000.0 - o.delay_loop_ms as f64);
        }
    }
    let mut abs: Vec<f64> = err.iter().map(|x| x.abs()).collect();
    println!(
        "servers={} dead={} delay_loop={}ms connect_timeout={}ms retry={} delay_before_retry={}ms",
        o.servers,
        dead.len(),
        o.delay_loop_ms,
        o.timeout_ms,
        o.retry,
        o.retry_delay_ms
    );
    println!(
        "keepalived bound delay_loop + connect_timeout*(retry+1) + delay_before_retry*retry = {bound} ms"
    );
    dist("detection latency (blackhole -> DOWN)", &mut det);
    println!(
        "dead servers not detected within {} ms: {missed}; over the bound: {}",
        2 * bound + 5000,
        det.iter().filter(|&&d| d > bound as f64).count()
    );
    dist(
        "check period error |interval - delay_loop| (healthy)",
        &mut abs,
    );
    println!("healthy servers wrongly taken down: {false_down}");
    println!(
        "re-import with {in_flight} probes in flight: all dropped after {:?}; events after: {late_events}",
        dropped_after
    );
    println!(
        "loop: started={} finished={} dropped={} deferred={} max_in_flight={} run={:.1}s",
        stats.started,
        stats.finished,
        stats.dropped,
        stats.deferred,
        stats.max_in_flight,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() {
    let o = opts();
    if std::env::var_os("RVS_HEALTHBENCH_INNER").is_some() {
        if let Err(e) = inner(&o) {
            eprintln!("rvs-healthbench: {e}");
            std::process::exit(1);
        }
        return;
    }
    let ns = format!("rvshb-{}", std::process::id());
    if let Err(e) = sh(&["ip", "netns", "add", &ns]) {
        eprintln!("rvs-healthbench: {e} (run as root)");
        std::process::exit(1);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut args = vec![
        "netns".to_string(),
        "exec".into(),
        ns.clone(),
        exe.display().to_string(),
    ];
    args.extend(std::env::args().skip(1));
    let st = Command::new("ip")
        .args(&args)
        .env("RVS_HEALTHBENCH_INNER", "1")
        .status();
    let _ = sh(&["ip", "netns", "del", &ns]);
    match st {
        Ok(s) if s.success() => {}
        Ok(s) => std::process::exit(s.code().unwrap_or(1)),
        Err(e) => {
            eprintln!("rvs-healthbench: ip netns exec: {e}");
            std::process::exit(1);
        }
    }
}
