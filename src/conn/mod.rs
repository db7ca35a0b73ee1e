//! The connection table: every packet of a tracked flow finds its
//! connection here, in either direction, from any worker, without a lock.
//!
//! # Layout
//! - **Slots**: one 64-byte cache line per connection, `max_connections` of
//!   them allocated (and faulted in, on transparent huge pages where the
//!   kernel allows) when the table is made. A slot is eight `AtomicU64`
//!   words; real servers and services are referred to by `u32` ids
//!   ([`crate::service::Ids`]), so a slot holds no pointer and no `Arc`.
//! - **Index**: an open-addressed array of 64-byte buckets of seven entries
//!   (`tag:32 | dir:1 | slot+1:31`) and an overflow count (F14 style: how
//!   many entries probed past this bucket, so a lookup stops at the first
//!   bucket nobody overflowed). Each connection is indexed under the
//!   client's key and, where replies pass the director (NAT, FULLNAT), the
//!   real server's. Entries are set and cleared with compare-and-swap.
//! - **Reads** are seqlock-style: the control word (`W_CTL`: generation,
//!   flags, deadline) is read before and after the other words; a slot that
//!   was freed and reused in between has a new generation and the read is
//!   retried. All mutation of a live connection (state, timer, FULLNAT
//!   sequence data) is a compare-and-swap that includes the generation, so a
//!   stale snapshot can never change a reused slot.
//! - **Expiry**: a lazy timer wheel per worker (4096 ticks of 16 ms). A
//!   connection sits in its inserting worker's wheel at its deadline; when
//!   the tick passes, the worker ends it or, if packets pushed the deadline
//!   out, moves it on. A packet that brings the deadline *forward* (FIN,
//!   RST) moves it to the earlier tick. Each poll does a bounded amount of
//!   this work, so expiring millions of connections never stalls a worker.
//! - **Free slots** form a lock-free (tagged) stack; inserts of the same
//!   client flow are serialised by a striped lock so a flow is never
//!   tracked twice.
//!
//! The state byte carries the INACTIVE and DEAD flags, so ActiveConn and
//! InActConn change exactly once per transition even when the two
//! directions of a flow race on different workers.

pub mod state;

