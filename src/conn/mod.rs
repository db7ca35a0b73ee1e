//! The connection table: every packet of a tracked flow finds its
//! connection here, in either direction, from any worker.
//!
//! Each connection is indexed under two keys, the client's view (cip:cport ->
//! vip:vport) and, where replies pass the director (NAT), the real server's
//! (rip:rport -> cip:cport). The table is sharded; a shard is a
//! `parking_lot::RwLock<HashMap>` so lookups from several workers proceed in
//! parallel and only inserts and expiry take a shard exclusively.
//!
//! State and timer live in atomics inside the [`Conn`]; the state byte also
//! carries the INACTIVE and DEAD flags so that the ActiveConn/InActConn
//! accounting is changed exactly once per transition, even when the two
//! directions of a flow race on different workers.

pub mod state;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use parking_lot::RwLock;

use crate::service::{ClientAddr, DestState, Forward, Proto, ServiceState};
pub use state::{Dir, State, TcpEvent, Timeouts};

/// A flow as seen on the wire: protocol and both endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub proto: Proto,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

impl FlowKey {
    pub fn v4(proto: Proto, src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> FlowKey {
        FlowKey {
            proto,
            src: IpAddr::V4(src),
            dst: IpAddr::V4(dst),
            sport,
            dport,
        }
    }
}

const ST_MASK: u8 = 0x0f;
/// Counted in InActConn rather than ActiveConn (kernel IP_VS_CONN_F_INACTIVE).
const F_INACTIVE: u8 = 0x10;
/// Expired and unlinked; no more accounting.
const F_DEAD: u8 = 0x40;

/// One tracked connection.
#[derive(Debug)]
pub struct Conn {
    pub proto: Proto,
    pub cip: IpAddr,
    pub cport: u16,
    pub vip: IpAddr,
    pub vport: u16,
    /// Real server address and port.
    pub dip: IpAddr,
    pub dport: u16,
    pub fwd: Forward,
    /// state | flags
    bits: AtomicU8,
    /// Deadline in milliseconds of the table's clock.
    expires: AtomicU64,
    pub dest: Arc<DestState>,
    pub svc: Arc<ServiceState>,
    /// The persistence template that chose this connection's real server
    /// (kernel `cp->control`); it lives at least as long as this does.
    pub template: Option<Arc<Template>>,
    /// FULLNAT only: the director's local address and port the real server
    /// sees as the client, and the client-address delivery state.
    pub fnat: Option<Fnat>,
}

/// FULLNAT per-connection state.
#[derive(Debug)]
pub struct Fnat {
    pub lip: IpAddr,
    pub lport: u16,
    pub client_addr: ClientAddr,
    /// Client's initial sequence number (from its SYN).
    pub isn: AtomicU32,
    /// Bytes inserted into the client's stream (the PROXY header), added to
    /// client sequence numbers and taken off the server's acknowledgements.
    pub delta: AtomicU32,
}

impl Fnat {
    pub fn new(lip: IpAddr, lport: u16, client_addr: ClientAddr) -> Fnat {
        Fnat {
            lip,
            lport,
            client_addr,
            isn: AtomicU32::new(0),
            delta: AtomicU32::new(0),
        }
    }
}

/// A persistence template (kernel IP_VS_CONN_F_TEMPLATE): "clients of this
/// network go to that real server", keyed by <proto, cnet, 0, vip, vport>.
#[derive(Debug)]
pub struct Template {
    pub key: FlowKey,
    pub dip: IpAddr,
    pub dport: u16,
    pub dest: Arc<DestState>,
    timeout_ms: u64,
    expires: AtomicU64,
    /// Live connections this template controls (kernel `n_control`).
    controlled: AtomicU32,
    dead: AtomicU8,
}

impl Template {
    pub fn new(
        key: FlowKey,
        dip: IpAddr,
        dport: u16,
        dest: Arc<DestState>,
        timeout_s: u32,
        now_ms: u64,
    ) -> Self {
        let timeout_ms = timeout_s as u64 * 1000;
        Template {
            key,
            dip,
            dport,
            dest,
            timeout_ms,
            expires: AtomicU64::new(now_ms + timeout_ms),
            controlled: AtomicU32::new(0),
            dead: AtomicU8::new(0),
        }
    }
    /// A new connection used the template: re-arm it (kernel
    /// `ip_vs_conn_put(ct)` in `ip_vs_sched_persist`).
    pub fn touch(&self, now_ms: u64) {
        self.expires.store(now_ms + self.timeout_ms, Relaxed);
    }
    pub fn expires_ms(&self) -> u64 {
        self.expires.load(Relaxed)
    }
    pub fn controlled(&self) -> u32 {
        self.controlled.load(Relaxed)
    }
    fn kill(&self) -> bool {
        if self.dead.swap(1, Relaxed) != 0 {
            return false;
        }
        self.dest.persist.fetch_sub(1, Relaxed);
        self.dest.check_overload_on_unbind();
        true
    }
}

/// A template that still controls connections when it times out is kept
/// another minute (kernel `ip_vs_conn_expire`).
pub const TEMPLATE_RETRY_MS: u64 = 60_000;

impl Conn {
    pub fn new(
        proto: Proto,
        (cip, cport): (IpAddr, u16),
        (vip, vport): (IpAddr, u16),
        (dip, dport): (IpAddr, u16),
        fwd: Forward,
        dest: Arc<DestState>,
        svc: Arc<ServiceState>,
    ) -> Conn {
        let st = if proto == Proto::Udp {
            State::Udp
        } else {
            State::None
        };
        Conn {
            proto,
            cip,
            cport,
            vip,
            vport,
            dip,
            dport,
            fwd,
            bits: AtomicU8::new(st as u8 | F_INACTIVE),
            expires: AtomicU64::new(0),
            dest,
            svc,
            template: None,
            fnat: None,
        }
    }

