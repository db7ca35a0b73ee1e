//! NAT64's ICMP errors (RFC 7915 4.2 and 5.2, stateful): an error about a
//! translated connection crosses families with it.
//!
//! - A server-side ICMPv4 error (quoting the director's IPv4 packet, local
//!   address to real server) becomes an ICMPv6 error from the VIP to the
//!   client, quoting the client's packet as the client sent it (client to
//!   VIP): the source is the VIP as the kernel's `ip_vs_nat_icmp` puts the
//!   virtual address there for NAT, since the real server's IPv4 address
//!   means nothing to an IPv6 client.
//! - A client's ICMPv6 error (quoting the VIP's reply) becomes an ICMPv4
//!   error from the local address to the real server, quoting the server's
//!   packet as it sent it (real server to local address).
//!
//! Types and codes map as RFC 7915's tables; what they drop ("silently
//! drop") is refused here (`Unsupported`, counted `icmp_unhandled` by the
//! caller). Packet Too Big and Fragmentation Needed carry the MTU less or
//! more the 20 bytes the headers differ by. The quoted packet's
//! TCP/UDP checksum is carried over incrementally when the quote holds
//! it, the quoted IPv4 header gets its checksum, and the new ICMP message
//! is summed whole. A translated ICMPv6 error is at most 1280 bytes, an
//! ICMPv4 one at most 576 (RFC 4443 2.4, RFC 1812 4.3.2.3), the quote cut
//! to fit.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::XmitError;
use crate::conn::Conn;
use crate::io::Frame;
use crate::wire::checksum::{self, update16, update32};
use crate::wire::icmpv6;
use crate::wire::ipv6::{l4_update_addr_v6, next_header};
use crate::wire::{EtherType, EthernetFrame, Ipv4Packet, WireError};

const ETH: usize = EthernetFrame::<&[u8]>::HEADER_LEN;
const IP4: usize = 20;
const IP6: usize = 40;
/// RFC 4443 2.4 (c): an ICMPv6 error fits the IPv6 minimum MTU.
const MAX6: usize = 1280;
/// RFC 1812 4.3.2.3: an ICMPv4 error is at most 576 bytes.
const MAX4: usize = 576;
/// RFC 1191's plateaus, for a Fragmentation Needed without an MTU.
const PLATEAUS: [u16; 11] = [
    65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68,
];

/// ICMPv4 Destination Unreachable, Time Exceeded, Parameter Problem.
const UNREACH4: u8 = 3;
const TIME4: u8 = 11;
const PARAM4: u8 = 12;
/// ICMPv6 Destination Unreachable, Packet Too Big, Time Exceeded,
/// Parameter Problem.
const UNREACH6: u8 = 1;
const TOO_BIG6: u8 = 2;
const TIME6: u8 = 3;
const PARAM6: u8 = 4;

/// An ICMPv4 error's type, code and second word in ICMPv6 terms (RFC 7915
/// 4.2); `quoted_len` is the quoted datagram's Total Length (for a
/// Fragmentation Needed without an MTU) and `mtu6` the IPv6 egress MTU.
/// None: RFC 7915 drops it.
pub fn map_to_v6(
    (t, code, rest): (u8, u8, [u8; 4]),
    quoted_len: u16,
    mtu6: u16,
) -> Option<(u8, u8, u32)> {
    match (t, code) {
        (UNREACH4, 0 | 1 | 5 | 6 | 7 | 8 | 11 | 12) => Some((UNREACH6, 0, 0)),
        // Protocol unreachable: the Next Header field (offset 6).
        (UNREACH4, 2) => Some((PARAM6, 1, 6)),
        (UNREACH4, 3) => Some((UNREACH6, 4, 0)),
        (UNREACH4, 4) => {
            let adv = u16::from_be_bytes([rest[2], rest[3]]);
            let adv = if adv == 0 {
                // An old router's: the plateau below the packet's size.
                PLATEAUS
                    .iter()
                    .copied()
                    .find(|p| *p < quoted_len)
                    .unwrap_or(68)
            } else {
                adv
            };
            let mtu = (u32::from(adv) + 20).min(u32::from(mtu6)).max(1280);
            Some((TOO_BIG6, 0, mtu))
        }
        (UNREACH4, 9 | 10 | 13 | 15) => Some((UNREACH6, 1, 0)),
        (TIME4, c) => Some((TIME6, c, 0)),
        (PARAM4, 0 | 2) => {
            let p = match rest[0] {
                0 => 0,
                1 => 1,
                2 | 3 => 4,
                8 => 7,
                9 => 6,
                12..=15 => 8,
                16..=19 => 24,
                _ => return None,
            };
            Some((PARAM6, 0, p))
        }
        _ => None,
    }
}

