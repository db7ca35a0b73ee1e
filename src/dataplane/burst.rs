//! The burst's stages: what a vector packet processor does to a whole
//! receive burst before it touches any packet's connection, then the
//! established fast path, frame by frame in arrival order.
//!
//! 1. [`Dataplane::classify`]: every frame's headers are read once into a
//!    compact [`Rec`] (addresses, ports, TCP flags, length, the flow's
//!    hash). A frame qualifies for the fast path when it is a plain IPv4
//!    TCP or UDP packet to this port's MAC that the full path's own checks
//!    (steps 1 and 3 of the module documentation: header and checksum,
//!    fragments, sources, the transport header's bounds) would accept; the
//!    checksum and source checks wait for stage 3 and the frames it may
//!    take (a SYN goes the full way, which makes them itself). The index
//!    bucket of each flow of that shape is prefetched.
//! 2. [`Dataplane::prefetch_conns`]: with the buckets in cache, the slots
//!    whose entries carry each flow's tag are prefetched, and the first
//!    such entry kept in the frame's record, so that stage 3 reads that
//!    connection without scanning the bucket again.
//! 3. [`Dataplane::decide`], per frame in order: a qualifying frame of a
//!    plain connection (IPv4 NAT or DR, see [`crate::conn::Plain`]) whose
//!    packet leaves the connection's state as it is (no SYN, FIN or RST)
//!    is rewritten from the slot's words, its timer moved and its bytes
//!    counted. A qualifying frame of a connection that is not plain
//!    (FULLNAT, TUN, the SYN proxy, NAT64's replies) goes on to step 6 with
//!    the connection read whole (`found_other`). Everything else (new
//!    connections, state changes, ICMP, ARP, IPv6, a packet the checks
//!    would drop) goes through [`Dataplane::process`], which decides it
//!    exactly as before. Frames are decided in arrival order, so an
//!    earlier frame's effect (a connection ended, a state changed) is seen
//!    by the later ones: the fast path re-checks the slot's generation and state when
//!    it moves the timer and falls back to the full path if either moved.
//! 4. [`Dataplane::finish_burst`], before any of the burst's frames is
//!    sent: the reply entries its new connections left late
//!    (`crate::conn::Late`) go into the index, their bucket misses
//!    overlapping instead of each SYN waiting for its own.

use std::net::Ipv4Addr;

use super::{bad_source, Ctx, Dataplane, Verdict, ETH};
use crate::conn::{Dir, Lookup, Plain, TcpEvent};
use crate::flow::{FlowKey, Forward, Proto};
use crate::io::{Frame, BURST};
use crate::stats::DropReason;
use crate::wire::checksum;

/// What the fast path did with a frame.
#[derive(Clone, Copy)]
enum Fast {
    /// Rewritten, accounted, Ethernet header set: send on this port.
    Tx(u16),
    /// A connection that is not plain, found in this slot and direction.
    Other(u32, Dir),
    /// Nothing written: the full path decides.
    No,
}

/// One frame's headers, as the burst's later stages need them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rec {
    /// Has the fast path's shape (the fields below are set): a plain IPv4
    /// TCP or UDP packet to the port's MAC, whole. The checksum and the
    /// source are checked in stage 3, for the frames it may take.
    pub fast: bool,
    pub udp: bool,
    pub src: u32,
    pub sport: u16,
    pub dst: u32,
    pub dport: u16,
    /// The TCP flags byte (0 for UDP).
    pub flags: u8,
    /// The IPv4 total length.
    pub total: u16,
    pub hash: u64,
    /// The first index entry under the flow's tag, as stage 2 found it
    /// (0: none): stage 3 reads that connection first rather than scan
    /// the bucket again.
    pub hint: u64,
}

/// The records of a burst, and the keys of the frames that do not qualify
/// (prefetched the general way: IPv6, or shapes the fast path skips).
pub struct Stages {
    pub recs: [Rec; BURST],
    keys: [Option<FlowKey>; BURST],
}

impl Default for Stages {
    fn default() -> Self {
        Stages {
            recs: [Rec::default(); BURST],
            keys: [None; BURST],
        }
    }
}

impl Rec {
    fn proto(&self) -> Proto {
        if self.udp {
            Proto::Udp
        } else {
            Proto::Tcp
        }
    }
    /// The packet as the state machine sees it: a stage-3 frame has no
    /// SYN, FIN or RST.
    fn event(&self) -> TcpEvent {
        TcpEvent {
            ack: self.flags & TCP_ACK != 0,
            ..TcpEvent::default()
        }
    }
}

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

