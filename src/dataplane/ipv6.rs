//! IPv6 to the director itself: Neighbor Discovery for its addresses and
//! ICMPv6 echo; everything else goes through (service6.rs).
//!
//! On a port with a kernel twin the kernel keeps what is its own: frames
//! to a group, to the port's addresses and to other addresses on the twin
//! (Neighbor Discovery, VRRP, SSH); rvs learns neighbours from the ND
//! messages it hands over ([`Dataplane::kernels_v6`]) and takes the rest:
//! service traffic and its replies.
//!
//! A port's IPv6 addresses are its link-local one (fe80:: and its MAC,
//! [`crate::neigh::PortAddr::link_local`]) and the configured one
//! (`ports[].ipv6`). As the kernel's `ndisc_recv_ns`/`ndisc_send_na`
//! (net/ipv6/ndisc.c) do:
//! - an NS that passes RFC 4861 7.1.1's checks and names one of them is
//!   answered with a solicited NA (Override set, Router clear) to its
//!   source, at the MAC of its Source Link-Layer option or else the frame's
//!   source; an NS from the unspecified address (Duplicate Address
//!   Detection) gets an unsolicited NA to all-nodes (ff02::1);
//! - an echo request to one of them is answered from that address.
//!
//! Neighbours are learnt as `ndisc_recv_ns`/`ndisc_recv_na` learn them
//! ([`Dataplane::neigh6`]): the source of an NS for one of the port's
//! addresses, at its Source Link-Layer option (not from DAD probes); the
//! target of an NA at its Target Link-Layer option, when the target is
//! known already or the NA is a solicited answer to one of the port's
//! unicast addresses, and with the Override flag to replace a known MAC
//! (RFC 4861 7.2.5). Only on-link addresses (link-local, or on the port's
//! prefix) are learnt, and never a zero, group or own MAC. NAs are then
//! consumed.

use std::net::{IpAddr, Ipv6Addr};

use super::service6::Ipv6Head;
use super::{Ctx, Dataplane, Verdict, ETH};
use crate::stats::DropReason;
use crate::wire::icmpv6::{
    self, multicast_mac, solicited_node, write_neighbor_advert, Icmpv6, NdMessage,
};
use crate::wire::ipv6::{next_header, Ipv6Packet};
use crate::wire::{EthernetFrame, MacAddr};

/// A solicited-node multicast address, ff02::1:ffXX:XXXX (RFC 4291 2.7.1).
fn is_solicited_group(a: Ipv6Addr) -> bool {
    let s = a.segments();
    s[..5] == [0xff02, 0, 0, 0, 0] && s[5] == 1 && s[6] >> 8 == 0xff
}

/// ff02::1, all nodes on the link.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// An NA with its Target Link-Layer option: IPv6 header and 32 bytes.
const NA_FRAME: usize = ETH + 40 + 32;

impl Dataplane {
    /// Whether an IPv6 multicast frame to `dst` is for port `in_port`: the
    /// solicited-node group of one of its addresses or all-nodes.
    pub(super) fn v6_group_mac(&self, in_port: u16, dst: MacAddr) -> bool {
        let Some(p) = self.router.ports.get(in_port as usize) else {
            return false;
        };
        let _ = p;
        // Any solicited-node group: the port's addresses', and its VIPs'
        // and local addresses' (the NS's target is checked once parsed).
        dst == multicast_mac(ALL_NODES) || dst.0[..3] == [0x33, 0x33, 0xff]
    }

    /// A virtual (service) address this director owns now, or a FULLNAT
    /// local IPv6 address: the director answers Neighbor Solicitations and
    /// echo requests for it.
    fn virtual_v6(&self, cx: &Ctx, a: Ipv6Addr) -> bool {
        let a = IpAddr::V6(a);
        (cx.services.is_vip(a) && self.exc.owns(a)) || cx.services.is_lip(a)
    }

    /// On a port with a kernel twin: whether a frame to `dst` is the
    /// kernel's (a group, the port's addresses, another address on the twin
    /// that is not a VIP: one keepalived floats).
    fn kernels_v6(&self, cx: &Ctx, in_port: u16, dst: Ipv6Addr) -> bool {
        let port = &self.router.ports[in_port as usize];
        dst.is_multicast()
            || port.owns_v6(dst)
            || (!cx.services.is_vip(IpAddr::V6(dst))
                && self.exc.on_twin(IpAddr::V6(dst)) == Some(in_port))
    }

