//! NAT64 through FULLNAT (as DPVS serves an IPv6 VIP from IPv4 real
//! servers): the client's IPv6 packet becomes an IPv4 one from the
//! connection's IPv4 local address to the real server, and the server's
//! replies become IPv6 again from the VIP to the client. The header
//! translation is RFC 7915's (stateful, sections 4.1 and 5.1) for TCP and
//! UDP:
//!
//! - IPv6 to IPv4: version 4, IHL 5, Type of Service = Traffic Class, Total
//!   Length = 20 + the upper layer, Identification from the worker's
//!   counter, DF set when the IPv4 packet exceeds 1260 bytes (clear below,
//!   so IPv4 routers may still fragment small ones), TTL = hop limit - 1,
//!   Protocol = the upper layer's (extension headers are not carried).
//! - IPv4 to IPv6: Traffic Class = Type of Service, flow label 0, Payload
//!   Length = Total Length - IHL, Next Header = Protocol, hop limit = TTL -
//!   1 (options are not carried).
//!
//! The TCP/UDP checksum follows the pseudo-header from one family to the
//! other incrementally (RFC 1624: the old addresses out, the new ones in,
//! then the ports); an IPv4 UDP datagram without a checksum gets one
//! computed, since IPv6 requires it. ICMP errors: nat64_icmp.rs. The
//! client's IPv6 address reaches the server as FULLNAT's does (TOA's IPv6
//! form, PROXY v2 as `AF_INET6`: [`deliver_nat64`], FULLNAT's steps).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::XmitError;
use crate::conn::Conn;
use crate::io::Frame;
use crate::wire::checksum::{update16, update32};
use crate::wire::ipv6::{l4_checksum_v6, l4_update_addr_v6, next_header, Ipv6Packet};
use crate::wire::{EtherType, EthernetFrame, Ipv4Packet, WireError};

const ETH: usize = EthernetFrame::<&[u8]>::HEADER_LEN;
const IP4: usize = 20;
const IP6: usize = 40;
/// RFC 7915 5.1: DF is set on translated packets above this size.
const DF_ABOVE: usize = 1260;

/// Where the checksum of a TCP or UDP header is.
pub(super) fn csum_at(proto: u8) -> Result<usize, XmitError> {
    match proto {
        next_header::TCP => Ok(16),
        next_header::UDP => Ok(6),
        _ => Err(XmitError::Unsupported),
    }
}

