//! The director's own duties on a port: ARP for its addresses and VIPs
//! (and neighbour learning), ICMP echo, and the ARP requests and gratuitous
//! ARP the worker originates.

use std::net::{IpAddr, Ipv4Addr};

use super::lookup::Ipv4Head;
use super::{bad_source, Ctx, Dataplane, Verdict, ETH};
use crate::flow::{FlowKey, Proto};
use crate::io::Frame;
use crate::stats::DropReason;
use crate::wire::ipv4::DEFAULT_TTL;
use crate::wire::{icmp, ArpOp, ArpPacket, EthernetFrame, Icmpv4Packet, Ipv4Packet, MacAddr};
use crate::xmit;

impl Dataplane {
    /// A MAC the director may send to or learn: unicast, not zero, not one
    /// of its own ports'.
    pub(super) fn sane_peer_mac(&self, m: MacAddr) -> bool {
        m.is_unicast() && !m.is_zero() && !self.router.ports.iter().any(|p| p.mac == m)
    }

    /// Answer requests for our addresses and VIPs; learn neighbours.
    pub(super) fn arp(&self, cx: &Ctx, in_port: u16, data: &mut [u8]) -> Verdict {
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
        let unowned_vip = is_vip && !self.exc.owns(IpAddr::V4(tip));
        // Another address on this port's twin (vip_ownership "kernel"):
        // one keepalived floats between directors, such as the NAT real
        // servers' gateway. The director that holds it answers for it.
        let on_twin = !is_vip && self.exc.on_twin(IpAddr::V4(tip)) == Some(in_port);
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

    /// Step 2, ICMP: an error quoting a tracked connection goes that
    /// connection's way; an echo request to a director address or an owned
    /// VIP is answered.
    #[inline(never)]
    pub(super) fn icmp<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        h: &Ipv4Head,
    ) -> Verdict {
        let own = self.router.local_port(h.dst).is_some();
        let data = frame.data_mut();
        if let Some((p, s, sp, d, dp)) = xmit::icmp::quoted_flow(&data[ETH..ETH + h.total]) {
            let key = FlowKey::v4(Proto::from_number(p).unwrap_or(Proto::Tcp), s, sp, d, dp);
            return match self.conns.lookup(&key) {
                // NAT64: the error crosses to the client as ICMPv6.
                Some((conn, dir)) if conn.is_nat64() => {
                    self.nat64_error_out(cx, in_port, frame, &conn, dir)
                }
                Some((conn, _)) if conn.v6.is_some() || conn.dip6.is_some() => {
                    Verdict::Drop(DropReason::IcmpUnhandled)
                }
                Some((conn, dir)) => self.icmp_error(cx, in_port, frame, &conn, dir, h.total),
                // Errors about the kernel's own connections.
                None if h.twin && own => Verdict::ToKernel(in_port),
                None if h.vip || own => Verdict::Drop(DropReason::IcmpUnhandled),
                None if h.unowned_vip => Verdict::Drop(DropReason::VipNotOwned),
                None => Verdict::Drop(DropReason::NotRouted),
            };
        }
        if h.vip || own {
            return self.echo_reply(cx, in_port, data);
        }
        if h.unowned_vip {
            return Verdict::Drop(DropReason::VipNotOwned);
        }
        Verdict::Drop(DropReason::NotRouted)
    }

    /// Answer an ICMP echo request to a VIP or a director address, back out
    /// of the port it came in on.
    pub(super) fn echo_reply(&self, cx: &Ctx, in_port: u16, data: &mut [u8]) -> Verdict {
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
    pub(super) fn broadcast_request<F: Frame>(
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