    /// Make this a FULLNAT connection from `lip:lport`.
    pub fn with_fnat(mut self, f: Fnat) -> Conn {
        self.fnat = Some(f);
        self
    }

    /// Bind to the persistence template that picked the real server.
    pub fn with_template(mut self, t: Arc<Template>) -> Conn {
        self.template = Some(t);
        self
    }

    /// The client's key: cip:cport -> vip:vport.
    pub fn in_key(&self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            src: self.cip,
            sport: self.cport,
            dst: self.vip,
            dport: self.vport,
        }
    }

    /// The reply key where replies pass the director.
    pub fn out_key(&self) -> Option<FlowKey> {
        match self.fwd {
            Forward::Nat => Some(FlowKey {
                proto: self.proto,
                src: self.dip,
                sport: self.dport,
                dst: self.cip,
                dport: self.cport,
            }),
            Forward::FullNat => self.fnat.as_ref().map(|f| FlowKey {
                proto: self.proto,
                src: self.dip,
                sport: self.dport,
                dst: f.lip,
                dport: f.lport,
            }),
            _ => None,
        }
    }

    pub fn state(&self) -> State {
        State::from_u8(self.bits.load(Relaxed) & ST_MASK)
    }

    pub fn is_active(&self) -> bool {
        self.bits.load(Relaxed) & F_INACTIVE == 0
    }

    pub fn expires_ms(&self) -> u64 {
        self.expires.load(Relaxed)
    }