use std::cell::Cell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{
    fence, AtomicU32, AtomicU64, AtomicU8, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use parking_lot::{Mutex, RwLock};

use crate::flow::{ClientAddr, FlowKey, Forward, Proto};

use crate::service::state::{DestState, Ids, ServiceState};
pub use state::{Dir, State, TcpEvent, Timeouts};

impl FlowKey {
    /// The key as numbers, if both addresses are IPv4 (the table is
    /// IPv4-only, like the rest of the data path).
    #[inline]
    fn k4(&self) -> Option<K4> {
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Some(K4 {
                proto: self.proto,
                src: u32::from(s),
                dst: u32::from(d),
                sport: self.sport,
                dport: self.dport,
            }),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct K4 {
    proto: Proto,
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
}

// ---- slot layout --------------------------------------------------------

/// gen:16 | flags:8 | deadline in ms of the table's clock:40.
const W_CTL: usize = 0;
/// cip:32 | vip:32
const W_ADDR: usize = 1;
/// dip:32 | cport:16 | vport:16
const W_DST: usize = 2;
/// dport:16 | kind:8 | unused:8 | lport:16 | SYN-proxy client window:16
const W_KIND: usize = 3;
/// lip:32 | SYN-proxy cookie:32
const W_LOCAL: usize = 4;
/// dest id:32 | service id:32
const W_IDS: usize = 5;
/// Live: unused:16 | owner wheel:16 | wheel tick:32. Free: next free slot+1
/// in the top 32 bits.
const W_WHEEL: usize = 6;
/// gen:16 | delta:8 | unused:8 | isn:32 (FULLNAT sequence data; for a
/// SYN-proxied connection, isn is the client's ISN while it is pending).
/// A SYN-proxied connection once the server has answered:
/// gen:16 | [`SYNP_PROXIED`] | sequence adjustment:48 (bit 39 clear).
const W_SEQ: usize = 7;
/// Bit 39 of W_SEQ: the SYN proxy's server handshake is done.
const SYNP_PROXIED: u64 = 1 << 39;

const ST_MASK: u8 = 0x0f;
/// Counted in InActConn rather than ActiveConn (kernel IP_VS_CONN_F_INACTIVE).
const F_INACTIVE: u8 = 0x10;
/// Holds a connection (set at insert, never cleared; DEAD ends it).
const F_LIVE: u8 = 0x20;
/// Ended: unlinked or being unlinked; no more accounting.
const F_DEAD: u8 = 0x40;

const DEADLINE_MASK: u64 = (1 << 40) - 1;

#[inline]
fn ctl(gen: u16, flags: u8, deadline: u64) -> u64 {
    (gen as u64) << 48 | (flags as u64) << 40 | deadline.min(DEADLINE_MASK)
}
#[inline]
fn ctl_gen(c: u64) -> u16 {
    (c >> 48) as u16
}
#[inline]
fn ctl_flags(c: u64) -> u8 {
    (c >> 40) as u8
}
#[inline]
fn ctl_deadline(c: u64) -> u64 {
    c & DEADLINE_MASK
}

// kind byte: proto:1 | fwd:2 | client_addr:2 | fnat:1 | template:1 | synp:1
// fwd 3 is FULLNAT with the fnat bit (a FULLNAT connection always has its
// local address) and Local without it.
const K_UDP: u8 = 1;
const K_FNAT: u8 = 1 << 5;
const K_TEMPLATE: u8 = 1 << 6;
const K_SYNP: u8 = 1 << 7;

fn fwd_bits(f: Forward) -> u8 {
    (match f {
        Forward::Nat => 0,
        Forward::Dr => 1,
        Forward::Tun => 2,
        Forward::FullNat | Forward::Local => 3,
    }) << 1
}
fn fwd_of(kind: u8) -> Forward {
    match (kind >> 1) & 3 {
        0 => Forward::Nat,
        1 => Forward::Dr,
        2 => Forward::Tun,
        _ if kind & K_FNAT != 0 => Forward::FullNat,
        _ => Forward::Local,
    }
}
fn ca_bits(c: ClientAddr) -> u8 {
    (match c {
        ClientAddr::None => 0,
        ClientAddr::Toa => 1,
        ClientAddr::ProxyV2 => 2,
    }) << 3
}
fn ca_of(kind: u8) -> ClientAddr {
    match (kind >> 3) & 3 {
        1 => ClientAddr::Toa,
        2 => ClientAddr::ProxyV2,
        _ => ClientAddr::None,
    }
}

/// One connection: a cache line of atomics.
#[derive(bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Slot {
    w: [AtomicU64; 8],
}

/// Seven index entries and the overflow count: one cache line.
#[derive(bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Bucket {
    e: [AtomicU64; 7],
    overflow: AtomicU64,
}

const ENTRY_OUT: u64 = 1 << 31;
/// Buckets a probe may pass before the index counts as full.
const MAX_PROBE: usize = 64;

#[inline]
fn entry(tag: u32, dir: Dir, slot: u32) -> u64 {
    (tag as u64) << 32 | if dir == Dir::Out { ENTRY_OUT } else { 0 } | (slot as u64 + 1)
}
#[inline]
fn entry_slot(e: u64) -> u32 {
    ((e & (ENTRY_OUT - 1)) - 1) as u32
}
#[inline]
fn entry_dir(e: u64) -> Dir {
    if e & ENTRY_OUT != 0 {
        Dir::Out
    } else {
        Dir::In
    }
}

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = (a as u128).wrapping_mul(b as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

// ---- timer wheel -------------------------------------------------------

/// A wheel tick is 16 ms.
const TICK_SHIFT: u32 = 4;
const WHEEL_SLOTS: usize = 4096;
/// Entries of capacity a drained wheel bucket keeps for its next round
/// (2 KiB): more is given back, so the wheels' memory follows the current
/// rate of new timers rather than the highest it ever was.
const WHEEL_KEEP: usize = 256;

#[inline]
fn tick_of(ms: u64) -> u32 {
    (ms >> TICK_SHIFT) as u32
}
/// `a` is before `b` on the wrapping tick clock.
#[inline]
fn tick_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// One worker's timers: `buckets[tick % WHEEL_SLOTS]` holds
/// `slot:32 | tick:32` entries. Entries are never removed early; an entry
/// counts only while the slot's registered tick (`W_WHEEL`) equals its own,
/// so moved timers leave harmless stale entries behind.
struct Wheel {
    buckets: Vec<Vec<u64>>,
    /// The next tick to process; None before the first use.
    cursor: Option<u32>,
}

impl Wheel {
    fn new() -> Wheel {
        Wheel {
            buckets: (0..WHEEL_SLOTS).map(|_| Vec::new()).collect(),
            cursor: None,
        }
    }
    /// Queue `slot` at `tick` (or at the cursor, if that tick has already
    /// been processed); returns the tick used.
    fn push(&mut self, slot: u32, tick: u32) -> u32 {
        let cur = *self.cursor.get_or_insert(tick);
        let t = if tick_before(tick, cur) { cur } else { tick };
        self.buckets[t as usize % WHEEL_SLOTS].push((slot as u64) << 32 | t as u64);
        t
    }
}

// ---- connections -------------------------------------------------------

/// A new connection, before it is in the table.
#[derive(Debug, Clone)]
pub struct NewConn {
    pub proto: Proto,
    pub cip: IpAddr,
    pub cport: u16,
    pub vip: IpAddr,
    pub vport: u16,
    pub dip: IpAddr,
    pub dport: u16,
    pub fwd: Forward,
    /// [`DestState::id`] and [`ServiceState::id`].
    pub dest: u32,
    pub svc: u32,
    pub template: Option<Arc<Template>>,
    /// FULLNAT: local address, port and client-address delivery.
    pub fnat: Option<(IpAddr, u16, ClientAddr)>,
    /// SYN proxy: (client ISN, cookie, client window) of the handshake the
    /// director completed with the client.
    pub synproxy: Option<(u32, u32, u16)>,
    /// A SYN-proxied connection whose server handshake is already done
    /// (a sync backup's copy): the adjustment, written before the
    /// connection is visible.
    pub synproxy_adj: Option<u64>,
}

impl NewConn {
    pub fn new(
        proto: Proto,
        (cip, cport): (IpAddr, u16),
        (vip, vport): (IpAddr, u16),
        (dip, dport): (IpAddr, u16),
        fwd: Forward,
        dest: &DestState,
        svc: &ServiceState,
    ) -> NewConn {
        NewConn {
            proto,
            cip,
            cport,
            vip,
            vport,
            dip,
            dport,
            fwd,
            dest: dest.id,
            svc: svc.id,
            template: None,
            fnat: None,
            synproxy: None,
            synproxy_adj: None,
        }
    }
    /// Make this a FULLNAT connection from `lip:lport`.
    pub fn with_fnat(mut self, lip: IpAddr, lport: u16, client_addr: ClientAddr) -> NewConn {
        self.fnat = Some((lip, lport, client_addr));
        self
    }
    /// Make this a SYN-proxied connection, pending until the real server
    /// answers ([`Conn::synproxy_establish`]). Not with PROXY v2 (both use
    /// the FULLNAT sequence word).
    pub fn with_synproxy(mut self, client_isn: u32, cookie: u32, window: u16) -> NewConn {
        self.synproxy = Some((client_isn, cookie, window));
        self
    }
    /// A SYN-proxied connection already proxied with `adj` (as
    /// `SeqAdj::to_bits`): never visible as pending.
    pub fn with_synproxy_proxied(mut self, adj: u64) -> NewConn {
        self.synproxy = Some((0, 0, 0));
        self.synproxy_adj = Some(adj);
        self
    }
    /// Bind to the persistence template that picked the real server.
    pub fn with_template(mut self, t: Arc<Template>) -> NewConn {
        self.template = Some(t);
        self
    }
}

/// FULLNAT per-connection data in a [`Conn`] snapshot. `isn` and `delta`
/// may be changed by the forwarding code; [`Conn::commit`] writes them back.
#[derive(Debug)]
pub struct Fnat {
    pub lip: IpAddr,
    pub lport: u16,
    pub client_addr: ClientAddr,
    /// Client's initial sequence number (from its SYN).
    pub isn: Cell<u32>,
    /// Bytes inserted into the client's stream (the PROXY header), added to
    /// client sequence numbers and taken off the server's acknowledgements.
    pub delta: Cell<u32>,
}

/// The SYN proxy's part of a connection (see `crate::synproxy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynProxy {
    /// The client's handshake is done (the director answered its SYN with
    /// `cookie`); the real server's is not.
    Pending {
        client_isn: u32,
        cookie: u32,
        window: u16,
    },
    /// Both handshakes are done: the sequence adjustment, as packed by
    /// `SeqAdj::to_bits`.
    Proxied(u64),
}

/// A consistent snapshot of one live connection, tied to its slot by the
/// slot's generation: methods that change the connection do nothing once
/// the connection has ended.
#[derive(Debug)]
pub struct Conn<'t> {
    table: &'t ConnTable,
    slot: u32,
    gen: u16,
    ctl: u64,
    seq: u64,
    pub proto: Proto,
    pub cip: IpAddr,
    pub cport: u16,
    pub vip: IpAddr,
    pub vport: u16,
    /// Real server address and port.
    pub dip: IpAddr,
    pub dport: u16,
    pub fwd: Forward,
    dest: u32,
    svc: u32,
    /// Controlled by a persistence template.
    pub persistent: bool,
    /// FULLNAT only: the director's local address and port the real server
    /// sees as the client, and the client-address delivery state.
    pub fnat: Option<Fnat>,
    /// SYN-proxied connections only.
    pub synproxy: Option<SynProxy>,
}