/// Client to real server: the IPv6 packet of `frame` (its upper layer at
/// `l4_off` of the IPv6 header, `proto` TCP or UDP, `end` its end in the
/// frame) becomes IPv4 from the local address to the real server.
/// `mtu()`: the IPv4 egress port's (for TOA on a first data segment).
pub fn to_v4<F: Frame>(
    frame: &mut F,
    l4_off: usize,
    proto: u8,
    end: usize,
    c: &Conn,
    (ident, mtu): (u16, impl Fn() -> usize),
) -> Result<Ipv4Addr, XmitError> {
    let a = c.v6.ok_or(XmitError::NoRoute)?;
    let f = c.fnat.as_ref().ok_or(XmitError::Unsupported)?;
    let (lip, lport, rip, rport) = (f.lip, f.lport, c.dip, c.dport);
    let c_at = csum_at(proto)?;
    let data = frame.data();
    let l4 = ETH + l4_off;
    if l4_off < IP6 || end > data.len() || l4 + c_at + 2 > end {
        return Err(XmitError::Malformed(WireError::Ipv6Truncated));
    }
    let (tc, hops) = {
        let ip = Ipv6Packet::new_unchecked(&data[ETH..end]);
        (ip.traffic_class(), ip.hop_limit())
    };
    if hops <= 1 {
        return Err(XmitError::TtlExceeded);
    }
    let l4_len = end - l4;
    let total = IP4 + l4_len;
    if total > usize::from(u16::MAX) {
        return Err(XmitError::TooBig);
    }
    frame.truncate(end);
    let data = frame.data_mut();
    let seg = &mut data[l4..end];
    let (cport, vport) = (
        u16::from_be_bytes([seg[0], seg[1]]),
        u16::from_be_bytes([seg[2], seg[3]]),
    );
    let old = u16::from_be_bytes([seg[c_at], seg[c_at + 1]]);
    let mut sum = l4_update_addr_v6(old, a.cip, Ipv6Addr::UNSPECIFIED);
    sum = l4_update_addr_v6(sum, a.vip, Ipv6Addr::UNSPECIFIED);
    sum = update32(sum, 0, u32::from(lip));
    sum = update32(sum, 0, u32::from(rip));
    sum = update16(update16(sum, cport, lport), vport, rport);
    if proto == next_header::UDP && sum == 0 {
        sum = 0xffff;
    }
    seg[0..2].copy_from_slice(&lport.to_be_bytes());
    seg[2..4].copy_from_slice(&rport.to_be_bytes());
    seg[c_at..c_at + 2].copy_from_slice(&sum.to_be_bytes());
    // [eth][IPv6 + extension headers][l4] -> [eth][IPv4][l4], in place.
    let shift = l4_off - IP4;
    data.copy_within(0..ETH, shift);
    // The header is written over what was there: no stale bit (the
    // reserved flag) may stay.
    data[shift + ETH..shift + ETH + IP4].fill(0);
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut data[shift + ETH..shift + ETH + total]);
        ip.set_header_len(IP4);
        ip.set_dscp_ecn(tc);
        ip.set_total_len(total as u16);
        ip.set_ident(ident);
        ip.set_frag_offset(0);
        ip.set_more_frags(false);
        ip.set_dont_frag(total > DF_ABOVE);
        ip.set_ttl(hops - 1);
        ip.set_protocol(crate::wire::IpProtocol(proto));
        ip.set_src_addr(lip);
        ip.set_dst_addr(rip);
        ip.fill_checksum();
    }
    EthernetFrame::new_unchecked(&mut data[shift..shift + ETH]).set_ethertype(EtherType::IPV4);
    if !frame.adj(shift) {
        return Err(XmitError::NoRoom);
    }
    // The IPv6 client's address for the server (TOA, PROXY v2).
    if proto == next_header::TCP {
        deliver_nat64(frame, c, (IP4, total), mtu).map_err(|e| match e {
            super::fullnat::FnatError::NoRoom => XmitError::NoRoom,
            super::fullnat::FnatError::Malformed(w) => XmitError::Malformed(w),
            super::fullnat::FnatError::NotFullNat => XmitError::Unsupported,
        })?;
    }
    Ok(rip)
}