    /// Apply a packet's TCP flags (or, for UDP, just its arrival), re-arm
    /// the timer and keep ActiveConn/InActConn of the real server exact.
    pub fn on_packet(&self, dir: Dir, ev: TcpEvent, now_ms: u64, t: &Timeouts) -> State {
        let mut cur = self.bits.load(Relaxed);
        loop {
            if cur & F_DEAD != 0 {
                return State::from_u8(cur & ST_MASK);
            }
            let old = State::from_u8(cur & ST_MASK);
            let new = if self.proto == Proto::Tcp {
                state::tcp_next(old, dir, ev)
            } else {
                old
            };
            let mut flags = cur & !ST_MASK;
            let was_inactive = cur & F_INACTIVE != 0;
            // The kernel re-evaluates the flag only on a state change.
            let now_inactive = if new != old {
                new != State::Established
            } else {
                was_inactive
            };
            if now_inactive {
                flags |= F_INACTIVE;
            } else {
                flags &= !F_INACTIVE;
            }
            let next = flags | new as u8;
            if next != cur {
                if let Err(actual) = self.bits.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                    cur = actual;
                    continue;
                }
                match (was_inactive, now_inactive) {
                    (true, false) => {
                        self.dest.inactive.fetch_sub(1, Relaxed);
                        self.dest.active.fetch_add(1, Relaxed);
                    }
                    (false, true) => {
                        self.dest.active.fetch_sub(1, Relaxed);
                        self.dest.inactive.fetch_add(1, Relaxed);
                    }
                    _ => {}
                }
            }
            self.expires
                .store(now_ms + t.get(new) as u64 * 1000, Relaxed);
            return new;
        }
    }

    /// Mark dead exactly once and release the real server's count. Returns
    /// false if someone else already did.
    fn kill(&self) -> bool {
        let prev = self.bits.fetch_or(F_DEAD, Relaxed);
        if prev & F_DEAD != 0 {
            return false;
        }
        if prev & F_INACTIVE != 0 {
            self.dest.inactive.fetch_sub(1, Relaxed);
        } else {
            self.dest.active.fetch_sub(1, Relaxed);
        }
        self.dest.check_overload_on_unbind();
        if let Some(t) = &self.template {
            t.controlled.fetch_sub(1, Relaxed);
        }
        true
    }
}

#[derive(Clone, Debug)]
struct Entry {
    conn: Arc<Conn>,
    dir: Dir,
}

/// Why a connection could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    #[error("connection table full")]
    Full,
}

/// foldhash: a fast hash with a per-table random seed, so a client cannot
/// aim many flows at one bucket without knowing the seed; several times
/// cheaper per packet than std's SipHash.
type Hasher = foldhash::fast::RandomState;
type Shard = CachePadded<RwLock<HashMap<FlowKey, Entry, Hasher>>>;
type TemplateShard = CachePadded<RwLock<HashMap<FlowKey, Arc<Template>, Hasher>>>;

/// The sharded connection table.
pub struct ConnTable {
    shards: Box<[Shard]>,
    /// Persistence templates, sharded like the connections; they count
    /// against `max` as in the kernel.
    templates: Box<[TemplateShard]>,
    count: AtomicUsize,
    max: usize,
    /// Seconds per state; read on every poll, so atomics rather than a lock.
    timeouts: [AtomicU32; state::N_STATES],
    hasher: Hasher,
}

impl std::fmt::Debug for ConnTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnTable")
            .field("len", &self.len())
            .field("max", &self.max)
            .finish()
    }
}

impl ConnTable {
    /// The shard of `key`: the top bits of its hash (the maps use the low
    /// bits for their buckets).
    #[inline]
    fn shard_of(&self, key: &FlowKey, n: usize) -> usize {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(key);
        ((h >> 32) as usize) & (n - 1)
    }
}

impl ConnTable {
    /// A table for at most `max` connections in `shards` shards (rounded up
    /// to a power of two).
    pub fn new(max: usize, shards: usize) -> ConnTable {
        let n = shards.max(1).next_power_of_two();
        let hasher = Hasher::default();
        let t = Timeouts::default();
        ConnTable {
            shards: (0..n)
                .map(|_| CachePadded::new(RwLock::new(HashMap::with_hasher(hasher.clone()))))
                .collect(),
            templates: (0..n)
                .map(|_| CachePadded::new(RwLock::new(HashMap::with_hasher(hasher.clone()))))
                .collect(),
            count: AtomicUsize::new(0),
            max,
            timeouts: t.0.map(AtomicU32::new),
            hasher,
        }
    }

