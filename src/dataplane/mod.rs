//! The per-packet decision: one frame in, one verdict out.
//!
//! [`Dataplane::process`] classifies a frame and an IPv4 packet goes
//! through six named steps, one file each, the way the kernel's `ip_vs_in`
//! reads:
//!
//! 1. `parse_ipv4` (lookup.rs): the IPv4 header, and what the director is
//!    to its destination (an owned VIP, an unowned one, its own address).
//! 2. `icmp` (local.rs): echo requests to the director are answered; ICMP
//!    errors follow the connection they quote (forward.rs).
//! 3. `transport` (lookup.rs): the TCP/UDP header, the flow key and flags.
//! 4. the connection table's lookup: the tracked connection, if any
//!    (`reused`, lookup.rs, ends one a new SYN reuses).
//! 5. `open` (open.rs): without one, the service schedules a real server
//!    and a connection is created, or the SYN proxy (synproxy.rs) answers.
//! 6. `forward_conn` (forward.rs): the connection's forwarding mode
//!    rewrites the packet (`xmit::transmit`, one signature for every
//!    mode), then state, counts and the Ethernet header for the next hop.
//!
//! ARP and the director's own ICMP duties are in local.rs. IPv6: ipv6.rs
//! answers for the director's own addresses, VIPs and local addresses
//! (Neighbor Discovery, echo); service6.rs takes an IPv6 packet through
//! the same steps (its connections share the table), and NAT64's
//! translation both ways. Nothing here
//! frees, queues or transmits: the worker acts on the [`Verdict`]. The clock
//! is an argument, so tests drive it with an in-memory device and a fake
//! time.

mod burst;
mod forward;
mod ipv6;
mod local;
mod lookup;
mod open;
mod service6;
mod solo;
mod synproxy;

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::conn::{Conn, ConnTable, Dir, TcpEvent, Timeouts};
use crate::flow::{FlowKey, Proto};
use crate::io::Frame;
use crate::neigh::{NeighTable, Router};
use crate::service::ServiceTable;
use crate::stats::{DropReason, WorkerStats};
use crate::synproxy::{CookieInfo, Established, SynKey};
use crate::wire::{EtherType, EthernetFrame, IpProtocol};
pub use burst::{Rec, Stages};
use open::Opened;
pub use solo::Solo;

/// What the worker does with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it on this port (rewritten, Ethernet header complete).
    Tx(u16),
    /// Rewritten, but the next hop's MAC is unknown: hold it until ARP
    /// (IPv4) or Neighbor Discovery (IPv6) resolves `nexthop`, then send
    /// on `port`.
    Hold { port: u16, nexthop: IpAddr },
    /// Free it and count the reason.
    Drop(DropReason),
    /// Free it; it was for the director and needs no answer (an ARP reply).
    Consumed,
    /// Hand it to the kernel twin of this data port (the exception path).
    ToKernel(u16),
}

/// Everything a packet decision reads that changes only slowly.
pub struct Dataplane {
    pub router: Router,
    pub neigh: Arc<NeighTable>,
    /// IPv6 neighbours, learnt from Neighbor Discovery.
    pub neigh6: Arc<NeighTable<std::net::Ipv6Addr>>,
    pub table: Arc<ArcSwap<ServiceTable>>,
    pub conns: Arc<ConnTable>,
    /// The SYN proxy's cookie secret (one per process).
    pub syn_key: SynKey,
    /// Kernel twins and VIP ownership (empty: no exception path, every VIP
    /// owned).
    pub exc: crate::ownership::Exception,
    /// `sloppy_tcp` (rvsd's config): a TCP non-SYN opens a connection in
    /// `mh`/`sh` services.
    pub sloppy_tcp: bool,
}

/// A second frame a decision asks the worker to originate: the SYN proxy's
/// window update to the client once the real server has answered.
#[derive(Clone, Copy, Debug)]
pub struct ClientUpdate {
    pub client: SocketAddr,
    pub vip: SocketAddr,
    pub info: CookieInfo,
    pub est: Established,
}

/// Per-burst context of one worker.
pub struct Ctx<'a> {
    pub stats: &'a WorkerStats,
    /// The worker's IPv4 identification counter for headers it creates.
    pub ident: &'a std::cell::Cell<u16>,
    /// The worker's FULLNAT local port cursor.
    pub lport: &'a std::cell::Cell<u32>,
    /// This worker's index and the number of workers: FULLNAT local ports
    /// are partitioned by worker so no two workers ever pick the same one.
    pub worker: u16,
    pub n_workers: u16,
    pub now_ms: u64,
    pub services: &'a ServiceTable,
    pub timeouts: &'a Timeouts,
    /// The worker's per-server packet counts, flushed once per poll.
    pub traffic: &'a std::cell::RefCell<crate::stats::TrafficAcc>,
    /// The neighbour map, loaded once per poll.
    pub neigh: &'a crate::neigh::NeighMap,
    /// The IPv6 neighbour map, loaded once per poll.
    pub neigh6: &'a crate::neigh::NeighMap<std::net::Ipv6Addr>,
    /// The worker's next hops, learnt from the router and `neigh`.
    pub hops: &'a crate::neigh::HopCache,
    /// Set by [`Dataplane::process`] when the worker must also send a
    /// [`ClientUpdate`] (written with [`Dataplane::client_update`]).
    pub update: &'a Cell<Option<ClientUpdate>>,
    /// The reply entries of the burst's new connections, left for
    /// [`Dataplane::finish_burst`] (`conn::Late`); None: they go in at
    /// once.
    pub late: Option<&'a std::cell::RefCell<crate::conn::Late>>,
}