/// An ICMPv6 error's type, code and second word in ICMPv4 terms (RFC 7915
/// 5.2). None: RFC 7915 drops it.
pub fn map_to_v4((t, code, rest): (u8, u8, [u8; 4])) -> Option<(u8, u8, [u8; 4])> {
    match (t, code) {
        (UNREACH6, 0 | 2 | 3) => Some((UNREACH4, 1, [0; 4])),
        (UNREACH6, 1) => Some((UNREACH4, 10, [0; 4])),
        (UNREACH6, 4) => Some((UNREACH4, 3, [0; 4])),
        (TOO_BIG6, 0) => {
            let adv = u32::from_be_bytes(rest).saturating_sub(20).min(65535);
            let [_, _, hi, lo] = adv.to_be_bytes();
            Some((UNREACH4, 4, [0, 0, hi, lo]))
        }
        (TIME6, c @ (0 | 1)) => Some((TIME4, c, [0; 4])),
        (PARAM6, 0) => {
            let p = match u32::from_be_bytes(rest) {
                0 => 0,
                1 => 1,
                4 | 5 => 2,
                6 => 9,
                7 => 8,
                8..=23 => 12,
                24..=39 => 16,
                _ => return None,
            };
            Some((PARAM4, 0, [p, 0, 0, 0]))
        }
        (PARAM6, 1) => Some((UNREACH4, 2, [0; 4])),
        _ => None,
    }
}

/// Replace the IP part of `frame` (after Ethernet) with `ip`, as `ethertype`.
fn put<F: Frame>(frame: &mut F, ip: &[u8], ethertype: EtherType) -> Result<(), XmitError> {
    let want = ETH + ip.len();
    let have = frame.data().len();
    if want > have {
        if !frame.append(want - have) {
            return Err(XmitError::NoRoom);
        }
    } else {
        frame.truncate(want);
    }
    let data = frame.data_mut();
    data[ETH..want].copy_from_slice(ip);
    EthernetFrame::new_unchecked(&mut data[..ETH]).set_ethertype(ethertype);
    Ok(())
}