    pub fn n_shards(&self) -> usize {
        self.shards.len()
    }
    pub fn len(&self) -> usize {
        self.count.load(Relaxed)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn capacity(&self) -> usize {
        self.max
    }
    pub fn timeouts(&self) -> Timeouts {
        Timeouts(std::array::from_fn(|i| self.timeouts[i].load(Relaxed)))
    }
    pub fn set_timeouts(&self, t: Timeouts) {
        for (a, v) in self.timeouts.iter().zip(t.0) {
            a.store(v, Relaxed);
        }
    }

    /// The connection a packet with this key belongs to, and the direction.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<(Arc<Conn>, Dir)> {
        let s = self.shards[self.shard_of(key, self.shards.len())].read();
        s.get(key).map(|e| (e.conn.clone(), e.dir))
    }

    /// Whether any connection is indexed under `key`.
    pub fn contains(&self, key: &FlowKey) -> bool {
        self.shards[self.shard_of(key, self.shards.len())]
            .read()
            .contains_key(key)
    }

    /// Add a new connection under its keys. If another worker added the same
    /// client flow first, that connection is returned instead.
    ///
    /// The timer is armed (`now_ms` + the timeout of its initial state)
    /// before the connection becomes visible, so an expiry sweep on another
    /// worker can never end it before its first packet is handled.
    pub fn insert(&self, conn: Conn, now_ms: u64) -> Result<Arc<Conn>, InsertError> {
        if self.count.fetch_add(1, Relaxed) >= self.max {
            self.count.fetch_sub(1, Relaxed);
            return Err(InsertError::Full);
        }
        let initial = self.timeouts[conn.state() as usize].load(Relaxed) as u64;
        conn.expires.store(now_ms + initial * 1000, Relaxed);
        let conn = Arc::new(conn);
        let ik = conn.in_key();
        {
            let mut s = self.shards[self.shard_of(&ik, self.shards.len())].write();
            if let Some(e) = s.get(&ik) {
                self.count.fetch_sub(1, Relaxed);
                return Ok(e.conn.clone());
            }
            s.insert(
                ik,
                Entry {
                    conn: conn.clone(),
                    dir: Dir::In,
                },
            );
        }
        if let Some(ok) = conn.out_key() {
            self.shards[self.shard_of(&ok, self.shards.len())]
                .write()
                .insert(
                    ok,
                    Entry {
                        conn: conn.clone(),
                        dir: Dir::Out,
                    },
                );
        }
        conn.dest.inactive.fetch_add(1, Relaxed);
        conn.dest.check_overload_on_bind();
        conn.dest.traffic.conns.fetch_add(1, Relaxed);
        conn.svc.traffic.conns.fetch_add(1, Relaxed);
        if let Some(t) = &conn.template {
            t.controlled.fetch_add(1, Relaxed);
        }
        Ok(conn)
    }

    /// The live persistence template under `key`.
    pub fn template(&self, key: &FlowKey) -> Option<Arc<Template>> {
        let s = self.templates[self.shard_of(key, self.templates.len())].read();
        s.get(key).filter(|t| t.dead.load(Relaxed) == 0).cloned()
    }

    /// Add a template, replacing (and ending) one with the same key whose
    /// real server is gone.
    pub fn insert_template(&self, t: Template) -> Result<Arc<Template>, InsertError> {
        if self.count.fetch_add(1, Relaxed) >= self.max {
            self.count.fetch_sub(1, Relaxed);
            return Err(InsertError::Full);
        }
        let t = Arc::new(t);
        let old = self.templates[self.shard_of(&t.key, self.templates.len())]
            .write()
            .insert(t.key, t.clone());
        if let Some(old) = old {
            if old.kill() {
                self.count.fetch_sub(1, Relaxed);
            }
        }
        t.dest.persist.fetch_add(1, Relaxed);
        t.dest.check_overload_on_bind();
        Ok(t)
    }

    /// Visit every live persistence template.
    pub fn for_each_template(&self, mut f: impl FnMut(&Template)) {
        for s in self.templates.iter() {
            for t in s.read().values() {
                f(t);
            }
        }
    }

