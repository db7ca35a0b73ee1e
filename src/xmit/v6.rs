//! The forwarding modes for IPv6 connections: the same rewrites as the
//! IPv4 modes, on the IPv6 header and the upper-layer header wherever the
//! extension headers put it. There is no header checksum; the TCP/UDP
//! checksum covers the pseudo-header's addresses and is updated
//! incrementally (RFC 1624, word by word over the 128-bit addresses).
//!
//! - DR: nothing changes; only the Ethernet destination (the data path's
//!   next hop). Hop limit untouched, as the kernel's `ip_vs_dr_xmit_v6`,
//!   but a hop limit 0 datagram is never sent.
//! - NAT: inbound, the destination VIP:vport becomes RIP:rport; replies get
//!   their source turned back. The hop limit drops by one, as for IPv4's
//!   TTL in rvs's NAT; 1 cannot go on.
//! - FULLNAT: both ends, as for IPv4 (local address and port towards the
//!   real server). Without client-address delivery for IPv6 yet.
//!
//! - TUN: IPv6 in IPv6 ([`encapsulate`]), as the kernel's
//!   `ip_vs_tunnel_xmit_v6` builds it: an outer header from the director's
//!   address on the egress port, Next Header 41, the inner hop limit and
//!   traffic class (ECN as `INET_ECN_encapsulate`: CE inside is ECT(0)
//!   outside), flow label 0. IPv6 routers never fragment: a packet that
//!   would exceed the egress MTU once wrapped gets a Packet Too Big with
//!   the MTU left inside the tunnel ([`packet_too_big`]).

use std::net::Ipv6Addr;

use super::XmitError;
use crate::conn::{Conn, Dir};
use crate::flow::Forward;
use crate::io::Frame;
use crate::wire::checksum::update16;
use crate::wire::icmpv6;
use crate::wire::ipv6::{l4_update_addr_v6, next_header, Ipv6Packet};
use crate::wire::{EthernetFrame, MacAddr, WireError};

const ETH: usize = EthernetFrame::<&[u8]>::HEADER_LEN;
/// The IPv6 header: what IPv6-in-IPv6 adds, and what an ICMPv6 error adds
/// with its own 8-byte header.
const IP6: usize = 40;
/// The minimum IPv6 MTU (RFC 8200 5): no link, and no tunnel, is smaller;
/// an ICMPv6 error is at most this long (RFC 4443 2.4 (c)).
pub const MIN_MTU: usize = 1280;

/// Which end of the packet to rewrite.
#[derive(Clone, Copy)]
enum End {
    Src,
    Dst,
}

/// Rewrite `ip` (the IPv6 packet, header first) for direction `dir` of the
/// IPv6 connection `c`. `l4` is where the TCP or UDP header starts in `ip`
/// and `proto` which it is. Returns the address whose next hop gets it.
pub fn transmit(
    ip: &mut [u8],
    l4: usize,
    proto: u8,
    c: &Conn,
    dir: Dir,
) -> Result<Ipv6Addr, XmitError> {
    let a = c.v6.ok_or(XmitError::NoRoute)?;
    let hops = *ip
        .get(7)
        .ok_or(XmitError::Malformed(WireError::Ipv6Truncated))?;
    match (c.fwd, dir) {
        (Forward::Dr, Dir::In | Dir::InOnly) => {
            if hops == 0 {
                return Err(XmitError::TtlExceeded);
            }
            Ok(a.dip)
        }
        (Forward::Nat | Forward::FullNat, Dir::In | Dir::Out) if hops <= 1 => {
            Err(XmitError::TtlExceeded)
        }
        (Forward::Nat, Dir::In) => {
            rewrite(ip, l4, proto, End::Dst, a.dip, c.dport)?;
            ip[7] -= 1;
            Ok(a.dip)
        }
        (Forward::Nat, Dir::Out) => {
            rewrite(ip, l4, proto, End::Src, a.vip, c.vport)?;
            ip[7] -= 1;
            Ok(a.cip)
        }
        (Forward::FullNat, Dir::In) => {
            let f = c.fnat.as_ref().ok_or(XmitError::Unsupported)?;
            rewrite(ip, l4, proto, End::Src, a.lip, f.lport)?;
            rewrite(ip, l4, proto, End::Dst, a.dip, c.dport)?;
            ip[7] -= 1;
            Ok(a.dip)
        }
        (Forward::FullNat, Dir::Out) => {
            rewrite(ip, l4, proto, End::Src, a.vip, c.vport)?;
            rewrite(ip, l4, proto, End::Dst, a.cip, c.cport)?;
            ip[7] -= 1;
            Ok(a.cip)
        }
        // TUN needs room in the buffer: `encapsulate`, from the data path.
        _ => Err(XmitError::Unsupported),
    }
}