impl<'t> Conn<'t> {
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

    /// State when the snapshot was taken.
    pub fn state(&self) -> State {
        State::from_u8(ctl_flags(self.ctl) & ST_MASK)
    }
    pub fn is_active(&self) -> bool {
        ctl_flags(self.ctl) & F_INACTIVE == 0
    }
    /// Deadline in milliseconds of the table's clock.
    pub fn expires_ms(&self) -> u64 {
        ctl_deadline(self.ctl)
    }
    /// The real server's live state.
    pub fn dest(&self) -> &'t DestState {
        self.table.dest_state(self.dest)
    }
    /// The service's live state.
    pub fn svc(&self) -> &'t ServiceState {
        self.table.svc_state(self.svc)
    }
    /// [`DestState::id`] of the real server.
    pub fn dest_id(&self) -> u32 {
        self.dest
    }
    /// [`ServiceState::id`] of the service.
    pub fn svc_id(&self) -> u32 {
        self.svc
    }
    /// Slot number and generation (for tests and diagnostics).
    pub fn id(&self) -> (u32, u16) {
        (self.slot, self.gen)
    }

    /// Apply a packet's TCP flags (or, for UDP, just its arrival), re-arm
    /// the timer and keep ActiveConn/InActConn of the real server exact.
    /// Returns the new state (the old one if the connection has ended).
    pub fn on_packet(&self, dir: Dir, ev: TcpEvent, now_ms: u64, t: &Timeouts) -> State {
        let w = &self.table.slots[self.slot as usize].w[W_CTL];
        let mut cur = w.load(Relaxed);
        loop {
            let flags = ctl_flags(cur);
            let old = State::from_u8(flags & ST_MASK);
            if ctl_gen(cur) != self.gen || flags & F_DEAD != 0 {
                return old;
            }
            let new = if self.proto == Proto::Tcp {
                state::tcp_next(old, dir, ev)
            } else {
                old
            };
            let was_inactive = flags & F_INACTIVE != 0;
            // The kernel re-evaluates the flag only on a state change.
            let now_inactive = if new != old {
                new != State::Established
            } else {
                was_inactive
            };
            let mut nf = (flags & !(ST_MASK | F_INACTIVE)) | new as u8;
            if now_inactive {
                nf |= F_INACTIVE;
            }
            let deadline = now_ms + t.get(new) as u64 * 1000;
            let next = ctl(self.gen, nf, deadline);
            if next != cur {
                if let Err(actual) = w.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                    cur = actual;
                    continue;
                }
                self.moved(was_inactive, now_inactive, deadline, cur);
            }
            return new;
        }
    }

    /// After a successful change of the control word from `cur`: move the
    /// connection between the real server's ActiveConn and InActConn, and
    /// re-arm the timer if the deadline moved earlier.
    fn moved(&self, was_inactive: bool, inactive: bool, deadline: u64, cur: u64) {
        let d = self.dest();
        match (was_inactive, inactive) {
            (true, false) => {
                d.inactive.fetch_sub(1, Relaxed);
                d.active.fetch_add(1, Relaxed);
            }
            (false, true) => {
                d.active.fetch_sub(1, Relaxed);
                d.inactive.fetch_add(1, Relaxed);
            }
            _ => {}
        }
        if deadline < ctl_deadline(cur) {
            self.table.rearm(self.slot, self.gen, deadline);
        }
    }

    /// Set the state, activity and timer a sync message carries (kernel
    /// `ip_vs_proc_conn` on a backup: `cp->state = state`, the INACTIVE
    /// flag moves ActiveConn/InActConn, the timer restarts with the sent
    /// timeout). The deadline may move either way. False if the
    /// connection has ended.
    pub fn set_synced(&self, new: State, inactive: bool, deadline: u64) -> bool {
        let w = &self.table.slots[self.slot as usize].w[W_CTL];
        let mut cur = w.load(Relaxed);
        loop {
            let flags = ctl_flags(cur);
            if ctl_gen(cur) != self.gen || flags & F_DEAD != 0 {
                return false;
            }
            let was_inactive = flags & F_INACTIVE != 0;
            let mut nf = (flags & !(ST_MASK | F_INACTIVE)) | new as u8;
            if inactive {
                nf |= F_INACTIVE;
            }
            let next = ctl(self.gen, nf, deadline);
            if let Err(actual) = w.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                cur = actual;
                continue;
            }
            self.moved(was_inactive, inactive, deadline, cur);
            return true;
        }
    }

    /// The SYN proxy's server handshake is done: record the sequence
    /// adjustment (48 bits, bit 39 clear). True if this call moved the
    /// connection from pending to proxied; false if it was not pending (or
    /// has ended, or another worker did it first).
    pub fn synproxy_establish(&self, adj: u64) -> bool {
        if !matches!(self.synproxy, Some(SynProxy::Pending { .. })) {
            return false;
        }
        debug_assert!(adj < 1 << 48 && adj & SYNP_PROXIED == 0);
        let next = (self.gen as u64) << 48 | SYNP_PROXIED | (adj & ((1 << 48) - 1) & !SYNP_PROXIED);
        let s = &self.table.slots[self.slot as usize];
        let live = || {
            let c = s.w[W_CTL].load(Acquire);
            ctl_gen(c) == self.gen && ctl_flags(c) & (F_LIVE | F_DEAD) == F_LIVE
        };
        // Not for a connection ended meanwhile (a client reset, expiry on
        // another worker): W_SEQ alone does not show that.
        live()
            && s.w[W_SEQ]
                .compare_exchange(self.seq, next, Relaxed, Relaxed)
                .is_ok()
            && live()
    }

    /// Write back FULLNAT sequence data the forwarding code changed.
    pub fn commit(&self) {
        let Some(f) = &self.fnat else { return };
        if matches!(self.synproxy, Some(SynProxy::Proxied(_))) {
            // The word holds the proxy's adjustment; FULLNAT's ISN is
            // only needed up to the handshake, and PROXY v2 is excluded.
            return;
        }
        let next =
            (self.gen as u64) << 48 | ((f.delta.get() as u64) & 0xff) << 40 | f.isn.get() as u64;
        if next != self.seq {
            let w = &self.table.slots[self.slot as usize].w[W_SEQ];
            // Only if the slot still holds this connection (same generation).
            let _ = w.compare_exchange(self.seq, next, Relaxed, Relaxed);
        }
    }
}