const ETH: usize = EthernetFrame::<&[u8]>::HEADER_LEN;

fn bad_source(ip: Ipv4Addr) -> bool {
    ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() || ip.is_unspecified()
}

impl Dataplane {
    /// Decide what to do with one received frame.
    pub fn process<F: Frame>(&self, cx: &Ctx, in_port: u16, frame: &mut F) -> Verdict {
        let data = frame.data_mut();
        let Ok(eth) = EthernetFrame::new_checked(&*data) else {
            return Verdict::Drop(DropReason::EthTruncated);
        };
        let Some(port) = self.router.ports.get(in_port as usize) else {
            return Verdict::Drop(DropReason::NotForUs);
        };
        let dst = eth.dst();
        let twin = self.exc.has_twin(in_port);
        if dst != port.mac && !dst.is_broadcast() {
            // Multicast (VRRP, routing protocols, Neighbor Discovery) is
            // the kernel's business; rvs learns neighbours from the last.
            if twin && dst.0[0] & 1 == 1 && self.sane_peer_mac(eth.src()) {
                if eth.ethertype() == EtherType::IPV6 {
                    return self.ipv6(cx, in_port, frame, true);
                }
                return Verdict::ToKernel(in_port);
            }
            // Without a twin, rvs answers Neighbor Discovery itself.
            let nd = !twin && eth.ethertype() == EtherType::IPV6 && self.v6_group_mac(in_port, dst);
            if !nd {
                return Verdict::Drop(DropReason::NotForUs);
            }
        }
        // Nothing legitimate comes from these, and the director answers
        // pings and ICMP errors to the frame's source: never answer a zero,
        // group or own MAC (a loop or a reflection).
        if !self.sane_peer_mac(eth.src()) {
            return Verdict::Drop(DropReason::BadSourceMac);
        }
        match eth.ethertype() {
            EtherType::IPV4 => self.ipv4(cx, in_port, frame),
            EtherType::ARP => self.arp(cx, in_port, data),
            EtherType::IPV6 => self.ipv6(cx, in_port, frame, twin),
            EtherType::VLAN | EtherType::QINQ => Verdict::Drop(DropReason::Vlan),
            _ => Verdict::Drop(DropReason::UnknownEtherType),
        }
    }

    /// The connection key of a plain IPv4 TCP/UDP frame, read without
    /// validation beyond bounds: only used to prefetch connection-table lines
    /// for a burst; [`Dataplane::process`] does the real parsing.
    #[inline]
    pub fn peek_key(data: &[u8]) -> Option<FlowKey> {
        if data.get(12..14)? == [0x86, 0xdd] {
            return Self::peek_key6(data);
        }
        let ip = data.get(ETH..ETH + 20)?;
        if data[12..14] != [0x08, 0x00] || ip[0] != 0x45 {
            return None;
        }
        let proto = match ip[9] {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            _ => return None,
        };
        let l4 = data.get(ETH + 20..ETH + 24)?;
        let a = |o: usize| Ipv4Addr::new(ip[o], ip[o + 1], ip[o + 2], ip[o + 3]);
        Some(FlowKey::v4(
            proto,
            a(12),
            u16::from_be_bytes([l4[0], l4[1]]),
            a(16),
            u16::from_be_bytes([l4[2], l4[3]]),
        ))
    }