/// One end's address and port, with the upper-layer checksum updated.
fn rewrite(
    ip: &mut [u8],
    l4: usize,
    proto: u8,
    end: End,
    addr: Ipv6Addr,
    port: u16,
) -> Result<(), WireError> {
    let (a_at, p_at) = match end {
        End::Src => (8, l4),
        End::Dst => (24, l4 + 2),
    };
    let c_at = match proto {
        next_header::TCP => l4 + 16,
        next_header::UDP => l4 + 6,
        _ => return Err(WireError::Ipv6Truncated),
    };
    if ip.len() < 40 || ip.len() < c_at + 2 || ip.len() < p_at + 2 {
        return Err(WireError::Ipv6Truncated);
    }
    let mut old = [0u8; 16];
    old.copy_from_slice(&ip[a_at..a_at + 16]);
    let old = Ipv6Addr::from(old);
    let old_port = u16::from_be_bytes([ip[p_at], ip[p_at + 1]]);
    let csum = u16::from_be_bytes([ip[c_at], ip[c_at + 1]]);
    let mut csum = update16(l4_update_addr_v6(csum, old, addr), old_port, port);
    // UDP over IPv6 must carry a checksum: a computed 0 is sent as 0xFFFF
    // (RFC 8200 8.1).
    if proto == next_header::UDP && csum == 0 {
        csum = 0xffff;
    }
    ip[a_at..a_at + 16].copy_from_slice(&addr.octets());
    ip[p_at..p_at + 2].copy_from_slice(&port.to_be_bytes());
    ip[c_at..c_at + 2].copy_from_slice(&csum.to_be_bytes());
    Ok(())
}

/// Wrap the IPv6 packet of `frame` (`inner_len` bytes after the Ethernet
/// header) in an outer IPv6 header from `src` to the real server `rip`.
/// `mtu` is the egress port's. On error the frame is untouched.
pub fn encapsulate<F: Frame>(
    frame: &mut F,
    inner_len: usize,
    src: Ipv6Addr,
    rip: Ipv6Addr,
    mtu: u16,
) -> Result<(), XmitError> {
    let (tc, hops) = {
        let ip = Ipv6Packet::new_checked(&frame.data()[ETH..])?;
        (ip.traffic_class(), ip.hop_limit())
    };
    // The inner hop limit goes outside; a datagram of 0 is never sent.
    if hops == 0 {
        return Err(XmitError::TtlExceeded);
    }
    let room = usize::from(mtu).saturating_sub(IP6);
    // `__ip_vs_get_out_rt_v6`: a tunnel MTU under IPv6's minimum is an
    // error, not a Packet Too Big.
    if room < MIN_MTU {
        return Err(XmitError::TooBig);
    }
    if inner_len > room {
        return Err(XmitError::FragNeeded(room as u16));
    }
    let data = outer_room(frame, inner_len, IP6)?;
    let mut outer = Ipv6Packet::new_unchecked(&mut data[ETH..ETH + IP6 + inner_len]);
    outer.fill_header(0, inner_len as u16, next_header::IPV6, hops);
    outer.set_traffic_class(outer_tc(tc));
    outer.set_src(src);
    outer.set_dst(rip);
    Ok(())
}