    /// Learn a neighbour from an ND message as `ndisc_recv_ns` and
    /// `ndisc_recv_na` do (see the module documentation).
    fn nd_learn(
        &self,
        cx: &Ctx,
        port: &crate::neigh::PortAddr,
        nd: &NdMessage,
        src: Ipv6Addr,
        dst: Ipv6Addr,
    ) {
        let ll = match *nd {
            NdMessage::Solicit { source_ll, .. } => source_ll,
            NdMessage::Advert { target_ll, .. } => target_ll,
        };
        if ll.is_some_and(|m| !self.sane_peer_mac(m)) {
            return;
        }
        match *nd {
            NdMessage::Solicit {
                target,
                source_ll: Some(m),
            } if (port.owns_v6(target) || self.virtual_v6(cx, target)) && port.on_link_v6(src) => {
                self.neigh6.learn(src, m);
            }
            NdMessage::Advert {
                target,
                solicited,
                override_,
                target_ll: Some(m),
                ..
            } => {
                let known = self.neigh6.lookup(target);
                let answer = solicited && port.owns_v6(dst);
                let may = match known {
                    Some(old) => old == m || override_,
                    None => answer,
                };
                if may && port.on_link_v6(target) && !port.owns_v6(target) {
                    self.neigh6.learn(target, m);
                }
            }
            _ => {}
        }
    }