impl Dataplane {
    /// Stage 1 over a burst (see the module documentation).
    pub fn classify<F: Frame>(&self, in_port: u16, frames: &[F], st: &mut Stages) {
        // The frames' first lines were written by another core (the NIC or
        // a ring producer): start every miss of the burst at once.
        for f in frames {
            if let Some(b) = f.data().first() {
                crate::dpdk::prefetch(b);
            }
        }
        for (i, f) in frames.iter().enumerate().take(BURST) {
            let r = self.record(in_port, f.data());
            st.recs[i] = r;
            st.keys[i] = None;
            if r.fast {
                self.conns.prefetch_hashed(r.hash);
            } else if let Some(k) = Dataplane::peek_key(f.data()) {
                self.conns.prefetch_bucket(&k);
                st.keys[i] = Some(k);
            }
        }
    }

    /// Stage 2: the slots of the burst's flows.
    pub fn prefetch_conns(&self, n: usize, st: &mut Stages) {
        for (r, k) in st.recs.iter_mut().zip(&st.keys).take(n) {
            if r.fast {
                r.hint = self.conns.prefetch_slots_hashed(r.hash);
            } else if let Some(k) = k {
                self.conns.prefetch_conn(k);
            }
        }
    }

    /// Stage 3 for one frame: the fast path, or the full decision.
    #[inline]
    pub fn decide<F: Frame>(&self, cx: &Ctx, in_port: u16, frame: &mut F, r: &Rec) -> Verdict {
        if r.fast {
            match self.established(cx, frame, r) {
                // Built here, from a value returned in registers: an
                // `Option<Verdict>` (20 bytes) assembled in memory cost a
                // store-forwarding stall per packet.
                Fast::Tx(port) => return Verdict::Tx(port),
                Fast::Other(slot, dir) => {
                    if let Some(v) = self.found_other(cx, in_port, frame, r, (slot, dir)) {
                        return v;
                    }
                }
                Fast::No => {}
            }
        }
        self.process(cx, in_port, frame)
    }

    /// After a burst's decisions, before any of its frames is sent: the
    /// reply entries of its new connections go into the index
    /// (`ConnTable::link_late`). A connection the index had no room for is
    /// ended and counted as `conn_table_full`; its SYN still leaves, and
    /// the client's retransmission is decided afresh.
    pub fn finish_burst(&self, cx: &Ctx) {
        let Some(late) = cx.late else {
            return;
        };
        let mut late = late.borrow_mut();
        if !late.is_empty() {
            for _ in 0..self.conns.link_late(&mut late) {
                cx.stats.drop(DropReason::ConnTableFull);
            }
        }
    }

    /// A frame's record; `fast` only if the frame has the fast path's
    /// shape. With [`Dataplane::sound`], every check of the full path's
    /// steps 1 and 3 (so the fast path never forwards what the full path
    /// would drop).
    #[inline(always)]
    fn record(&self, in_port: u16, d: &[u8]) -> Rec {
        let mut r = Rec::default();
        let Some(port) = self.router.ports.get(in_port as usize) else {
            return r;
        };
        // Ethernet, IPv4 without options, and the transport's first bytes.
        if d.len() < ETH + 20 + 8 || d[12..14] != [0x08, 0x00] || d[0..6] != port.mac.0 {
            return r;
        }
        let ip = &d[ETH..ETH + 20];
        let total = u16::from_be_bytes([ip[2], ip[3]]);
        let end = ETH + total as usize;
        if ip[0] != 0x45 || end > d.len() || ip[6] & 0x3f != 0 || ip[7] != 0 {
            return r;
        }
        let udp = match ip[9] {
            6 => false,
            17 => true,
            _ => return r,
        };
        let Some(l4) = d.get(ETH + 20..end).filter(|l4| l4.len() >= 8) else {
            return r;
        };
        let flags = if udp {
            let len = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
            if len < 8 || len > l4.len() {
                return r;
            }
            0
        } else {
            if l4.len() < 20 {
                return r;
            }
            let doff = usize::from(l4[12] >> 4) * 4;
            if doff < 20 || doff > l4.len() {
                return r;
            }
            l4[13]
        };
        let src = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
        r.src = src;
        r.dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
        r.sport = u16::from_be_bytes([l4[0], l4[1]]);
        r.dport = u16::from_be_bytes([l4[2], l4[3]]);
        r.udp = udp;
        r.flags = flags;
        r.total = total;
        let proto = if udp { Proto::Udp } else { Proto::Tcp };
        r.hash = self.conns.hash4(proto, r.src, r.sport, r.dst, r.dport);
        r.fast = true;
        r
    }

    /// The rest of the full path's checks of steps 1 and 3 for a frame of
    /// the fast path's shape: the IPv4 header checksum, a sane source
    /// address and MAC. Made only for frames the fast path may take (not
    /// SYN, FIN or RST): the others go through the full path, which makes
    /// them itself.
    #[inline(always)]
    fn sound(&self, d: &[u8]) -> bool {
        let Some(head) = d
            .get(ETH..ETH + 20)
            .and_then(|h| <&[u8; 20]>::try_from(h).ok())
        else {
            return false;
        };
        let sip = Ipv4Addr::new(head[12], head[13], head[14], head[15]);
        let mac = crate::wire::MacAddr([d[6], d[7], d[8], d[9], d[10], d[11]]);
        checksum::ipv4_header_valid(head)
            && !bad_source(sip)
            && !self.router.is_broadcast(sip)
            && self.sane_peer_mac(mac)
    }

