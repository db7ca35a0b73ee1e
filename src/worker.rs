//! The polling loop of one worker: receive a burst on every port, decide,
//! transmit, and between bursts do small bounded chores (frames waiting for
//! ARP, a slice of connection expiry).
//!
//! Generic over [`PortIo`], so the same loop runs on DPDK queues in rvsd
//! and on the in-memory device in tests.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::dataplane::{ClientUpdate, Ctx, Dataplane, Verdict};
use crate::io::{Frame, PortIo};
use crate::stats::{DropReason, WorkerStats};

/// Frames held for ARP resolution, per worker.
pub const MAX_HELD: usize = 256;
/// How long a frame waits for its next hop's MAC.
pub const HOLD_MS: u64 = 3000;
/// Minimum time between two ARP requests for the same address.
pub const ARP_RETRY_MS: u64 = 1000;
/// Connection timer entries a worker handles per poll with traffic, and
/// per idle poll.
pub const EXPIRE_BUDGET: usize = 64;
pub const EXPIRE_BUDGET_IDLE: usize = 1024;

struct Held<F> {
    frame: F,
    port: u16,
    nexthop: IpAddr,
    since: u64,
    /// A frame the director originated (a SYN-proxy window update), counted
    /// apart from forwarded ones.
    originated: bool,
}

/// One worker: owns its queues, its held frames and its counters.
pub struct Worker<P: PortIo> {
    pub id: usize,
    pub n_workers: usize,
    pub io: P,
    dp: Arc<Dataplane>,
    stats: Arc<[crossbeam_utils::CachePadded<WorkerStats>]>,
    rx: Vec<P::Frame>,
    held: VecDeque<Held<P::Frame>>,
    held_gen: u64,
    /// Next hops an ARP request or Neighbor Solicitation went to, and when.
    arp_sent: HashMap<IpAddr, u64>,
    expire_next: usize,
    last_chores: u64,
    idle_sleep: Duration,
    ident: u16,
    lport: u32,
    traffic: crate::stats::TrafficAcc,
    /// The burst's per-frame records (dataplane/burst.rs), reused.
    stages: Box<crate::dataplane::Stages>,
    /// Next hops learnt from the router and the neighbour map.
    /// (Taken out for the length of a poll, like the other cells.)
    hops: Option<Box<crate::neigh::HopCache>>,
    /// The burst's late reply entries (`conn::Late`), and its frames to
    /// send, which wait for them.
    late: Option<crate::conn::Late>,
    txq: Vec<(u16, P::Frame)>,
    twins: Twins,
}

/// A data port's kernel twin as one worker sees it.
#[derive(Clone, Copy, Debug)]
pub struct TwinQueue {
    /// The twin's device port index in the worker's `PortIo`.
    pub dev_port: u16,
    /// Frames per second this worker may hand to this twin.
    pub rate_pps: u32,
    /// Frames banked at most.
    pub burst: u32,
}

/// A token bucket: tokens in thousandths of a frame, `rate` frames per
/// second, at most `burst` frames banked.
#[derive(Debug, Default)]
struct Bucket {
    tokens: u64,
    rate: u64,
    burst: u64,
    last_ms: u64,
}

impl Bucket {
    /// Take one token, refilling for the time since the last take.
    fn take(&mut self, now: u64) -> bool {
        if now > self.last_ms {
            let add = (now - self.last_ms).saturating_mul(self.rate);
            self.tokens = (self.tokens.saturating_add(add)).min(self.burst * 1000);
            self.last_ms = now;
        }
        if self.tokens >= 1000 {
            self.tokens -= 1000;
            true
        } else {
            false
        }
    }
}

/// The worker's side of the exception path: which device port is each
/// data port's kernel twin, and the token bucket bounding what each twin
/// gets.
#[derive(Debug, Default)]
struct Twins {
    /// Data ports are device ports `0..n_data`; `of[i]` is data port i's
    /// twin device port.
    n_data: Option<usize>,
    of: Vec<Option<u16>>,
    buckets: Vec<Bucket>,
    /// The owned-VIP generation last seen (worker 0 sends the gratuitous
    /// ARPs) and the set then.
    garp_gen: u64,
    garp_seen: crate::ownership::Owned,
}

impl Twins {
    /// Data port `port`'s twin, if it has one: `Ok` with its device port
    /// when its bucket has a token.
    fn take(&mut self, port: u16, now: u64) -> Option<Result<u16, ()>> {
        let t = self.of.get(port as usize).copied().flatten()?;
        Some(if self.buckets[port as usize].take(now) {
            Ok(t)
        } else {
            Err(())
        })
    }
}

