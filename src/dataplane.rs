//! The per-packet decision: one frame in, one verdict out.
//!
//! [`Dataplane::process`] classifies a frame (ARP, ICMP echo for the
//! director's addresses and VIPs, TCP/UDP for virtual services or replies of
//! tracked connections), finds or creates its connection, has the forwarding
//! mode rewrite it in place and fills in the Ethernet header for the next
//! hop. It never frees, queues or transmits: the worker acts on the
//! [`Verdict`]. It takes the clock as an argument, so tests drive it with an
//! in-memory device and a fake time.

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::flow::FlowKey;

use crate::conn::{
    Conn, ConnTable, Dir, InsertError, NewConn, State, SynProxy, TcpEvent, Template, TemplateKey,
    Timeouts,
};
use crate::flow::{Forward, Proto};
use crate::io::Frame;
use crate::neigh::{NeighTable, Router};
use crate::service::{Service, ServiceTable};
use crate::stats::{DropReason, WorkerStats};
use crate::synproxy::{self as sp, CookieInfo, Established, SeqAdj, SynKey};
use crate::wire::ipv4::DEFAULT_TTL;
use crate::wire::{
    icmp, ArpOp, ArpPacket, EtherType, EthernetFrame, Icmpv4Packet, IpProtocol, Ipv4Packet,
    MacAddr, TcpSegment, UdpDatagram,
};
use crate::xmit;
use crate::xmit::fullnat::FnatError;
use crate::xmit::tun::TunError;

/// What the worker does with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it on this port (rewritten, Ethernet header complete).
    Tx(u16),
    /// Rewritten, but the next hop's MAC is unknown: hold it until ARP
    /// resolves `nexthop`, then send on `port`.
    Hold { port: u16, nexthop: Ipv4Addr },
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
    pub table: Arc<ArcSwap<ServiceTable>>,
    pub conns: Arc<ConnTable>,
    /// The SYN proxy's cookie secret (one per process).
    pub syn_key: SynKey,
    /// Kernel twins and VIP ownership (empty: no exception path, every VIP
    /// owned).
    pub exc: crate::ownership::Exception,
}

/// A second frame a decision asks the worker to originate: the SYN proxy's
/// window update to the client once the real server has answered.
#[derive(Clone, Copy, Debug)]
pub struct ClientUpdate {
    pub client: SocketAddrV4,
    pub vip: SocketAddrV4,
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
    /// Set by [`Dataplane::process`] when the worker must also send a
    /// [`ClientUpdate`] (written with [`Dataplane::client_update`]).
    pub update: &'a Cell<Option<ClientUpdate>>,
}

const ETH: usize = EthernetFrame::<&[u8]>::HEADER_LEN;