/// Wrap the IPv6 packet of `frame` (`inner_len` bytes) in an IPv4 header
/// from `src` to the IPv4 real server `rip` (protocol 41), as the
/// kernel's `ip_vs_tunnel_xmit` does for an IPv6 packet (a mixed-family
/// tunnel): DSCP/ECN from the traffic class, TTL = the hop limit, DF
/// clear. One that no longer fits `mtu` is refused with the IPv6 MTU the
/// client must use (`FragNeeded`: a Packet Too Big, at least 1280).
pub fn encapsulate_in_v4<F: Frame>(
    frame: &mut F,
    inner_len: usize,
    (src, rip): (std::net::Ipv4Addr, std::net::Ipv4Addr),
    mtu: u16,
    ident: u16,
) -> Result<(), XmitError> {
    const IP4: usize = 20;
    let (tc, hops) = {
        let ip = Ipv6Packet::new_checked(&frame.data()[ETH..])?;
        (ip.traffic_class(), ip.hop_limit())
    };
    if hops == 0 {
        return Err(XmitError::TtlExceeded);
    }
    let room = usize::from(mtu).saturating_sub(IP4);
    if room < MIN_MTU {
        return Err(XmitError::TooBig);
    }
    if inner_len > room {
        return Err(XmitError::FragNeeded(room as u16));
    }
    let data = outer_room(frame, inner_len, IP4)?;
    data[ETH..ETH + IP4].fill(0);
    let mut outer = crate::wire::Ipv4Packet::new_unchecked(&mut data[ETH..ETH + IP4 + inner_len]);
    outer.set_header_len(IP4);
    outer.set_dscp_ecn(outer_tc(tc));
    outer.set_total_len((IP4 + inner_len) as u16);
    outer.set_ident(ident);
    outer.set_ttl(hops);
    outer.set_protocol(crate::wire::IpProtocol(41));
    outer.set_src_addr(src);
    outer.set_dst_addr(rip);
    outer.fill_checksum();
    crate::wire::EthernetFrame::new_unchecked(&mut data[..ETH])
        .set_ethertype(crate::wire::EtherType::IPV4);
    Ok(())
}

/// Wrap the IPv4 packet of `frame` (`inner_len` bytes) in an IPv6 header
/// from `src` to the IPv6 real server `rip` (next header 4), as the
/// kernel's `ip_vs_tunnel_xmit_v6` does for an IPv4 packet: traffic class
/// from the TOS, hop limit = the TTL. One that no longer fits `mtu` is
/// refused with the IPv4 MTU the client must use (`FragNeeded`) if it has
/// DF, else dropped (`TooBig`: rvs does not fragment).
pub fn encapsulate_v4_in_v6<F: Frame>(
    frame: &mut F,
    inner_len: usize,
    (src, rip): (Ipv6Addr, Ipv6Addr),
    mtu: u16,
) -> Result<(), XmitError> {
    let (tos, ttl, df) = {
        let ip = crate::wire::Ipv4Packet::new_checked(&frame.data()[ETH..])?;
        (ip.dscp_ecn(), ip.ttl(), ip.dont_frag())
    };
    if ttl == 0 {
        return Err(XmitError::TtlExceeded);
    }
    let room = usize::from(mtu).saturating_sub(IP6);
    if inner_len > room {
        return Err(if df && room >= 68 {
            XmitError::FragNeeded(room as u16)
        } else {
            XmitError::TooBig
        });
    }
    let data = outer_room(frame, inner_len, IP6)?;
    let mut outer = Ipv6Packet::new_unchecked(&mut data[ETH..ETH + IP6 + inner_len]);
    outer.fill_header(0, inner_len as u16, 4, ttl);
    outer.set_traffic_class(outer_tc(tos));
    outer.set_src(src);
    outer.set_dst(rip);
    crate::wire::EthernetFrame::new_unchecked(&mut data[..ETH])
        .set_ethertype(crate::wire::EtherType::IPV6);
    Ok(())
}

/// Room for an `n`-byte outer header before the `inner_len`-byte packet of
/// `frame`, its Ethernet header moved ahead: the frame's bytes.
fn outer_room<F: Frame>(frame: &mut F, inner_len: usize, n: usize) -> Result<&mut [u8], XmitError> {
    frame.truncate(ETH + inner_len);
    if !frame.prepend(n) {
        return Err(XmitError::NoRoom);
    }
    let data = frame.data_mut();
    data.copy_within(n..n + ETH, 0);
    Ok(data)
}