impl<P: PortIo> Worker<P> {
    pub fn new(
        id: usize,
        n_workers: usize,
        io: P,
        dp: Arc<Dataplane>,
        stats: Arc<[crossbeam_utils::CachePadded<WorkerStats>]>,
        idle_sleep: Duration,
    ) -> Self {
        Worker {
            id,
            n_workers: n_workers.max(1),
            io,
            dp,
            stats,
            rx: Vec::with_capacity(crate::io::BURST),
            held: VecDeque::with_capacity(MAX_HELD),
            held_gen: u64::MAX,
            arp_sent: HashMap::new(),
            expire_next: id,
            last_chores: 0,
            idle_sleep,
            ident: (id as u16).wrapping_mul(0x3f1d),
            lport: 0,
            traffic: Default::default(),
            stages: Box::default(),
            hops: Some(Box::default()),
            late: Some(Default::default()),
            txq: Vec::with_capacity(crate::io::BURST),
            twins: Twins::default(),
        }
    }

    /// Give the data ports kernel twins: device ports `0..twins.len()`
    /// are data ports, `twins[i]` data port i's twin. At most its
    /// `rate_pps` frames a second (banking `burst`) go to each twin from
    /// this worker; the rest are dropped (`exception_rate`).
    pub fn with_twins(mut self, twins: Vec<Option<TwinQueue>>) -> Self {
        self.twins = Twins {
            n_data: Some(twins.len()),
            of: twins.iter().map(|t| t.map(|t| t.dev_port)).collect(),
            buckets: twins
                .iter()
                .map(|t| match t {
                    Some(t) => Bucket {
                        tokens: t.burst as u64 * 1000,
                        rate: t.rate_pps as u64,
                        burst: t.burst as u64,
                        last_ms: 0,
                    },
                    None => Bucket::default(),
                })
                .collect(),
            garp_gen: 0,
            garp_seen: Default::default(),
        };
        self
    }

    fn stats(&self) -> &WorkerStats {
        &self.stats[self.id]
    }