/// Server side to client: the ICMPv4 error in `frame` about NAT64
/// connection `c` becomes an ICMPv6 error from the VIP to the client
/// (`mtu6`: the IPv6 egress port's). Returns the client's address.
pub fn error_to_v6<F: Frame>(frame: &mut F, c: &Conn, mtu6: u16) -> Result<Ipv6Addr, XmitError> {
    let a = c.v6.ok_or(XmitError::NoRoute)?;
    let f = c.fnat.as_ref().ok_or(XmitError::Unsupported)?;
    let mut out = [0u8; MAX6];
    let len = {
        let outer = Ipv4Packet::new_checked(&frame.data()[ETH..])?;
        if outer.ttl() <= 1 {
            return Err(XmitError::TtlExceeded);
        }
        let msg = outer.payload();
        if msg.len() < 8 + IP4 {
            return Err(XmitError::Malformed(WireError::Ipv4Truncated));
        }
        let inner = Ipv4Packet::new_checked_truncated(&msg[8..])?;
        let proto = inner.protocol().0;
        let at = super::nat64::csum_at(proto)?;
        let rest = [msg[4], msg[5], msg[6], msg[7]];
        let (t, code, word) = map_to_v6((msg[0], msg[1], rest), inner.total_len(), mtu6)
            .ok_or(XmitError::Unsupported)?;
        let l4 = inner.payload();
        if l4.len() < 4 {
            return Err(XmitError::Malformed(WireError::Ipv4Truncated));
        }
        let take = l4.len().min(MAX6 - IP6 - 8 - IP6);
        let len = IP6 + 8 + IP6 + take;
        // Outer IPv6 header: from the VIP to the client.
        out[0] = 0x60;
        out[4..6].copy_from_slice(&((len - IP6) as u16).to_be_bytes());
        out[6] = next_header::ICMPV6;
        out[7] = outer.ttl() - 1;
        out[8..24].copy_from_slice(&a.vip.octets());
        out[24..40].copy_from_slice(&a.cip.octets());
        let m = &mut out[IP6..len];
        m[0] = t;
        m[1] = code;
        m[4..8].copy_from_slice(&word.to_be_bytes());
        // The quoted packet as the client sent it: client to VIP.
        let q = &mut m[8..];
        let tc = inner.dscp_ecn();
        q[0] = 0x60 | (tc >> 4);
        q[1] = tc << 4;
        let plen = inner.total_len().saturating_sub(inner.header_len() as u16);
        q[4..6].copy_from_slice(&plen.to_be_bytes());
        q[6] = proto;
        q[7] = inner.ttl();
        q[8..24].copy_from_slice(&a.cip.octets());
        q[24..40].copy_from_slice(&a.vip.octets());
        let seg = &mut q[IP6..IP6 + take];
        seg.copy_from_slice(&l4[..take]);
        let (lport, rport) = (
            u16::from_be_bytes([seg[0], seg[1]]),
            u16::from_be_bytes([seg[2], seg[3]]),
        );
        seg[0..2].copy_from_slice(&c.cport.to_be_bytes());
        seg[2..4].copy_from_slice(&c.vport.to_be_bytes());
        if seg.len() >= at + 2 {
            let old = u16::from_be_bytes([seg[at], seg[at + 1]]);
            // A UDP datagram sent without a checksum keeps none.
            if !(proto == next_header::UDP && old == 0) {
                let mut s = update32(old, u32::from(f.lip), 0);
                s = update32(s, u32::from(c.dip), 0);
                s = l4_update_addr_v6(s, Ipv6Addr::UNSPECIFIED, a.cip);
                s = l4_update_addr_v6(s, Ipv6Addr::UNSPECIFIED, a.vip);
                s = update16(update16(s, lport, c.cport), rport, c.vport);
                seg[at..at + 2].copy_from_slice(&s.to_be_bytes());
            }
        }
        icmpv6::fill_checksum(&mut out[IP6..len], a.vip, a.cip);
        len
    };
    put(frame, &out[..len], EtherType::IPV6)?;
    Ok(a.cip)
}