/// The outer traffic class: DSCP and ECN copied, except that Congestion
/// Experienced is not propagated outward (ECT(0) instead), as
/// `INET_ECN_encapsulate` and rvs's IPv4 tunnels do.
fn outer_tc(inner: u8) -> u8 {
    if inner & 0b11 == 0b11 {
        (inner & !0b11) | 0b10
    } else {
        inner
    }
}

/// Turn the frame (an IPv6 packet from the client) into an ICMPv6 Packet
/// Too Big with `mtu`, from `src` back to the packet's source at the
/// frame's source MAC, from `port_mac`: as much of the packet as fits in
/// 1280 bytes is quoted (RFC 4443 2.4 (c), 3.2). False if the frame is not
/// an IPv6 packet or the buffer has no headroom.
pub fn packet_too_big<F: Frame>(frame: &mut F, src: Ipv6Addr, port_mac: MacAddr, mtu: u32) -> bool {
    let (peer, to, len) = {
        let d = frame.data();
        let Ok(eth) = EthernetFrame::new_checked(d) else {
            return false;
        };
        let Ok(ip) = Ipv6Packet::new_checked(&d[ETH..]) else {
            return false;
        };
        (eth.src(), ip.src(), ip.packet().len())
    };
    let added = IP6 + 8;
    let quoted = len.min(MIN_MTU - added);
    frame.truncate(ETH + quoted);
    if !frame.prepend(added) {
        return false;
    }
    let data = frame.data_mut();
    let mut eth = EthernetFrame::new_unchecked(&mut data[..ETH]);
    eth.set_dst(peer);
    eth.set_src(port_mac);
    eth.set_ethertype(crate::wire::EtherType::IPV6);
    let msg_len = 8 + quoted;
    let msg = &mut data[ETH + IP6..ETH + IP6 + msg_len];
    msg[0] = icmpv6::PACKET_TOO_BIG;
    msg[1] = 0;
    msg[2..4].fill(0);
    msg[4..8].copy_from_slice(&mtu.to_be_bytes());
    icmpv6::fill_checksum(msg, src, to);
    let mut ip = Ipv6Packet::new_unchecked(&mut data[ETH..ETH + IP6]);
    ip.fill_header(0, msg_len as u16, next_header::ICMPV6, 64);
    ip.set_src(src);
    ip.set_dst(to);
    true
}

/// The flow an ICMPv6 error at `msg` (the ICMPv6 message) is about, seen
/// from the error's direction: the quoted packet's endpoints reversed (it
/// travelled the other way). `None` unless the message is an error (types
/// 1 to 4) quoting a TCP or UDP header right after the quoted IPv6 header
/// (a quoted extension header chain is not walked).
pub fn quoted_flow(msg: &[u8]) -> Option<(u8, Ipv6Addr, u16, Ipv6Addr, u16)> {
    if !matches!(msg.first()?, 1..=4) {
        return None;
    }
    let q = msg.get(8..)?;
    if q.len() < IP6 + 4 || q[0] >> 4 != 6 {
        return None;
    }
    let proto = q[6];
    if proto != next_header::TCP && proto != next_header::UDP {
        return None;
    }
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&q[at..at + 16]);
        Ipv6Addr::from(a)
    };
    let port = |at: usize| u16::from_be_bytes([q[at], q[at + 1]]);
    Some((proto, addr(24), port(IP6 + 2), addr(8), port(IP6)))
}