    /// Poll until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            // Liveness for rvsd's systemd watchdog (single writer: a plain
            // store on the worker's own cache line).
            self.stats[self.id].loops.inc();
            let n = self.poll_once(crate::clock::now_ms());
            if n == 0 && !self.idle_sleep.is_zero() {
                std::thread::sleep(self.idle_sleep);
            }
        }
        self.io.flush();
    }

    /// One pass over every port at time `now_ms`. Returns frames received.
    pub fn poll_once(&mut self, now_ms: u64) -> usize {
        let dp = self.dp.clone();
        let stats = self.stats.clone();
        let services = dp.table.load();
        // The generation before the snapshot: a change in between only
        // empties the cache again at the next poll.
        let hops = self.hops.take().unwrap_or_default();
        hops.sync(dp.neigh.generation());
        let neigh = dp.neigh.snapshot();
        let neigh6 = dp.neigh6.snapshot();
        let timeouts = dp.conns.timeouts();
        let mut rx = std::mem::take(&mut self.rx);
        let ident = std::cell::Cell::new(self.ident);
        let lport = std::cell::Cell::new(self.lport);
        let traffic = std::cell::RefCell::new(std::mem::take(&mut self.traffic));
        let update = std::cell::Cell::new(None);
        let late = std::cell::RefCell::new(self.late.take().unwrap_or_default());
        let mut total = 0;
        let n_data = self.twins.n_data.unwrap_or_else(|| self.io.n_ports());
        for port in 0..n_data as u16 {
            let n = self.io.rx_burst(port, &mut rx);
            total += n;
            if n == 0 {
                continue;
            }
            let cx = Ctx {
                stats: &stats[self.id],
                ident: &ident,
                lport: &lport,
                worker: self.id as u16,
                n_workers: self.n_workers as u16,
                now_ms,
                services: &services,
                timeouts: &timeouts,
                traffic: &traffic,
                update: &update,
                neigh: &neigh,
                neigh6: &neigh6,
                hops: &hops,
                late: Some(&late),
            };
            // The burst's stages (dataplane/burst.rs): every frame's
            // headers read once and the connection-table lines of its flow
            // brought in (index buckets, then slots), then each frame
            // decided in order.
            dp.classify(port, &rx, &mut self.stages);
            dp.prefetch_conns(n, &mut self.stages);
            for (i, mut f) in rx.drain(..).enumerate() {
                let st = cx.stats;
                st.rx_packets.inc();
                st.rx_bytes.add(f.data().len() as u64);
                let r = self.stages.recs.get(i).copied().unwrap_or_default();
                match dp.decide(&cx, port, &mut f, &r) {
                    Verdict::Tx(out) => {
                        st.tx_packets.inc();
                        st.tx_bytes.add(f.data().len() as u64);
                        self.txq.push((out, f));
                    }
                    Verdict::Drop(r) => st.drop(r),
                    Verdict::Consumed => st.consumed.inc(),
                    Verdict::Hold { port: out, nexthop } => {
                        self.hold(f, out, nexthop, now_ms, false)
                    }
                    Verdict::ToKernel(p) => match self.twins.take(p, now_ms) {
                        Some(Ok(t)) => {
                            st.exception_to_kernel.inc();
                            self.io.tx(t, f);
                        }
                        Some(Err(())) => st.drop(DropReason::ExceptionRate),
                        None => st.drop(DropReason::LocalUnhandled),
                    },
                }
                if let Some(u) = update.take() {
                    self.send_update(&dp, &cx, &u, now_ms);
                }
            }
            // The new connections' reply entries, then the frames: a real
            // server's answer never finds its connection half indexed.
            dp.finish_burst(&cx);
            for (out, f) in self.txq.drain(..) {
                self.io.tx(out, f);
            }
        }
        // What the kernel sends on a twin goes out of its data port as is
        // (it carries the port's MAC and addresses).
        for port in 0..n_data as u16 {
            let Some(t) = self.twins.of.get(port as usize).copied().flatten() else {
                continue;
            };
            let n = self.io.rx_burst(t, &mut rx);
            total += n;
            let st = &stats[self.id];
            for f in rx.drain(..) {
                st.exception_from_kernel.inc();
                self.io.tx(port, f);
            }
        }
        self.rx = rx;
        self.hops = Some(hops);
        self.late = Some(late.into_inner());
        self.traffic = traffic.into_inner();
        if !self.traffic.is_empty() {
            self.traffic.flush(dp.conns.ids());
        }
        self.ident = ident.get();
        self.lport = lport.get();
        self.io.flush();
        // Connection timers: a little every poll, more when idle, so that
        // expiring millions of connections never holds up forwarding.
        let budget = if total == 0 {
            EXPIRE_BUDGET_IDLE
        } else {
            EXPIRE_BUDGET
        };
        let ended = dp.conns.expire(self.id, now_ms, budget);
        if ended > 0 {
            stats[self.id].conns_expired.add(ended as u64);
        }
        if now_ms != self.last_chores {
            self.last_chores = now_ms;
            self.chores(now_ms);
        }
        total
    }

    fn hold(
        &mut self,
        mut frame: P::Frame,
        port: u16,
        nexthop: IpAddr,
        now: u64,
        originated: bool,
    ) {
        // The poll reads a snapshot of the neighbour map: the next hop may
        // have been learnt since (an ARP earlier in the same burst).
        if let Some(mac) = self.dp.neighbour(nexthop) {
            frame.data_mut()[0..6].copy_from_slice(&mac.0);
            let st = &self.stats[self.id];
            if originated {
                st.synproxy_updates_sent.inc();
            } else {
                st.tx_packets.inc();
                st.tx_bytes.add(frame.data().len() as u64);
            }
            self.io.tx(port, frame);
            return;
        }
        if self.held.len() >= MAX_HELD {
            if originated {
                self.stats().synproxy_updates_unsent.inc();
            } else {
                self.stats().drop(DropReason::NeighQueueFull);
            }
            return;
        }
        self.held.push_back(Held {
            frame,
            port,
            nexthop,
            since: now,
            originated,
        });
        self.solicit(port, nexthop, now);
    }

    /// Originate the SYN proxy's window update for a client.
    fn send_update(&mut self, dp: &Dataplane, cx: &Ctx, u: &ClientUpdate, now: u64) {
        let Some(mut f) = self.io.alloc() else {
            self.stats().synproxy_updates_unsent.inc();
            return;
        };
        match dp.client_update(cx, u, &mut f) {
            Verdict::Tx(port) => {
                self.stats().synproxy_updates_sent.inc();
                // After the burst's frame that asked for it, as they came.
                self.txq.push((port, f));
            }
            Verdict::Hold { port, nexthop } => self.hold(f, port, nexthop, now, true),
            Verdict::Drop(_) | Verdict::Consumed | Verdict::ToKernel(_) => {
                self.stats().synproxy_updates_unsent.inc()
            }
        }
    }

    /// Send an ARP request (IPv4) or a Neighbor Solicitation (IPv6) unless
    /// one went out recently.
    fn solicit(&mut self, port: u16, target: IpAddr, now: u64) {
        if self
            .arp_sent
            .get(&target)
            .is_some_and(|&t| now < t + ARP_RETRY_MS)
        {
            return;
        }
        let Some(mut f) = self.io.alloc() else {
            self.stats().drop(DropReason::NoBuffer);
            return;
        };
        let sent = match target {
            IpAddr::V4(t) => self.dp.arp_request(port, t, &mut f),
            IpAddr::V6(t) => self.dp.neighbor_solicit(port, t, &mut f),
        };
        if sent {
            self.arp_sent.insert(target, now);
            match target {
                IpAddr::V4(_) => self.stats().arp_requests_sent.inc(),
                IpAddr::V6(_) => self.stats().nd_solicits_sent.inc(),
            }
            self.io.tx(port, f);
            self.io.flush();
        }
    }

    /// Bounded background work, at most once per millisecond.
    fn chores(&mut self, now: u64) {
        self.release_held(now);
        if self.id == 0 {
            self.announce_gained();
        }
        // One shard of persistence templates per millisecond, each worker
        // its own share of shards.
        let n = self.dp.conns.n_template_shards();
        self.dp.conns.expire_templates(self.expire_next % n, now);
        self.expire_next = (self.expire_next + self.n_workers) % n;
        let drops = self.io.tx_dropped();
        self.stats().tx_dropped.set(drops);
    }

    /// Send frames whose next hop is now known; drop those waited too long.
    fn release_held(&mut self, now: u64) {
        if self.held.is_empty() {
            if !self.arp_sent.is_empty() {
                self.arp_sent.clear();
            }
            return;
        }
        // Both tables only ever count up: their sum changes when either does.
        let gen = self.dp.neigh.generation() + self.dp.neigh6.generation();
        let changed = gen != self.held_gen;
        self.held_gen = gen;
        let mut keep = VecDeque::with_capacity(self.held.len());
        while let Some(mut h) = self.held.pop_front() {
            if changed {
                if let Some(mac) = self.dp.neighbour(h.nexthop) {
                    let data = h.frame.data_mut();
                    data[0..6].copy_from_slice(&mac.0);
                    let len = h.frame.data().len() as u64;
                    let st = &self.stats[self.id];
                    if h.originated {
                        st.synproxy_updates_sent.inc();
                    } else {
                        st.tx_packets.inc();
                        st.tx_bytes.add(len);
                    }
                    self.io.tx(h.port, h.frame);
                    continue;
                }
            }
            if now >= h.since + HOLD_MS {
                if h.originated {
                    self.stats().synproxy_updates_unsent.inc();
                } else {
                    self.stats().drop(DropReason::NeighUnresolved);
                }
                continue;
            }
            keep.push_back(h);
        }
        self.io.flush();
        let targets: Vec<(u16, IpAddr)> = keep.iter().map(|h| (h.port, h.nexthop)).collect();
        self.held = keep;
        for (port, ip) in targets {
            self.solicit(port, ip, now);
        }
    }

    /// Worker 0: gratuitous ARPs for VIPs this director has just taken
    /// (vip_ownership "kernel"), [`crate::ownership::GARP_REPEAT`] each.
    fn announce_gained(&mut self) {
        let Some(o) = self.dp.exc.owned.clone() else {
            return;
        };
        let gen = o.generation.load(std::sync::atomic::Ordering::Acquire);
        if gen == self.twins.garp_gen {
            return;
        }
        self.twins.garp_gen = gen;
        let now = o.set.load_full();
        let services = self.dp.table.load();
        // IPv4 VIPs: gratuitous ARPs. An IPv6 VIP's unsolicited Neighbor
        // Advertisements are keepalived's (and the kernel's, with
        // ndisc_notify), sent through the twin.
        let gained: Vec<(Ipv4Addr, u16)> = now
            .iter()
            .filter(|(ip, _)| !self.twins.garp_seen.contains_key(ip))
            .filter(|(ip, _)| services.is_vip(**ip))
            .filter_map(|(ip, p)| match ip {
                std::net::IpAddr::V4(a) => Some((*a, *p)),
                std::net::IpAddr::V6(_) => None,
            })
            .collect();
        self.twins.garp_seen = (*now).clone();
        for (ip, port) in gained {
            log::info!(
                "taking VIP {ip}: {} gratuitous ARPs",
                crate::ownership::GARP_REPEAT
            );
            for _ in 0..crate::ownership::GARP_REPEAT {
                let Some(mut f) = self.io.alloc() else {
                    self.stats().drop(DropReason::NoBuffer);
                    break;
                };
                if self.dp.garp(port, ip, &mut f) {
                    self.stats().garp_sent.inc();
                    self.io.tx(port, f);
                }
            }
        }
        self.io.flush();
    }

    /// Frames currently waiting for ARP.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}