    /// The fast path for a qualifying frame; None: the full path decides
    /// (nothing has been written to the frame or the table).
    #[inline(always)]
    fn established<F: Frame>(&self, cx: &Ctx, frame: &mut F, r: &Rec) -> Fast {
        if r.flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0 || !self.sound(frame.data()) {
            return Fast::No;
        }
        let p = match self.conns.lookup_plain_from(
            r.hint,
            r.hash,
            r.proto(),
            (r.src, r.sport),
            (r.dst, r.dport),
        ) {
            Lookup::Plain(p) => p,
            Lookup::Other(slot, dir) => return Fast::Other(slot, dir),
            Lookup::Miss => return Fast::No,
        };
        let data = frame.data_mut();
        let ttl = data[ETH + 8];
        // NAT routes like a router (TTL 1 cannot go on); DR never sends a
        // TTL-0 datagram: the full path drops and counts both.
        let (state_dir, next) = match (p.fwd, p.dir) {
            (Forward::Nat, Dir::In) if ttl > 1 => (Dir::In, p.dip),
            (Forward::Nat, Dir::Out) if ttl > 1 => (Dir::Out, p.cip),
            (Forward::Dr, Dir::In) if ttl > 0 => (Dir::InOnly, p.dip),
            _ => return Fast::No,
        };
        // The next hop first: without a route or a known neighbour the full
        // path decides (a drop, or a frame held for ARP), and nothing may
        // have been written by then.
        let Some((port, head)) = self.hop(cx, Ipv4Addr::from(next)) else {
            return Fast::No;
        };
        if !self
            .conns
            .touch(&p, state_dir, r.event(), cx.now_ms, cx.timeouts)
        {
            return Fast::No;
        }
        let total = usize::from(r.total);
        if p.fwd == Forward::Nat {
            nat_rewrite(&mut data[ETH..ETH + total], r.udp, &p);
        }
        cx.traffic
            .borrow_mut()
            .count(p.dest, p.svc, p.dir == Dir::Out, total);
        data[..12].copy_from_slice(&head);
        Fast::Tx(port)
    }
}

impl Dataplane {
    /// A qualifying frame of a connection that is not plain (FULLNAT, TUN,
    /// the SYN proxy, NAT64's replies...): the full path's steps 1 to 4
    /// would find exactly what the stages already know (a valid IPv4
    /// TCP/UDP packet, no SYN, FIN or RST, so no `conn_reuse_mode` end, and
    /// this connection), so it goes straight on to step 6 with the
    /// connection read whole. None (the full path decides) if the slot no
    /// longer holds it.
    #[inline(never)]
    fn found_other<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        r: &Rec,
        found: (u32, Dir),
    ) -> Option<Verdict> {
        let (a, b) = (Ipv4Addr::from(r.src), Ipv4Addr::from(r.dst));
        let key = FlowKey::v4(r.proto(), a, r.sport, b, r.dport);
        let (conn, dir) = self.conns.read_found(found, &key)?;
        let state = (dir, r.event());
        Some(self.step6(cx, in_port, frame, &conn, state, usize::from(r.total)))
    }
}

/// NAT's rewrite of a checked IPv4 packet without options (`xmit::nat`'s,
/// with each checksum updated in one step, which gives the same bytes):
/// TTL - 1, then inbound the destination becomes the real server,
/// outbound the source becomes the VIP.
#[inline(always)]
fn nat_rewrite(ip: &mut [u8], udp: bool, p: &Plain) {
    let (addr_at, port_at, old, new, old_port, new_port) = match p.dir {
        Dir::Out => (12, 0, p.dip, p.vip, p.dport, p.vport),
        _ => (16, 2, p.vip, p.dip, p.vport, p.dport),
    };
    let get16 = |b: &[u8], at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    // Each checksum in one fold (checksum::update32_16: the same bytes as
    // the full path's update after update).
    let ttl = ip[8];
    let c = checksum::update32_16(
        get16(ip, 10),
        old,
        new,
        u16::from_be_bytes([ttl, ip[9]]),
        u16::from_be_bytes([ttl - 1, ip[9]]),
    );
    ip[8] = ttl - 1;
    ip[addr_at..addr_at + 4].copy_from_slice(&new.to_be_bytes());
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let l4 = &mut ip[20..];
    let at = if udp { 6 } else { 16 };
    let c = get16(l4, at);
    let c = if udp {
        checksum::udp_update32_16(c, old, new, old_port, new_port)
    } else {
        checksum::update32_16(c, old, new, old_port, new_port)
    };
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    l4[port_at..port_at + 2].copy_from_slice(&new_port.to_be_bytes());
}