/// Rewrite an ICMPv6 error in place, as the kernel's `ip_vs_nat_icmp_v6`:
/// the outer source and/or destination and the quoted packet's addresses
/// and ports, each `Some` replacing what is there; the hop limit drops by
/// one (NAT and FULLNAT route it). `msg` is the ICMPv6 message's offset in
/// `ip`. The ICMPv6 checksum is computed again over the message (at most
/// 1280 bytes); the quoted upper-layer checksum is left as it was, as the
/// kernel leaves it.
pub fn rewrite_error(
    ip: &mut [u8],
    msg: usize,
    outer_src: Option<Ipv6Addr>,
    outer_dst: Option<Ipv6Addr>,
    quoted_src: Option<(Ipv6Addr, u16)>,
    quoted_dst: Option<(Ipv6Addr, u16)>,
) -> Result<(), WireError> {
    if ip.len() < msg + 8 + IP6 + 4 || ip[7] <= 1 {
        return Err(WireError::Ipv6Truncated);
    }
    ip[7] -= 1;
    if let Some(a) = outer_src {
        ip[8..24].copy_from_slice(&a.octets());
    }
    if let Some(a) = outer_dst {
        ip[24..40].copy_from_slice(&a.octets());
    }
    let q = msg + 8;
    if let Some((a, p)) = quoted_src {
        ip[q + 8..q + 24].copy_from_slice(&a.octets());
        ip[q + IP6..q + IP6 + 2].copy_from_slice(&p.to_be_bytes());
    }
    if let Some((a, p)) = quoted_dst {
        ip[q + 24..q + 40].copy_from_slice(&a.octets());
        ip[q + IP6 + 2..q + IP6 + 4].copy_from_slice(&p.to_be_bytes());
    }
    let (mut s, mut d) = ([0u8; 16], [0u8; 16]);
    s.copy_from_slice(&ip[8..24]);
    d.copy_from_slice(&ip[24..40]);
    let m = &mut ip[msg..];
    m[2..4].fill(0);
    icmpv6::fill_checksum(m, Ipv6Addr::from(s), Ipv6Addr::from(d));
    Ok(())
}

/// TOA's IPv6 form, as DPVS's toa module reads it (kmod/toa/toa.h:
/// `struct toa_ip6_data`, TCPOPT_TOA 254, TCPOLEN_IP6_TOA 20): kind,
/// length, client port, client IPv6 address.
pub const TOA6_LEN: usize = 20;
/// PROXY protocol v2 for TCP over IPv6: 16 fixed + 36 address bytes.
pub const PP2_V6_LEN: usize = 52;

pub(crate) fn toa6_option(cip: Ipv6Addr, cport: u16) -> [u8; TOA6_LEN] {
    let mut o = [0u8; TOA6_LEN];
    o[0] = super::fullnat::TOA_KIND;
    o[1] = TOA6_LEN as u8;
    o[2..4].copy_from_slice(&cport.to_be_bytes());
    o[4..20].copy_from_slice(&cip.octets());
    o
}

/// The PROXY v2 header announcing [cip]:cport -> [vip]:vport over TCP/IPv6.
pub fn pp2_header_v6(cip: Ipv6Addr, cport: u16, vip: Ipv6Addr, vport: u16) -> [u8; PP2_V6_LEN] {
    let mut h = [0u8; PP2_V6_LEN];
    h[..12].copy_from_slice(&super::fullnat::PP2_SIG);
    h[12] = 0x21; // version 2, PROXY
    h[13] = 0x21; // AF_INET6, STREAM
    h[14..16].copy_from_slice(&36u16.to_be_bytes());
    h[16..32].copy_from_slice(&cip.octets());
    h[32..48].copy_from_slice(&vip.octets());
    h[48..50].copy_from_slice(&cport.to_be_bytes());
    h[50..52].copy_from_slice(&vport.to_be_bytes());
    h
}