    /// [`Dataplane::peek_key`] of an IPv6 TCP/UDP frame without extension
    /// headers.
    #[inline]
    fn peek_key6(data: &[u8]) -> Option<FlowKey> {
        let ip = data.get(ETH..ETH + 44)?;
        let proto = match ip[6] {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            _ => return None,
        };
        let a = |o: usize| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&ip[o..o + 16]);
            std::net::IpAddr::V6(std::net::Ipv6Addr::from(b))
        };
        Some(FlowKey {
            proto,
            src: a(8),
            sport: u16::from_be_bytes([ip[40], ip[41]]),
            dst: a(24),
            dport: u16::from_be_bytes([ip[42], ip[43]]),
        })
    }

    /// The six steps of an IPv4 packet (see the module documentation).
    fn ipv4<F: Frame>(&self, cx: &Ctx, in_port: u16, frame: &mut F) -> Verdict {
        // 1. The IPv4 header, and what the director is to its destination.
        let h = match self.parse_ipv4(cx, in_port, frame.data()) {
            Ok(h) => h,
            Err(v) => return v,
        };
        // 2. ICMP is answered, or follows the connection it quotes.
        if h.proto == IpProtocol::ICMP {
            return self.icmp(cx, in_port, frame, &h);
        }
        // 3. The transport header: the flow and its TCP flags.
        let (proto, sport, dport, ev) = match self.transport(in_port, frame.data(), &h) {
            Ok(x) => x,
            Err(v) => return v,
        };
        let key = FlowKey::v4(proto, h.src, sport, h.dst, dport);
        // 4. The tracked connection, if any.
        let mut hit = self.conns.lookup(&key);
        if self.reused(cx, &hit, ev) {
            hit = None;
        }
        // 5. Without one, the service schedules a new connection. By
        // reference: a connection snapshot is a couple of hundred bytes, and
        // moving it cost a memcpy per packet (~10 % of the NAT path).
        let created;
        let (conn, dir, one_packet) = match &hit {
            Some((c, d)) => (c, *d, false),
            None => match self.open(cx, in_port, frame, &h, &key, ev) {
                Opened::Conn { conn, one_packet } => {
                    created = conn;
                    (&created, Dir::In, one_packet)
                }
                Opened::Done(v) => return v,
            },
        };
        // 6. The connection's forwarding mode, state, counts, next hop.
        let v = self.step6(cx, in_port, frame, conn, (dir, ev), h.total);
        // One-packet scheduling (kernel IP_VS_CONN_F_ONE_PACKET): the entry
        // made for this datagram is never looked up again; the kernel does
        // not hash it and expires it when the packet has gone
        // (ip_vs_conn_put), so the next datagram is scheduled afresh and
        // `-L -c` never lists it.
        if one_packet {
            self.conns.end(conn);
        }
        v
    }

    /// Step 6 for an IPv4 packet of `conn` (an IPv6 connection found by
    /// an IPv4 key is NAT64's reply).
    #[inline(always)]
    pub(super) fn step6<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        conn: &Conn,
        (dir, ev): (Dir, TcpEvent),
        total: usize,
    ) -> Verdict {
        if conn.v6.is_some() {
            self.nat64_out(cx, in_port, frame, conn, (dir, ev))
        } else {
            self.forward_conn(cx, in_port, frame, conn, (dir, ev), total)
        }
    }

    /// The end of every forwarded packet, of either family: the
    /// connection's state and timer (`dir`, `ev`), the real server's and
    /// service's counts, and the Ethernet header towards `next`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn sent<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        conn: &Conn,
        (dir, ev): (Dir, TcpEvent),
        total: usize,
        next: IpAddr,
    ) -> Verdict {
        self.account(cx, conn, (dir, ev), dir == Dir::Out, total);
        self.next_hop_any(cx, frame.data_mut(), in_port, next)
    }

    /// The Ethernet header towards `dst`'s next hop, of either family.
    pub(super) fn next_hop_any(
        &self,
        cx: &Ctx,
        data: &mut [u8],
        in_port: u16,
        dst: IpAddr,
    ) -> Verdict {
        match dst {
            IpAddr::V4(a) => self.to_next_hop(cx, data, a),
            IpAddr::V6(a) => self.to_next_hop6(cx, data, in_port, a),
        }
    }

    /// Fill in the Ethernet header towards `dst`'s next hop.
    pub(super) fn to_next_hop(&self, cx: &Ctx, data: &mut [u8], dst: Ipv4Addr) -> Verdict {
        self.next_hop_inline(cx, data, dst)
    }

    /// [`Dataplane::to_next_hop`], inlined into the burst's fast path: its
    /// verdict returned through memory from a call cost a store-forwarding
    /// stall per packet there.
    #[inline(always)]
    pub(super) fn next_hop_inline(&self, cx: &Ctx, data: &mut [u8], dst: Ipv4Addr) -> Verdict {
        if let Some((port, head)) = self.hop(cx, dst) {
            data[..12].copy_from_slice(&head);
            return Verdict::Tx(port);
        }
        // No route, or a neighbour not known yet.
        let Some((port, nexthop)) = self.router.route(dst) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        EthernetFrame::new_unchecked(data).set_src(self.router.ports[port as usize].mac);
        Verdict::Hold {
            port,
            nexthop: IpAddr::V4(nexthop),
        }
    }

    /// The port and Ethernet header (destination, then source MAC) towards
    /// `dst`: from the worker's cache, or routed and looked up and then
    /// cached. None: no route, or the next hop's MAC is not known yet.
    #[inline(always)]
    pub(super) fn hop(&self, cx: &Ctx, dst: Ipv4Addr) -> Option<(u16, [u8; 12])> {
        if let Some(h) = cx.hops.get(dst) {
            return Some(h);
        }
        let (port, nexthop) = self.router.route(dst)?;
        let mac = cx.neigh.get(&nexthop)?;
        let mut head = [0; 12];
        head[..6].copy_from_slice(&mac.0);
        head[6..].copy_from_slice(&self.router.ports[port as usize].mac.0);
        cx.hops.put(dst, port, head);
        Some((port, head))
    }

    /// The MAC of a neighbour of either family, as learnt now.
    pub fn neighbour(&self, ip: IpAddr) -> Option<crate::wire::MacAddr> {
        match ip {
            IpAddr::V4(a) => self.neigh.lookup(a),
            IpAddr::V6(a) => self.neigh6.lookup(a),
        }
    }
}