/// Real server to client: the IPv4 packet of `frame` (TCP or UDP, not a
/// fragment) becomes IPv6 from the VIP to the client. `mtu` is the IPv6
/// egress port's: the packet grows by 20 bytes (or more, less its IPv4
/// options), and one that no longer fits is refused with the IPv4 MTU the
/// server must use (`FragNeeded`, with DF) or dropped (`TooBig`), as RFC
/// 7915 5.1 sends "Fragmentation Needed" back.
pub fn to_v6<F: Frame>(frame: &mut F, c: &Conn, mtu: u16) -> Result<Ipv6Addr, XmitError> {
    let a = c.v6.ok_or(XmitError::NoRoute)?;
    let (ihl, total, tos, ttl, proto, rip, lip, df) = {
        let ip = Ipv4Packet::new_checked(&frame.data()[ETH..])?;
        (
            ip.header_len(),
            ip.total_len() as usize,
            ip.dscp_ecn(),
            ip.ttl(),
            ip.protocol().0,
            ip.src_addr(),
            ip.dst_addr(),
            ip.dont_frag(),
        )
    };
    if ttl <= 1 {
        return Err(XmitError::TtlExceeded);
    }
    let c_at = csum_at(proto)?;
    if total < ihl + c_at + 2 {
        return Err(XmitError::Malformed(WireError::Ipv4Truncated));
    }
    let l4_len = total - ihl;
    if IP6 + l4_len > usize::from(mtu) {
        let room = usize::from(mtu).saturating_sub(IP6 - IP4);
        return Err(if df && room >= 68 {
            XmitError::FragNeeded(room as u16)
        } else {
            XmitError::TooBig
        });
    }
    frame.truncate(ETH + total);
    // [eth][IPv4 + options][l4] -> [eth][IPv6][l4].
    if ihl < IP6 {
        if !frame.prepend(IP6 - ihl) {
            return Err(XmitError::NoRoom);
        }
        let data = frame.data_mut();
        data.copy_within(IP6 - ihl..IP6 - ihl + ETH, 0);
    } else {
        let data = frame.data_mut();
        data.copy_within(0..ETH, ihl - IP6);
        if !frame.adj(ihl - IP6) {
            return Err(XmitError::NoRoom);
        }
    }
    let data = frame.data_mut();
    let seg = &mut data[ETH + IP6..ETH + IP6 + l4_len];
    let old = u16::from_be_bytes([seg[c_at], seg[c_at + 1]]);
    let (sport, dport) = (
        u16::from_be_bytes([seg[0], seg[1]]),
        u16::from_be_bytes([seg[2], seg[3]]),
    );
    seg[0..2].copy_from_slice(&c.vport.to_be_bytes());
    seg[2..4].copy_from_slice(&c.cport.to_be_bytes());
    let sum = if proto == next_header::UDP && old == 0 {
        // No checksum over IPv4: IPv6 needs one, computed whole.
        seg[c_at..c_at + 2].fill(0);
        l4_checksum_v6(a.vip, a.cip, proto, seg)
    } else {
        let mut s = update32(old, u32::from(rip), 0);
        s = update32(s, u32::from(lip), 0);
        s = l4_update_addr_v6(s, Ipv6Addr::UNSPECIFIED, a.vip);
        s = l4_update_addr_v6(s, Ipv6Addr::UNSPECIFIED, a.cip);
        update16(update16(s, sport, c.vport), dport, c.cport)
    };
    let sum = if proto == next_header::UDP && sum == 0 {
        0xffff
    } else {
        sum
    };
    seg[c_at..c_at + 2].copy_from_slice(&sum.to_be_bytes());
    let mut ip = Ipv6Packet::new_unchecked(&mut data[ETH..ETH + IP6]);
    ip.fill_header(0, l4_len as u16, proto, ttl - 1);
    ip.set_traffic_class(tos);
    ip.set_src(a.vip);
    ip.set_dst(a.cip);
    EthernetFrame::new_unchecked(&mut data[..ETH]).set_ethertype(EtherType::IPV6);
    // PROXY v2: the server's acknowledgements moved back over the header
    // the client never sent, its SYN-ACK's MSS lowered by it.
    if proto == next_header::TCP {
        super::v6::fnat_server_to_client(frame, ETH + IP6, ETH + IP6 + l4_len, c)?;
    }
    Ok(a.cip)
}

/// NAT64's client-address delivery, client to server, on the packet
/// already translated to IPv4 (`ihl`, `total`): the IPv6 client in TOA's
/// IPv6 form (kind 254, length 20, as DPVS's toa module reads it on an
/// IPv4 connection from its NAT64) or a PROXY v2 header announcing the
/// client as `AF_INET6`, with the same steps as fullnat.rs `forward`'s.
pub(super) fn deliver_nat64<F: Frame>(
    frame: &mut F,
    c: &Conn,
    (ihl, total): (usize, usize),
    mtu: impl Fn() -> usize,
) -> Result<(), super::fullnat::FnatError> {
    use super::fullnat::{delivery, insert, Delivery};
    use super::v6::{pp2_header_v6, toa6_option, PP2_V6_LEN, TOA6_LEN};
    use crate::flow::ClientAddr;
    use crate::wire::TcpSegment;
    let (Some(f), Some(a)) = (c.fnat.as_ref(), c.v6) else {
        return Ok(());
    };
    if f.client_addr == ClientAddr::None {
        return Ok(());
    }
    let seg = {
        let t = TcpSegment::new_checked(&frame.data()[ETH + ihl..ETH + total])?;
        (t.flags(), t.seq(), t.header_len(), t.payload().len())
    };
    match delivery(c, f, seg, (TOA6_LEN, || mtu().saturating_sub(total))) {
        Delivery::Toa => insert(frame, ihl, total, 20, &toa6_option(a.cip, c.cport), true)?,
        Delivery::ProxyHeader => {
            let h = pp2_header_v6(a.cip, c.cport, a.vip, c.vport);
            insert(frame, ihl, total, seg.2, &h, false)?;
            f.delta.set(PP2_V6_LEN as u32);
        }
        Delivery::Seq(s) => {
            let data = frame.data_mut();
            TcpSegment::new_unchecked(&mut data[ETH + ihl..ETH + total]).set_seq_inc(s);
        }
        Delivery::Nothing => {}
    }
    Ok(())
}
