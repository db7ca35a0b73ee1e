//! The harness: cores, the director under test, the generator and its
//! rings, generator-fed and pre-filled runs.

use super::*;

/// A thread pinned to one core, registered with DPDK, running jobs.
pub(crate) struct Core {
    pub(crate) tx: channel::Sender<Box<dyn FnOnce() + Send>>,
}

impl Core {
    pub(crate) fn spawn(core: usize) -> Core {
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

    pub(crate) fn run<T: Send + 'static>(
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
pub(crate) struct Setup {
    pub(crate) fwd: &'static str,
    pub(crate) synproxy: bool,
}

pub(crate) const NAT: Setup = Setup {
    fwd: "nat",
    synproxy: false,
};

pub(crate) fn director(max_conns: usize, n_workers: usize) -> Result<Director> {
    director_with(max_conns, n_workers, 0)
}

/// [`director`] whose service is, with `fwmark_rules` > 0, the fwmark
/// service 1 selected by the last of that many classifier rules (the
/// others name other /32s: every new flow scans them all first).
pub(crate) fn director_with(
    max_conns: usize,
    n_workers: usize,
    fwmark_rules: usize,
) -> Result<Director> {
    director_setup(max_conns, n_workers, fwmark_rules, NAT)
}

pub(crate) fn director_setup(
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
            ipv6: None,
            gateway6: None,
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
    control(ctl, &reqs)?;
    Ok(d)
}

/// Send control requests (JSON lines, as rvsadm does); any error fails.
fn control(ctl: &rvs::control::Control, reqs: &[String]) -> Result<()> {
    for r in reqs {
        let resp: Value = serde_json::from_str(&ctl.handle_line(r))?;
        if resp.get("error").is_some() {
            bail!("{r} -> {resp}");
        }
    }
    Ok(())
}

/// The director of the IPv6 scenarios, as [`director`] for an IPv6 VIP:
/// the ports also have IPv6 addresses (2001:db8::1/64 with the default
/// route's gateway 2001:db8::2 on the client side, 2001:db8:1::1/64 on the
/// real servers'), the service is tcp [2001:db8::100]:80 rr with 4 IPv6
/// NAT real servers, and the IPv6 neighbours (gateway, real servers) are
/// pre-learned (no Neighbor Discovery).
pub(crate) fn director6(max_conns: usize, n_workers: usize) -> Result<Director> {
    let port = |mac, cidr: &str, gateway, cidr6: &str, gateway6| -> Result<PortAddr> {
        Ok(PortAddr {
            mac,
            cidr: cidr.parse().map_err(anyhow::Error::msg)?,
            gateway,
            mtu: 1500,
            ipv6: Some(cidr6.parse().map_err(anyhow::Error::msg)?),
            gateway6,
        })
    };
    let d = Builder::new()
        .max_connections(max_conns)
        .workers(n_workers)
        .ports(vec![
            port(
                DIR0_MAC,
                "10.0.0.1/24",
                Some(gw()),
                "2001:db8::1/64",
                Some(gw6()),
            )?,
            port(DIR1_MAC, "10.0.1.1/24", None, "2001:db8:1::1/64", None)?,
        ])
        .syn_key(rvs::synproxy::SynKey::new(1, 2))
        .build();
    d.dp.neigh6.learn(gw6(), GW_MAC);
    for i in 0..N_RS {
        d.dp.neigh6.learn(rs6_ip(i), rs_mac(i));
    }
    let svc = json!({"proto": "tcp", "vip": vip6().to_string(), "port": 80});
    let mut reqs = vec![json!({"cmd": "add_service", "service": {"proto": "tcp",
        "vip": vip6().to_string(), "port": 80, "sched": "rr"}})
    .to_string()];
    for i in 0..N_RS {
        reqs.push(
            json!({"cmd": "add_dest", "service": svc, "dest": {"ip": rs6_ip(i).to_string(),
                "port": 80, "weight": 1, "fwd": "nat"}})
            .to_string(),
        );
    }
    control(&d.ctl, &reqs)?;
    Ok(d)
}

/// The generator's rings: RX rings it fills, TX rings it recycles from.
#[derive(Clone, Copy)]
pub(crate) struct GenRings {
    pub(crate) rx: [MbufRing; 2],
    pub(crate) tx: [MbufRing; 2],
}

/// Write `p` into `m` (header only: the rest of the buffer is zero since
/// `fresh` and nobody writes payloads).
#[inline]
pub(crate) fn load<const H: usize>(m: &mut Mbuf, p: &Pkt<H>) {
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
    m.data_mut()[..H].copy_from_slice(&p.hdr);
}

/// A zeroed, empty mbuf from `pool`.
pub(crate) fn fresh(pool: &Mempool) -> Option<Mbuf> {
    let mut m = pool.alloc()?;
    let room = m.tailroom();
    if m.append(room) {
        m.data_mut().fill(0);
        m.truncate(0);
    }
    Some(m)
}

/// Feed `stream` (cyclically, or once) into the RX rings until `stop`.
pub(crate) fn generate<const H: usize>(
    stream: Arc<Vec<Pkt<H>>>,
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
pub(crate) enum Mode {
    Rvs,
    Noop,
}

/// The no-op forwarder: every frame straight out of the other port.
#[inline]
pub(crate) fn noop_poll(io: &mut DpdkIo, buf: &mut Vec<Mbuf>) -> usize {
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

/// Local timer interrupts taken so far by `cpu` (the `LOC` row of
/// /proc/interrupts), if the kernel shows them. Each one stops the worker
/// for as long as the machine takes to handle it: on a VM, a trip to the
/// hypervisor.
pub(crate) fn timer_irqs(cpu: usize) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/interrupts").ok()?;
    let row = text.lines().find(|l| l.trim_start().starts_with("LOC:"))?;
    row.split_whitespace().nth(1 + cpu)?.parse().ok()
}

/// The no-op's service time at the quantile that leaves out the same share
/// of *time* as `q` leaves out of a scenario that ran at `mpps`: an
/// interruption of the worker (a timer interrupt, the hypervisor) delays
/// every frame of the poll it falls into, so at a fixed rate of
/// interruptions the share of frames it delays is inversely proportional
/// to the frame rate. What the machine alone puts in the scenario's tail.
pub(crate) fn same_share_of_time(
    noop: &Histogram<u64>,
    noop_mpps: f64,
    mpps: f64,
    q: f64,
) -> (f64, u64) {
    let qn = 1.0 - (1.0 - q) * (mpps / noop_mpps).min(1.0);
    (qn, noop.value_at_quantile(qn))
}

pub(crate) fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("histogram")
}

pub(crate) struct RunOut {
    pub(crate) frames: u64,
    pub(crate) secs: f64,
    pub(crate) hist: Histogram<u64>,
}

/// Poll until `deadline` (or until `target` frames arrived), measuring from
/// `measure_from` on. Latency sample: wall time of one `poll_once` divided
/// by the frames it received, recorded once per frame.
pub(crate) fn drive(
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

pub(crate) fn lat_json(h: &Histogram<u64>) -> Value {
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
pub(crate) struct Rig {
    pub(crate) pool: Mempool,
    pub(crate) rings: GenRings,
    pub(crate) ports: [Port; 2],
    pub(crate) pre: Preload,
    pub(crate) null_ports: [Port; 2],
    pub(crate) null_pool: Mempool,
    pub(crate) cores: [Core; 2],
}

pub(crate) struct Preload {
    pub(crate) pool: Mempool,
    pub(crate) k: usize,
    pub(crate) rx: [[MbufRing; 2]; 2],
    pub(crate) tx: [[MbufRing; 2]; 2],
    pub(crate) ports: [Port; 2],
}

pub(crate) fn setup(quick: bool) -> Result<Rig> {
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

pub(crate) fn ring_worker(rig: &Rig, d: &Director) -> Result<Worker<DpdkIo>> {
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
pub(crate) fn gen_run<const H: usize>(
    rig: &Rig,
    w: Worker<DpdkIo>,
    mode: Mode,
    stream: Arc<Vec<Pkt<H>>>,
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

/// Pre-fill the preload rings with `k` frames of `stream` split over
/// `n` workers by flow, run the workers at once, return (frames, secs).
pub(crate) fn preload_round(
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

pub(crate) fn preload_runs(
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
pub(crate) fn null_noop(rig: &Rig, d: &Director, secs: f64) -> Result<Value> {
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