/// The key of a persistence template: the kernel's
/// `<protocol, caddr & netmask, 0, vaddr, vport>` (`ip_vs_sched_persist`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TemplateKey {
    /// The service's protocol; None is the kernel's IPPROTO_IP of a fwmark
    /// service's template, which every protocol of the client shares.
    pub proto: Option<Proto>,
    /// The client's network (source address masked by the service netmask).
    pub cnet: IpAddr,
    /// The VIP, or for a fwmark service the mark written as an address
    /// (the kernel's `{ .ip = htonl(svc->fwmark) }`).
    pub vaddr: IpAddr,
    /// The virtual port; 0 for port-zero and fwmark services.
    pub vport: u16,
}

impl TemplateKey {
    /// The key of a fwmark service's template:
    /// `<IPPROTO_IP, cnet, 0, fwmark, 0>`.
    pub fn fwmark(cnet: IpAddr, mark: u32) -> TemplateKey {
        TemplateKey {
            proto: None,
            cnet,
            vaddr: IpAddr::V4(Ipv4Addr::from(mark)),
            vport: 0,
        }
    }
    /// The protocol as `ipvsadm -L -c` names it ("IP" for fwmark templates).
    pub fn proto_name(&self) -> &'static str {
        self.proto.map_or("IP", Proto::upper)
    }
    fn k4(&self) -> Option<K4> {
        FlowKey {
            proto: self.proto.unwrap_or(Proto::Tcp),
            src: self.cnet,
            dst: self.vaddr,
            // Only spreads fwmark templates over shards differently: the
            // map itself compares whole keys.
            sport: self.proto.is_none() as u16,
            dport: self.vport,
        }
        .k4()
    }
}

/// A persistence template (kernel IP_VS_CONN_F_TEMPLATE): "clients of this
/// network go to that real server", keyed by [`TemplateKey`].
#[derive(Debug)]
pub struct Template {
    pub key: TemplateKey,
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
        key: TemplateKey,
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

/// Why a connection could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    #[error("connection table full")]
    Full,
    #[error("the connection table holds IPv4 connections only")]
    NotIpv4,
}

// ---- the table ---------------------------------------------------------

type TemplateShard =
    CachePadded<RwLock<HashMap<TemplateKey, Arc<Template>, foldhash::fast::RandomState>>>;

type LinkShard = Mutex<HashMap<u32, Arc<Template>>>;

const STRIPES: usize = 1024;
const TEMPLATE_SHARDS: usize = 16;
const LINK_SHARDS: usize = 64;

/// The connection table.
pub struct ConnTable {
    slots: Box<[Slot]>,
    index: Box<[Bucket]>,
    mask: usize,
    seed: [u64; 2],
    /// Serialise inserts of one client key (by hash), so a flow whose
    /// first packets race on two workers is tracked once.
    stripes: Box<[CachePadded<Mutex<()>>]>,
    /// Free slots: tag:32 | slot+1:32 (0 = empty).
    free: CachePadded<AtomicU64>,
    /// Slots never used so far start here.
    fresh: CachePadded<AtomicUsize>,
    count: CachePadded<AtomicUsize>,
    max: usize,
    /// Seconds per state; read on every poll, so atomics rather than a lock.
    timeouts: [AtomicU32; state::N_STATES],
    wheels: Box<[CachePadded<Mutex<Wheel>>]>,
    /// Persistence templates; they count against `max` as in the kernel.
    templates: Box<[TemplateShard]>,
    /// The template each persistent connection (by slot) is bound to.
    links: Box<[LinkShard]>,
    ids: Arc<Ids>,
    /// What `dest()`/`svc()` give for an id the registry lacks (never
    /// happens: ids come from the registry and are never removed).
    no_dest: DestState,
    no_svc: ServiceState,
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
    /// A table for at most `max` connections (and persistence templates),
    /// with one expiry wheel per worker (`workers`). All memory is taken
    /// and touched here: `max` slots of 64 bytes and an index of about
    /// 18 bytes per connection key.
    pub fn new(max: usize, workers: usize) -> ConnTable {
        Self::with_ids(max, workers, Arc::new(Ids::default()))
    }