    /// An IPv6 frame. On a port with a kernel twin (`twin`) what is the
    /// kernel's ([`Dataplane::kernels_v6`]) goes there, once rvs has learnt
    /// from its Neighbor Discovery.
    pub(super) fn ipv6<F: crate::io::Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        twin: bool,
    ) -> Verdict {
        let port = self.router.ports[in_port as usize];
        let data = frame.data_mut();
        let Ok(ip) = Ipv6Packet::new_checked(&data[ETH..]) else {
            return Verdict::Drop(DropReason::Ipv6Malformed);
        };
        let (src, dst, hops) = (ip.src(), ip.dst(), ip.hop_limit());
        if twin && self.kernels_v6(cx, in_port, dst) {
            if let Ok(ul) = ip.upper_layer() {
                let (at, end) = (ETH + ul.offset, ETH + ip.packet().len());
                let nd = (ul.proto.0 == next_header::ICMPV6 && ul.fragment.is_none())
                    .then(|| NdMessage::parse(&data[at..end], src, dst, hops).ok())
                    .flatten();
                if let Some(nd) = nd {
                    self.nd_learn(cx, &port, &nd, src, dst);
                }
            }
            return Verdict::ToKernel(in_port);
        }
        // A group frame's MAC is its IPv6 group's (RFC 2464 7): the MAC
        // filter let any solicited-node group in; only the one the packet
        // is addressed to counts.
        let eth_dst = EthernetFrame::new_unchecked(&data[..ETH]).dst();
        if eth_dst.0[0] & 1 == 1 && eth_dst != multicast_mac(dst) {
            return Verdict::Drop(DropReason::NotForUs);
        }
        let group = dst == ALL_NODES || is_solicited_group(dst);
        let Ok(ul) = ip.upper_layer() else {
            return Verdict::Drop(DropReason::Ipv6Malformed);
        };
        let end = ETH + ip.packet().len();
        // ICMPv6 to a virtual or local address is the director's (echo);
        // everything else to one goes through (service6.rs).
        let echo_to_virtual = ul.proto.0 == next_header::ICMPV6 && self.virtual_v6(cx, dst);
        let for_us = port.owns_v6(dst) || group || echo_to_virtual;
        // The record of a packet on its way through (read only when it is).
        let through = || Ipv6Head {
            src,
            dst,
            ul,
            end,
            vip: cx.services.is_vip(IpAddr::V6(dst)),
        };
        if !for_us {
            return self.service6(cx, in_port, frame, &through());
        }
        if src.is_multicast() || src.is_loopback() || port.owns_v6(src) {
            return Verdict::Drop(DropReason::BadSource);
        }
        if ul.fragment.is_some() {
            return Verdict::Drop(DropReason::Ipv6Fragment);
        }
        if ul.proto.0 != next_header::ICMPV6 {
            return Verdict::Drop(DropReason::LocalUnhandled);
        }
        let at = ETH + ul.offset;
        let Some(icmp) = Icmpv6::new(&data[at..end]) else {
            return Verdict::Drop(DropReason::L4Malformed);
        };
        match icmp.msg_type() {
            icmpv6::NEIGHBOR_SOLICIT | icmpv6::NEIGHBOR_ADVERT => {
                let nd = match NdMessage::parse(&data[at..end], src, dst, hops) {
                    Ok(nd) => nd,
                    Err(_) => return Verdict::Drop(DropReason::NdInvalid),
                };
                let ll = match nd {
                    NdMessage::Solicit { source_ll, .. } => source_ll,
                    NdMessage::Advert { target_ll, .. } => target_ll,
                };
                if ll.is_some_and(|m| !self.sane_peer_mac(m)) {
                    return Verdict::Drop(DropReason::NdBadLinkAddr);
                }
                self.nd_learn(cx, &port, &nd, src, dst);
                match nd {
                    NdMessage::Solicit { target, source_ll }
                        if port.owns_v6(target) || self.virtual_v6(cx, target) =>
                    {
                        let peer = EthernetFrame::new_unchecked(&*data).src();
                        self.neighbor_advert(cx, in_port, frame, src, target, source_ll, peer)
                    }
                    NdMessage::Solicit { .. } => Verdict::Drop(DropReason::NdNotForUs),
                    NdMessage::Advert { .. } => Verdict::Consumed,
                }
            }
            icmpv6::ECHO_REQUEST if !group => {
                if icmp.code() != 0 || !icmp.verify(src, dst) {
                    return Verdict::Drop(DropReason::L4Malformed);
                }
                // Only the upper layer goes back: extension headers of the
                // request (a routing header, options) are not reflected.
                let len = end - at;
                data.copy_within(at..end, ETH + 40);
                let peer = EthernetFrame::new_unchecked(&*data).src();
                let msg = &mut data[ETH + 40..ETH + 40 + len];
                msg[0] = icmpv6::ECHO_REPLY;
                icmpv6::fill_checksum(msg, dst, src);
                let mut ip = Ipv6Packet::new_unchecked(&mut data[ETH..]);
                ip.fill_header(0, len as u16, next_header::ICMPV6, 64);
                ip.set_src(dst);
                ip.set_dst(src);
                frame.truncate(ETH + 40 + len);
                let mut eth = EthernetFrame::new_unchecked(frame.data_mut());
                eth.set_dst(peer);
                eth.set_src(port.mac);
                cx.stats.icmpv6_echo_replies.inc();
                Verdict::Tx(in_port)
            }
            // An error about a connection through a VIP or local address.
            1..=4 if !group && !port.owns_v6(dst) => {
                self.icmp6_error(cx, in_port, frame, &through())
            }
            _ => Verdict::Drop(DropReason::IcmpUnhandled),
        }
    }

    /// A Neighbor Solicitation for `target` from `port` into an empty frame
    /// `buf`, to its solicited-node group, from the port's address on the
    /// target's prefix, else its link-local one (the kernel's
    /// `ndisc_solicit` picks the source address the same way).
    pub fn neighbor_solicit<F: crate::io::Frame>(
        &self,
        port: u16,
        target: Ipv6Addr,
        buf: &mut F,
    ) -> bool {
        let Some(p) = self.router.ports.get(port as usize) else {
            return false;
        };
        let src = match p.ipv6 {
            Some(c) if c.contains(target) => c.addr,
            _ => p.link_local(),
        };
        if !buf.append(NA_FRAME) {
            return false;
        }
        let data = buf.data_mut();
        let mut msg = [0u8; 32];
        icmpv6::write_neighbor_solicit(&mut msg, src, target, p.mac);
        data[ETH + 40..NA_FRAME].copy_from_slice(&msg);
        let group = solicited_node(target);
        let mut ip = Ipv6Packet::new_unchecked(&mut data[ETH..]);
        ip.fill_header(0, 32, next_header::ICMPV6, 255);
        ip.set_src(src);
        ip.set_dst(group);
        let mut eth = EthernetFrame::new_unchecked(&mut *data);
        eth.set_dst(multicast_mac(group));
        eth.set_src(p.mac);
        eth.set_ethertype(crate::wire::EtherType::IPV6);
        true
    }

    /// Rewrite the NS in `frame` into the NA for `target` (see the module
    /// documentation for where it goes).
    #[allow(clippy::too_many_arguments)]
    fn neighbor_advert<F: crate::io::Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        from: Ipv6Addr,
        target: Ipv6Addr,
        source_ll: Option<MacAddr>,
        peer: MacAddr,
    ) -> Verdict {
        let port = self.router.ports[in_port as usize];
        let dad = from.is_unspecified();
        let (to, mac) = if dad {
            (ALL_NODES, multicast_mac(ALL_NODES))
        } else {
            (from, source_ll.unwrap_or(peer))
        };
        let len = frame.data().len();
        if len < NA_FRAME && !frame.append(NA_FRAME - len) {
            return Verdict::Drop(DropReason::NoBuffer);
        }
        frame.truncate(NA_FRAME);
        let data = frame.data_mut();
        let mut msg = [0u8; 32];
        write_neighbor_advert(&mut msg, target, to, target, port.mac, !dad);
        data[ETH + 40..NA_FRAME].copy_from_slice(&msg);
        let mut ip = Ipv6Packet::new_unchecked(&mut data[ETH..]);
        ip.fill_header(0, 32, next_header::ICMPV6, 255);
        ip.set_src(target);
        ip.set_dst(to);
        let mut eth = EthernetFrame::new_unchecked(&mut *data);
        eth.set_dst(mac);
        eth.set_src(port.mac);
        cx.stats.nd_adverts_sent.inc();
        Verdict::Tx(in_port)
    }
}
