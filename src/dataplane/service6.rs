//! IPv6 through the director: the steps of an IPv4 packet (see the module
//! documentation of `dataplane`) for an IPv6 one that is not for the
//! director's own addresses. The upper-layer header is found past the
//! extension headers (`Ipv6Packet::upper_layer`); its TCP/UDP ports and
//! flags make the key; the connection table holds IPv6 connections beside
//! IPv4 ones; a packet to a VIP without a connection is scheduled by the
//! service's scheduler (the same code as for IPv4: schedulers hash IPv6
//! addresses as the kernel folds them); the connection's mode rewrites it
//! (`xmit::v6`) and the next hop comes from Neighbor Discovery, frames
//! waiting in the worker's hold queue while it resolves.

use std::net::{IpAddr, Ipv6Addr};

use super::{Ctx, Dataplane, Verdict, ETH};
use crate::conn::{Dir, SynProxy, TcpEvent};
use crate::flow::{FlowKey, Forward, Proto};
use crate::io::Frame;
use crate::stats::DropReason;
use crate::synproxy::{self as sp, SeqAdj};
use crate::wire::ipv6::{next_header, UpperLayer};
use crate::wire::{EthernetFrame, TcpSegment, UdpDatagram};
use crate::xmit::{self, XmitError};

/// What the IPv6 header said of a packet on its way through.
pub(super) struct Ipv6Head {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The upper layer, past the extension headers.
    pub ul: UpperLayer,
    /// The end of the IPv6 packet in the frame.
    pub end: usize,
    /// To a virtual address.
    pub vip: bool,
}