    /// Expire what is due in one shard. Returns how many connections ended.
    /// Workers call this for a few shards per loop so that no single call
    /// holds a shard for long.
    pub fn expire_shard(&self, shard: usize, now_ms: u64, scratch: &mut Vec<Arc<Conn>>) -> usize {
        scratch.clear();
        let n = self.shards.len();
        {
            let mut s = self.shards[shard % n].write();
            s.retain(|_, e| {
                if e.conn.expires_ms() > now_ms {
                    return true;
                }
                if e.dir == Dir::In {
                    scratch.push(e.conn.clone());
                }
                false
            });
        }
        let mut ended = 0;
        for c in scratch.drain(..) {
            if let Some(ok) = c.out_key() {
                let idx = self.shard_of(&ok, n);
                if idx != shard % n {
                    let mut s = self.shards[idx].write();
                    if s.get(&ok).is_some_and(|e| Arc::ptr_eq(&e.conn, &c)) {
                        s.remove(&ok);
                    }
                }
            }
            if c.kill() {
                self.count.fetch_sub(1, Relaxed);
                ended += 1;
            }
        }
        let mut dead = Vec::new();
        {
            let mut s = self.templates[shard % n].write();
            s.retain(|_, t| {
                if t.expires_ms() > now_ms {
                    return true;
                }
                if t.controlled() > 0 && now_ms != u64::MAX {
                    t.expires.store(now_ms + TEMPLATE_RETRY_MS, Relaxed);
                    return true;
                }
                dead.push(t.clone());
                false
            });
        }
        for t in dead {
            if t.kill() {
                self.count.fetch_sub(1, Relaxed);
            }
        }
        ended
    }

    /// Visit every connection (once, by its client key). Holds one shard's
    /// read lock at a time, so workers are never blocked for the whole walk.
    pub fn for_each(&self, mut f: impl FnMut(&Conn)) {
        for s in self.shards.iter() {
            let g = s.read();
            for e in g.values().filter(|e| e.dir == Dir::In) {
                f(&e.conn);
            }
        }
    }