/// The TCP checksum of the segment at `l4..end` of the frame, computed
/// whole over the IPv6 pseudo-header.
fn tcp_checksum_v6(data: &mut [u8], l4: usize, end: usize) {
    let (mut s, mut d) = ([0u8; 16], [0u8; 16]);
    s.copy_from_slice(&data[ETH + 8..ETH + 24]);
    d.copy_from_slice(&data[ETH + 24..ETH + 40]);
    data[l4 + 16..l4 + 18].fill(0);
    let c = crate::wire::ipv6::l4_checksum_v6(
        Ipv6Addr::from(s),
        Ipv6Addr::from(d),
        next_header::TCP,
        &data[l4..end],
    );
    data[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
}

/// Insert `bytes` into the TCP segment (at `l4` in the frame, the IPv6
/// packet ending at `end`) at offset `at` from its header; `grow_header`
/// also grows the data offset (an option). Payload length and checksum
/// follow. Returns the packet's new end.
fn insert6<F: Frame>(
    frame: &mut F,
    l4: usize,
    end: usize,
    at: usize,
    bytes: &[u8],
    grow_header: bool,
) -> Result<usize, XmitError> {
    let n = bytes.len();
    frame.truncate(end);
    if !frame.append(n) {
        return Err(XmitError::NoRoom);
    }
    let data = frame.data_mut();
    data.copy_within(l4 + at..end, l4 + at + n);
    data[l4 + at..l4 + at + n].copy_from_slice(bytes);
    let plen = u16::from_be_bytes([data[ETH + 4], data[ETH + 5]]) as usize + n;
    data[ETH + 4..ETH + 6].copy_from_slice(&(plen as u16).to_be_bytes());
    if grow_header {
        let mut t = crate::wire::TcpSegment::new_unchecked(&mut data[l4..end + n]);
        let hl = t.header_len();
        t.set_header_len(hl + n);
    }
    tcp_checksum_v6(data, l4, end + n);
    Ok(end + n)
}

/// FULLNAT's client-address delivery for an IPv6 connection, client to
/// server, after the ends are rewritten: TOA (IPv6 form) on the SYN and on
/// the ACK completing the handshake, or the PROXY v2 header (IPv6) before
/// the first data and the sequence shift after it, as fullnat.rs does for
/// IPv4. `l4` is the TCP header's offset in the frame, `end` the packet's
/// end, `mtu()` the egress port's (for TOA on a first data segment).
pub fn fnat_client_to_server<F: Frame>(
    frame: &mut F,
    (l4, end): (usize, usize),
    c: &Conn,
    mtu: impl Fn() -> usize,
) -> Result<(), XmitError> {
    use crate::flow::ClientAddr;
    let (Some(f), Some(a)) = (c.fnat.as_ref(), c.v6) else {
        return Ok(());
    };
    if f.client_addr == ClientAddr::None {
        return Ok(());
    }
    let seg = {
        let t = crate::wire::TcpSegment::new_checked(&frame.data()[l4..end])?;
        (t.flags(), t.seq(), t.header_len(), t.payload().len())
    };
    use super::fullnat::{delivery, Delivery};
    match delivery(
        c,
        f,
        seg,
        (TOA6_LEN, || mtu().saturating_sub(end.saturating_sub(ETH))),
    ) {
        Delivery::Toa => {
            insert6(frame, l4, end, 20, &toa6_option(a.cip, c.cport), true)?;
        }
        Delivery::ProxyHeader => {
            let h = pp2_header_v6(a.cip, c.cport, a.vip, c.vport);
            insert6(frame, l4, end, seg.2, &h, false)?;
            f.delta.set(PP2_V6_LEN as u32);
        }
        Delivery::Seq(s) => {
            let data = frame.data_mut();
            crate::wire::TcpSegment::new_unchecked(&mut data[l4..end]).set_seq_inc(s);
        }
        Delivery::Nothing => {}
    }
    Ok(())
}

/// FULLNAT with PROXY v2, server to client, after the ends are rewritten:
/// the server's MSS lowered by the header's 52 bytes in its SYN-ACK, and
/// its acknowledgements and SACK edges moved back over the header.
pub fn fnat_server_to_client<F: Frame>(
    frame: &mut F,
    l4: usize,
    end: usize,
    c: &Conn,
) -> Result<(), XmitError> {
    let Some(f) = c.fnat.as_ref() else {
        return Ok(());
    };
    if f.client_addr != crate::flow::ClientAddr::ProxyV2 {
        return Ok(());
    }
    let data = frame.data_mut();
    let mut t = crate::wire::TcpSegment::new_checked(&mut data[l4..end])?;
    let options_changed = super::fullnat::to_client(&mut t, f, PP2_V6_LEN);
    if options_changed {
        tcp_checksum_v6(data, l4, end);
    }
    Ok(())
}