impl Dataplane {
    /// An IPv6 packet that is not for the director itself.
    pub(super) fn service6<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        h: &Ipv6Head,
    ) -> Verdict {
        if h.src.is_unspecified()
            || h.src.is_multicast()
            || h.src.is_loopback()
            || self.router.owns_v6(h.src)
        {
            return Verdict::Drop(DropReason::BadSource);
        }
        if h.dst.is_multicast() {
            return Verdict::Drop(DropReason::Ipv6);
        }
        if h.ul.fragment.is_some() {
            return Verdict::Drop(DropReason::Ipv6Fragment);
        }
        // A Routing header with segments left: the VIP is a waypoint, not
        // the destination (the kernel would route it on, never deliver it
        // to IPVS), and the upper-layer checksum covers another address.
        if h.ul.routed {
            return Verdict::Drop(DropReason::Ipv6Malformed);
        }
        let proto = match h.ul.proto.0 {
            next_header::TCP => Proto::Tcp,
            next_header::UDP => Proto::Udp,
            next_header::ICMPV6 => return self.icmp6_error(cx, in_port, frame, h),
            _ if h.vip => return Verdict::Drop(DropReason::ProtoUnsupported),
            _ => return Verdict::Drop(DropReason::Ipv6),
        };
        let at = ETH + h.ul.offset;
        let l4 = &frame.data()[at..h.end];
        let (sport, dport, ev) = match proto {
            Proto::Tcp => match TcpSegment::new_checked(l4) {
                Ok(t) => {
                    let f = t.flags();
                    let ev = TcpEvent {
                        syn: f.syn(),
                        fin: f.fin(),
                        ack: f.ack(),
                        rst: f.rst(),
                    };
                    (t.src_port(), t.dst_port(), ev)
                }
                Err(_) => return Verdict::Drop(DropReason::L4Malformed),
            },
            Proto::Udp => match UdpDatagram::new_checked(l4) {
                // A UDP checksum is mandatory over IPv6 (RFC 8200 8.1):
                // the kernel drops a zero one, and an incremental update
                // of it would send garbage.
                Ok(u) if u.checksum() != 0 => (u.src_port(), u.dst_port(), TcpEvent::default()),
                _ => return Verdict::Drop(DropReason::L4Malformed),
            },
        };
        let key = FlowKey {
            proto,
            src: IpAddr::V6(h.src),
            sport,
            dst: IpAddr::V6(h.dst),
            dport,
        };
        let mut hit = self.conns.lookup(&key);
        if self.reused(cx, &hit, ev) {
            hit = None;
        }
        let created;
        let (conn, dir, one_packet) = match &hit {
            Some((c, d)) => (c, *d, false),
            None => {
                // A VIP this director does not own now (vip_ownership
                // "kernel": not on a kernel twin) takes no new flows.
                if h.vip && !self.exc.owns(IpAddr::V6(h.dst)) {
                    return Verdict::Drop(DropReason::VipNotOwned);
                }
                // The fwmark service of the packet's mark first, then
                // the VIP's (ip_vs_service_find); an address that is
                // neither is not the director's business.
                let Some(svc) = cx.services.find_new6(proto, h.dst, dport, h.vip) else {
                    return Verdict::Drop(if h.vip {
                        DropReason::NoService
                    } else {
                        DropReason::Ipv6
                    });
                };
                if svc.conf.synproxy && proto == Proto::Tcp {
                    return self.synproxy_new(cx, in_port, frame, svc, &key, ev);
                }
                let one_packet = svc.conf.ops && proto == Proto::Udp;
                match self.new_conn(cx, svc, &key, ev, None) {
                    Ok(c) => {
                        created = c;
                        (&created, Dir::In, one_packet)
                    }
                    Err(r) => return Verdict::Drop(r),
                }
            }
        };
        let total = h.end - ETH;
        if conn.is_nat64() {
            let v = if conn.fwd == Forward::Tun {
                self.tunnel6_in_v4(cx, in_port, frame, h, conn, ev)
            } else {
                self.nat64_in(cx, frame, h, conn, (dir, ev))
            };
            if one_packet {
                self.conns.end(conn);
            }
            return v;
        }
        // The SYN proxy's handshake with the server, and its sequence
        // translation around the mode (as for IPv4, forward.rs).
        let adj = match self.synproxy_before(cx, in_port, frame, conn, (dir, ev)) {
            Ok(adj) => adj,
            Err(v) => return v,
        };
        let span = (h.ul.offset, h.ul.proto.0, h.end);
        let next = match self.forward6(cx, in_port, frame, conn, dir, span) {
            Ok(n) => n,
            Err(v) => return v,
        };
        if let Err(v) = super::forward::synproxy_after(frame, &adj, dir) {
            return v;
        }
        let state = (super::forward::state_dir(conn, dir), ev);
        let v = self.sent(cx, in_port, frame, conn, state, total, IpAddr::V6(next));
        if one_packet {
            self.conns.end(conn);
        }
        v
    }

    /// Have the connection's mode rewrite an IPv6 packet whose upper layer
    /// is `(offset in the IPv6 packet, protocol, end in the frame)`: TUN's
    /// encapsulation, the other modes' rewrite and FULLNAT's client-address
    /// delivery. Returns the address whose next hop gets the frame, or the
    /// verdict that replaces forwarding (a drop, or a Packet Too Big sent
    /// back instead).
    pub(super) fn forward6<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        conn: &crate::conn::Conn,
        dir: Dir,
        (off, proto, end): (usize, u8, usize),
    ) -> Result<Ipv6Addr, Verdict> {
        let sent = if conn.fwd == Forward::Tun && dir == Dir::In {
            self.tunnel6(in_port, frame, end - ETH, conn)
        } else {
            let ip = &mut frame.data_mut()[ETH..end];
            let sent = xmit::v6::transmit(ip, off, proto, conn, dir);
            // FULLNAT's client-address delivery (TOA, PROXY v2) and its
            // sequence data, written back to the connection.
            match (sent, conn.fwd, proto) {
                (Ok(next), Forward::FullNat, next_header::TCP) => {
                    let l4 = ETH + off;
                    let done = if dir == Dir::In {
                        let mtu = || self.router.mtu_to6(next, in_port);
                        xmit::v6::fnat_client_to_server(frame, (l4, end), conn, mtu)
                    } else {
                        xmit::v6::fnat_server_to_client(frame, l4, end, conn)
                    };
                    conn.commit();
                    done.map(|_| next)
                }
                (sent, ..) => sent,
            }
        };
        match sent {
            Ok(n) => Ok(n),
            Err(XmitError::FragNeeded(mtu)) => {
                let IpAddr::V6(vip) = conn.virt() else {
                    return Err(Verdict::Drop(DropReason::NotRouted));
                };
                Err(self.too_big6(cx, in_port, frame, vip, mtu))
            }
            Err(e) => Err(Verdict::Drop(xmit_drop(e))),
        }
    }

    /// An ICMPv6 error about a tracked connection follows it, translated as
    /// the kernel's `ip_vs_nat_icmp_v6` does (NAT, FULLNAT), or as the
    /// connection's own packets (DR, TUN: towards the server only), as for
    /// IPv4 (forward.rs). Anything else ICMPv6 that is not for the director
    /// is counted.
    pub(super) fn icmp6_error<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        h: &Ipv6Head,
    ) -> Verdict {
        let at = ETH + h.ul.offset;
        let msg = &frame.data()[at..h.end];
        if !crate::wire::icmpv6::Icmpv6::new(msg).is_some_and(|m| m.verify(h.src, h.dst)) {
            return Verdict::Drop(DropReason::L4Malformed);
        }
        let Some((p, src, sport, dst, dport)) = xmit::v6::quoted_flow(msg) else {
            return Verdict::Drop(if h.vip {
                DropReason::IcmpUnhandled
            } else {
                DropReason::Ipv6
            });
        };
        let key = FlowKey {
            proto: if p == next_header::TCP {
                Proto::Tcp
            } else {
                Proto::Udp
            },
            src: IpAddr::V6(src),
            sport,
            dst: IpAddr::V6(dst),
            dport,
        };
        let unrelated = if h.vip {
            DropReason::IcmpUnhandled
        } else {
            DropReason::Ipv6
        };
        let Some((conn, dir)) = self.conns.lookup(&key) else {
            return Verdict::Drop(unrelated);
        };
        if conn.is_nat64() {
            return self.nat64_error_in(cx, frame, h, &conn, dir);
        }
        let Some(a) = conn.v6 else {
            return Verdict::Drop(DropReason::IcmpUnhandled);
        };
        let (c, v, r) = (
            (a.cip, conn.cport),
            (a.vip, conn.vport),
            (a.dip, conn.dport),
        );
        let local = conn.local().and_then(|(l, p)| match l {
            IpAddr::V6(l) => Some((l, p)),
            IpAddr::V4(_) => None,
        });
        let off = h.ul.offset;
        let total = h.end - ETH;
        let ip = &mut frame.data_mut()[ETH..h.end];
        // An error about a packet the SYN proxy sent the client quotes the
        // client's sequence space; the server needs its own (the ICMPv6
        // checksum is summed again below).
        if let (Dir::In, Some(SynProxy::Proxied(bits))) = (dir, conn.synproxy) {
            if sp::icmp6_quote_to_server(&mut ip[off..], &SeqAdj::from_bits(bits)).is_err() {
                return Verdict::Drop(DropReason::L4Malformed);
            }
        }
        use xmit::v6::rewrite_error;
        let done = match (conn.fwd, dir, local) {
            (Forward::Nat, Dir::Out, _) => {
                rewrite_error(ip, off, Some(a.vip), None, None, Some(v)).map(|_| a.cip)
            }
            (Forward::Nat, Dir::In, _) => {
                rewrite_error(ip, off, None, Some(a.dip), Some(r), None).map(|_| a.dip)
            }
            (Forward::FullNat, Dir::Out, Some(_)) => {
                rewrite_error(ip, off, Some(a.vip), Some(a.cip), Some(c), Some(v)).map(|_| a.cip)
            }
            (Forward::FullNat, Dir::In, Some(l)) => {
                rewrite_error(ip, off, Some(l.0), Some(a.dip), Some(r), Some(l)).map(|_| a.dip)
            }
            (Forward::Dr, Dir::In, _) if ip[7] > 0 => Ok(a.dip),
            (Forward::Tun, Dir::In, _) => match self.tunnel6(in_port, frame, total, &conn) {
                Ok(n) => Ok(n),
                Err(e) => return Verdict::Drop(xmit_drop(e)),
            },
            _ => return Verdict::Drop(DropReason::NotRouted),
        };
        match done {
            Ok(next) => {
                cx.stats.icmp_errors_forwarded.inc();
                self.to_next_hop6(cx, frame.data_mut(), in_port, next)
            }
            Err(_) => Verdict::Drop(DropReason::TtlExceeded),
        }
    }

    /// NAT64, client to server: the IPv6 packet becomes IPv4 from the
    /// connection's local address (xmit/nat64.rs) and takes the IPv4 way.
    fn nat64_in<F: Frame>(
        &self,
        cx: &Ctx,
        frame: &mut F,
        h: &Ipv6Head,
        conn: &crate::conn::Conn,
        (dir, ev): (Dir, TcpEvent),
    ) -> Verdict {
        if dir != Dir::In {
            return Verdict::Drop(DropReason::NotRouted);
        }
        let ident = cx.ident.get();
        cx.ident.set(ident.wrapping_add(1));
        let mtu = || self.router.mtu_to(conn.dip);
        match xmit::nat64::to_v4(frame, h.ul.offset, h.ul.proto.0, h.end, conn, (ident, mtu)) {
            Ok(rip) => {
                // The client-address delivery's sequence data (TOA, PROXY
                // v2), written back to the connection.
                conn.commit();
                let total = frame.data().len() - ETH;
                self.account(cx, conn, (Dir::In, ev), false, total);
                self.to_next_hop(cx, frame.data_mut(), rip)
            }
            Err(e) => Verdict::Drop(xmit_drop(e)),
        }
    }

    /// NAT64, server to client: the IPv4 reply becomes IPv6 from the VIP.
    pub(super) fn nat64_out<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        conn: &crate::conn::Conn,
        (dir, ev): (Dir, TcpEvent),
    ) -> Verdict {
        if dir != Dir::Out {
            return Verdict::Drop(DropReason::NotRouted);
        }
        let cip = conn.v6.map_or(Ipv6Addr::UNSPECIFIED, |a| a.cip);
        // Routed once: the egress port's MTU bounds the translation.
        let Some(hop) = self.router.route6(cip, in_port) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let mtu = self.router.ports[hop.0 as usize].mtu;
        match xmit::nat64::to_v6(frame, conn, mtu) {
            Ok(_) => {
                let total = frame.data().len() - ETH;
                self.account(cx, conn, (Dir::Out, ev), true, total);
                self.via6(cx, frame.data_mut(), hop)
            }
            // The server learns the IPv4 MTU that fits once translated.
            Err(XmitError::FragNeeded(m)) => self.frag_needed(cx, in_port, frame, m),
            Err(e) => Verdict::Drop(xmit_drop(e)),
        }
    }

    /// TUN to an IPv6 real server of an IPv4 service: the client's IPv4
    /// packet in an IPv6 header from the egress port's IPv6 address
    /// (`ip_vs_tunnel_xmit_v6` with an IPv4 packet); replies go to the
    /// client directly.
    pub(super) fn tunnel4_in_v6<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        conn: &crate::conn::Conn,
        (dir, ev): (Dir, TcpEvent),
        (total, rip): (usize, Ipv6Addr),
    ) -> Verdict {
        if dir != Dir::In {
            return Verdict::Drop(DropReason::NotRouted);
        }
        let Some(hop) = self.router.route6(rip, in_port) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let p = self.router.ports[hop.0 as usize];
        let Some(src) = p.ipv6.map(|c| c.addr) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        match xmit::v6::encapsulate_v4_in_v6(frame, total, (src, rip), p.mtu) {
            Ok(()) => {
                self.account(cx, conn, (Dir::InOnly, ev), false, total);
                self.via6(cx, frame.data_mut(), hop)
            }
            // The client learns the tunnel's MTU from the port it used.
            Err(XmitError::FragNeeded(m)) => self.frag_needed(cx, in_port, frame, m),
            Err(e) => Verdict::Drop(xmit_drop(e)),
        }
    }

    /// IPv6 is never fragmented on the way: the client learns a tunnel's
    /// MTU from a Packet Too Big from the VIP it sent to, back out of the
    /// port the packet came in on.
    fn too_big6<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        vip: Ipv6Addr,
        mtu: u16,
    ) -> Verdict {
        let me = self.router.ports[in_port as usize].mac;
        if xmit::v6::packet_too_big(frame, vip, me, u32::from(mtu)) {
            cx.stats.icmp_errors_sent.inc();
            Verdict::Tx(in_port)
        } else {
            Verdict::Drop(DropReason::NoBuffer)
        }
    }

    /// TUN to an IPv4 real server of an IPv6 service: the client's packet
    /// in an IPv4 header from the egress port's address (`ip_vs_tunnel_xmit`
    /// with an IPv6 packet); replies go to the client directly.
    fn tunnel6_in_v4<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        h: &Ipv6Head,
        conn: &crate::conn::Conn,
        ev: TcpEvent,
    ) -> Verdict {
        let rip = conn.dip;
        let Some((port, _)) = self.router.route(rip) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let p = self.router.ports[port as usize];
        let ident = cx.ident.get();
        cx.ident.set(ident.wrapping_add(1));
        let total = h.end - ETH;
        match xmit::v6::encapsulate_in_v4(frame, total, (p.cidr.addr, rip), p.mtu, ident) {
            Ok(()) => {
                self.account(cx, conn, (Dir::InOnly, ev), false, total);
                self.to_next_hop(cx, frame.data_mut(), rip)
            }
            Err(XmitError::FragNeeded(mtu)) => self.too_big6(cx, in_port, frame, h.dst, mtu),
            Err(e) => Verdict::Drop(xmit_drop(e)),
        }
    }

    /// NAT64: a client's ICMPv6 error about the VIP's reply becomes an
    /// ICMPv4 error to the real server (xmit/nat64_icmp.rs).
    fn nat64_error_in<F: Frame>(
        &self,
        cx: &Ctx,
        frame: &mut F,
        h: &Ipv6Head,
        conn: &crate::conn::Conn,
        dir: Dir,
    ) -> Verdict {
        if dir != Dir::In {
            return Verdict::Drop(DropReason::NotRouted);
        }
        let ident = cx.ident.get();
        cx.ident.set(ident.wrapping_add(1));
        match xmit::nat64_icmp::error_to_v4(frame, h.ul.offset, h.end, conn, ident) {
            Ok(rip) => {
                cx.stats.icmp_errors_forwarded.inc();
                self.to_next_hop(cx, frame.data_mut(), rip)
            }
            Err(XmitError::Unsupported) => Verdict::Drop(DropReason::IcmpUnhandled),
            Err(e) => Verdict::Drop(xmit_drop(e)),
        }
    }

    /// NAT64: a server-side ICMPv4 error about the connection becomes an
    /// ICMPv6 error from the VIP to the client (xmit/nat64_icmp.rs).
    pub(super) fn nat64_error_out<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        conn: &crate::conn::Conn,
        dir: Dir,
    ) -> Verdict {
        if dir != Dir::Out {
            return Verdict::Drop(DropReason::NotRouted);
        }
        let cip = conn.v6.map_or(Ipv6Addr::UNSPECIFIED, |a| a.cip);
        let Some(hop) = self.router.route6(cip, in_port) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let mtu = self.router.ports[hop.0 as usize].mtu;
        match xmit::nat64_icmp::error_to_v6(frame, conn, mtu) {
            Ok(_) => {
                cx.stats.icmp_errors_forwarded.inc();
                self.via6(cx, frame.data_mut(), hop)
            }
            Err(XmitError::Unsupported) => Verdict::Drop(DropReason::IcmpUnhandled),
            Err(e) => Verdict::Drop(xmit_drop(e)),
        }
    }

    /// TUN: wrap the packet towards the real server, from the director's
    /// IPv6 address on the port that reaches it.
    fn tunnel6<F: Frame>(
        &self,
        in_port: u16,
        frame: &mut F,
        total: usize,
        conn: &crate::conn::Conn,
    ) -> Result<Ipv6Addr, XmitError> {
        let rip = conn.v6.ok_or(XmitError::NoRoute)?.dip;
        let (port, _) = self.router.route6(rip, in_port).ok_or(XmitError::NoRoute)?;
        let p = self.router.ports[port as usize];
        // A tunnel's source must be routable: the port's configured
        // address, not its link-local one.
        let src = p.ipv6.ok_or(XmitError::NoRoute)?.addr;
        xmit::v6::encapsulate(frame, total, src, rip, p.mtu)?;
        Ok(rip)
    }

    /// Fill in the Ethernet header towards `dst`'s IPv6 next hop.
    pub(super) fn to_next_hop6(
        &self,
        cx: &Ctx,
        data: &mut [u8],
        in_port: u16,
        dst: Ipv6Addr,
    ) -> Verdict {
        match self.router.route6(dst, in_port) {
            Some(hop) => self.via6(cx, data, hop),
            None => Verdict::Drop(DropReason::NoRoute),
        }
    }

    /// Fill in the Ethernet header towards an IPv6 next hop already routed
    /// (`port`, `nexthop`).
    pub(super) fn via6(
        &self,
        cx: &Ctx,
        data: &mut [u8],
        (port, nexthop): (u16, Ipv6Addr),
    ) -> Verdict {
        let src_mac = self.router.ports[port as usize].mac;
        let mut eth = EthernetFrame::new_unchecked(data);
        eth.set_src(src_mac);
        match cx.neigh6.get(&nexthop).copied() {
            Some(mac) => {
                eth.set_dst(mac);
                Verdict::Tx(port)
            }
            None => Verdict::Hold {
                port,
                nexthop: IpAddr::V6(nexthop),
            },
        }
    }
}

/// The drop reason of a mode's refusal (what is not answered instead).
fn xmit_drop(e: XmitError) -> DropReason {
    match e {
        XmitError::TtlExceeded => DropReason::TtlExceeded,
        XmitError::NoRoute => DropReason::NoRoute,
        XmitError::Unsupported => DropReason::FwdUnsupported,
        XmitError::TooBig | XmitError::FragNeeded(_) => DropReason::TooBig,
        XmitError::NoRoom => DropReason::NoBuffer,
        XmitError::Malformed(_) => DropReason::L4Malformed,
    }
}