    /// Drop every connection (used when services are cleared).
    pub fn flush(&self) {
        let mut scratch = Vec::new();
        for i in 0..self.shards.len() {
            self.expire_shard(i, u64::MAX, &mut scratch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk(table: &ConnTable, cport: u16, d: &Arc<DestState>) -> Arc<Conn> {
        let c = Conn::new(
            Proto::Tcp,
            ("192.0.2.1".parse().unwrap(), cport),
            ("10.0.0.100".parse().unwrap(), 80),
            ("10.0.1.11".parse().unwrap(), 8080),
            Forward::Nat,
            d.clone(),
            Arc::new(ServiceState::default()),
        );
        table.insert(c, 0).unwrap()
    }

    #[test]
    fn both_directions_find_the_connection() {
        let t = ConnTable::new(10, 4);
        let d = Arc::new(DestState::default());
        let c = mk(&t, 1234, &d);
        let (c1, d1) = t.lookup(&c.in_key()).unwrap();
        assert!(Arc::ptr_eq(&c, &c1) && d1 == Dir::In);
        let rk = FlowKey::v4(
            Proto::Tcp,
            "10.0.1.11".parse().unwrap(),
            8080,
            "192.0.2.1".parse().unwrap(),
            1234,
        );
        let (c2, d2) = t.lookup(&rk).unwrap();
        assert!(Arc::ptr_eq(&c, &c2) && d2 == Dir::Out);
        assert_eq!(t.len(), 1);
        assert_eq!(
            d.inactive.load(Relaxed),
            1,
            "new connections start inactive"
        );
    }

    #[test]
    fn active_inactive_follow_state_and_expiry() {
        let t = ConnTable::new(10, 4);
        let d = Arc::new(DestState::default());
        let c = mk(&t, 1, &d);
        let to = Timeouts::default();
        let syn = TcpEvent {
            syn: true,
            ..Default::default()
        };
        let ack = TcpEvent {
            ack: true,
            ..Default::default()
        };
        let fin = TcpEvent {
            fin: true,
            ack: true,
            ..Default::default()
        };
        c.on_packet(Dir::In, syn, 0, &to);
        assert_eq!((d.active.load(Relaxed), d.inactive.load(Relaxed)), (0, 1));
        c.on_packet(Dir::In, ack, 0, &to);
        assert_eq!(c.state(), State::Established);
        assert_eq!((d.active.load(Relaxed), d.inactive.load(Relaxed)), (1, 0));
        assert_eq!(c.expires_ms(), 900_000);
        c.on_packet(Dir::In, fin, 1000, &to);
        assert_eq!((d.active.load(Relaxed), d.inactive.load(Relaxed)), (0, 1));
        let mut s = Vec::new();
        let mut ended = 0;
        for i in 0..t.n_shards() {
            ended += t.expire_shard(i, 1000 + 59_999, &mut s);
        }
        assert_eq!(ended, 0, "CLOSE_WAIT lasts 60 s");
        for i in 0..t.n_shards() {
            ended += t.expire_shard(i, 1000 + 60_000, &mut s);
        }
        assert_eq!(ended, 1);
        assert_eq!((d.active.load(Relaxed), d.inactive.load(Relaxed)), (0, 0));
        assert!(t.lookup(&c.in_key()).is_none() && t.lookup(&c.out_key().unwrap()).is_none());
        assert!(t.is_empty());
    }

    #[test]
    fn full_table_rejects_and_counts_stay_bounded() {
        let t = ConnTable::new(2, 1);
        let d = Arc::new(DestState::default());
        mk(&t, 1, &d);
        mk(&t, 2, &d);
        let c = Conn::new(
            Proto::Udp,
            ("192.0.2.9".parse().unwrap(), 9),
            ("10.0.0.100".parse().unwrap(), 53),
            ("10.0.1.11".parse().unwrap(), 53),
            Forward::Nat,
            d.clone(),
            Arc::new(ServiceState::default()),
        );
        assert_eq!(t.insert(c, 0).err(), Some(InsertError::Full));
        assert_eq!(t.len(), 2);
        assert_eq!(d.inactive.load(Relaxed), 2);
    }

    #[test]
    fn concurrent_transitions_keep_counts_exact() {
        let t = Arc::new(ConnTable::new(10_000, 16));
        let d = Arc::new(DestState::default());
        let conns: Vec<_> = (0..1000).map(|i| mk(&t, i, &d)).collect();
        let to = Timeouts::default();
        std::thread::scope(|s| {
            for dir in [Dir::In, Dir::Out] {
                let conns = &conns;
                s.spawn(move || {
                    for c in conns {
                        for ev in [
                            TcpEvent {
                                syn: true,
                                ..Default::default()
                            },
                            TcpEvent {
                                ack: true,
                                ..Default::default()
                            },
                            TcpEvent {
                                fin: true,
                                ack: true,
                                ..Default::default()
                            },
                        ] {
                            c.on_packet(dir, ev, 0, &to);
                        }
                    }
                });
            }
        });
        let active = conns.iter().filter(|c| c.is_active()).count() as u32;
        assert_eq!(d.active.load(Relaxed), active);
        assert_eq!(d.inactive.load(Relaxed), 1000 - active);
        t.flush();
        assert_eq!((d.active.load(Relaxed), d.inactive.load(Relaxed)), (0, 0));
    }
}

#[cfg(test)]
mod stress {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64};

    /// Inserters, readers and expirers run at once; afterwards every
    /// connection ever inserted was either found by its two keys while live
    /// or expired exactly once, and all counts are back to zero.
    #[test]
    fn concurrent_insert_lookup_expire_keeps_invariants() {
        const PER_THREAD: u16 = 3000;
        let t = Arc::new(ConnTable::new(1 << 20, 64));
        let d = Arc::new(DestState::default());
        let svc = Arc::new(ServiceState::default());
        let stop = Arc::new(AtomicBool::new(false));
        let expired = Arc::new(AtomicUsize::new(0));
        let to = Timeouts::default();
        /// Stops the expirers however the scope ends (a failed assertion
        /// in an inserter must fail the test, not hang it).
        struct StopOnDrop(Arc<AtomicBool>);
        impl Drop for StopOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Relaxed);
            }
        }
        let now = Arc::new(AtomicU64::new(1));
        std::thread::scope(|s| {
            let _stop = StopOnDrop(stop.clone());
            // Two expirers sweeping all shards at the shared clock `now`.
            for w in 0..2 {
                let (t, stop, expired, now) =
                    (t.clone(), stop.clone(), expired.clone(), now.clone());
                s.spawn(move || {
                    let mut scratch = Vec::new();
                    let mut i = w;
                    while !stop.load(Relaxed) {
                        let n = t.expire_shard(i % t.n_shards(), now.load(Relaxed), &mut scratch);
                        expired.fetch_add(n, Relaxed);
                        i += 2;
                    }
                });
            }
            let mut inserters = Vec::new();
            for th in 0..4u8 {
                let (t, d, svc) = (t.clone(), d.clone(), svc.clone());
                inserters.push(s.spawn(move || {
                    let mut created = 0usize;
                    for p in 0..PER_THREAD {
                        let c = Conn::new(
                            Proto::Tcp,
                            (IpAddr::V4(Ipv4Addr::new(192, 0, 2, th)), p),
                            ("10.0.0.100".parse().unwrap(), 80),
                            ("10.0.1.11".parse().unwrap(), 80),
                            Forward::Nat,
                            d.clone(),
                            svc.clone(),
                        );
                        let c = t.insert(c, 0).expect("capacity is ample");
                        created += 1;
                        // Inserted at time 0: NONE's 2 s keep it alive
                        // against the expirers (clock at 1 ms) until its
                        // first packet. Half become ESTABLISHED (900 s);
                        // the other half stay NONE and end once the clock
                        // passes 2 s below.
                        if p % 2 == 0 {
                            c.on_packet(
                                Dir::In,
                                TcpEvent {
                                    syn: true,
                                    ..Default::default()
                                },
                                0,
                                &to,
                            );
                            c.on_packet(
                                Dir::In,
                                TcpEvent {
                                    ack: true,
                                    ..Default::default()
                                },
                                0,
                                &to,
                            );
                            // Both keys find the very same connection.
                            let (a, da) = t.lookup(&c.in_key()).expect("in key");
                            let (b, db) = t.lookup(&c.out_key().unwrap()).expect("out key");
                            assert!(Arc::ptr_eq(&a, &c) && Arc::ptr_eq(&b, &c));
                            assert_eq!((da, db), (Dir::In, Dir::Out));
                        }
                    }
                    created
                }));
            }
            let created: usize = inserters.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(created, 4 * PER_THREAD as usize);
            assert_eq!(
                expired.load(Relaxed),
                0,
                "nothing expired before its deadline"
            );
            // Move the clock past NONE's 2 s while the expirers run, then
            // sweep once more so everything due has ended.
            now.store(2_001, Relaxed);
            let mut scratch = Vec::new();
            for i in 0..t.n_shards() {
                expired.fetch_add(t.expire_shard(i, 2_001, &mut scratch), Relaxed);
            }
        });
        let live = 4 * PER_THREAD as usize / 2;
        assert_eq!(
            expired.load(Relaxed),
            live,
            "each short-lived connection expired exactly once"
        );
        assert_eq!(t.len(), live);
        assert_eq!(d.active.load(Relaxed) as usize, live);
        assert_eq!(d.inactive.load(Relaxed), 0);
        let mut seen = 0;
        t.for_each(|c| {
            assert_eq!(c.state(), State::Established);
            seen += 1;
        });
        assert_eq!(seen, live, "no lost or duplicated entries");
        t.flush();
        assert_eq!((t.len(), d.active.load(Relaxed)), (0, 0));
    }
}