/// Client to server side: the ICMPv6 error of `frame` (its message at
/// `msg_off` of the IPv6 header, ending at `end` in the frame) about NAT64
/// connection `c` becomes an ICMPv4 error from the local address to the
/// real server. Returns the real server's address.
pub fn error_to_v4<F: Frame>(
    frame: &mut F,
    msg_off: usize,
    end: usize,
    c: &Conn,
    ident: u16,
) -> Result<Ipv4Addr, XmitError> {
    let a = c.v6.ok_or(XmitError::NoRoute)?;
    let f = c.fnat.as_ref().ok_or(XmitError::Unsupported)?;
    let (lip, rip) = (f.lip, c.dip);
    let mut out = [0u8; MAX4];
    let len = {
        let data = frame.data();
        if end > data.len() || ETH + msg_off + 8 + IP6 + 4 > end {
            return Err(XmitError::Malformed(WireError::Ipv6Truncated));
        }
        let hops = data[ETH + 7];
        if hops <= 1 {
            return Err(XmitError::TtlExceeded);
        }
        let msg = &data[ETH + msg_off..end];
        let q = &msg[8..];
        // The quoted packet is the director's own reply: no extension
        // headers between it and its upper layer.
        let proto = q[6];
        let at = super::nat64::csum_at(proto)?;
        let (t, code, word) = map_to_v4((msg[0], msg[1], [msg[4], msg[5], msg[6], msg[7]]))
            .ok_or(XmitError::Unsupported)?;
        let l4 = &q[IP6..];
        let take = l4.len().min(MAX4 - IP4 - 8 - IP4);
        let len = IP4 + 8 + IP4 + take;
        let plen = u16::from_be_bytes([q[4], q[5]]);
        let tc = (q[0] << 4) | (q[1] >> 4);
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut out[..len]);
            ip.set_header_len(IP4);
            ip.set_total_len(len as u16);
            ip.set_ident(ident);
            ip.set_ttl(hops - 1);
            ip.set_protocol(crate::wire::IpProtocol::ICMP);
            ip.set_src_addr(lip);
            ip.set_dst_addr(rip);
            ip.fill_checksum();
        }
        let m = &mut out[IP4..len];
        m[0] = t;
        m[1] = code;
        m[4..8].copy_from_slice(&word);
        // The quoted packet as the server sent it: real server to local
        // address.
        {
            let mut inner = Ipv4Packet::new_unchecked(&mut m[8..8 + IP4]);
            inner.set_header_len(IP4);
            inner.set_dscp_ecn(tc);
            inner.set_total_len(plen.saturating_add(IP4 as u16));
            inner.set_ttl(q[7]);
            inner.set_protocol(crate::wire::IpProtocol(proto));
            inner.set_src_addr(rip);
            inner.set_dst_addr(lip);
            inner.fill_checksum();
        }
        let seg = &mut m[8 + IP4..8 + IP4 + take];
        seg.copy_from_slice(&l4[..take]);
        let (vport, cport) = (
            u16::from_be_bytes([seg[0], seg[1]]),
            u16::from_be_bytes([seg[2], seg[3]]),
        );
        seg[0..2].copy_from_slice(&c.dport.to_be_bytes());
        if let Some(lport) = c.fnat.as_ref().map(|f| f.lport) {
            seg[2..4].copy_from_slice(&lport.to_be_bytes());
            if seg.len() >= at + 2 {
                let old = u16::from_be_bytes([seg[at], seg[at + 1]]);
                let mut s = l4_update_addr_v6(old, a.vip, Ipv6Addr::UNSPECIFIED);
                s = l4_update_addr_v6(s, a.cip, Ipv6Addr::UNSPECIFIED);
                s = update32(s, 0, u32::from(rip));
                s = update32(s, 0, u32::from(lip));
                s = update16(update16(s, vport, c.dport), cport, lport);
                if proto == next_header::UDP && s == 0 {
                    s = 0xffff;
                }
                seg[at..at + 2].copy_from_slice(&s.to_be_bytes());
            }
        }
        m[2..4].fill(0);
        let sum = checksum::fold(checksum::sum(m));
        m[2..4].copy_from_slice(&sum.to_be_bytes());
        len
    };
    put(frame, &out[..len], EtherType::IPV4)?;
    Ok(rip)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7915 4.2, "ICMPv4 error messages", type by type.
    #[test]
    fn icmpv4_errors_map_as_rfc_7915_4_2() {
        let m = |t, c, rest: [u8; 4]| map_to_v6((t, c, rest), 1500, 1500);
        for code in [0, 1, 5, 6, 7, 8, 11, 12] {
            assert_eq!(m(3, code, [0; 4]), Some((1, 0, 0)), "code {code}");
        }
        assert_eq!(m(3, 2, [0; 4]), Some((4, 1, 6)));
        assert_eq!(m(3, 3, [0; 4]), Some((1, 4, 0)));
        for code in [9, 10, 13, 15] {
            assert_eq!(m(3, code, [0; 4]), Some((1, 1, 0)), "code {code}");
        }
        assert_eq!(m(3, 14, [0; 4]), None);
        // Fragmentation Needed: the MTU plus 20, within the IPv6 egress
        // MTU, at least 1280.
        assert_eq!(m(3, 4, [0, 0, 0x05, 0x78]), Some((2, 0, 1420)));
        assert_eq!(
            map_to_v6((3, 4, [0, 0, 0x05, 0xdc]), 1500, 1400),
            Some((2, 0, 1400))
        );
        assert_eq!(m(3, 4, [0, 0, 0x02, 0x40]), Some((2, 0, 1280)));
        // No MTU: RFC 1191's plateau below the packet (1500 -> 1492).
        assert_eq!(map_to_v6((3, 4, [0; 4]), 1500, 9000), Some((2, 0, 1512)));
        assert_eq!(m(11, 0, [0; 4]), Some((3, 0, 0)));
        assert_eq!(m(11, 1, [0; 4]), Some((3, 1, 0)));
        // Parameter Problem: Figure 3's pointers; one without a
        // counterpart, and code 1, are dropped.
        for (p4, p6) in [
            (0, 0),
            (1, 1),
            (2, 4),
            (3, 4),
            (8, 7),
            (9, 6),
            (12, 8),
            (19, 24),
        ] {
            assert_eq!(m(12, 0, [p4, 0, 0, 0]), Some((4, 0, p6)), "pointer {p4}");
        }
        assert_eq!(m(12, 0, [4, 0, 0, 0]), None);
        assert_eq!(m(12, 1, [0; 4]), None);
        // Echo and the rest are not errors here.
        assert_eq!(m(8, 0, [0; 4]), None);
        assert_eq!(m(4, 0, [0; 4]), None);
    }

    /// RFC 7915 5.2, "ICMPv6 error messages".
    #[test]
    fn icmpv6_errors_map_as_rfc_7915_5_2() {
        for code in [0, 2, 3] {
            assert_eq!(map_to_v4((1, code, [0; 4])), Some((3, 1, [0; 4])));
        }
        assert_eq!(map_to_v4((1, 1, [0; 4])), Some((3, 10, [0; 4])));
        assert_eq!(map_to_v4((1, 4, [0; 4])), Some((3, 3, [0; 4])));
        assert_eq!(map_to_v4((1, 5, [0; 4])), None);
        // Packet Too Big: the MTU less 20.
        assert_eq!(
            map_to_v4((2, 0, 1300u32.to_be_bytes())),
            Some((3, 4, [0, 0, 0x05, 0x00]))
        );
        assert_eq!(map_to_v4((3, 1, [0; 4])), Some((11, 1, [0; 4])));
        for (p6, p4) in [
            (0, 0),
            (1, 1),
            (4, 2),
            (5, 2),
            (6, 9),
            (7, 8),
            (8, 12),
            (23, 12),
            (24, 16),
            (39, 16),
        ] {
            assert_eq!(
                map_to_v4((4, 0, u32::to_be_bytes(p6))),
                Some((12, 0, [p4, 0, 0, 0])),
                "pointer {p6}"
            );
        }
        assert_eq!(map_to_v4((4, 0, 2u32.to_be_bytes())), None);
        assert_eq!(map_to_v4((4, 0, 40u32.to_be_bytes())), None);
        assert_eq!(map_to_v4((4, 1, [0; 4])), Some((3, 2, [0; 4])));
        assert_eq!(map_to_v4((4, 2, [0; 4])), None);
        assert_eq!(map_to_v4((128, 0, [0; 4])), None);
    }
}