/// The Ethernet frame's IPv4 total length (the frame must hold one).
fn ip_total(data: &[u8]) -> usize {
    u16::from_be_bytes([data[ETH + 2], data[ETH + 3]]) as usize
}

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
            // Multicast (VRRP, routing protocols) is the kernel's business.
            if twin && dst.0[0] & 1 == 1 && self.sane_peer_mac(eth.src()) {
                return Verdict::ToKernel(in_port);
            }
            return Verdict::Drop(DropReason::NotForUs);
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
            EtherType::IPV6 if twin => Verdict::ToKernel(in_port),
            EtherType::IPV6 => Verdict::Drop(DropReason::Ipv6),
            EtherType::VLAN | EtherType::QINQ => Verdict::Drop(DropReason::Vlan),
            _ => Verdict::Drop(DropReason::UnknownEtherType),
        }
    }

    /// The connection key of a plain IPv4 TCP/UDP frame, read without
    /// validation beyond bounds: only used to prefetch connection-table lines
    /// for a burst; [`Dataplane::process`] does the real parsing.
    #[inline]
    pub fn peek_key(data: &[u8]) -> Option<FlowKey> {
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

    /// A MAC the director may send to or learn: unicast, not zero, not one
    /// of its own ports'.
    fn sane_peer_mac(&self, m: MacAddr) -> bool {
        m.is_unicast() && !m.is_zero() && !self.router.ports.iter().any(|p| p.mac == m)
    }

    /// Answer requests for our addresses and VIPs; learn neighbours.
    fn arp(&self, cx: &Ctx, in_port: u16, data: &mut [u8]) -> Verdict {
        let port = self.router.ports[in_port as usize];
        let Ok(mut arp) = ArpPacket::new_checked(&mut data[ETH..]) else {
            return Verdict::Drop(DropReason::ArpMalformed);
        };
        let (sip, sha, tip) = (arp.sender_ip(), arp.sender_hw(), arp.target_ip());
        // The reply goes to, and the neighbour entry would hold, `sha`: one
        // forged ARP naming a real server must not black-hole it.
        if !self.sane_peer_mac(sha) {
            return Verdict::Drop(DropReason::ArpBadSender);
        }
        let op = arp.operation();
        let is_vip = cx.services.is_vip(IpAddr::V4(tip));
        // A VIP this director does not own now (vip_ownership "kernel"):
        // never answered, or two directors would claim it.
        let unowned_vip = is_vip && !self.exc.owns(tip);
        // Another address on this port's twin (vip_ownership "kernel"):
        // one keepalived floats between directors, such as the NAT real
        // servers' gateway. The director that holds it answers for it.
        let on_twin = !is_vip && self.exc.on_twin(tip) == Some(in_port);
        let ours = tip == port.cidr.addr
            || (is_vip && !unowned_vip)
            || cx.services.is_lip(IpAddr::V4(tip))
            || on_twin;
        // Like the kernel: only requests and replies count; create an entry
        // when the ARP is addressed to us, refresh one we already have from
        // any other (gratuitous included).
        if matches!(op, ArpOp::REQUEST | ArpOp::REPLY)
            && port.cidr.contains(sip)
            && !bad_source(sip)
            && (ours || self.neigh.contains(sip))
        {
            self.neigh.learn(sip, sha);
        }
        match op {
            // A gratuitous request (sender = target, a peer announcing an
            // address) is not answered, as Linux does not: the peer would
            // learn its own address at our MAC.
            ArpOp::REQUEST if ours && sip == tip => Verdict::Consumed,
            ArpOp::REQUEST if ours => {
                arp.set_operation(ArpOp::REPLY);
                arp.set_target_hw(sha);
                arp.set_target_ip(sip);
                arp.set_sender_hw(port.mac);
                arp.set_sender_ip(tip);
                let mut eth = EthernetFrame::new_unchecked(&mut *data);
                eth.set_dst(sha);
                eth.set_src(port.mac);
                cx.stats.arp_replies_sent.inc();
                Verdict::Tx(in_port)
            }
            // The kernel twin resolves its own neighbours: it gets every
            // reply too (rvs has learnt from it above).
            ArpOp::REPLY if self.exc.has_twin(in_port) => Verdict::ToKernel(in_port),
            ArpOp::REPLY => Verdict::Consumed,
            ArpOp::REQUEST if unowned_vip => Verdict::Drop(DropReason::VipNotOwned),
            _ => Verdict::Drop(DropReason::ArpNotForUs),
        }
    }

    fn ipv4<F: Frame>(&self, cx: &Ctx, in_port: u16, frame: &mut F) -> Verdict {
        let data = frame.data_mut();
        let (src, dst, proto, ihl, total) = {
            let Ok(ip) = Ipv4Packet::new_checked(&data[ETH..]) else {
                return Verdict::Drop(DropReason::Ipv4Malformed);
            };
            if !ip.verify_checksum() {
                return Verdict::Drop(DropReason::Ipv4BadChecksum);
            }
            if ip.is_fragment() {
                return Verdict::Drop(DropReason::Ipv4Fragment);
            }
            (
                ip.src_addr(),
                ip.dst_addr(),
                ip.protocol(),
                ip.header_len(),
                ip.total_len() as usize,
            )
        };
        if bad_source(src) || self.router.is_broadcast(src) {
            return Verdict::Drop(DropReason::BadSource);
        }
        let mut vip = cx.services.is_vip(IpAddr::V4(dst));
        let twin = self.exc.has_twin(in_port);
        // A VIP not owned now: tracked connections keep being forwarded
        // (as the kernel's IPVS forwards what still reaches it), nothing
        // new is accepted or answered.
        let unowned_vip = vip && !self.exc.owns(dst);
        if unowned_vip {
            vip = false;
        }
        if proto == IpProtocol::ICMP {
            let local = vip || self.router.local_port(dst).is_some();
            if let Some((p, s, sp, d, dp)) = xmit::icmp::quoted_flow(&data[ETH..ETH + total]) {
                let key = FlowKey::v4(Proto::from_number(p).unwrap_or(Proto::Tcp), s, sp, d, dp);
                return match self.conns.lookup(&key) {
                    Some((conn, dir)) => self.icmp_error(cx, in_port, frame, &conn, dir, total),
                    // Errors about the kernel's own connections.
                    None if twin && self.router.local_port(dst).is_some() => {
                        Verdict::ToKernel(in_port)
                    }
                    None if local => Verdict::Drop(DropReason::IcmpUnhandled),
                    None if unowned_vip => Verdict::Drop(DropReason::VipNotOwned),
                    None => Verdict::Drop(DropReason::NotRouted),
                };
            }
            if local {
                return self.echo_reply(cx, in_port, data);
            }
            if unowned_vip {
                return Verdict::Drop(DropReason::VipNotOwned);
            }
            return Verdict::Drop(DropReason::NotRouted);
        }
        let l4proto = match proto {
            IpProtocol::TCP => Proto::Tcp,
            IpProtocol::UDP => Proto::Udp,
            _ if vip => return Verdict::Drop(DropReason::ProtoUnsupported),
            _ if unowned_vip => return Verdict::Drop(DropReason::VipNotOwned),
            // VRRP, OSPF, GRE... to the director's own address.
            _ if twin && self.router.local_port(dst).is_some() => {
                return Verdict::ToKernel(in_port)
            }
            _ => return Verdict::Drop(DropReason::NotRouted),
        };
        let l4 = &data[ETH + ihl..ETH + total];
        let (sport, dport, ev) = match l4proto {
            Proto::Tcp => match TcpSegment::new_checked(l4) {
                Ok(t) => {
                    let f = t.flags();
                    (
                        t.src_port(),
                        t.dst_port(),
                        TcpEvent {
                            syn: f.syn(),
                            fin: f.fin(),
                            ack: f.ack(),
                            rst: f.rst(),
                        },
                    )
                }
                Err(_) => return Verdict::Drop(DropReason::L4Malformed),
            },
            Proto::Udp => match UdpDatagram::new_checked(l4) {
                Ok(u) => (u.src_port(), u.dst_port(), TcpEvent::default()),
                Err(_) => return Verdict::Drop(DropReason::L4Malformed),
            },
        };
        let key = FlowKey::v4(l4proto, src, sport, dst, dport);
        let mut hit = self.conns.lookup(&key);
        // conn_reuse_mode 1 (the kernel default): a client SYN that reuses
        // the tuple of a connection in TIME_WAIT or CLOSE, not controlled
        // by a persistence template, ends it and is scheduled afresh (so it
        // never follows a real server that has since been removed).
        if let Some((c, Dir::In)) = &hit {
            if ev.syn
                && !ev.ack
                && !ev.rst
                && !ev.fin
                && c.proto == Proto::Tcp
                && !c.persistent
                && matches!(c.state(), State::TimeWait | State::Close)
            {
                self.conns.end(c);
                cx.stats.conns_reused.inc();
                hit = None;
            }
        }
        // By reference: a connection snapshot is a couple of hundred bytes,
        // and moving it cost a memcpy per packet (~10 % of the NAT path).
        let created;
        // One-packet scheduling (kernel IP_VS_CONN_F_ONE_PACKET, set in
        // ip_vs_schedule for a UDP packet of an `ops` service): the entry
        // made for this datagram is never looked up again; the kernel does
        // not hash it and expires it when the packet has gone
        // (ip_vs_conn_put), so the next datagram is scheduled afresh and
        // `-L -c` never lists it.
        let mut one_packet = false;
        let (conn, dir) = match &hit {
            Some((c, d)) => (c, *d),
            // No connection: the service, as the kernel's
            // ip_vs_service_find: the fwmark service of the packet's mark
            // first (never for the director's own addresses), then the VIP's.
            None if unowned_vip => return Verdict::Drop(DropReason::VipNotOwned),
            None if vip || self.router.local_port(dst).is_none() => {
                let Some(svc) = cx.services.find_new(key.proto, dst, key.dport, vip) else {
                    return Verdict::Drop(if vip {
                        DropReason::NoService
                    } else {
                        DropReason::NotRouted
                    });
                };
                if svc.conf.synproxy && l4proto == Proto::Tcp {
                    return self.synproxy_new(cx, in_port, frame, svc, &key, ev);
                }
                one_packet = svc.conf.ops && l4proto == Proto::Udp;
                match self.new_conn(cx, svc, &key, ev, None) {
                    Ok(c) => {
                        created = c;
                        (&created, Dir::In)
                    }
                    Err(r) => return Verdict::Drop(r),
                }
            }
            None if twin && self.router.local_port(dst).is_some() => {
                return Verdict::ToKernel(in_port)
            }
            None if self.router.local_port(dst).is_some() => {
                return Verdict::Drop(DropReason::LocalUnhandled)
            }
            None => return Verdict::Drop(DropReason::NotRouted),
        };
        let adj = match conn.synproxy {
            None => None,
            Some(SynProxy::Proxied(bits)) => Some(SeqAdj::from_bits(bits)),
            Some(SynProxy::Pending {
                client_isn,
                cookie,
                window,
            }) => {
                let info = CookieInfo::from_stored(client_isn, cookie, window);
                return match dir {
                    Dir::Out => self.synproxy_answer(cx, in_port, frame, conn, &info),
                    // The client aborts before the server answered: the
                    // server (in SYN_RECV) gets the reset too.
                    _ if ev.rst => {
                        let v = match self.forward(cx, in_port, frame, conn, Dir::In, total) {
                            Ok(next) => self.to_next_hop(cx, frame.data_mut(), next),
                            Err(v) => v,
                        };
                        self.conns.end(conn);
                        v
                    }
                    // Anything else from the client (a window probe) sends
                    // the SYN again.
                    _ => self.synproxy_syn(cx, in_port, frame, conn, &info),
                };
            }
        };
        if let (Some(adj), Dir::In) = (&adj, dir) {
            if sp::to_server(frame, adj).is_err() {
                return Verdict::Drop(DropReason::L4Malformed);
            }
        }
        if conn.fwd == Forward::Local {
            // IPVS's LOCALNODE (ip_vs_null_xmit): the director's own stack
            // takes the packet unchanged, here through the receiving port's
            // kernel twin (without one the worker counts local_unhandled).
            // Its replies leave through the twin from the VIP.
            conn.on_packet(Dir::InOnly, ev, cx.now_ms, cx.timeouts);
            cx.traffic
                .borrow_mut()
                .count(conn.dest_id(), conn.svc_id(), false, total);
            if one_packet {
                self.conns.end(conn);
            }
            return Verdict::ToKernel(in_port);
        }
        let next = match self.forward(cx, in_port, frame, conn, dir, total) {
            Ok(next) => next,
            Err(v) => {
                if one_packet {
                    self.conns.end(conn);
                }
                return v;
            }
        };
        if let (Some(adj), Dir::Out) = (&adj, dir) {
            if sp::to_client(frame, adj).is_err() {
                return Verdict::Drop(DropReason::L4Malformed);
            }
        }
        let state_dir = if dir == Dir::In && matches!(conn.fwd, Forward::Dr | Forward::Tun) {
            Dir::InOnly
        } else {
            dir
        };
        conn.commit();
        let v = self.sent(cx, frame, conn, (state_dir, ev), total, next);
        if one_packet {
            self.conns.end(conn);
        }
        v
    }

    /// The end of every forwarded packet: the connection's state and timer
    /// (`dir`, `ev`), the real server's and service's counts, and the
    /// Ethernet header towards `next`.
    fn sent<F: Frame>(
        &self,
        cx: &Ctx,
        frame: &mut F,
        conn: &Conn,
        (dir, ev): (Dir, TcpEvent),
        total: usize,
        next: Ipv4Addr,
    ) -> Verdict {
        conn.on_packet(dir, ev, cx.now_ms, cx.timeouts);
        cx.traffic
            .borrow_mut()
            .count(conn.dest_id(), conn.svc_id(), dir == Dir::Out, total);
        self.to_next_hop(cx, frame.data_mut(), next)
    }

    /// Have the connection's forwarding mode rewrite the packet; returns the
    /// address whose next hop gets the frame, or the verdict that replaces
    /// forwarding (a drop, or an ICMP error sent back instead).
    fn forward<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        conn: &Conn,
        dir: Dir,
        total: usize,
    ) -> Result<Ipv4Addr, Verdict> {
        let v4 = |a: IpAddr| match a {
            IpAddr::V4(a) => Ok(a),
            IpAddr::V6(_) => Err(Verdict::Drop(DropReason::NoRoute)),
        };
        let malformed = |_| Verdict::Drop(DropReason::L4Malformed);
        match (conn.fwd, dir) {
            (Forward::Nat, Dir::In | Dir::Out) => {
                let ip = &mut frame.data_mut()[ETH..ETH + total];
                // NAT routes like a router: TTL 1 cannot go on.
                if ip[8] <= 1 {
                    return Err(Verdict::Drop(DropReason::TtlExceeded));
                }
                if dir == Dir::In {
                    xmit::nat::forward(ip, conn).map_err(malformed)?;
                    v4(conn.dip)
                } else {
                    xmit::nat::reply(ip, conn).map_err(malformed)?;
                    v4(conn.cip)
                }
            }
            // DR and TUN do not route (TTL is left alone, TUN copies it to
            // the outer header, as IPVS), but a TTL-0 datagram must never be
            // sent (RFC 1122 3.2.1.7).
            (Forward::Dr | Forward::Tun, Dir::In) if frame.data()[ETH + 8] == 0 => {
                Err(Verdict::Drop(DropReason::TtlExceeded))
            }
            (Forward::Dr, Dir::In) => {
                xmit::dr::forward(&mut frame.data_mut()[ETH..ETH + total], conn)
                    .map_err(malformed)?;
                v4(conn.dip)
            }
            (Forward::Tun, Dir::In) => {
                let rip = v4(conn.dip)?;
                let (port, _) = self
                    .router
                    .route(rip)
                    .ok_or(Verdict::Drop(DropReason::NoRoute))?;
                let p = self.router.ports[port as usize];
                let ident = cx.ident.get();
                cx.ident.set(ident.wrapping_add(1));
                let tun = conn.dest().tunnel();
                match xmit::tun::encapsulate(frame, tun, p.cidr.addr, rip, p.mtu, ident) {
                    Ok(()) => Ok(rip),
                    Err(TunError::FragNeeded(mtu)) => {
                        let me = self.router.ports[in_port as usize];
                        if xmit::icmp::frag_needed(frame, me.cidr.addr, me.mac, mtu) {
                            cx.stats.icmp_errors_sent.inc();
                            Err(Verdict::Tx(in_port))
                        } else {
                            Err(Verdict::Drop(DropReason::NoBuffer))
                        }
                    }
                    Err(TunError::TooBig) => Err(Verdict::Drop(DropReason::TooBig)),
                    Err(TunError::NoHeadroom) => Err(Verdict::Drop(DropReason::NoBuffer)),
                    Err(TunError::Malformed(_)) => Err(Verdict::Drop(DropReason::L4Malformed)),
                }
            }
            (Forward::FullNat, Dir::In | Dir::Out) => {
                if frame.data()[ETH + 8] <= 1 {
                    return Err(Verdict::Drop(DropReason::TtlExceeded));
                }
                let r = if dir == Dir::In {
                    xmit::fullnat::forward(frame, conn).map(|_| conn.dip)
                } else {
                    xmit::fullnat::reply(frame, conn).map(|_| conn.cip)
                };
                match r {
                    Ok(next) => v4(next),
                    Err(FnatError::NoRoom) => Err(Verdict::Drop(DropReason::NoBuffer)),
                    Err(_) => Err(Verdict::Drop(DropReason::L4Malformed)),
                }
            }
            _ => Err(Verdict::Drop(DropReason::FwdUnsupported)),
        }
    }

    /// Forward an ICMP error about a tracked connection the way its packets
    /// go, translated as the kernel's `ip_vs_nat_icmp` does (NAT, FULLNAT),
    /// or as the connection's own packets (DR, TUN: towards the server only).
    fn icmp_error<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        conn: &Conn,
        dir: Dir,
        total: usize,
    ) -> Verdict {
        let v4 = |a: IpAddr| match a {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        };
        let (Some(cip), Some(vip), Some(rip)) = (v4(conn.cip), v4(conn.vip), v4(conn.dip)) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let (c, v, r) = ((cip, conn.cport), (vip, conn.vport), (rip, conn.dport));
        let local = conn.fnat.as_ref().and_then(|f| Some((v4(f.lip)?, f.lport)));
        let ip = &mut frame.data_mut()[ETH..ETH + total];
        if matches!(conn.fwd, Forward::Nat | Forward::FullNat) && ip[8] <= 1 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        use xmit::icmp::rewrite_error;
        let done = match (conn.fwd, dir, local) {
            (Forward::Nat, Dir::Out, _) => {
                rewrite_error(ip, Some(vip), None, None, Some(v)).map(|_| cip)
            }
            (Forward::Nat, Dir::In, _) => {
                rewrite_error(ip, None, Some(rip), Some(r), None).map(|_| rip)
            }
            (Forward::FullNat, Dir::Out, Some(_)) => {
                rewrite_error(ip, Some(vip), Some(cip), Some(c), Some(v)).map(|_| cip)
            }
            (Forward::FullNat, Dir::In, Some(l)) => {
                rewrite_error(ip, Some(l.0), Some(rip), Some(r), Some(l)).map(|_| rip)
            }
            // An error about a Local connection is the local stack's.
            (Forward::Local, Dir::In, _) => return Verdict::ToKernel(in_port),
            (Forward::Dr | Forward::Tun, Dir::In, _) => {
                return match self.forward(cx, in_port, frame, conn, dir, total) {
                    Ok(next) => {
                        cx.stats.icmp_errors_forwarded.inc();
                        self.to_next_hop(cx, frame.data_mut(), next)
                    }
                    Err(v) => v,
                };
            }
            _ => return Verdict::Drop(DropReason::NotRouted),
        };
        // An error about a packet the SYN proxy sent the client quotes the
        // client's sequence space; the server needs its own.
        if let (Ok(_), Dir::In, Some(SynProxy::Proxied(bits))) = (&done, dir, conn.synproxy) {
            let ip = &mut frame.data_mut()[ETH..ETH + total];
            if sp::icmp_quote_to_server(ip, &SeqAdj::from_bits(bits)).is_err() {
                return Verdict::Drop(DropReason::L4Malformed);
            }
        }
        match done {
            Ok(next) => {
                cx.stats.icmp_errors_forwarded.inc();
                self.to_next_hop(cx, frame.data_mut(), next)
            }
            Err(_) => Verdict::Drop(DropReason::L4Malformed),
        }
    }

    /// A free FULLNAT local address and port towards `rip:rport`: ports in
    /// 1024..=65535 are split among workers (port % workers), each worker
    /// walks its share and the service's addresses in turn, skipping pairs
    /// whose reply key is taken.
    fn local_addr(
        &self,
        cx: &Ctx,
        svc: &Service,
        proto: Proto,
        rip: IpAddr,
        rport: u16,
    ) -> Option<(IpAddr, u16)> {
        let laddrs = &svc.conf.laddrs;
        if laddrs.is_empty() {
            return None;
        }
        let n = cx.n_workers.max(1) as u32;
        let per_worker = (65536 - 1024) / n;
        for _ in 0..64 {
            let k = cx.lport.get();
            cx.lport.set(k.wrapping_add(1));
            let lip = laddrs[(k % laddrs.len() as u32) as usize];
            let slot = (k / laddrs.len() as u32) % per_worker;
            let lport = (1024 + slot * n + cx.worker as u32) as u16;
            let key = FlowKey {
                proto,
                src: rip,
                sport: rport,
                dst: lip,
                dport: lport,
            };
            if !self.conns.contains(&key) {
                return Some((lip, lport));
            }
        }
        None
    }

    /// Schedule a new flow to a real server and track it. `syn` is the
    /// client handshake the SYN proxy completed (the packet is its ACK).
    fn new_conn(
        &self,
        cx: &Ctx,
        svc: &Service,
        key: &FlowKey,
        ev: TcpEvent,
        syn: Option<&CookieInfo>,
    ) -> Result<Conn<'_>, DropReason> {
        // As the kernel's tcp_conn_schedule: only a SYN (without RST) opens
        // a connection; SYN+ACK is allowed (active FTP).
        if key.proto == Proto::Tcp && syn.is_none() && (ev.rst || !ev.syn) {
            return Err(DropReason::NoConnNotSyn);
        }
        let (i, template) = match svc.conf.persistent {
            Some(timeout) => {
                let (i, t) = self.persist(cx, svc, key, timeout)?;
                (i, Some(t))
            }
            None => {
                let i = svc
                    .sched
                    .pick(&svc.dests, key, cx.now_ms)
                    .ok_or(DropReason::NoDest)?;
                (i, None)
            }
        };
        let d = &svc.dests[i];
        // The configuration refuses SYN-proxy services with DR/TUN servers.
        if syn.is_some() && !matches!(d.fwd, Forward::Nat | Forward::FullNat) {
            return Err(DropReason::FwdUnsupported);
        }
        // A real server of port 0 takes the port asked for; so does every
        // real server of a persistent port-zero or fwmark service (whose
        // port is 0): ip_vs_sched_persist's `dport = dst_port; if (dport ==
        // svc->port && dest->port) dport = dest->port`, and ip_vs_schedule's
        // `dest->port ? dest->port : pptr[1]` otherwise.
        let dport = if d.port == 0 || (svc.conf.port == 0 && svc.conf.persistent.is_some()) {
            key.dport
        } else {
            d.port
        };
        let mut c = NewConn::new(
            key.proto,
            (key.src, key.sport),
            (key.dst, key.dport),
            (d.ip, dport),
            d.fwd,
            &d.state,
            &svc.state,
        );
        if let Some(t) = template {
            c = c.with_template(t);
        }
        if let Some(i) = syn {
            c = c.with_synproxy(i.client_isn, i.cookie, i.window);
        }
        if d.fwd == Forward::FullNat {
            let (lip, lport) = self
                .local_addr(cx, svc, key.proto, d.ip, dport)
                .ok_or(DropReason::LaddrExhausted)?;
            c = c.with_fnat(lip, lport, svc.conf.client_addr);
        }
        let c = self
            .conns
            .insert(c, cx.now_ms, cx.worker as usize)
            .map_err(|e| match e {
                InsertError::Full => DropReason::ConnTableFull,
                InsertError::NotIpv4 => DropReason::ProtoUnsupported,
            })?;
        cx.stats.conns_created.inc();
        Ok(c)
    }

    /// The kernel's `ip_vs_sched_persist`: clients of one network (source
    /// masked by the service netmask) keep the real server recorded in their
    /// template while it lives; a template whose server was deleted is
    /// replaced by a fresh pick. Quiesced (weight 0) servers keep their
    /// persistent clients, as with the kernel's default
    /// `expire_quiescent_template = 0`.
    fn persist(
        &self,
        cx: &Ctx,
        svc: &Service,
        key: &FlowKey,
        timeout: u32,
    ) -> Result<(usize, Arc<Template>), DropReason> {
        let (IpAddr::V4(cip), IpAddr::V4(mask)) = (key.src, IpAddr::V4(svc.conf.netmask)) else {
            return Err(DropReason::ProtoUnsupported);
        };
        let cnet = IpAddr::V4(Ipv4Addr::from(u32::from(cip) & u32::from(mask)));
        // <proto, cnet, 0, vip, vport>; vport 0 for port-zero services; a
        // fwmark service's is <IPPROTO_IP, cnet, 0, fwmark, 0>, one for all
        // the client's ports and protocols (ip_vs_sched_persist).
        let tkey = if key.dport != svc.conf.port && svc.conf.is_fwmark() {
            TemplateKey::fwmark(cnet, svc.conf.fwmark)
        } else {
            TemplateKey {
                proto: Some(key.proto),
                cnet,
                vaddr: key.dst,
                vport: if key.dport == svc.conf.port {
                    key.dport
                } else {
                    0
                },
            }
        };
        if let Some(t) = self.conns.template(&tkey) {
            if let Some(i) = svc
                .dests
                .iter()
                .position(|d| d.ip == t.dip && d.port == t.dport)
            {
                t.touch(cx.now_ms);
                return Ok((i, t));
            }
        }
        let i = svc
            .sched
            .pick(&svc.dests, key, cx.now_ms)
            .ok_or(DropReason::NoDest)?;
        let d = &svc.dests[i];
        let t = Template::new(tkey, d.ip, d.port, d.state.clone(), timeout, cx.now_ms);
        let t = self
            .conns
            .insert_template(t)
            .map_err(|_| DropReason::ConnTableFull)?;
        Ok((i, t))
    }

    /// A packet without a connection for a SYN-proxy service: a SYN is
    /// answered with a cookie (nothing is stored); an ACK carrying a valid
    /// cookie opens the connection and becomes the SYN to the real server.
    fn synproxy_new<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        svc: &Service,
        key: &FlowKey,
        ev: TcpEvent,
    ) -> Verdict {
        let port = self.router.ports[in_port as usize];
        if ev.syn && !ev.ack && !ev.rst && !ev.fin {
            // Answer with the MSS the client's side of the director takes.
            let mss = port.mtu.saturating_sub(40).max(536);
            return match sp::answer_syn(frame, &self.syn_key, mss, cx.now_ms) {
                Ok(()) => {
                    // The SYN may have come to the broadcast MAC.
                    EthernetFrame::new_unchecked(frame.data_mut()).set_src(port.mac);
                    cx.stats.synproxy_syn_answered.inc();
                    Verdict::Tx(in_port)
                }
                Err(sp::Reject::NoRoom) => Verdict::Drop(DropReason::NoBuffer),
                Err(_) => Verdict::Drop(DropReason::SynproxyBadSyn),
            };
        }
        if !ev.ack || ev.syn || ev.rst || ev.fin {
            return Verdict::Drop(DropReason::NoConnNotSyn);
        }
        let info = match sp::check_ack(frame, &self.syn_key, cx.now_ms) {
            Ok(info) => info,
            Err(_) => return Verdict::Drop(DropReason::SynproxyBadCookie),
        };
        let conn = match self.new_conn(cx, svc, key, ev, Some(&info)) {
            Ok(c) => c,
            Err(r) => {
                // The client believes it is connected (with a closed
                // window) and would wait for ever: tell it.
                cx.stats.synproxy_open_failed.inc();
                let (IpAddr::V4(cip), IpAddr::V4(vip)) = (key.src, key.dst) else {
                    return Verdict::Drop(r);
                };
                let client = SocketAddrV4::new(cip, key.sport);
                let vip = SocketAddrV4::new(vip, key.dport);
                if sp::write_client_rst(frame, client, vip, &info).is_err() {
                    return Verdict::Drop(DropReason::NoBuffer);
                }
                let mut e = EthernetFrame::new_unchecked(frame.data_mut());
                let src = e.src();
                e.set_dst(src);
                e.set_src(port.mac);
                return Verdict::Tx(in_port);
            }
        };
        // Another worker may have opened it from the same ACK first: its
        // stored handshake is the one the server is told about.
        let info = match conn.synproxy {
            Some(SynProxy::Pending {
                client_isn,
                cookie,
                window,
            }) => CookieInfo::from_stored(client_isn, cookie, window),
            _ => info,
        };
        cx.stats.synproxy_ack_accepted.inc();
        self.synproxy_syn(cx, in_port, frame, &conn, &info)
    }

    /// Turn a client's packet of a pending SYN-proxied connection into the
    /// SYN for the real server and forward it.
    fn synproxy_syn<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        conn: &Conn,
        info: &CookieInfo,
    ) -> Verdict {
        if sp::syn_to_server(frame, info).is_err() {
            return Verdict::Drop(DropReason::NoBuffer);
        }
        let total = ip_total(frame.data());
        let next = match self.forward(cx, in_port, frame, conn, Dir::In, total) {
            Ok(next) => next,
            Err(v) => return v,
        };
        conn.commit();
        let syn = TcpEvent {
            syn: true,
            ..TcpEvent::default()
        };
        self.sent(cx, frame, conn, (Dir::In, syn), total, next)
    }

    /// The real server's answer to the SYN proxy's SYN: a SYN-ACK becomes
    /// the ACK completing its handshake (and the worker sends the client a
    /// window update); a reset becomes a reset for the client.
    fn synproxy_answer<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        conn: &Conn,
        info: &CookieInfo,
    ) -> Verdict {
        let (IpAddr::V4(cip), IpAddr::V4(vip)) = (conn.cip, conn.vip) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let client = SocketAddrV4::new(cip, conn.cport);
        let vip = SocketAddrV4::new(vip, conn.vport);
        match sp::server_synack(frame, info) {
            Ok(est) => {
                if !conn.synproxy_establish(est.adj.to_bits()) {
                    // Another worker took a duplicate SYN-ACK first.
                    return Verdict::Drop(DropReason::SynproxyBadSynAck);
                }
                cx.stats.synproxy_established.inc();
                let synack = TcpEvent {
                    syn: true,
                    ack: true,
                    ..TcpEvent::default()
                };
                conn.on_packet(Dir::Out, synack, cx.now_ms, cx.timeouts);
                if sp::write_server_ack(frame, client, vip, info, &est).is_err() {
                    return Verdict::Drop(DropReason::NoBuffer);
                }
                // The snapshot still sees the connection opening, so
                // FULLNAT puts TOA on this ACK as on any handshake's last.
                let total = ip_total(frame.data());
                let next = match self.forward(cx, in_port, frame, conn, Dir::In, total) {
                    Ok(next) => next,
                    Err(v) => return v,
                };
                // Only once the server's ACK is on its way: the client's
                // window update (the worker originates it).
                cx.update.set(Some(ClientUpdate {
                    client,
                    vip,
                    info: *info,
                    est,
                }));
                let ack = TcpEvent {
                    ack: true,
                    ..TcpEvent::default()
                };
                self.sent(cx, frame, conn, (Dir::In, ack), total, next)
            }
            Err(sp::Reject::Refused) => {
                cx.stats.synproxy_refused.inc();
                self.conns.end(conn);
                if sp::write_client_rst(frame, client, vip, info).is_err() {
                    return Verdict::Drop(DropReason::NoBuffer);
                }
                self.to_next_hop(cx, frame.data_mut(), cip)
            }
            Err(_) => Verdict::Drop(DropReason::SynproxyBadSynAck),
        }
    }

    /// Write the SYN proxy's window update `u` into `buf` (an empty frame
    /// from the pool), addressed to the client's next hop.
    pub fn client_update<F: Frame>(&self, cx: &Ctx, u: &ClientUpdate, buf: &mut F) -> Verdict {
        if sp::write_client_update(buf, u.client, u.vip, &u.info, &u.est).is_err() {
            return Verdict::Drop(DropReason::NoBuffer);
        }
        self.to_next_hop(cx, buf.data_mut(), *u.client.ip())
    }

    /// Fill in the Ethernet header towards `dst`'s next hop.
    fn to_next_hop(&self, cx: &Ctx, data: &mut [u8], dst: Ipv4Addr) -> Verdict {
        let Some((port, nexthop)) = self.router.route(dst) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let src_mac = self.router.ports[port as usize].mac;
        let mut eth = EthernetFrame::new_unchecked(data);
        eth.set_src(src_mac);
        match cx.neigh.get(&nexthop) {
            Some(&mac) => {
                eth.set_dst(mac);
                Verdict::Tx(port)
            }
            None => Verdict::Hold { port, nexthop },
        }
    }

    /// Answer an ICMP echo request to a VIP or a director address, back out
    /// of the port it came in on.
    fn echo_reply(&self, cx: &Ctx, in_port: u16, data: &mut [u8]) -> Verdict {
        let port = self.router.ports[in_port as usize];
        let client_mac = EthernetFrame::new_unchecked(&*data).src();
        let Ok(mut ip) = Ipv4Packet::new_checked(&mut data[ETH..]) else {
            return Verdict::Drop(DropReason::Ipv4Malformed);
        };
        {
            let Ok(mut ic) = Icmpv4Packet::new_checked(ip.payload_mut()) else {
                return Verdict::Drop(DropReason::L4Malformed);
            };
            if ic.msg_type() != icmp::ECHO_REQUEST {
                return Verdict::Drop(DropReason::IcmpUnhandled);
            }
            ic.set_msg_type_inc(icmp::ECHO_REPLY);
        }
        let (s, d) = (ip.src_addr(), ip.dst_addr());
        ip.set_src_addr(d);
        ip.set_dst_addr(s);
        ip.set_ttl(DEFAULT_TTL);
        ip.fill_checksum();
        let mut eth = EthernetFrame::new_unchecked(&mut *data);
        eth.set_dst(client_mac);
        eth.set_src(port.mac);
        cx.stats.icmp_echo_replies.inc();
        Verdict::Tx(in_port)
    }

    /// Write an ARP request for `target` out of `port` into `buf` (an empty
    /// frame from the pool). Returns false if the frame has no room.
    pub fn arp_request<F: Frame>(&self, port: u16, target: Ipv4Addr, buf: &mut F) -> bool {
        let Some(p) = self.router.ports.get(port as usize) else {
            return false;
        };
        Self::broadcast_request(p, p.cidr.addr, MacAddr::ZERO, target, buf)
    }

    /// A broadcast ARP request from `port` into an empty frame `buf`.
    fn broadcast_request<F: Frame>(
        p: &crate::neigh::PortAddr,
        sender: Ipv4Addr,
        target_hw: MacAddr,
        target: Ipv4Addr,
        buf: &mut F,
    ) -> bool {
        if !buf.append(EthernetFrame::<&[u8]>::MIN_LEN) {
            return false;
        }
        let data = buf.data_mut();
        data.fill(0);
        crate::wire::write_arp(
            data,
            ArpOp::REQUEST,
            p.mac,
            MacAddr::BROADCAST,
            p.mac,
            sender,
            target_hw,
            target,
        )
        .is_ok()
    }

    /// Write a gratuitous ARP for `ip` on `port`: as keepalived's
    /// `send_gratuitous_arp` (keepalived/vrrp/vrrp_arp.c) on becoming
    /// MASTER, a broadcast request with sender and target address `ip` and
    /// target hardware address ff:ff:ff:ff:ff:ff.
    pub fn garp<F: Frame>(&self, port: u16, ip: Ipv4Addr, buf: &mut F) -> bool {
        let Some(p) = self.router.ports.get(port as usize) else {
            return false;
        };
        Self::broadcast_request(p, ip, MacAddr::BROADCAST, ip, buf)
    }
}