    /// As [`ConnTable::new`], with a registry of services and real servers
    /// to resolve the ids connections hold.
    pub fn with_ids(max: usize, workers: usize, ids: Arc<Ids>) -> ConnTable {
        let max = max.clamp(1, (ENTRY_OUT - 2) as usize);
        // Two keys per connection at most; keep the index under ~70 % full.
        let buckets = ((2 * max).div_ceil(5)).next_power_of_two().max(64);
        let slots: Box<[Slot]> = bytemuck::allocation::zeroed_slice_box(max);
        let index: Box<[Bucket]> = bytemuck::allocation::zeroed_slice_box(buckets);
        // Ask for huge pages, then fault everything in now rather than on
        // the first packets.
        crate::dpdk::advise_hugepages(&slots);
        crate::dpdk::advise_hugepages(&index);
        for s in slots.iter().step_by(64) {
            s.w[W_SEQ].store(0, Relaxed);
        }
        for b in index.iter().step_by(64) {
            b.overflow.store(0, Relaxed);
        }
        use std::hash::BuildHasher;
        let rs = foldhash::fast::RandomState::default();
        let t = Timeouts::default();
        ConnTable {
            slots,
            index,
            mask: buckets - 1,
            seed: [rs.hash_one(1u64) | 1, rs.hash_one(2u64) | 1],
            stripes: (0..STRIPES)
                .map(|_| CachePadded::new(Mutex::new(())))
                .collect(),
            free: CachePadded::new(AtomicU64::new(0)),
            fresh: CachePadded::new(AtomicUsize::new(0)),
            count: CachePadded::new(AtomicUsize::new(0)),
            max,
            timeouts: t.0.map(AtomicU32::new),
            wheels: (0..workers.max(1))
                .map(|_| CachePadded::new(Mutex::new(Wheel::new())))
                .collect(),
            templates: (0..TEMPLATE_SHARDS)
                .map(|_| CachePadded::new(RwLock::new(HashMap::with_hasher(rs.clone()))))
                .collect(),
            links: (0..LINK_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            ids,
            no_dest: DestState::default(),
            no_svc: ServiceState::default(),
        }
    }

    /// The registry of services and real servers connections refer to.
    pub fn ids(&self) -> &Arc<Ids> {
        &self.ids
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
    /// Bytes the table took at start (slots and index).
    pub fn footprint(&self) -> usize {
        std::mem::size_of_val(&*self.slots) + std::mem::size_of_val(&*self.index)
    }
    pub fn n_template_shards(&self) -> usize {
        self.templates.len()
    }
    pub fn timeouts(&self) -> Timeouts {
        Timeouts(std::array::from_fn(|i| self.timeouts[i].load(Relaxed)))
    }
    pub fn set_timeouts(&self, t: Timeouts) {
        for (a, v) in self.timeouts.iter().zip(t.0) {
            a.store(v, Relaxed);
        }
    }

    fn dest_state(&self, id: u32) -> &DestState {
        self.ids.dests.get(id).map_or(&self.no_dest, |a| &**a)
    }
    fn svc_state(&self, id: u32) -> &ServiceState {
        self.ids.services.get(id).map_or(&self.no_svc, |a| &**a)
    }

    #[inline]
    fn hash(&self, k: &K4) -> u64 {
        let a = (k.src as u64) << 32 | k.dst as u64;
        let b = (k.sport as u64) << 32 | (k.dport as u64) << 16 | k.proto as u64;
        fold(
            fold(a ^ self.seed[0], b ^ self.seed[1]),
            self.seed[0] ^ 0x9e37_79b9_7f4a_7c15,
        )
    }

    // ---- index ----

    /// Call `f` on every entry whose tag matches `h` until it says yes.
    #[inline]
    fn find<R>(&self, h: u64, mut f: impl FnMut(u64) -> Option<R>) -> Option<R> {
        let tag = (h >> 32) as u32;
        let home = h as usize;
        for i in 0..MAX_PROBE {
            let b = &self.index[(home + i) & self.mask];
            for e in &b.e {
                let v = e.load(Acquire);
                if v != 0 && (v >> 32) as u32 == tag {
                    if let Some(r) = f(v) {
                        return Some(r);
                    }
                }
            }
            if b.overflow.load(Acquire) == 0 {
                return None;
            }
        }
        None
    }

    fn index_insert(&self, h: u64, e: u64) -> bool {
        let home = h as usize;
        for i in 0..MAX_PROBE {
            let b = &self.index[(home + i) & self.mask];
            for x in &b.e {
                if x.load(Relaxed) == 0 && x.compare_exchange(0, e, Release, Relaxed).is_ok() {
                    return true;
                }
            }
            b.overflow.fetch_add(1, Release);
        }
        for i in 0..MAX_PROBE {
            self.index[(home + i) & self.mask]
                .overflow
                .fetch_sub(1, Relaxed);
        }
        false
    }

    fn index_remove(&self, h: u64, e: u64) -> bool {
        let home = h as usize;
        for i in 0..MAX_PROBE {
            let b = &self.index[(home + i) & self.mask];
            for x in &b.e {
                if x.load(Relaxed) == e && x.compare_exchange(e, 0, Relaxed, Relaxed).is_ok() {
                    for j in 0..i {
                        self.index[(home + j) & self.mask]
                            .overflow
                            .fetch_sub(1, Relaxed);
                    }
                    return true;
                }
            }
            if b.overflow.load(Relaxed) == 0 {
                return false;
            }
        }
        false
    }

    // ---- slots ----

    fn alloc_slot(&self) -> Option<u32> {
        let mut head = self.free.load(Acquire);
        loop {
            let top = head as u32;
            if top == 0 {
                break;
            }
            let next = self.slots[top as usize - 1].w[W_WHEEL].load(Relaxed) >> 32;
            let new = ((head >> 32).wrapping_add(1)) << 32 | next;
            match self.free.compare_exchange_weak(head, new, Acquire, Acquire) {
                Ok(_) => return Some(top - 1),
                Err(h) => head = h,
            }
        }
        let id = self.fresh.fetch_add(1, Relaxed);
        if id < self.slots.len() {
            Some(id as u32)
        } else {
            self.fresh.fetch_sub(1, Relaxed);
            None
        }
    }

    fn free_slot(&self, id: u32) {
        let w = &self.slots[id as usize].w[W_WHEEL];
        let mut head = self.free.load(Relaxed);
        loop {
            w.store((head & 0xffff_ffff) << 32, Relaxed);
            let new = ((head >> 32).wrapping_add(1)) << 32 | (id as u64 + 1);
            match self.free.compare_exchange_weak(head, new, Release, Relaxed) {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// A consistent snapshot of slot `id`, if it holds a live connection.
    #[inline]
    fn read(&self, id: u32) -> Option<Conn<'_>> {
        let s = self.slots.get(id as usize)?;
        for _ in 0..4 {
            let c0 = s.w[W_CTL].load(Acquire);
            if ctl_flags(c0) & (F_LIVE | F_DEAD) != F_LIVE {
                return None;
            }
            let addr = s.w[W_ADDR].load(Relaxed);
            let dst = s.w[W_DST].load(Relaxed);
            let kind = s.w[W_KIND].load(Relaxed);
            let ids = s.w[W_IDS].load(Relaxed);
            let (local, seq) = if (kind >> 40) as u8 & (K_FNAT | K_SYNP) != 0 {
                (s.w[W_LOCAL].load(Relaxed), s.w[W_SEQ].load(Relaxed))
            } else {
                (0, 0)
            };
            fence(Acquire);
            let c1 = s.w[W_CTL].load(Relaxed);
            if ctl_gen(c1) != ctl_gen(c0) || ctl_flags(c1) & F_DEAD != 0 {
                continue;
            }
            let k = (kind >> 40) as u8;
            let v4 = |x: u64| IpAddr::V4(Ipv4Addr::from(x as u32));
            let synproxy = (k & K_SYNP != 0).then_some(if seq & SYNP_PROXIED != 0 {
                SynProxy::Proxied(seq & ((1 << 48) - 1) & !SYNP_PROXIED)
            } else {
                SynProxy::Pending {
                    client_isn: seq as u32,
                    cookie: local as u32,
                    window: kind as u16,
                }
            });
            // FULLNAT's sequence data is gone once the proxy's adjustment
            // has taken the word.
            let fseq = if seq & SYNP_PROXIED != 0 && k & K_SYNP != 0 {
                0
            } else {
                seq
            };
            return Some(Conn {
                table: self,
                slot: id,
                gen: ctl_gen(c1),
                ctl: c1,
                seq,
                proto: if k & K_UDP != 0 {
                    Proto::Udp
                } else {
                    Proto::Tcp
                },
                cip: v4(addr >> 32),
                vip: v4(addr),
                dip: v4(dst >> 32),
                cport: (dst >> 16) as u16,
                vport: dst as u16,
                dport: (kind >> 48) as u16,
                fwd: fwd_of(k),
                dest: (ids >> 32) as u32,
                svc: ids as u32,
                persistent: k & K_TEMPLATE != 0,
                fnat: (k & K_FNAT != 0).then(|| Fnat {
                    lip: v4(local >> 32),
                    lport: (kind >> 16) as u16,
                    client_addr: ca_of(k),
                    isn: Cell::new(fseq as u32),
                    delta: Cell::new(((fseq >> 40) & 0xff) as u32),
                }),
                synproxy,
            });
        }
        None
    }

    /// Whether snapshot `c` is the connection indexed under `k` as `dir`.
    #[inline]
    fn matches(c: &Conn, k: &K4, dir: Dir) -> bool {
        let ip = |a: IpAddr| match a {
            IpAddr::V4(a) => u32::from(a),
            IpAddr::V6(_) => 0,
        };
        if c.proto != k.proto {
            return false;
        }
        match dir {
            Dir::In | Dir::InOnly => {
                ip(c.cip) == k.src && c.cport == k.sport && ip(c.vip) == k.dst && c.vport == k.dport
            }
            Dir::Out => {
                let (lip, lport) = match &c.fnat {
                    Some(f) => (f.lip, f.lport),
                    None => (c.cip, c.cport),
                };
                ip(c.dip) == k.src && c.dport == k.sport && ip(lip) == k.dst && lport == k.dport
            }
        }
    }

    /// The connection a packet with this key belongs to, and the direction.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<(Conn<'_>, Dir)> {
        let k = key.k4()?;
        self.find(self.hash(&k), |e| {
            let dir = entry_dir(e);
            let c = self.read(entry_slot(e))?;
            Self::matches(&c, &k, dir).then_some((c, dir))
        })
    }

    /// Start loading the index bucket `key` hashes to (first pass over a
    /// burst; see [`ConnTable::prefetch_conn`]).
    #[inline]
    pub fn prefetch_bucket(&self, key: &FlowKey) {
        if let Some(k) = key.k4() {
            let h = self.hash(&k);
            crate::dpdk::prefetch(&self.index[h as usize & self.mask]);
        }
    }

    /// Start loading the slots whose index entries match `key`'s tag
    /// (second pass, once the buckets are in cache).
    #[inline]
    pub fn prefetch_conn(&self, key: &FlowKey) {
        if let Some(k) = key.k4() {
            let h = self.hash(&k);
            let b = &self.index[h as usize & self.mask];
            let tag = (h >> 32) as u32;
            for e in &b.e {
                let v = e.load(Relaxed);
                if v != 0 && (v >> 32) as u32 == tag {
                    if let Some(s) = self.slots.get(entry_slot(v) as usize) {
                        crate::dpdk::prefetch(s);
                    }
                }
            }
        }
    }

    /// Whether any live connection is indexed under `key`.
    pub fn contains(&self, key: &FlowKey) -> bool {
        self.lookup(key).is_some()
    }

    /// Add a new connection under its keys. If another worker added the same
    /// client flow first, that connection is returned instead. `worker`'s
    /// wheel times it.
    ///
    /// The timer is armed (`now_ms` + the timeout of its initial state)
    /// before the connection becomes visible, so an expiry on another
    /// worker can never end it before its first packet is handled.
    pub fn insert(&self, n: NewConn, now_ms: u64, worker: usize) -> Result<Conn<'_>, InsertError> {
        let v4 = |a: IpAddr| match a {
            IpAddr::V4(a) => Ok(u32::from(a)),
            IpAddr::V6(_) => Err(InsertError::NotIpv4),
        };
        let (cip, vip, dip) = (v4(n.cip)?, v4(n.vip)?, v4(n.dip)?);
        let lip = match n.fnat {
            Some((l, _, _)) => v4(l)?,
            None => 0,
        };
        let kin = K4 {
            proto: n.proto,
            src: cip,
            sport: n.cport,
            dst: vip,
            dport: n.vport,
        };
        let kout = match (n.fwd, n.fnat) {
            (Forward::Nat, _) => Some(K4 {
                proto: n.proto,
                src: dip,
                sport: n.dport,
                dst: cip,
                dport: n.cport,
            }),
            (Forward::FullNat, Some((_, lport, _))) => Some(K4 {
                proto: n.proto,
                src: dip,
                sport: n.dport,
                dst: lip,
                dport: lport,
            }),
            _ => None,
        };
        let hin = self.hash(&kin);
        let _guard = self.stripes[(hin >> 16) as usize % STRIPES].lock();
        if let Some(c) = self.find(hin, |e| {
            let c = self.read(entry_slot(e))?;
            (entry_dir(e) == Dir::In && Self::matches(&c, &kin, Dir::In)).then_some(c)
        }) {
            return Ok(c);
        }
        if self.count.fetch_add(1, Relaxed) >= self.max {
            self.count.fetch_sub(1, Relaxed);
            return Err(InsertError::Full);
        }
        let Some(id) = self.alloc_slot() else {
            self.count.fetch_sub(1, Relaxed);
            return Err(InsertError::Full);
        };
        let st = if n.proto == Proto::Udp {
            State::Udp
        } else {
            State::None
        };
        let deadline = now_ms + self.timeouts[st as usize].load(Relaxed) as u64 * 1000;
        let mut kind = fwd_bits(n.fwd);
        if n.proto == Proto::Udp {
            kind |= K_UDP;
        }
        let mut lport = 0;
        if let Some((_, lp, ca)) = n.fnat {
            kind |= K_FNAT | ca_bits(ca);
            lport = lp;
        }
        if n.template.is_some() {
            kind |= K_TEMPLATE;
        }
        let (isn, cookie, window) = n.synproxy.unwrap_or_default();
        if n.synproxy.is_some() {
            kind |= K_SYNP;
        }
        let s = &self.slots[id as usize];
        let gen = ctl_gen(s.w[W_CTL].load(Relaxed)).wrapping_add(1);
        let wheel = worker % self.wheels.len();
        // Readers that still hold the old generation see DEAD or a new
        // generation from here on; the fields follow, then the live word.
        s.w[W_CTL].store(ctl(gen, F_DEAD, 0), Relaxed);
        fence(Release);
        s.w[W_ADDR].store((cip as u64) << 32 | vip as u64, Relaxed);
        s.w[W_DST].store(
            (dip as u64) << 32 | (n.cport as u64) << 16 | n.vport as u64,
            Relaxed,
        );
        s.w[W_KIND].store(
            (n.dport as u64) << 48 | (kind as u64) << 40 | (lport as u64) << 16 | window as u64,
            Relaxed,
        );
        s.w[W_LOCAL].store((lip as u64) << 32 | cookie as u64, Relaxed);
        s.w[W_IDS].store((n.dest as u64) << 32 | n.svc as u64, Relaxed);
        let seq = match n.synproxy_adj {
            Some(adj) => SYNP_PROXIED | (adj & ((1 << 48) - 1) & !SYNP_PROXIED),
            None => isn as u64,
        };
        s.w[W_SEQ].store((gen as u64) << 48 | seq, Relaxed);
        {
            let mut wh = self.wheels[wheel].lock();
            let t = wh.push(id, tick_of(deadline));
            s.w[W_WHEEL].store((wheel as u64) << 32 | t as u64, Relaxed);
        }
        s.w[W_CTL].store(ctl(gen, F_LIVE | F_INACTIVE | st as u8, deadline), Release);
        // Account before the connection is visible, so a reply on another
        // worker moving it to ESTABLISHED never sees the count below zero.
        let d = self.dest_state(n.dest);
        d.inactive.fetch_add(1, Relaxed);
        d.check_overload_on_bind();
        if let Some(t) = n.template {
            t.controlled.fetch_add(1, Relaxed);
            self.links[id as usize % LINK_SHARDS].lock().insert(id, t);
        }
        let tag = |h: u64| (h >> 32) as u32;
        let ok_in = self.index_insert(hin, entry(tag(hin), Dir::In, id));
        let ok_out = match &kout {
            Some(k) if ok_in => {
                let h = self.hash(k);
                let ok = self.index_insert(h, entry(tag(h), Dir::Out, id));
                if !ok {
                    self.index_remove(hin, entry(tag(hin), Dir::In, id));
                }
                ok
            }
            _ => ok_in,
        };
        if !ok_out {
            // The index is overfull around these keys: undo, count as full.
            self.kill(id, gen);
            return Err(InsertError::Full);
        }
        d.traffic.conns.fetch_add(1, Relaxed);
        self.svc_state(n.svc).traffic.conns.fetch_add(1, Relaxed);
        self.read(id).ok_or(InsertError::Full)
    }

    /// End the connection in slot `id` if it still has generation `gen`:
    /// mark it dead (exactly once), release the real server's count and the
    /// template, unlink its keys and free the slot.
    fn kill(&self, id: u32, gen: u16) -> bool {
        let s = &self.slots[id as usize];
        let w = &s.w[W_CTL];
        let mut cur = w.load(Relaxed);
        loop {
            let f = ctl_flags(cur);
            if ctl_gen(cur) != gen || f & (F_LIVE | F_DEAD) != F_LIVE {
                return false;
            }
            match w.compare_exchange_weak(cur, cur | (F_DEAD as u64) << 40, Acquire, Relaxed) {
                Ok(_) => break,
                Err(a) => cur = a,
            }
        }
        // The fields are ours now: nobody reuses the slot before we free it.
        let addr = s.w[W_ADDR].load(Relaxed);
        let dst = s.w[W_DST].load(Relaxed);
        let kind = s.w[W_KIND].load(Relaxed);
        let ids = s.w[W_IDS].load(Relaxed);
        let k = (kind >> 40) as u8;
        let proto = if k & K_UDP != 0 {
            Proto::Udp
        } else {
            Proto::Tcp
        };
        let (cip, vip, dip) = ((addr >> 32) as u32, addr as u32, (dst >> 32) as u32);
        let (cport, vport, dport) = ((dst >> 16) as u16, dst as u16, (kind >> 48) as u16);
        let kin = K4 {
            proto,
            src: cip,
            sport: cport,
            dst: vip,
            dport: vport,
        };
        let h = self.hash(&kin);
        self.index_remove(h, entry((h >> 32) as u32, Dir::In, id));
        let kout = match fwd_of(k) {
            Forward::Nat => Some((cip, cport)),
            Forward::FullNat if k & K_FNAT != 0 => Some((
                (s.w[W_LOCAL].load(Relaxed) >> 32) as u32,
                (kind >> 16) as u16,
            )),
            _ => None,
        };
        if let Some((dst, dp)) = kout {
            let h = self.hash(&K4 {
                proto,
                src: dip,
                sport: dport,
                dst,
                dport: dp,
            });
            self.index_remove(h, entry((h >> 32) as u32, Dir::Out, id));
        }
        let d = self.dest_state((ids >> 32) as u32);
        if ctl_flags(cur) & F_INACTIVE != 0 {
            d.inactive.fetch_sub(1, Relaxed);
        } else {
            d.active.fetch_sub(1, Relaxed);
        }
        d.check_overload_on_unbind();
        if k & K_TEMPLATE != 0 {
            if let Some(t) = self.links[id as usize % LINK_SHARDS].lock().remove(&id) {
                t.controlled.fetch_sub(1, Relaxed);
            }
        }
        self.free_slot(id);
        self.count.fetch_sub(1, Relaxed);
        true
    }

    /// End `c` now (kernel `ip_vs_conn_expire_now`). False if it had
    /// already ended.
    pub fn end(&self, c: &Conn) -> bool {
        self.kill(c.slot, c.gen)
    }

    /// Move the timer of slot `id` to the earlier `deadline` (a FIN or RST
    /// shortened the timeout).
    fn rearm(&self, id: u32, gen: u16, deadline: u64) {
        let s = &self.slots[id as usize];
        let owner = (s.w[W_WHEEL].load(Relaxed) >> 32) as u16 as usize;
        let Some(wheel) = self.wheels.get(owner) else {
            return;
        };
        let mut wh = wheel.lock();
        let c = s.w[W_CTL].load(Relaxed);
        if ctl_gen(c) != gen || ctl_flags(c) & (F_LIVE | F_DEAD) != F_LIVE {
            return;
        }
        let ww = s.w[W_WHEEL].load(Relaxed);
        let t = tick_of(deadline);
        if tick_before(t, ww as u32) {
            let t = wh.push(id, t);
            s.w[W_WHEEL].store(ww & !0xffff_ffff | t as u64, Relaxed);
        }
    }

    /// Expiry work for `worker` at `now_ms`: process at most `budget` timer
    /// entries (and ticks) of its wheel. Returns how many connections ended.
    pub fn expire(&self, worker: usize, now_ms: u64, budget: usize) -> usize {
        let wi = worker % self.wheels.len();
        let mut wh = self.wheels[wi].lock();
        let now = tick_of(now_ms);
        let Some(mut cursor) = wh.cursor else {
            wh.cursor = Some(now);
            return 0;
        };
        let (mut done, mut ended) = (0, 0);
        // Only ticks wholly in the past: every deadline in them is due.
        while tick_before(cursor, now) && done < budget {
            let b = cursor as usize % WHEEL_SLOTS;
            let list = std::mem::take(&mut wh.buckets[b]);
            let mut i = 0;
            while i < list.len() && done < budget {
                let e = list[i];
                i += 1;
                done += 1;
                let (id, et) = ((e >> 32) as u32, e as u32);
                if et != cursor {
                    wh.buckets[b].push(e); // a later round
                    continue;
                }
                let s = &self.slots[id as usize];
                let c = s.w[W_CTL].load(Acquire);
                let ww = s.w[W_WHEEL].load(Relaxed);
                if ctl_flags(c) & (F_LIVE | F_DEAD) != F_LIVE
                    || ww as u32 != et
                    || (ww >> 32) as u16 as usize != wi
                {
                    continue; // ended, or the timer moved: a stale entry
                }
                let dt = tick_of(ctl_deadline(c));
                if !tick_before(cursor, dt) {
                    if self.kill(id, ctl_gen(c)) {
                        ended += 1;
                    }
                } else {
                    let t = wh.push(id, dt);
                    s.w[W_WHEEL].store(ww & !0xffff_ffff | t as u64, Relaxed);
                }
            }
            if i < list.len() {
                wh.buckets[b].extend_from_slice(&list[i..]);
                break;
            }
            if wh.buckets[b].is_empty() {
                // Keep the allocation for the next round, but not beyond
                // WHEEL_KEEP entries: a burst of new flows must not leave
                // its peak in every bucket for good.
                let mut list = list;
                list.clear();
                list.shrink_to(WHEEL_KEEP);
                wh.buckets[b] = list;
            }
            done += 1;
            cursor = cursor.wrapping_add(1);
            wh.cursor = Some(cursor);
        }
        ended
    }

    /// Entries the timer wheels have room for (their memory / 8 bytes).
    pub fn wheel_capacity(&self) -> usize {
        self.wheels
            .iter()
            .map(|w| w.lock().buckets.iter().map(Vec::capacity).sum::<usize>())
            .sum()
    }

    /// Run every wheel until nothing due at `now_ms` is left (tests,
    /// shutdown). Returns how many connections ended.
    pub fn expire_all(&self, now_ms: u64) -> usize {
        (0..self.wheels.len())
            .map(|w| self.expire(w, now_ms, usize::MAX))
            .sum()
    }

    /// End every connection now, whatever its timer.
    pub fn flush(&self) {
        let n = self.fresh.load(Relaxed).min(self.slots.len());
        for id in 0..n as u32 {
            let c = self.slots[id as usize].w[W_CTL].load(Acquire);
            self.kill(id, ctl_gen(c));
        }
        for i in 0..self.templates.len() {
            self.expire_templates(i, u64::MAX);
        }
    }

    /// The live persistence template under `key`.
    pub fn template(&self, key: &TemplateKey) -> Option<Arc<Template>> {
        let s = self.templates[self.template_shard(key)].read();
        s.get(key).filter(|t| t.dead.load(Relaxed) == 0).cloned()
    }

    fn template_shard(&self, key: &TemplateKey) -> usize {
        match key.k4() {
            Some(k) => (self.hash(&k) >> 20) as usize % self.templates.len(),
            None => 0,
        }
    }

    /// Add a template, replacing (and ending) one with the same key whose
    /// real server is gone.
    pub fn insert_template(&self, t: Template) -> Result<Arc<Template>, InsertError> {
        if self.count.fetch_add(1, Relaxed) >= self.max {
            self.count.fetch_sub(1, Relaxed);
            return Err(InsertError::Full);
        }
        let t = Arc::new(t);
        let old = self.templates[self.template_shard(&t.key)]
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

    /// Expire what is due in one template shard (workers take one per
    /// millisecond). Returns how many templates ended.
    pub fn expire_templates(&self, shard: usize, now_ms: u64) -> usize {
        let mut dead = Vec::new();
        {
            let mut s = self.templates[shard % self.templates.len()].write();
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
        let mut n = 0;
        for t in dead {
            if t.kill() {
                self.count.fetch_sub(1, Relaxed);
                n += 1;
            }
        }
        n
    }

    /// Visit every live connection. Reads slots only: workers are never
    /// blocked, however many connections there are.
    pub fn for_each(&self, mut f: impl FnMut(&Conn)) {
        let n = self.fresh.load(Relaxed).min(self.slots.len());
        for id in 0..n as u32 {
            if let Some(c) = self.read(id) {
                f(&c);
            }
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod stress;
